package hot

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// t0 is the base event time of the scenario tests.
var t0 = time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC).UnixNano()

// px parses a decimal price.
func px(t testing.TB, s string) feed.Price {
	t.Helper()
	p, err := feed.ParsePrice([]byte(s))
	if err != nil {
		t.Fatalf("price %q: %v", s, err)
	}
	return p
}

func mustThreshold(t testing.TB, s string) Threshold {
	t.Helper()
	th, err := ParseThreshold(s)
	if err != nil {
		t.Fatalf("ParseThreshold(%q): %v", s, err)
	}
	return th
}

var testISIN = feed.ISIN{'D', 'E', '0', '0', '0', '7', '1', '6', '4', '6', '0', '0'}

// step is one input of a scenario: a quote at t0+at, or, with forget, a deletion of inc.
type step struct {
	at     time.Duration
	price  string
	inc    uint64 // 0 means 1
	forget bool
	seq    uint64 // 0 means the step's 1-based position
}

// want is an expected event: triggered by the step with this seq.
type want struct {
	seq    uint64
	refAt  time.Duration
	ref    string
	change string
}

func TestScenarios(t *testing.T) {
	tests := []struct {
		name      string
		threshold string        // "" = default
		window    time.Duration // 0 = default
		steps     []step
		want      []want
		hotAfter  bool // Hot(1) (or of the last step's inc) after all steps
	}{
		{name: "exactly 10 % up is not hot",
			steps: []step{{at: 0, price: "100"}, {at: 5 * time.Minute, price: "110"}}},
		{name: "exactly 10 % down is not hot",
			steps: []step{{at: 0, price: "100"}, {at: 5 * time.Minute, price: "90"}}},
		{name: "just above 10 % up",
			steps:    []step{{at: 0, price: "100"}, {at: 5 * time.Minute, price: "110.000001"}},
			want:     []want{{seq: 2, refAt: 0, ref: "100", change: "10.000001"}},
			hotAfter: true},
		{name: "just above 10 % down",
			steps:    []step{{at: 0, price: "100"}, {at: 5 * time.Minute, price: "89.999999"}},
			want:     []want{{seq: 2, refAt: 0, ref: "100", change: "-10.000001"}},
			hotAfter: true},
		{name: "just below 10 %",
			steps: []step{{at: 0, price: "100"}, {at: 5 * time.Minute, price: "109.999999"},
				{at: 5*time.Minute + time.Second, price: "90.000001"}}},
		{name: "flip-flop fires twice",
			steps: []step{
				{at: 0, price: "100"},
				{at: 300 * time.Second, price: "111"},
				{at: 301 * time.Second, price: "110"},
				{at: 302 * time.Second, price: "112"},
			},
			want: []want{
				{seq: 2, ref: "100", change: "11"},
				{seq: 4, ref: "100", change: "12"},
			},
			hotAfter: true},
		{name: "staying hot fires once",
			steps: []step{
				{at: 0, price: "100"},
				{at: 300 * time.Second, price: "111"},
				{at: 301 * time.Second, price: "112"},
				{at: 302 * time.Second, price: "150"},
				{at: 303 * time.Second, price: "110.5"},
			},
			want:     []want{{seq: 2, ref: "100", change: "11"}},
			hotAfter: true},
		{name: "direction change while hot fires once",
			steps: []step{
				{at: 0, price: "100"},
				{at: 300 * time.Second, price: "111"},
				{at: 301 * time.Second, price: "89"},
			},
			want:     []want{{seq: 2, ref: "100", change: "11"}},
			hotAfter: true},
		{name: "hot again after dropping to exactly 10 %",
			steps: []step{
				{at: 0, price: "100"},
				{at: 300 * time.Second, price: "111"},
				{at: 301 * time.Second, price: "90"},
				{at: 302 * time.Second, price: "89"},
			},
			want:     []want{{seq: 2, ref: "100", change: "11"}, {seq: 4, ref: "100", change: "-11"}},
			hotAfter: true},
		{name: "no reference in the first window",
			steps: []step{
				{at: 0, price: "100"},
				{at: time.Minute, price: "200"},
				{at: 5*time.Minute - time.Nanosecond, price: "300"},
			}},
		{name: "reference exactly at t - window is inclusive",
			steps: []step{
				{at: 0, price: "100"},
				{at: 5 * time.Minute, price: "111"},
			},
			want:     []want{{seq: 2, refAt: 0, ref: "100", change: "11"}},
			hotAfter: true},
		{name: "from no reference straight to hot fires",
			steps: []step{
				{at: 0, price: "100"},
				{at: 4 * time.Minute, price: "150"}, // no reference: not hot
				{at: 5 * time.Minute, price: "150"}, // reference 100: hot, rising edge
			},
			want:     []want{{seq: 3, refAt: 0, ref: "100", change: "50"}},
			hotAfter: true},
		{name: "reference across a gap is the latest quote before t - window",
			steps: []step{
				{at: 0, price: "100"},
				{at: 10 * time.Second, price: "120"},
				{at: time.Hour, price: "133"},
			},
			want:     []want{{seq: 3, refAt: 10 * time.Second, ref: "120", change: "10.833333"}},
			hotAfter: true},
		{name: "long gap with one old quote",
			steps: []step{
				{at: 0, price: "100"},
				{at: 24 * time.Hour, price: "89"},
			},
			want:     []want{{seq: 2, refAt: 0, ref: "100", change: "-11"}},
			hotAfter: true},
		{name: "out-of-order quote becomes the reference",
			steps: []step{
				{at: 0, price: "100"},
				{at: 2 * time.Second, price: "200"},
				{at: 1 * time.Second, price: "150"}, // late
				{at: 301*time.Second + 500*time.Millisecond, price: "166"},
			},
			want:     []want{{seq: 4, refAt: time.Second, ref: "150", change: "10.666667"}},
			hotAfter: true},
		{name: "late quote is evaluated at its own ts",
			steps: []step{
				{at: 0, price: "100"},
				{at: 10 * time.Second, price: "200"},
				{at: 310 * time.Second, price: "200"},  // ref 200
				{at: 305 * time.Second, price: "111"},  // late: ref 100 (t-W = 5s)
				{at: 311 * time.Second, price: "200"},  // ref 200: not hot
				{at: 302 * time.Second, price: "112"},  // late again: ref 100 → rising edge
				{at: 303 * time.Second, price: "112"},  // still hot
				{at: 299 * time.Second, price: "1000"}, // no reference: not hot
			},
			want: []want{
				{seq: 4, refAt: 0, ref: "100", change: "11"},
				{seq: 6, refAt: 0, ref: "100", change: "12"},
			}},
		{name: "equal ts: the later-processed quote is the reference",
			steps: []step{
				{at: 0, price: "100"},
				{at: 0, price: "120"},
				{at: 300 * time.Second, price: "133"},
			},
			want:     []want{{seq: 3, refAt: 0, ref: "120", change: "10.833333"}},
			hotAfter: true},
		{name: "equal ts out of order: processing order breaks the tie",
			steps: []step{
				{at: 0, price: "120"},
				{at: time.Second, price: "500"},
				{at: 0, price: "100"}, // same ts as the first, processed later: newer
				{at: 300 * time.Second, price: "111"},
			},
			want:     []want{{seq: 4, refAt: 0, ref: "100", change: "11"}},
			hotAfter: true},
		{name: "fractional threshold 7.5",
			threshold: "7.5",
			steps: []step{
				{at: 0, price: "100"},
				{at: 300 * time.Second, price: "107.5"},
				{at: 301 * time.Second, price: "92.5"},
				{at: 302 * time.Second, price: "107.500001"},
			},
			want:     []want{{seq: 4, ref: "100", change: "7.500001"}},
			hotAfter: true},
		{name: "tiny threshold 0.000001",
			threshold: "0.000001",
			steps: []step{
				{at: 0, price: "100"},
				{at: 300 * time.Second, price: "100.000001"}, // exactly 0.000001 %
				{at: 301 * time.Second, price: "100.000002"},
			},
			want:     []want{{seq: 3, ref: "100", change: "0.000002"}},
			hotAfter: true},
		{name: "threshold above 100",
			threshold: "250",
			steps: []step{
				{at: 0, price: "100"},
				{at: 300 * time.Second, price: "350"},
				{at: 301 * time.Second, price: "350.000001"},
			},
			want:     []want{{seq: 3, ref: "100", change: "250.000001"}},
			hotAfter: true},
		{name: "huge prices do not overflow",
			steps: []step{
				{at: 0, price: "1000000000"},
				{at: 300 * time.Second, price: "900000000"},        // exactly −10 %
				{at: 301 * time.Second, price: "899999999.999999"}, // −10.0000000000001 %
			},
			want:     []want{{seq: 3, ref: "1000000000", change: "-10"}},
			hotAfter: true},
		{name: "largest possible change",
			steps: []step{
				{at: 0, price: "0.000001"},
				{at: 300 * time.Second, price: "1000000000"},
			},
			want:     []want{{seq: 2, ref: "0.000001", change: "99999999999999900"}},
			hotAfter: true},
		{name: "custom window",
			window: time.Minute,
			steps: []step{
				{at: 0, price: "100"},
				{at: 59 * time.Second, price: "120"},
				{at: 60 * time.Second, price: "120"},
			},
			want:     []want{{seq: 3, ref: "100", change: "20"}},
			hotAfter: true},
		{name: "deleted instrument's reused ISIN starts fresh",
			steps: []step{
				{at: 0, price: "100", inc: 1},
				{at: 200 * time.Second, price: "100", inc: 1},
				{inc: 1, forget: true},
				{at: 301 * time.Second, price: "150", inc: 4},
				{at: 400 * time.Second, price: "150", inc: 4},
				{at: 601 * time.Second, price: "166", inc: 4},
			},
			want:     []want{{seq: 6, refAt: 301 * time.Second, ref: "150", change: "10.666667"}},
			hotAfter: true},
		{name: "replayed sequences are ignored",
			steps: []step{
				{at: 0, price: "100", seq: 10},
				{at: 300 * time.Second, price: "111", seq: 11},
				{at: 300 * time.Second, price: "111", seq: 11}, // duplicate
				{at: 301 * time.Second, price: "100", seq: 9},  // older
				{at: 302 * time.Second, price: "100", seq: 12},
				{at: 303 * time.Second, price: "111", seq: 13},
			},
			want:     []want{{seq: 11, ref: "100", change: "11"}, {seq: 13, ref: "100", change: "11"}},
			hotAfter: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := DefaultOptions()
			if tt.threshold != "" {
				opts.Threshold = mustThreshold(t, tt.threshold)
			}
			if tt.window != 0 {
				opts.Window = tt.window
			}
			d := New(opts)
			var got []Event
			lastInc := uint64(1)
			for i, s := range tt.steps {
				inc := s.inc
				if inc == 0 {
					inc = 1
				}
				lastInc = inc
				if s.forget {
					d.Forget(inc)
					if d.Hot(inc) {
						t.Fatalf("step %d: forgotten incarnation still hot", i)
					}
					continue
				}
				seq := s.seq
				if seq == 0 {
					seq = uint64(i + 1)
				}
				if ev, ok := d.Observe(testISIN, inc, t0+int64(s.at), seq, px(t, s.price)); ok {
					got = append(got, ev)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				e := got[i]
				if e.ID != w.seq || e.ReferencePrice != px(t, w.ref) || e.ReferenceTS != t0+int64(w.refAt) ||
					e.ChangePercent.String() != w.change || e.ISIN != testISIN {
					t.Errorf("event %d = %+v (change %s), want seq %d ref %s at %v change %s",
						i, e, e.ChangePercent, w.seq, w.ref, w.refAt, w.change)
				}
				step := tt.steps[0]
				for j, s := range tt.steps {
					if uint64(j+1) == w.seq || s.seq == w.seq {
						step = s
					}
				}
				if e.TS != t0+int64(step.at) || e.Price != px(t, step.price) {
					t.Errorf("event %d: ts/price %d/%s, want %d/%s", i, e.TS, e.Price, t0+int64(step.at), step.price)
				}
			}
			if h := d.Hot(lastInc); h != tt.hotAfter {
				t.Errorf("Hot = %v, want %v", h, tt.hotAfter)
			}
		})
	}
}

