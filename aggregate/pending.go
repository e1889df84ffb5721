package aggregate

// Pending reports whether anything is still open: a minute with quotes that has not closed,
// or a quote held back for an ADD. A replay that ends while Pending closes everything with a
// final tick; one that ends without it has nothing left to close.
func (a *Aggregator) Pending() bool {
	if a.held.n > 0 {
		return true
	}
	for _, inc := range a.dirty {
		if len(inc.open) > 0 {
			return true
		}
	}
	return false
}
