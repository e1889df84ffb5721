package wal

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/quotesdev/quotes/feed"
)

// quietLogger drops everything below Warn.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testMsg is a deterministic message for (writer g, index n): every field is derived from
// them and the description/price carry them, so a record can be checked on its own.
func testMsg(g, n uint64) feed.Message {
	h := (g*1_000_003 + n) * 0x9E3779B97F4A7C15
	m := feed.Message{TS: 1_700_000_000_000_000_000 + int64(n)*1000 + int64(h%997) - 500}
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range m.ISIN {
		m.ISIN[i] = alpha[(h>>(i*5))%36]
	}
	switch h % 10 {
	case 0:
		m.Kind = feed.KindAdd
		m.Description = fmt.Sprintf("g%d n%d add", g, n)
	case 1:
		m.Kind = feed.KindDelete
		m.Description = fmt.Sprintf("g%d n%d del", g, n)
	case 2:
		m.Kind = KindTick
		m.ISIN = feed.ISIN{}
		m.Description = fmt.Sprintf("g%d n%d", g, n)
	default:
		m.Kind = feed.KindQuote
		m.Price = feed.Price(int64(g)<<40 | int64(n))
	}
	return m
}

// identify recovers (g, n) from a message made by testMsg; ok is false if it was not.
func identify(m feed.Message) (g, n uint64, ok bool) {
	switch m.Kind {
	case feed.KindQuote:
		g, n = uint64(m.Price)>>40, uint64(m.Price)&(1<<40-1)
	default:
		if _, err := fmt.Sscanf(m.Description, "g%d n%d", &g, &n); err != nil {
			return 0, 0, false
		}
	}
	return g, n, testMsg(g, n) == content(m)
}

// content returns m without its Ref, the WAL's hint: what a writer wrote.
func content(m feed.Message) feed.Message {
	m.Ref = 0
	return m
}

// quoteBatch returns n realistic quote messages starting at index start.
func quoteBatch(start, n int) []feed.Message {
	msgs := make([]feed.Message, n)
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range msgs {
		k := uint64(start + i)
		inst := (k * 2654435761) % 50000
		m := &msgs[i]
		m.TS = 1_700_000_000_000_000_000 + int64(k)*20_000 // 50k quotes/s
		m.Kind = feed.KindQuote
		for j := range m.ISIN {
			m.ISIN[j] = alpha[(inst*uint64(j+7)+uint64(j))%36]
		}
		m.Price = feed.Price(100_000_000 + int64(inst)*37_000 + int64(k%1000)*250)
	}
	return msgs
}

// dirSize returns the total size of the files under dir.
func dirSize(t testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("size of %s: %v", dir, err)
	}
	return n
}

// readAll reads every record from seq from.
func readAll(t testing.TB, l *Log, from uint64) []Record {
	t.Helper()
	var out []Record
	r := l.NewReader(from)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read at seq %d: %v", r.Seq(), err)
		}
		out = append(out, rec)
	}
}

func openTest(t testing.TB, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}