func TestForgetAndLen(t *testing.T) {
	d := New(Options{})
	if got := d.Options(); got != DefaultOptions() {
		t.Fatalf("zero options → %+v, want defaults", got)
	}
	for inc := uint64(1); inc <= 3; inc++ {
		d.Observe(testISIN, inc, t0, inc, px(t, "1"))
	}
	if d.Len() != 3 {
		t.Fatalf("Len = %d, want 3", d.Len())
	}
	d.Forget(2)
	d.Forget(2)
	d.Forget(99)
	if d.Len() != 2 {
		t.Fatalf("Len = %d, want 2", d.Len())
	}
	// A new incarnation reuses the forgotten window without inheriting anything.
	d.Observe(testISIN, 7, t0+int64(time.Hour), 8, px(t, "100"))
	if ev, ok := d.Observe(testISIN, 7, t0+int64(time.Hour+5*time.Minute), 9, px(t, "200")); !ok || ev.ReferencePrice != px(t, "100") {
		t.Fatalf("reused window: event %+v %v", ev, ok)
	}
	// Invalid prices are ignored.
	for _, p := range []feed.Price{0, -1, feed.MaxPrice + 1} {
		if _, ok := d.Observe(testISIN, 11, t0, 20, p); ok || d.Len() != 3 {
			t.Fatalf("price %d accepted", p)
		}
	}
}

