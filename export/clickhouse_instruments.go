package export

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
)

// InstrumentEvent is a change of the instrument registry (aggregate.InstrumentEvent), as the
// sink stores it.
type InstrumentEvent = aggregate.InstrumentEvent

// Instrument is one incarnation of an instrument as ClickHouse holds it.
type Instrument struct {
	ISIN        feed.ISIN
	Incarnation uint64
	// Description is the latest ADD's (or the DELETE's, when it was the last event).
	Description string
	// AddedTS is the time of the first ADD; DeletedTS the DELETE's, zero while active.
	AddedTS, DeletedTS int64
	Deleted            bool
}

// WriteInstruments stores registry events. It is idempotent: an event is identified by
// (ISIN, incarnation, Seq), and writing it again changes no query result (the table is a
// ReplacingMergeTree and the queries aggregate with duplicate-insensitive functions), so a
// batch that failed half-way can simply be written again.
func (s *ClickHouseSink) WriteInstruments(ctx context.Context, events []InstrumentEvent) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	var (
		isin  = make([]string, 0, n)
		inc   = make([]uint64, 0, n)
		seq   = make([]uint64, 0, n)
		ts    = make([]int64, 0, n)
		kind  = make([]uint8, 0, n)
		descr = make([]string, 0, n)
	)
	for i := range events {
		e := &events[i]
		if _, ok := feed.ParseISIN(e.ISIN.String()); !ok {
			return fmt.Errorf("clickhouse write instruments: event %d: invalid ISIN %q", i, e.ISIN.String())
		}
		if e.Kind != feed.KindAdd && e.Kind != feed.KindDelete {
			return fmt.Errorf("clickhouse write instruments: event %d (%s): kind %v is not ADD or DELETE", i, e.ISIN, e.Kind)
		}
		isin = append(isin, e.ISIN.String())
		inc = append(inc, e.Incarnation)
		seq = append(seq, e.Seq)
		ts = append(ts, e.TS)
		kind = append(kind, uint8(e.Kind))
		descr = append(descr, e.Description)
	}
	tbl, err := ExternalTable("quotes_events",
		ExternalColumn{"isin", "FixedString(12)", isin},
		ExternalColumn{"incarnation", "UInt64", inc},
		ExternalColumn{"seq", "UInt64", seq},
		ExternalColumn{"ts", "Int64", ts},
		ExternalColumn{"kind", "UInt8", kind},
		ExternalColumn{"description", "String", descr},
	)
	if err != nil {
		return fmt.Errorf("clickhouse write instruments: %w", err)
	}
	q := fmt.Sprintf(`INSERT INTO %s.instruments (isin, incarnation, seq, ts, kind, description)
SELECT isin, incarnation, seq, ts, CAST(kind AS Enum8('ADD' = 1, 'DELETE' = 2)), description FROM quotes_events`, s.db)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureSchema(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.conn.Exec(clickhouse.Context(ctx, clickhouse.WithExternalTable(tbl)), q); err != nil {
		return fmt.Errorf("clickhouse write %d instrument events: %w", n, err)
	}
	s.stats.InstrumentEvents += uint64(n)
	return nil
}

// instrumentsQuery folds the event history into one row per incarnation; %s are the
// database and a WHERE/HAVING tail.
const instrumentsQuery = `SELECT
    isin,
    incarnation,
    argMax(description, seq),
    minIf(ts, kind = 'ADD'),
    maxIf(ts, kind = 'DELETE'),
    max(kind = 'DELETE') AS deleted
FROM %s.instruments
%s
GROUP BY isin, incarnation
%s
ORDER BY isin, incarnation`

// Instruments returns the active instruments (incarnations without a DELETE), sorted by
// ISIN.
func (s *ClickHouseSink) Instruments(ctx context.Context) ([]Instrument, error) {
	return s.instruments(ctx, "", "HAVING deleted = 0")
}

// InstrumentHistory returns every incarnation of isin, deleted ones included, oldest first.
func (s *ClickHouseSink) InstrumentHistory(ctx context.Context, isin feed.ISIN) ([]Instrument, error) {
	if _, ok := feed.ParseISIN(isin.String()); !ok {
		return nil, fmt.Errorf("clickhouse instrument history: invalid ISIN %q", isin.String())
	}
	return s.instruments(ctx, fmt.Sprintf("WHERE isin = toFixedString('%s', 12)", isin), "")
}

func (s *ClickHouseSink) instruments(ctx context.Context, where, having string) ([]Instrument, error) {
	s.mu.Lock()
	err := s.ensureSchema(ctx)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.conn.Query(ctx, fmt.Sprintf(instrumentsQuery, s.db, where, having))
	if err != nil {
		return nil, fmt.Errorf("clickhouse instruments: %w", err)
	}
	defer res.Close()
	var out []Instrument
	for res.Next() {
		var (
			in      Instrument
			isin    string
			deleted uint8
		)
		if err := res.Scan(&isin, &in.Incarnation, &in.Description, &in.AddedTS, &in.DeletedTS, &deleted); err != nil {
			return nil, fmt.Errorf("clickhouse instruments: %w", err)
		}
		var ok bool
		if in.ISIN, ok = feed.ParseISIN(strings.TrimRight(isin, "\x00")); !ok {
			return nil, fmt.Errorf("clickhouse instruments: invalid ISIN %q in the table", isin)
		}
		in.Deleted = deleted != 0
		out = append(out, in)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse instruments: %w", err)
	}
	return out, nil
}
