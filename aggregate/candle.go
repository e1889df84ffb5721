package aggregate

import "github.com/quotesdev/quotes/feed"

// MinuteNanos is the length of a candle bucket.
const MinuteNanos = int64(60e9)

// MinuteOf returns the start of the minute bucket holding ts (both Unix nanoseconds, UTC).
func MinuteOf(ts int64) int64 {
	m := ts - ts%MinuteNanos
	if ts < 0 && ts%MinuteNanos != 0 {
		m -= MinuteNanos
	}
	return m
}

// Key identifies one candle: an instrument incarnation and a minute.
type Key struct {
	ISIN feed.ISIN
	// Incarnation is the WAL sequence of the ADD that started this incarnation of the ISIN;
	// it keeps a reused ISIN apart from its earlier life.
	Incarnation uint64
	// Minute is the bucket start, Unix nanoseconds, UTC.
	Minute int64
}

// Candle is the mergeable aggregate state of one minute of one incarnation (SPEC §4.2): the
// first and last quote by (ts, seq), min, max and count. Two partial states of the same Key
// merge into the state of their union in any order, which is what lets a late quote for an
// already flushed minute be sent as a further state (the same shape as ClickHouse's
// argMin/argMax/min/max/sum states).
type Candle struct {
	Key
	Open, High, Low, Close feed.Price
	// OpenTS/OpenSeq and CloseTS/CloseSeq order the first and last quote.
	OpenTS, CloseTS   int64
	OpenSeq, CloseSeq uint64
	// Quotes is the number of quotes aggregated; zero for a gap-filled candle.
	Quotes uint64
}

// Empty reports whether c holds no quote.
func (c *Candle) Empty() bool { return c.Quotes == 0 }

// Add folds one quote into the candle.
func (c *Candle) Add(ts int64, seq uint64, p feed.Price) {
	if c.Quotes == 0 {
		c.Open, c.High, c.Low, c.Close = p, p, p, p
		c.OpenTS, c.CloseTS, c.OpenSeq, c.CloseSeq = ts, ts, seq, seq
		c.Quotes = 1
		return
	}
	if before(ts, seq, c.OpenTS, c.OpenSeq) {
		c.Open, c.OpenTS, c.OpenSeq = p, ts, seq
	}
	if !before(ts, seq, c.CloseTS, c.CloseSeq) {
		c.Close, c.CloseTS, c.CloseSeq = p, ts, seq
	}
	if p > c.High {
		c.High = p
	}
	if p < c.Low {
		c.Low = p
	}
	c.Quotes++
}

// Merge folds the state o (of the same Key) into c.
func (c *Candle) Merge(o *Candle) {
	if o.Quotes == 0 {
		return
	}
	if c.Quotes == 0 {
		k := c.Key
		*c = *o
		c.Key = k
		return
	}
	if before(o.OpenTS, o.OpenSeq, c.OpenTS, c.OpenSeq) {
		c.Open, c.OpenTS, c.OpenSeq = o.Open, o.OpenTS, o.OpenSeq
	}
	if !before(o.CloseTS, o.CloseSeq, c.CloseTS, c.CloseSeq) {
		c.Close, c.CloseTS, c.CloseSeq = o.Close, o.CloseTS, o.CloseSeq
	}
	if o.High > c.High {
		c.High = o.High
	}
	if o.Low < c.Low {
		c.Low = o.Low
	}
	c.Quotes += o.Quotes
}

// before reports whether (ts1, seq1) orders strictly before (ts2, seq2).
func before(ts1 int64, seq1 uint64, ts2 int64, seq2 uint64) bool {
	return ts1 < ts2 || ts1 == ts2 && seq1 < seq2
}