func TestParseThreshold(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{in: "10", want: "10"},
		{in: "7.5", want: "7.5"},
		{in: "10.000", want: "10"},
		{in: "010.50", want: "10.5"},
		{in: "0.000001", want: "0.000001"},
		{in: ".5", want: "0.5"},
		{in: "250", want: "250"},
		{in: "0.000000000000000001", want: "0.000000000000000001"},
		{in: "", err: true},
		{in: "0", err: true},
		{in: "0.000", err: true},
		{in: "-1", err: true},
		{in: "+1", err: true},
		{in: "1e1", err: true},
		{in: "10%", err: true},
		{in: "1.", err: true},
		{in: ".", err: true},
		{in: "1.2.3", err: true},
		{in: " 10", err: true},
		{in: "0.0000000000000000001", err: true}, // 19 decimals
		{in: "99999999999999999999", err: true},  // does not fit
		{in: "9999999999999999999", want: "9999999999999999999"},
	}
	for _, tt := range tests {
		th, err := ParseThreshold(tt.in)
		if tt.err {
			if err == nil || !errors.Is(err, ErrThreshold) {
				t.Errorf("ParseThreshold(%q) = %v, %v; want ErrThreshold", tt.in, th, err)
			}
			continue
		}
		if err != nil || th.String() != tt.want {
			t.Errorf("ParseThreshold(%q) = %v, %v; want %s", tt.in, th, err, tt.want)
		}
	}
	a, b := mustThreshold(t, "7.50"), mustThreshold(t, "7.5")
	if a != b {
		t.Errorf("7.50 != 7.5")
	}
	var th Threshold
	if err := th.Set("12.25"); err != nil || th.String() != "12.25" || th.Type() != "percent" {
		t.Errorf("Set: %v %v", th, err)
	}
	if err := th.UnmarshalText([]byte("x")); err == nil || th.String() != "12.25" {
		t.Errorf("UnmarshalText bad input: %v, value %v", err, th)
	}
	if txt, _ := DefaultThreshold().MarshalText(); string(txt) != "10" {
		t.Errorf("default threshold %s", txt)
	}
	if (Threshold{}).String() != "0" || !(Threshold{}).IsZero() {
		t.Errorf("zero threshold")
	}
}

