package simulator

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

func testOptions(n int) Options {
	o := DefaultOptions()
	o.Instruments = n
	o.Churn = DefaultChurn(n)
	o.Seed = 42
	return o
}

func mustModel(t testing.TB, o Options) *Model {
	t.Helper()
	m, err := NewModel(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestModelDeterministic(t *testing.T) {
	o := testOptions(500)
	a, b := mustModel(t, o), mustModel(t, o)
	o.Seed++
	c := mustModel(t, o)
	differ := false
	for i := 0; i < 200_000; i++ {
		ma, mb, mc := a.Next(), b.Next(), c.Next()
		if ma != mb {
			t.Fatalf("message %d: same seed, different messages: %+v vs %+v", i, ma, mb)
		}
		if ma != mc {
			differ = true
		}
	}
	if !differ {
		t.Error("different seeds gave the same feed")
	}
}

// TestModelInvariants runs 10 minutes of a feed with heavy churn and checks what the model
// promises: initial ADDs, order, active set, quotes only for active instruments, valid
// ISINs, prices and descriptions, the quote rate and its spread.
func TestModelInvariants(t *testing.T) {
	const n = 1000
	o := testOptions(n)
	o.Churn = 5 // heavy, to exercise churn
	m := mustModel(t, o)
	start := o.Start.UnixNano()
	end := start + int64(10*time.Minute)

	active := make(map[feed.ISIN]bool)
	for i := 0; i < n; i++ {
		msg := m.Next()
		if msg.Kind != feed.KindAdd || msg.TS != start {
			t.Fatalf("initial message %d: %v at %v, want ADD at start", i, msg.Kind, msg.Time())
		}
		if active[msg.ISIN] {
			t.Fatalf("initial ADD of %s twice", msg.ISIN)
		}
		active[msg.ISIN] = true
	}
	var (
		last                  = start
		quotes, adds, deletes int
		reused                int
		perSecond             [4]int // quotes in the first four seconds
		lastDeleted           feed.ISIN
		lastDeleteTS          int64
		minPrice, maxPrice    = feed.MaxPrice, feed.Price(0)
		quotesPerISIN         = make(map[feed.ISIN]int)
		deletedEver           = make(map[feed.ISIN]bool)
		reuseOfJustDeleted    int
	)
	for {
		msg := m.Next()
		if msg.TS >= end {
			break
		}
		if msg.TS < last {
			t.Fatalf("timestamps go back: %v after %v", msg.Time(), time.Unix(0, last).UTC())
		}
		if msg.TS%int64(time.Millisecond) != 0 {
			t.Fatalf("timestamp %v not on a millisecond", msg.Time())
		}
		last = msg.TS
		if _, ok := feed.ParseISIN(msg.ISIN.String()); !ok {
			t.Fatalf("bad ISIN %q", msg.ISIN)
		}
		switch msg.Kind {
		case feed.KindQuote:
			quotes++
			if !active[msg.ISIN] {
				t.Fatalf("quote for inactive %s at %v", msg.ISIN, msg.Time())
			}
			if msg.Price <= 0 || msg.Price > feed.MaxPrice || msg.Price%100 != 0 {
				t.Fatalf("bad price %v", msg.Price)
			}
			minPrice, maxPrice = min(minPrice, msg.Price), max(maxPrice, msg.Price)
			quotesPerISIN[msg.ISIN]++
			if d := msg.TS - start; d < int64(4*time.Second) {
				perSecond[d/int64(time.Second)]++
			}
		case feed.KindDelete:
			deletes++
			if !active[msg.ISIN] {
				t.Fatalf("DELETE of inactive %s", msg.ISIN)
			}
			delete(active, msg.ISIN)
			deletedEver[msg.ISIN] = true
			lastDeleted, lastDeleteTS = msg.ISIN, msg.TS
		case feed.KindAdd:
			adds++
			if active[msg.ISIN] {
				t.Fatalf("ADD of active %s", msg.ISIN)
			}
			if msg.TS != lastDeleteTS {
				t.Fatalf("churn ADD at %v, its DELETE at %v", msg.Time(), time.Unix(0, lastDeleteTS).UTC())
			}
			if deletedEver[msg.ISIN] {
				reused++
				if !m.LastReused() {
					t.Fatalf("ADD reusing %s not reported by LastReused", msg.ISIN)
				}
			}
			if msg.ISIN == lastDeleted {
				reuseOfJustDeleted++
			}
			if w := len(strings.Fields(msg.Description)); w < 2 || w > 4 {
				t.Fatalf("description %q: %d words, want 2–4", msg.Description, w)
			}
			active[msg.ISIN] = true
		}
		if len(active) != n && msg.Kind != feed.KindDelete {
			t.Fatalf("%d active instruments, want %d", len(active), n)
		}
	}
	if adds != deletes {
		t.Errorf("%d ADDs, %d DELETEs: every churn event is one of each", adds, deletes)
	}
	// 5 churn events/s for 600 s: 3000 ± a few sigma (Poisson: sigma ≈ 55).
	if adds < 2700 || adds > 3300 {
		t.Errorf("%d churn events in 10 minutes at 5/s, want about 3000", adds)
	}
	if f := float64(reused) / float64(adds); f < 0.15 || f > 0.25 {
		t.Errorf("%.1f %% of churn ADDs reuse a deleted ISIN, want about 20 %%", f*100)
	}
	// 1000 instruments quoting every 2 s for 600 s: 300,000 quotes.
	if quotes < 290_000 || quotes > 310_000 {
		t.Errorf("%d quotes, want about 300,000", quotes)
	}
	// The quote rate is flat from the start: not bunched at Start nor in the seconds after.
	for _, q := range perSecond {
		if q < 430 || q > 570 {
			t.Errorf("quotes in the first four seconds: %v, want about 500 each", perSecond)
			break
		}
	}
	if minPrice < 50*feed.PriceScale || maxPrice > 3000*feed.PriceScale {
		t.Errorf("prices range %v..%v, want them near 100..2000", minPrice, maxPrice)
	}
	t.Logf("%d quotes, %d churn events, %d reused (%d the ISIN just deleted), prices %v..%v",
		quotes, adds, reused, reuseOfJustDeleted, minPrice, maxPrice)
}

func TestModelNoChurn(t *testing.T) {
	o := testOptions(10)
	o.Churn = 0
	m := mustModel(t, o)
	for i := 0; i < 100_000; i++ {
		if msg := m.Next(); i >= 10 && msg.Kind != feed.KindQuote {
			t.Fatalf("message %d is %v without churn", i, msg.Kind)
		}
	}
}

func TestModelPricesStayPositive(t *testing.T) {
	// A long run of few instruments: prices never reach 0 and stay in a sane range.
	o := testOptions(5)
	o.Churn = 0
	o.QuoteInterval = MinQuoteInterval
	m := mustModel(t, o)
	lo, hi := math.Inf(1), 0.0
	for i := 0; i < 2_000_000; i++ {
		msg := m.Next()
		if msg.Kind != feed.KindQuote {
			continue
		}
		if msg.Price <= 0 {
			t.Fatalf("price %v", msg.Price)
		}
		p := float64(msg.Price) / feed.PriceScale
		lo, hi = math.Min(lo, p), math.Max(hi, p)
	}
	if lo < 10 || hi > 20000 {
		t.Errorf("prices drifted to %v..%v", lo, hi)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		field  string
		change func(*Options)
	}{
		{"Instruments", func(o *Options) { o.Instruments = 0 }},
		{"Instruments", func(o *Options) { o.Instruments = MaxInstruments + 1 }},
		{"QuoteInterval", func(o *Options) { o.QuoteInterval = time.Millisecond }},
		{"Churn", func(o *Options) { o.Churn = -1 }},
		{"Churn", func(o *Options) { o.Churn = math.NaN() }},
		{"Duration", func(o *Options) { o.Duration = -time.Second }},
		{"Start", func(o *Options) { o.Start = time.Time{} }},
		{"Start", func(o *Options) { o.Start = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"Speed", func(o *Options) { o.Speed = -1 }},
		{"Speed", func(o *Options) { o.Speed = math.Inf(1) }},
	} {
		o := DefaultOptions()
		tc.change(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tc.field, err, tc.field)
		}
		if _, err := NewModel(o); err == nil {
			t.Errorf("%s: NewModel accepted bad options", tc.field)
		}
	}
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Errorf("DefaultOptions: %v", err)
	}
}

func TestParseSpeed(t *testing.T) {
	for in, want := range map[string]float64{"max": SpeedMax, "MAX": SpeedMax, "1x": 1, "10x": 10, "0.5x": 0.5, "2": 2} {
		got, err := ParseSpeed(in)
		if err != nil || got != want {
			t.Errorf("ParseSpeed(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := ParseSpeed(FormatSpeed(got)); err != nil || back != got {
			t.Errorf("ParseSpeed(FormatSpeed(%v)) = %v, %v", got, back, err)
		}
	}
	for _, in := range []string{"", "x", "0x", "-1x", "fast", "NaNx", "Infx", "1e9x"} {
		if _, err := ParseSpeed(in); err == nil {
			t.Errorf("ParseSpeed(%q) accepted", in)
		}
	}
}

func BenchmarkModelNext(b *testing.B) {
	m := mustModel(b, testOptions(50_000))
	b.ReportAllocs()
	for b.Loop() {
		m.Next()
	}
}
