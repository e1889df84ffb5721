package chtest

// StartProcess starts a private server like Start, but outside a test: its configuration,
// data and logs live under dir (which the caller creates and removes), and the caller stops
// it with Stop or Kill. It returns an error when no ClickHouse binary is installed or the
// server does not come up. make bench uses it for its ClickHouse baseline.
func StartProcess(dir string) (*Server, error) {
	return start(dir)
}