func TestChange(t *testing.T) {
	tests := []struct {
		p, r, want string
		micro      int64
	}{
		{p: "110", r: "100", want: "10", micro: 10_000_000},
		{p: "90", r: "100", want: "-10", micro: -10_000_000},
		{p: "100", r: "100", want: "0"},
		{p: "133", r: "120", want: "10.833333", micro: 10_833_333},
		{p: "100", r: "120", want: "-16.666667", micro: -16_666_667},
		{p: "200.000001", r: "200", want: "0"},                  // 0.0000005 → half to even → 0
		{p: "199.999999", r: "200", want: "0"},                  // no "-0"
		{p: "200.000003", r: "200", want: "0.000002", micro: 2}, // 0.0000015 → 0.000002
		{p: "200.000005", r: "200", want: "0.000002", micro: 2}, // 0.0000025 → 0.000002
		{p: "199.999997", r: "200", want: "-0.000002", micro: -2},
		{p: "0.000003", r: "0.000002", want: "50", micro: 50_000_000},
		{p: "2", r: "3", want: "-33.333333", micro: -33_333_333},
		{p: "3.999999", r: "2", want: "99.99995", micro: 99_999_950},
		{p: "0.000001", r: "1000000000", want: "-100", micro: -100_000_000}, // −99.9999999999999 rounds
	}
	for _, tt := range tests {
		c := Change(px(t, tt.p), px(t, tt.r))
		if c.String() != tt.want {
			t.Errorf("Change(%s, %s) = %s, want %s", tt.p, tt.r, c, tt.want)
		}
		if m, ok := c.Micro(); !ok || m != tt.micro {
			t.Errorf("Change(%s, %s).Micro() = %d, %v, want %d", tt.p, tt.r, m, ok, tt.micro)
		}
		if sgn := c.Sign(); (sgn < 0) != (tt.micro < 0) || (sgn == 0) != (tt.micro == 0) {
			t.Errorf("Change(%s, %s).Sign() = %d", tt.p, tt.r, sgn)
		}
		if f := c.Float64(); f*1e6-float64(tt.micro) > 1 || float64(tt.micro)-f*1e6 > 1 {
			t.Errorf("Change(%s, %s).Float64() = %v", tt.p, tt.r, f)
		}
	}
	for _, pr := range [][2]feed.Price{{1, 0}, {0, 1}, {-5, 7}, {feed.MaxPrice + 1, 1}, {1, feed.MaxPrice + 1}} {
		if c := Change(pr[0], pr[1]); c != (Percent{}) {
			t.Errorf("Change(%d, %d) = %s, want 0 for invalid prices", pr[0], pr[1], c)
		}
	}
	big := Change(feed.MaxPrice, 1)
	if big.String() != "99999999999999900" {
		t.Errorf("largest change %s", big)
	}
	if _, ok := big.Micro(); ok {
		t.Errorf("largest change fits micro int64?")
	}
}

