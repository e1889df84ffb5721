package api

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// t0 is the start of the hand-written message sequences.
var t0 = time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)

// openPipeline opens a real pipeline over a real WAL in a temporary directory.
func openPipeline(tb testing.TB, sync wal.SyncMode) *pipeline.Pipeline {
	tb.Helper()
	wopts := wal.DefaultOptions(filepath.Join(tb.TempDir(), "wal"))
	wopts.Sync = sync
	log, err := wal.Open(wopts)
	if err != nil {
		tb.Fatal(err)
	}
	popts := pipeline.DefaultOptions()
	p, err := pipeline.Open(log, popts)
	if err != nil {
		log.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Error(err)
		}
		if err := log.Close(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

func isin(tb testing.TB, s string) feed.ISIN {
	tb.Helper()
	i, ok := feed.ParseISIN(s)
	if !ok {
		tb.Fatalf("bad ISIN %q", s)
	}
	return i
}

// at returns t0 + d in Unix nanoseconds.
func at(d time.Duration) int64 { return t0.Add(d).UnixNano() }

func add(tb testing.TB, d time.Duration, s, desc string) feed.Message {
	return feed.Message{TS: at(d), Kind: feed.KindAdd, ISIN: isin(tb, s), Description: desc}
}

func del(tb testing.TB, d time.Duration, s string) feed.Message {
	return feed.Message{TS: at(d), Kind: feed.KindDelete, ISIN: isin(tb, s)}
}

// quote makes a QUOTE; price is in micro-units.
func quote(tb testing.TB, d time.Duration, s string, price int64) feed.Message {
	return feed.Message{TS: at(d), Kind: feed.KindQuote, ISIN: isin(tb, s), Price: feed.Price(price)}
}

func appendMsgs(tb testing.TB, p *pipeline.Pipeline, msgs ...feed.Message) {
	tb.Helper()
	if err := p.Append(msgs); err != nil {
		tb.Fatal(err)
	}
}

// get performs a GET (with optional header pairs) against h and returns the response.
func get(tb testing.TB, url string, header ...string) *http.Response {
	tb.Helper()
	return do(tb, http.MethodGet, url, header...)
}

func do(tb testing.TB, method, url string, header ...string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

func readBody(tb testing.TB, resp *http.Response) []byte {
	tb.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// golden compares got with testdata/name (rewritten with -update).
func golden(tb testing.TB, name string, got []byte) {
	tb.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test ./api -run %s -update to create it)", err, tb.Name())
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs from the golden file:\n got: %s\nwant: %s", path, got, want)
	}
}
