package export

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/s3test"
	"github.com/quotesdev/quotes/wal"
)

func newTestS3Store(t testing.TB, s *s3test.Server, prefix string) *S3Store {
	t.Helper()
	st, err := NewS3Store(S3Options{
		Bucket: s3test.Bucket, Prefix: prefix, Endpoint: s.Endpoint, Region: s3test.Region,
		Credentials: s.Credentials(), TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// hyparquetFile is what testdata/node/check.mjs prints for one file.
type hyparquetFile struct {
	Path      string   `json:"path"`
	NumRows   int      `json:"num_rows"`
	RowGroups int      `json:"row_groups"`
	Codecs    []string `json:"codecs"`
	Columns   []struct {
		Name          string          `json:"name"`
		Type          string          `json:"type"`
		LogicalType   json.RawMessage `json:"logical_type"`
		ConvertedType *string         `json:"converted_type"`
	} `json:"columns"`
	Rows []map[string]any `json:"rows"`
}

// readWithHyparquet downloads every file of the store and reads it with hyparquet (Node.js).
func readWithHyparquet(t *testing.T, store ArchiveStore) map[string]hyparquetFile {
	t.Helper()
	node, err := exec.LookPath("node")
	script, _ := filepath.Abs(filepath.Join("testdata", "node", "check.mjs"))
	if err == nil {
		_, err = os.Stat(filepath.Join("testdata", "node", "node_modules", "hyparquet-compressors"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("independent Parquet reader unavailable in CI: %v (scripts/deps.sh installs it)", err)
		}
		t.Skipf("independent Parquet reader unavailable: %v (run scripts/deps.sh)", err)
	}
	ctx := context.Background()
	keys, err := store.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{script}
	local := map[string]string{}
	for i, k := range keys {
		o, err := store.Open(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("%d.parquet", i))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, io.NewSectionReader(o, 0, o.Size())); err != nil {
			t.Fatal(err)
		}
		f.Close()
		o.Close()
		args = append(args, p)
		local[p] = k
	}
	cmd := exec.Command(node, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check.mjs: %v", err)
	}
	res := map[string]hyparquetFile{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<30)
	for sc.Scan() {
		var f hyparquetFile
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatal(err)
		}
		res[local[f.Path]] = f
	}
	if len(res) != len(keys) {
		t.Fatalf("hyparquet read %d of %d files", len(res), len(keys))
	}
	return res
}

const intType = `{"type":"INTEGER","bitWidth":64,"isSigned":true}`

// wantTypes are the leaf columns of each dataset with their logical types, as hyparquet
// reports them.
var wantTypes = map[string]map[string]string{
	DatasetQuotes: {
		"isin": `{"type":"STRING"}`, "ts": `{"type":"TIMESTAMP","isAdjustedToUTC":true,"unit":"NANOS"}`,
		"seq": intType, "price": `{"type":"DECIMAL","scale":6,"precision":18}`,
	},
	DatasetEvents: {
		"isin": `{"type":"STRING"}`, "ts": `{"type":"TIMESTAMP","isAdjustedToUTC":true,"unit":"NANOS"}`,
		"seq": intType, "type": `{"type":"STRING"}`, "description": `{"type":"STRING"}`,
	},
	DatasetCandles: {
		"isin": `{"type":"STRING"}`, "incarnation": intType, "minute": `{"type":"TIMESTAMP","isAdjustedToUTC":true,"unit":"NANOS"}`,
		"open": `{"type":"DECIMAL","scale":6,"precision":18}`, "high": `{"type":"DECIMAL","scale":6,"precision":18}`,
		"low": `{"type":"DECIMAL","scale":6,"precision":18}`, "close": `{"type":"DECIMAL","scale":6,"precision":18}`,
		"quotes": intType, "open_ts": `{"type":"TIMESTAMP","isAdjustedToUTC":true,"unit":"NANOS"}`, "open_seq": intType,
		"close_ts": `{"type":"TIMESTAMP","isAdjustedToUTC":true,"unit":"NANOS"}`, "close_seq": intType,
	},
}

// checkIndependent checks the archive with hyparquet: logical types, zstd, row counts equal
// to the WAL's quotes and events and to the candle states, and the quotes' values.
func checkIndependent(t *testing.T, store ArchiveStore, recs []wal.Record, candleStates int) {
	t.Helper()
	files := readWithHyparquet(t, store)
	rows := map[string]int{}
	var quoteSeqs []int64
	for key, f := range files {
		p, ok := parsePartKey(key)
		if !ok {
			t.Fatalf("unexpected key %q", key)
		}
		rows[p.dataset] += f.NumRows
		if len(f.Rows) != f.NumRows {
			t.Errorf("%s: read %d rows, footer says %d", key, len(f.Rows), f.NumRows)
		}
		if !slices.Equal(f.Codecs, []string{"ZSTD"}) {
			t.Errorf("%s: codecs %v, want ZSTD", key, f.Codecs)
		}
		want := wantTypes[p.dataset]
		if len(f.Columns) != len(want) {
			t.Errorf("%s: %d columns, want %d", key, len(f.Columns), len(want))
		}
		for _, c := range f.Columns {
			if got := strings.ReplaceAll(string(c.LogicalType), " ", ""); got != want[c.Name] {
				t.Errorf("%s: column %s logical type %s, want %s", key, c.Name, got, want[c.Name])
			}
		}
		if p.dataset == DatasetQuotes {
			for _, r := range f.Rows {
				ts, err := time.Parse(time.RFC3339Nano, r["ts"].(string))
				if err != nil || hourOf(ts.UnixNano()) != p.hour {
					t.Fatalf("%s: row %v outside its hour (%v)", key, r, err)
				}
				seq, _ := r["seq"].(string)
				var s int64
				fmt.Sscan(seq, &s)
				if s == 0 {
					s = int64(r["seq"].(float64))
				}
				quoteSeqs = append(quoteSeqs, s)
			}
		}
	}
	var wantQuotes, wantEvents int
	var wantSeqs []int64
	for _, r := range recs {
		switch r.Kind {
		case feed.KindQuote:
			wantQuotes++
			wantSeqs = append(wantSeqs, int64(r.Seq))
		case feed.KindAdd, feed.KindDelete:
			wantEvents++
		}
	}
	if rows[DatasetQuotes] != wantQuotes || rows[DatasetEvents] != wantEvents || rows[DatasetCandles] != candleStates {
		t.Errorf("hyparquet rows %v, want quotes %d, events %d, candles %d", rows, wantQuotes, wantEvents, candleStates)
	}
	slices.Sort(quoteSeqs)
	if !slices.Equal(quoteSeqs, wantSeqs) {
		t.Errorf("hyparquet quote seqs differ from the WAL's")
	}
}

// candleStates counts the states the aggregator emits for recs (closed minutes and late
// corrections): the rows of the candle files.
func candleStates(recs []wal.Record) int {
	agg := aggregate.New(aggregate.DefaultOptions())
	c := &countOut{}
	for _, r := range recs {
		agg.Apply(r, c)
	}
	return c.n
}

type countOut struct{ n int }

func (c *countOut) Quote(aggregate.AcceptedQuote)        {}
func (c *countOut) Instrument(aggregate.InstrumentEvent) {}
func (c *countOut) Closed(*aggregate.Candle)             { c.n++ }
func (c *countOut) Late(*aggregate.Candle)               { c.n++ }

// TestArchiveIndependentReader archives a recording to a directory and to S3 and reads the
// files with hyparquet; then reads the messages back in WAL order from both.
func TestArchiveIndependentReader(t *testing.T) {
	msgs := recording(t, 90*time.Minute, 30, 5*time.Second)
	srv := s3test.Start(t)
	dirStore, err := NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, store := range []ArchiveStore{dirStore, newTestS3Store(t, srv, "archive/x")} {
		t.Run(strings.SplitN(store.String(), ":", 2)[0], func(t *testing.T) {
			l := openLog(t, t.TempDir())
			defer l.Close()
			appendAll(t, l, msgs, true)
			recs := walRecords(t, l)
			a := newTestArchiver(t, l, store)
			if err := a.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkArchive(t, store, recs)
			checkIndependent(t, store, recs, candleStates(recs))
		})
	}
}

// TestArchiveS3Outage stops S3 while the archiver runs and records keep coming: the
// archiver retries, keeps its backlog in the WAL (Needed does not move), and delivers it
// when S3 is back — exactly once.
func TestArchiveS3Outage(t *testing.T) {
	msgs := recording(t, 3*time.Hour+20*time.Minute, 10, 15*time.Second)
	l := openLog(t, t.TempDir())
	defer l.Close()
	srv := s3test.Start(t)
	store := newTestS3Store(t, srv, "outage")
	a := newTestArchiver(t, l, store)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	third := len(msgs) / 3
	appendAll(t, l, msgs[:third], false)
	waitFor(t, "first cut", func() bool { return a.Stats().Cuts >= 1 })
	srv.Kill()
	needed := a.Needed()
	appendAll(t, l, msgs[third:2*third], false)
	waitFor(t, "failures while S3 is down", func() bool { return a.Stats().Failures >= 2 })
	if a.Needed() != needed {
		t.Fatalf("Needed moved from %d to %d while S3 was down", needed, a.Needed())
	}
	srv.Restart(t)
	appendAll(t, l, msgs[2*third:], true)
	last := l.LastSeq()
	waitFor(t, "catch-up", func() bool { return a.Stats().Cuts >= 3 && a.Needed() > needed })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.Needed() != last+1 {
		t.Fatalf("Needed %d after flush, want %d", a.Needed(), last+1)
	}
	checkArchive(t, store, walRecords(t, l))
	t.Logf("stats %+v", a.Stats())
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestArchiveKillDuringUpload kill -9s an archiving process (this test binary, re-executed)
// in the middle of a multipart upload, then archives again: the interrupted object never
// becomes visible, the redo publishes it whole, nothing is duplicated or lost, and the
// abandoned upload is aborted.
func TestArchiveKillDuringUpload(t *testing.T) {
	if os.Getenv("QUOTES_ARCHIVE_HELPER") != "" {
		t.Skip("helper process")
	}
	srv := s3test.Start(t)
	walDir := t.TempDir()
	l := openLog(t, walDir)
	msgs := recording(t, 40*time.Minute, 50, time.Second)
	appendAll(t, l, msgs, true)
	recs := walRecords(t, l)
	l.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestArchiveUploadHelper$", "-test.v")
	// The helper is killed, so its own t.TempDir directories (staging, spool) are never
	// removed by it: they go into a directory of this test's, which is.
	cmd.Env = append(os.Environ(), "QUOTES_ARCHIVE_HELPER="+walDir, "QUOTES_ARCHIVE_S3="+srv.Endpoint, "TMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "uploading part 2") {
			cmd.Process.Kill() // kill -9 in the middle of a multipart upload
			killed = true
			break
		}
	}
	go io.Copy(io.Discard, out)
	cmd.Wait()
	if !killed {
		t.Fatal("the helper finished without a multipart upload")
	}
	store := newTestS3Store(t, srv, "kill")
	ctx := context.Background()
	incomplete := incompleteUploads(t, srv, "kill/")
	keys, err := store.List(ctx, DatasetQuotes+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after kill -9: %d quote files visible, %d incomplete uploads", len(keys), incomplete)
	if incomplete == 0 {
		t.Error("no incomplete upload after the kill: the test did not interrupt one")
	}

	l = openLog(t, walDir)
	defer l.Close()
	a := newTestArchiver(t, l, store) // Cleanup aborts the abandoned upload
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkArchive(t, store, recs)
	if n := incompleteUploads(t, srv, "kill/"); n != 0 {
		t.Errorf("%d incomplete uploads left", n)
	}
	var objs []string
	for o := range srv.Client(t).ListObjects(ctx, s3test.Bucket, minio.ListObjectsOptions{Prefix: "kill/", Recursive: true}) {
		objs = append(objs, o.Key)
	}
	t.Logf("objects: %v", objs)
}

// TestArchiveUploadHelper is the process TestArchiveKillDuringUpload kills.
func TestArchiveUploadHelper(t *testing.T) {
	walDir := os.Getenv("QUOTES_ARCHIVE_HELPER")
	if walDir == "" {
		t.Skip("only run by TestArchiveKillDuringUpload")
	}
	l := openLog(t, walDir)
	defer l.Close()
	store, err := NewS3Store(S3Options{
		Bucket: s3test.Bucket, Prefix: "kill", Endpoint: os.Getenv("QUOTES_ARCHIVE_S3"), Region: s3test.Region,
		Credentials: (&s3test.Server{}).Credentials(), TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	store.partSize = 64 << 10 // small parts, so that a test-sized file has several
	store.testPartHook = func(part int) {
		fmt.Printf("uploading part %d\n", part)
		if part == 2 {
			time.Sleep(time.Minute) // killed here
		}
	}
	a := newTestArchiver(t, l, store)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func incompleteUploads(t *testing.T, srv *s3test.Server, prefix string) int {
	t.Helper()
	core := minio.Core{Client: srv.Client(t)}
	res, err := core.ListMultipartUploads(context.Background(), s3test.Bucket, prefix, "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Uploads {
		t.Logf("incomplete upload: %s %s", u.Key, u.UploadID)
	}
	return len(res.Uploads)
}
