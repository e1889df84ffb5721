package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/proc"
	"github.com/quotesdev/quotes/internal/s3test"
	"github.com/quotesdev/quotes/record"
	"github.com/quotesdev/quotes/wal"
)

// tally is the outcome of one check: how many things were compared and how many of them
// were lost, doubled or differing, with the first few examples.
type tally struct {
	name                     string
	compared                 int
	unit                     string
	lost, doubled, differing int
	notes                    []string
	examples                 []string
	skipped                  string // why the check could not run (a failure)
	informational            bool   // reported, not part of the verdict
	lostLabel                string // what "lost" means here when it is not a failure
}

func (t *tally) example(format string, args ...any) {
	if len(t.examples) < 5 {
		t.examples = append(t.examples, fmt.Sprintf(format, args...))
	}
}

func (t *tally) ok() bool {
	if t.informational {
		return true
	}
	return t.skipped == "" && t.lost == 0 && t.doubled == 0 && t.differing == 0
}

// checker is the independent check after the faults: the WAL of the chaos run replayed
// into a fresh data directory is the truth every output is compared with.
type checker struct {
	c     *cluster
	truth string // the fresh data directory
	arch  string // the truth's Parquet archive (a directory)
	// first and bound are the minutes compared: [first, bound), all closed in every sink.
	first, bound int64
	tallies      []*tally
}

func (k *checker) add(t *tally) *tally { k.tallies = append(k.tallies, t); return t }

// run runs every check; an error means the check itself could not be done.
func (k *checker) run(ctx context.Context) error {
	walLog, err := wal.Open(wal.DefaultOptions(filepath.Join(k.c.data, "wal")))
	if err != nil {
		return fmt.Errorf("open the chaos run's WAL: %w", err)
	}
	err = k.walChecks(ctx, walLog)
	if cerr := walLog.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	k.truth, k.arch = filepath.Join(k.c.tmp, "truth"), filepath.Join(k.c.tmp, "truth-archive")
	k.c.logf("check: replay of the WAL into a fresh data directory (the truth)")
	if _, err := k.c.quotes(ctx, nil, "replay", k.c.data, "--data", k.truth, "--hot-window", k.c.cfg.hotWindow.String(), "--archive", k.arch, "--progress", "never"); err != nil {
		return err
	}
	if err := k.archiveCandles(ctx); err != nil {
		return err
	}
	if err := k.hot(ctx); err != nil {
		return err
	}
	return k.candles(ctx)
}

// walMessages iterates the WAL's partner messages (ticks skipped) in order.
type walMessages struct {
	r     *wal.Reader
	peek  *wal.Record
	ticks int
}

func (w *walMessages) next() (*wal.Record, error) {
	if w.peek != nil {
		p := w.peek
		w.peek = nil
		return p, nil
	}
	for {
		rec, err := w.r.Next()
		if err != nil {
			return nil, err
		}
		if rec.Kind == record.KindTick {
			w.ticks++
			continue
		}
		return &rec, nil
	}
}

func (w *walMessages) unread(r *wal.Record) { w.peek = r }

func sameMessage(a, b *feed.Message) bool {
	return a.TS == b.TS && a.Kind == b.Kind && a.ISIN == b.ISIN && a.Price == b.Price && a.Description == b.Description
}

// walChecks reads the WAL once for the bound, then compares the recording and the
// archive's raw messages with it.
func (k *checker) walChecks(ctx context.Context, log *wal.Log) error {
	if log.FirstSeq() > 1 {
		return fmt.Errorf("the chaos run's WAL starts at seq %d: retention removed its beginning (run shorter than --wal-retention)", log.FirstSeq())
	}
	var firstTS, maxTS int64
	var n, ticks int
	r := log.NewReader(1)
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the WAL: %w", err)
		}
		if firstTS == 0 {
			firstTS = rec.TS
		}
		maxTS = max(maxTS, rec.TS)
		if rec.Kind == record.KindTick {
			ticks++
		} else {
			n++
		}
	}
	if n == 0 {
		return errors.New("the WAL holds no partner message")
	}
	// Minute m is closed once the watermark reached m + 1m + grace: every m below bound.
	k.first = aggregate.MinuteOf(firstTS)
	k.bound = aggregate.MinuteOf(maxTS - int64(grace))
	if k.bound <= k.first {
		return errors.New("no minute closed: the run was too short")
	}
	k.c.logf("check: WAL has %d messages and %d ticks; comparing minutes %s … %s", n, ticks, fmtMinute(k.first), fmtMinute(k.bound))
	if err := k.recording(log); err != nil {
		return err
	}
	return k.archiveMessages(ctx, log, n)
}

