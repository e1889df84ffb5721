package aggregate

import (
	"fmt"
	"strings"
	"testing"
)

func mins(n int64) int64 { return t0 + n*MinuteNanos }

// cdl makes a candle of isin AAAA/1 in minute m from quotes "price@second#seq".
func cdl(m int64, quotes ...[3]float64) Candle {
	c := Candle{Key: Key{ISIN: isinOf("AAAA"), Incarnation: 1, Minute: mins(m)}}
	for _, q := range quotes {
		c.Add(mins(m)+int64(q[1]*1e9), uint64(q[2]), px(q[0]))
	}
	return c
}

func gapText(cs []Candle) string {
	var parts []string
	for _, c := range cs {
		if c.ISIN != isinOf("AAAA") || c.Incarnation != 1 {
			parts = append(parts, "bad key")
		}
		parts = append(parts, fmt.Sprintf("%s %s/%s/%s/%s n%d", relMin(c.Minute), c.Open, c.High, c.Low, c.Close, c.Quotes))
	}
	return strings.Join(parts, ", ")
}

func TestFillGaps(t *testing.T) {
	closed := []Candle{
		cdl(0, [3]float64{10, 1, 1}, [3]float64{11, 50, 2}),
		cdl(2, [3]float64{12, 1, 5}, [3]float64{13, 2, 6}),
	}
	open := []Candle{cdl(3, [3]float64{14, 5, 9})}
	base := GapRange{ISIN: isinOf("AAAA"), Incarnation: 1, First: mins(0), Current: mins(4)}
	with := func(f func(r *GapRange)) GapRange { r := base; f(&r); return r }
	tests := []struct {
		name    string
		r       GapRange
		candles [][]Candle
		want    string
	}{
		{
			name:    "gaps are flat at the previous close, up to the current minute",
			r:       with(func(r *GapRange) { r.From, r.To = mins(0), mins(6) }),
			candles: [][]Candle{closed, open},
			want:    "m0 10/11/10/11 n2, m1 11/11/11/11 n0, m2 12/13/12/13 n2, m3 14/14/14/14 n1, m4 14/14/14/14 n0",
		},
		{
			name:    "minutes before the first quote are not served",
			r:       with(func(r *GapRange) { r.From, r.To = mins(-3), mins(2) }),
			candles: [][]Candle{closed, open},
			want:    "m0 10/11/10/11 n2, m1 11/11/11/11 n0",
		},
		{
			name:    "from/to off the minute boundary select the minutes starting inside",
			r:       with(func(r *GapRange) { r.From, r.To = mins(0)+30e9, mins(3)+1 }),
			candles: [][]Candle{closed, open},
			want:    "m1 11/11/11/11 n0, m2 12/13/12/13 n2, m3 14/14/14/14 n1",
		},
		{
			name:    "to on a boundary is exclusive, from inclusive",
			r:       with(func(r *GapRange) { r.From, r.To = mins(2), mins(3) }),
			candles: [][]Candle{closed, open},
			want:    "m2 12/13/12/13 n2",
		},
		{
			name:    "range after the current minute is empty",
			r:       with(func(r *GapRange) { r.From, r.To = mins(5), mins(9) }),
			candles: [][]Candle{closed, open},
			want:    "",
		},
		{
			name:    "empty range",
			r:       with(func(r *GapRange) { r.From, r.To = mins(2)+1, mins(2)+2 }),
			candles: [][]Candle{closed, open},
			want:    "",
		},
		{
			name:    "a gap at the start uses PrevClose",
			r:       with(func(r *GapRange) { r.From, r.To, r.PrevClose, r.HasPrev = mins(1), mins(3), px(7), true }),
			candles: [][]Candle{closed[1:]},
			want:    "m1 7/7/7/7 n0, m2 12/13/12/13 n2",
		},
		{
			name:    "a candle before the range overrides PrevClose",
			r:       with(func(r *GapRange) { r.From, r.To, r.PrevClose, r.HasPrev = mins(1), mins(2), px(7), true }),
			candles: [][]Candle{closed},
			want:    "m1 11/11/11/11 n0",
		},
		{
			name:    "a gap with no known previous close is skipped",
			r:       with(func(r *GapRange) { r.From, r.To = mins(1), mins(3) }),
			candles: [][]Candle{closed[1:]},
			want:    "m2 12/13/12/13 n2",
		},
		{
			name: "closed state, late correction and open state of one minute merge",
			r:    with(func(r *GapRange) { r.From, r.To = mins(0), mins(2) }),
			candles: [][]Candle{
				{cdl(0, [3]float64{12, 55, 30})}, // correction, passed first
				closed,
				{cdl(0, [3]float64{9, 0.5, 31})},
			},
			want: "m0 9/12/9/12 n4, m1 12/12/12/12 n0",
		},
		{
			name: "a correction before the range changes the previous close",
			r:    with(func(r *GapRange) { r.From, r.To = mins(1), mins(2) }),
			candles: [][]Candle{
				closed, {cdl(0, [3]float64{8, 59, 40})},
			},
			want: "m1 8/8/8/8 n0",
		},
		{
			name:    "candles after the current minute are ignored",
			r:       with(func(r *GapRange) { r.From, r.To, r.Current = mins(0), mins(9), mins(1) }),
			candles: [][]Candle{closed, open},
			want:    "m0 10/11/10/11 n2, m1 11/11/11/11 n0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gapText(FillGaps(tt.r, tt.candles...)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestLastRangeAndInstrumentRange(t *testing.T) {
	from, to := LastRange(mins(40), 30)
	if from != mins(11) || to != mins(41) {
		t.Fatalf("LastRange = %s..%s", relMin(from), relMin(to))
	}
	// A younger instrument gets fewer candles; the open minute without quotes is flat at
	// the last close, taken from the registry.
	in := Instrument{ISIN: isinOf("AAAA"), Incarnation: 1, HasPrice: true, FirstMinute: mins(37),
		HasLastClose: true, LastClose: px(5), LastCloseMinute: mins(39)}
	got := gapText(FillGaps(in.Range(from, to, mins(40)), []Candle{cdl(37, [3]float64{4, 1, 1}), cdl(39, [3]float64{5, 1, 2})}))
	if want := "m37 4/4/4/4 n1, m38 4/4/4/4 n0, m39 5/5/5/5 n1, m40 5/5/5/5 n0"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Only the open minute asked for: previous close from the registry.
	r := in.Range(mins(40), mins(41), mins(40))
	if !r.HasPrev || r.PrevClose != px(5) {
		t.Fatalf("range %+v", r)
	}
	if got := gapText(FillGaps(r)); got != "m40 5/5/5/5 n0" {
		t.Errorf("got %s", got)
	}
	// A range starting at the last closed minute needs the caller's candles.
	if r := in.Range(mins(39), mins(41), mins(40)); r.HasPrev {
		t.Errorf("range %+v must not take LastClose", r)
	}
}

// TestFillGapsFromAggregator serves the last minutes of a live aggregator from its closed
// outputs (as a store would keep them) plus its open candles.
func TestFillGapsFromAggregator(t *testing.T) {
	a := New(DefaultOptions())
	st := &storeOutput{}
	b := new(builder).ADD(sec(0), "AAAA", "a").Q(sec(10), "AAAA", 1).Q(sec(130), "AAAA", 2).
		TICK(sec(250)).Q(sec(251), "AAAA", 3).TICK(sec(310))
	for _, r := range b.recs {
		a.Apply(r, st)
	}
	in, _ := a.Instrument(isinOf("AAAA"))
	cur, _ := a.CurrentMinute()
	from, to := LastRange(cur, 30)
	got := gapText(FillGaps(in.Range(from, to, cur), st.closed, a.OpenCandles(in.ISIN)))
	want := "m0 1/1/1/1 n1, m1 1/1/1/1 n0, m2 2/2/2/2 n1, m3 2/2/2/2 n0, m4 3/3/3/3 n1, m5 3/3/3/3 n0"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

type storeOutput struct {
	nopOutput
	closed []Candle
}

func (s *storeOutput) Closed(c *Candle) { s.closed = append(s.closed, *c) }
func (s *storeOutput) Late(c *Candle)   { s.closed = append(s.closed, *c) }