func TestEventJSONGolden(t *testing.T) {
	ev := Event{
		ID:             123456789,
		ISIN:           testISIN,
		Incarnation:    42,
		TS:             time.Date(2026, 11, 26, 13, 5, 1, 250_000_000, time.UTC).UnixNano(),
		Price:          px(t, "1515.775"),
		ReferencePrice: px(t, "1365.25"),
		ReferenceTS:    time.Date(2026, 11, 26, 13, 0, 0, 999_999_999, time.UTC).UnixNano(),
		ChangePercent:  Change(px(t, "1515.775"), px(t, "1365.25")),
	}
	down := ev
	down.ID, down.Price, down.TS = 18446744073709551615, px(t, "11"), time.Date(2026, 11, 26, 13, 10, 0, 0, time.UTC).UnixNano()
	down.ChangePercent = Change(down.Price, down.ReferencePrice)
	var got []byte
	for _, e := range []Event{ev, down} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON %s", b)
		}
		if string(e.AppendJSON(nil)) != string(b) {
			t.Fatalf("AppendJSON differs from MarshalJSON")
		}
		got = append(append(got, b...), '\n')
	}
	path := filepath.Join("testdata", "event.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantB, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, wantB) {
		t.Errorf("JSON mismatch\n got: %s\nwant: %s", got, wantB)
	}
	// The fields decode to what was put in.
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m["price"].(json.Number).String() != "1515.775" || m["ts"] != "2026-11-26T13:05:01.25Z" ||
		m["referenceTs"] != "2026-11-26T13:00:00.999999999Z" || m["changePercent"].(json.Number).String() != "11.025453" {
		t.Errorf("decoded %v", m)
	}
}