func fmtMinute(m int64) string { return time.Unix(0, m).UTC().Format(time.RFC3339) }

// recording compares ingest's --record file with the WAL: every recorded line must be a
// WAL message, in order, once. Messages of the WAL missing from the recording are counted
// apart (informational): ingest writes the recording after each WAL append and flushes it
// with every batch, so a kill -9 loses at most the batch in flight.
func (k *checker) recording(log *wal.Log) error {
	t := k.add(&tally{name: "--record file ⊆ WAL, in order, once", unit: "lines"})
	f, err := os.Open(k.c.record)
	if err != nil {
		return err
	}
	defer f.Close()
	rr := feed.NewRecordingReader(f)
	wm := &walMessages{r: log.NewReader(1)}
	var torn, missing int
	var matched uint64 // WAL seq of the last line that matched
	const window = 1 << 20
	var m feed.Message
	for {
		err := rr.Next(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		var de *feed.DecodeError
		if errors.As(err, &de) {
			torn++
			continue
		}
		if err != nil {
			return err
		}
		t.compared++
		// Find the line among the next WAL messages.
		skipped, found := 0, false
		for i := 0; i < window; i++ {
			rec, err := wm.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if sameMessage(&rec.Message, &m) {
				found, matched = true, rec.Seq
				break
			}
			skipped++
		}
		if found {
			missing += skipped
			continue
		}
		// A line the WAL does not have at this point: extra or repeated. Go on after the
		// last line that matched.
		t.doubled++
		t.example("recorded line %d (%s %s at %s) is not among the next WAL messages", rr.Line(), m.Kind, m.ISIN, m.Time().Format(time.RFC3339Nano))
		if t.doubled > 1000 {
			return errors.New("the recording diverges from the WAL; see the examples")
		}
		wm = &walMessages{r: log.NewReader(matched + 1)}
	}
	for {
		_, err := wm.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		missing++
	}
	if torn > 0 {
		t.notes = append(t.notes, fmt.Sprintf("%d torn lines (a kill -9 mid-line; rejected by replay)", torn))
	}
	k.add(&tally{name: "WAL messages missing from the --record file", unit: "messages", compared: missing, informational: true,
		notes: []string{"ingest writes --record after each WAL append, flushed with every batch: a kill -9 loses at most the batch in flight (the WAL has it)"}})
	return nil
}

// archiveStore opens the chaos run's S3 archive.
func (k *checker) archiveStore() (export.ArchiveStore, error) {
	return export.OpenArchiveStore(archiveURL, export.S3Options{
		Endpoint: k.c.s3.Endpoint, Region: s3test.Region, Credentials: k.c.s3.Credentials(),
		TempDir: k.c.tmp,
	})
}

// archiveMessages compares the archive's raw messages with the WAL's, by sequence.
func (k *checker) archiveMessages(ctx context.Context, log *wal.Log, n int) error {
	t := k.add(&tally{name: "archive raw messages = WAL", unit: "messages"})
	st, err := k.archiveStore()
	if err != nil {
		return err
	}
	wm := &walMessages{r: log.NewReader(1)}
	var last uint64
	err = export.ReadArchiveMessages(ctx, st, export.TimeRange{}, 0, func(a wal.Record) error {
		if a.Seq <= last {
			t.doubled++
			t.example("archive seq %d again (after %d)", a.Seq, last)
			return nil
		}
		last = a.Seq
		for {
			w, err := wm.next()
			if errors.Is(err, io.EOF) {
				t.doubled++
				t.example("archive seq %d is not in the WAL", a.Seq)
				return nil
			}
			if err != nil {
				return err
			}
			switch {
			case w.Seq < a.Seq:
				t.lost++
				t.example("WAL seq %d (%s %s) not archived", w.Seq, w.Kind, w.ISIN)
				continue
			case w.Seq > a.Seq:
				wm.unread(w)
				t.doubled++
				t.example("archive seq %d is not a WAL message", a.Seq)
				return nil
			}
			t.compared++
			if !sameMessage(&w.Message, &a.Message) {
				t.differing++
				t.example("seq %d: WAL %+v, archive %+v", a.Seq, w.Message, a.Message)
			}
			return nil
		}
	})
	if err != nil {
		return fmt.Errorf("read the archive: %w", err)
	}
	for {
		w, err := wm.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		t.lost++
		t.example("WAL seq %d (%s %s) not archived", w.Seq, w.Kind, w.ISIN)
	}
	return nil
}

// archiveCandles compares the archive's candle states with those the truth's replay
// archived, for the closed minutes.
func (k *checker) archiveCandles(ctx context.Context) error {
	t := k.add(&tally{name: "archive candle states = replay's", unit: "candles"})
	st, err := k.archiveStore()
	if err != nil {
		return err
	}
	tr := export.TimeRange{From: k.first, To: k.bound}
	got, err := export.ReadArchiveCandles(ctx, st, tr)
	if err != nil {
		return fmt.Errorf("read the archive's candles: %w", err)
	}
	ts, err := export.NewDirStore(k.arch)
	if err != nil {
		return err
	}
	want, err := export.ReadArchiveCandles(ctx, ts, tr)
	if err != nil {
		return fmt.Errorf("read the replay's archive candles: %w", err)
	}
	byKey := map[aggregate.Key]aggregate.Candle{}
	for _, c := range got {
		if _, dup := byKey[c.Key]; dup {
			t.doubled++
		}
		byKey[c.Key] = c
	}
	for _, w := range want {
		t.compared++
		g, ok := byKey[w.Key]
		if !ok {
			t.lost++
			t.example("%s/%d %s: not archived", w.ISIN, w.Incarnation, fmtMinute(w.Minute))
			continue
		}
		delete(byKey, w.Key)
		classify(t, g.Quotes, w.Quotes, g != w, fmt.Sprintf("%s/%d %s: archive %+v, replay %+v", w.ISIN, w.Incarnation, fmtMinute(w.Minute), g, w))
	}
	for key := range byKey {
		t.doubled++
		t.example("%s/%d %s: archived, not in the replay", key.ISIN, key.Incarnation, fmtMinute(key.Minute))
	}
	return nil
}

// classify counts one compared item: fewer quotes is lost, more is doubled, otherwise any
// difference is differing.
func classify(t *tally, got, want uint64, differ bool, detail string) {
	switch {
	case got < want:
		t.lost++
	case got > want:
		t.doubled++
	case differ:
		t.differing++
	default:
		return
	}
	t.example("%s", detail)
}

func (k *checker) queryHot(ctx context.Context, data string) (map[uint64]json.RawMessage, error) {
	out, err := k.c.quotes(ctx, nil, "query", "hot", "--data", data, "--format", "json")
	if err != nil {
		return nil, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(out, &raws); err != nil {
		return nil, fmt.Errorf("query hot: %w", err)
	}
	evs := map[uint64]json.RawMessage{}
	for _, r := range raws {
		var e struct {
			ID uint64 `json:"id"`
		}
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("query hot: %w", err)
		}
		evs[e.ID] = r
	}
	return evs, nil
}

// canonical re-encodes a JSON object with sorted keys, for comparisons.
func canonical(raw []byte) string {
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// hot compares the store's hot events and the webhook deliveries with the truth's.
func (k *checker) hot(ctx context.Context) error {
	want, err := k.queryHot(ctx, k.truth)
	if err != nil {
		return err
	}
	got, err := k.queryHot(ctx, k.c.data)
	if err != nil {
		return err
	}
	t := k.add(&tally{name: "store hot events = replay's", unit: "events"})
	for id, w := range want {
		t.compared++
		g, ok := got[id]
		switch {
		case !ok:
			t.lost++
			t.example("event %d missing: %s", id, w)
		case canonical(g) != canonical(w):
			t.differing++
			t.example("event %d: store %s, replay %s", id, g, w)
		}
		delete(got, id)
	}
	for id, g := range got {
		t.doubled++
		t.example("event %d not in the replay: %s", id, g)
	}

	h := k.add(&tally{name: "webhook: one delivery per hot event id", unit: "events"})
	deliveries, bad, requests := k.c.hook.snapshot()
	redelivered := 0
	for id, w := range want {
		h.compared++
		d, ok := deliveries[id]
		switch {
		case !ok:
			h.lost++
			h.example("event %d never delivered", id)
		case d.changed > 0:
			h.differing++
			h.example("event %d delivered %d times with %d different bodies", id, d.count, d.changed+1)
		case canonical(d.event) != canonical(w):
			h.differing++
			h.example("event %d: delivered %s, replay %s", id, d.event, w)
		case d.count > 1:
			redelivered += d.count - 1
		}
		delete(deliveries, id)
	}
	for id := range deliveries {
		h.doubled++
		h.example("event %d delivered but not in the replay", id)
	}
	if len(bad) > 0 {
		h.differing += len(bad)
		for _, b := range bad {
			h.example("bad request: %s", b)
		}
	}
	h.notes = append(h.notes, fmt.Sprintf("%d requests; %d redeliveries of an id already delivered (at least once: same Idempotency-Key and body, allowed)", requests, redelivered))
	return nil
}

// apiCandle is one candle of the HTTP API (= query --format json).
type apiCandle struct {
	OpenTimestamp  string          `json:"openTimestamp"`
	CloseTimestamp string          `json:"closeTimestamp"`
	OpenPrice      json.RawMessage `json:"openPrice"`
	HighPrice      json.RawMessage `json:"highPrice"`
	LowPrice       json.RawMessage `json:"lowPrice"`
	ClosePrice     json.RawMessage `json:"closePrice"`
	Quotes         uint64          `json:"quotes"`
}

func (c apiCandle) same(o apiCandle) bool {
	return c.OpenTimestamp == o.OpenTimestamp && c.CloseTimestamp == o.CloseTimestamp && c.Quotes == o.Quotes &&
		bytes.Equal(c.OpenPrice, o.OpenPrice) && bytes.Equal(c.HighPrice, o.HighPrice) &&
		bytes.Equal(c.LowPrice, o.LowPrice) && bytes.Equal(c.ClosePrice, o.ClosePrice)
}

// serve starts `quotes serve` with args on a free port and returns its base URL.
func (k *checker) serve(ctx context.Context, name string, args ...string) (string, *proc.Process, error) {
	port, err := proc.FreePort()
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := k.c.ps.Start(proc.Spec{Name: name, LogDir: k.c.logs, Bin: k.c.cfg.bin, Args: append([]string{"serve", "--http", addr}, args...), Append: true})
	if err != nil {
		return "", nil, err
	}
	base := "http://" + addr
	err = proc.WaitFor(ctx, 2*time.Minute, 50*time.Millisecond, name+" ready", func() bool {
		code, _, err := proc.Get(ctx, base+"/readyz")
		return p.Exited() || (err == nil && code == 200)
	})
	if err == nil && p.Exited() {
		err = fmt.Errorf("%s exited: %s", name, proc.Tail(p.LogPath(), 1500))
	}
	if err != nil {
		p.Kill()
		return "", nil, err
	}
	return base, p, nil
}

// candles compares, for every active instrument, the closed minutes of the store and of
// ClickHouse with the truth's, through the HTTP API of `quotes serve` (the JSON of `query
// --format json`), and the instrument lists.
func (k *checker) candles(ctx context.Context) error {
	truth, tp, err := k.serve(ctx, "serve-truth", "--data", k.truth)
	if err != nil {
		return err
	}
	defer tp.Kill()
	store, sp, err := k.serve(ctx, "serve-store", "--data", k.c.data)
	if err != nil {
		return err
	}
	defer sp.Kill()
	chBase, cp, err := k.serve(ctx, "serve-clickhouse", "--clickhouse", k.c.ch.DSN, "--data", filepath.Join(k.c.tmp, "no-data"))
	if err != nil {
		return err
	}
	defer cp.Kill()

	var isins []string
	instr := map[string]string{}
	for _, base := range []string{truth, store, chBase} {
		code, body, err := proc.Get(ctx, base+"/instruments")
		if err != nil || code != 200 {
			return fmt.Errorf("GET %s/instruments: %d %v", base, code, err)
		}
		instr[base] = string(body)
		if base == truth {
			var ins []struct {
				ISIN string `json:"isin"`
			}
			if err := json.Unmarshal(body, &ins); err != nil {
				return err
			}
			for _, in := range ins {
				isins = append(isins, in.ISIN)
			}
		}
	}
	ti := k.add(&tally{name: "store instruments = replay's", unit: "lists", compared: 1})
	if instr[store] != instr[truth] {
		ti.differing++
		ti.example("GET /instruments differs")
	}
	ci := k.add(&tally{name: "ClickHouse instruments = replay's", unit: "instruments"})
	compareISINs(ci, instr[chBase], instr[truth])

	ts := k.add(&tally{name: "store candles = replay's", unit: "candles"})
	tc := k.add(&tally{name: "ClickHouse candles = replay's", unit: "candles"})
	q := url.Values{"from": {fmtMinute(k.first)}, "to": {fmtMinute(k.bound)}}.Encode()
	for _, isin := range isins {
		path := "/instruments/" + isin + "/candles?" + q
		want, err := getCandles(ctx, truth+path)
		if err != nil {
			return err
		}
		for _, side := range []struct {
			t    *tally
			base string
		}{{ts, store}, {tc, chBase}} {
			got, err := getCandles(ctx, side.base+path)
			if err != nil {
				side.t.lost += len(want)
				side.t.example("%s: %v", isin, err)
				continue
			}
			compareCandles(side.t, isin, got, want)
		}
	}
	ts.notes = append(ts.notes, fmt.Sprintf("%d active instruments", len(isins)))
	tc.notes = append(tc.notes, fmt.Sprintf("%d active instruments", len(isins)))
	return nil
}

func getCandles(ctx context.Context, u string) ([]apiCandle, error) {
	code, body, err := proc.Get(ctx, u)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("status %d: %s", code, tailString(string(body), 200))
	}
	var cs []apiCandle
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, err
	}
	return cs, nil
}

func compareCandles(t *tally, isin string, got, want []apiCandle) {
	byMinute := make(map[string]apiCandle, len(got))
	for _, g := range got {
		if _, dup := byMinute[g.OpenTimestamp]; dup {
			t.doubled++
			t.example("%s %s twice", isin, g.OpenTimestamp)
		}
		byMinute[g.OpenTimestamp] = g
	}
	for _, w := range want {
		t.compared++
		g, ok := byMinute[w.OpenTimestamp]
		if !ok {
			t.lost++
			t.example("%s %s missing", isin, w.OpenTimestamp)
			continue
		}
		delete(byMinute, w.OpenTimestamp)
		classify(t, g.Quotes, w.Quotes, !g.same(w), fmt.Sprintf("%s %s: got %s, replay %s", isin, w.OpenTimestamp, candleString(g), candleString(w)))
	}
	extra := make([]string, 0, len(byMinute))
	for m := range byMinute {
		extra = append(extra, m)
	}
	slices.Sort(extra)
	for _, m := range extra {
		t.doubled++
		t.example("%s %s not in the replay", isin, m)
	}
}

func candleString(c apiCandle) string {
	return fmt.Sprintf("O %s H %s L %s C %s n %d", c.OpenPrice, c.HighPrice, c.LowPrice, c.ClosePrice, c.Quotes)
}

// compareISINs compares the ISIN lists of two /instruments answers.
func compareISINs(t *tally, got, want string) {
	set := func(s string) map[string]bool {
		var ins []struct {
			ISIN string `json:"isin"`
		}
		json.Unmarshal([]byte(s), &ins)
		m := map[string]bool{}
		for _, in := range ins {
			m[in.ISIN] = true
		}
		return m
	}
	g, w := set(got), set(want)
	for isin := range w {
		t.compared++
		if !g[isin] {
			t.lost++
			t.example("%s missing", isin)
		}
	}
	for isin := range g {
		if !w[isin] {
			t.doubled++
			t.example("%s not in the replay", isin)
		}
	}
}
