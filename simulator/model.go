package simulator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// Tunables of the price model and of churn. They are constants so that a seed always means
// the same feed.
const (
	// stepSigma is the standard deviation of the log-price step of one quote (0.05 %).
	stepSigma = 0.0005
	// reversion pulls the log price back to the instrument's first price by this fraction of
	// the distance per quote, so that a feed that runs for days does not drift away.
	reversion = 0.0002
	// jumpEvery is the mean time between two jumps of one instrument.
	jumpEvery = 4 * time.Hour
	// jumpMin and jumpMax bound the size of a jump in log price: e^0.12 = +12.7 %,
	// e^-0.12 = −11.3 %, so every jump is a >10 % move.
	jumpMin, jumpMax = 0.12, 0.25
	// minTicks and maxTicks bound prices, in units of 0.0001.
	minTicks, maxTicks = 1, 1e9 * 1e4
	// reuseFraction is the share of churn ADDs that reuse a recently deleted ISIN.
	reuseFraction = 0.2
	// recentDeleted is how many recently deleted ISINs are kept as candidates for reuse.
	recentDeleted = 256
	// tickNanos is the resolution of timestamps: one millisecond.
	tickNanos = int64(time.Millisecond)
	// priceTick is 0.0001 in micro-units: prices have at most 4 decimals.
	priceTick = feed.PriceScale / 10_000
)

// loremWords are the words of descriptions.
func loremWords() []string {
	return strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do
		eiusmod tempor incididunt ut labore et dolore magna aliqua enim ad minim veniam quis
		nostrud exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure
		in reprehenderit voluptate velit esse cillum eu fugiat nulla pariatur excepteur sint
		occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est
		laborum accumsan elementum eos`)
}

// slot is one active instrument. Slots are reused: a churn event replaces the instrument in a
// slot, and the new one inherits the slot's place in the quote schedule.
type slot struct {
	isin   feed.ISIN
	desc   string
	logp   float64 // natural log of the price
	anchor float64 // log of the first price, where the walk reverts to
}

// entry is a scheduled quote: slot quotes at ts.
type entry struct {
	ts   int64
	slot int32
}

// Stats count the messages of a feed.
type Stats struct {
	Messages int64 // all messages
	Adds     int64 // ADDs, the initial ones included
	Deletes  int64 // DELETEs
	Quotes   int64 // QUOTEs
	Reused   int64 // ADDs that reused a recently deleted ISIN
}

// count adds m to the statistics; reused tells whether m is an ADD reusing an ISIN.
func (s *Stats) count(m *feed.Message, reused bool) {
	s.Messages++
	switch m.Kind {
	case feed.KindAdd:
		s.Adds++
		if reused {
			s.Reused++
		}
	case feed.KindDelete:
		s.Deletes++
	case feed.KindQuote:
		s.Quotes++
	}
}

// Model is the deterministic feed: a pure event generator over virtual time. Next returns
// first one ADD per instrument at Start, then quotes, DELETEs and ADDs in nondecreasing TS
// order, forever (Duration is applied by Record and Server, not by the model).
//
// Quotes are scheduled in a 4-ary min-heap of next-quote times keyed by (time, slot); Next
// does not allocate except for the description of a new instrument. A Model is not safe for
// concurrent use.
type Model struct {
	rng       *rand.Rand
	words     []string
	start     int64
	meanMs    float64 // mean quote interval in milliseconds
	churnRate float64 // churn events per millisecond
	jumpProb  float64 // probability that a quote jumps

	slots  []slot
	heap   []entry
	active map[feed.ISIN]int32 // ISIN → slot

	recent    []feed.ISIN // recently deleted ISINs, candidates for reuse
	recentPos int         // next ring position to overwrite once recent is full

	initPos    int          // next slot whose initial ADD is due
	pendingAdd bool         // add is the ADD of the last churn event, not yet returned
	add        feed.Message // the pending ADD
	addReused  bool         // add reuses an ISIN
	nextChurn  int64        // time of the next churn event

	lastReused bool // the last message returned was an ADD reusing an ISIN
}

// NewModel returns the model of opts, positioned before the first initial ADD.
func NewModel(opts Options) (*Model, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	m := &Model{
		rng:       rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		words:     loremWords(),
		start:     opts.Start.UnixNano(),
		meanMs:    float64(opts.QuoteInterval) / float64(time.Millisecond),
		churnRate: opts.Churn / 1000,
		jumpProb:  float64(opts.QuoteInterval) / float64(jumpEvery),
		slots:     make([]slot, opts.Instruments),
		heap:      make([]entry, opts.Instruments),
		active:    make(map[feed.ISIN]int32, opts.Instruments),
		recent:    make([]feed.ISIN, 0, recentDeleted),
	}
	for i := range m.slots {
		m.slots[i] = m.newInstrument(m.newISIN())
		m.active[m.slots[i].isin] = int32(i)
	}
	// The first quotes: each instrument is as far into its current interval as in a feed
	// that has run forever (the residual life of the renewal process: a uniform fraction of
	// a length-biased interval), so the quote rate is flat from Start on.
	for i := range m.heap {
		a, b := 0.5*m.meanMs, 1.5*m.meanMs
		x := math.Sqrt(a*a + m.rng.Float64()*(b*b-a*a))
		m.heap[i] = entry{ts: m.start + int64(m.rng.Float64()*x)*tickNanos, slot: int32(i)}
	}
	for i := (len(m.heap) - 2) / 4; i >= 0; i-- {
		m.down(i)
	}
	m.nextChurn = m.churnAfter(m.start)
	return m, nil
}

// Next returns the next message of the feed, with TS set. Timestamps never decrease.
func (m *Model) Next() feed.Message {
	m.lastReused = false
	if m.initPos < len(m.slots) {
		s := &m.slots[m.initPos]
		m.initPos++
		return feed.Message{TS: m.start, Kind: feed.KindAdd, ISIN: s.isin, Description: s.desc}
	}
	if m.pendingAdd {
		m.pendingAdd = false
		m.lastReused = m.addReused
		return m.add
	}
	top := m.heap[0]
	if m.churnRate > 0 && m.nextChurn <= top.ts {
		return m.churn()
	}
	s := &m.slots[top.slot]
	s.logp += stepSigma*m.rng.NormFloat64() - reversion*(s.logp-s.anchor)
	if m.rng.Float64() < m.jumpProb {
		j := jumpMin + (jumpMax-jumpMin)*m.rng.Float64()
		if m.rng.Uint64()&1 == 0 {
			j = -j
		}
		s.logp += j
	}
	m.heap[0].ts = top.ts + m.interval()
	m.down(0)
	return feed.Message{TS: top.ts, Kind: feed.KindQuote, ISIN: s.isin, Price: toPrice(s.logp)}
}

// LastReused reports whether the last message Next returned is an ADD that reuses a recently
// deleted ISIN.
func (m *Model) LastReused() bool { return m.lastReused }

// Active returns the number of active instruments (constant: churn replaces one by one).
func (m *Model) Active() int { return len(m.active) }

// churn deletes a random instrument and returns its DELETE; the ADD of its replacement is
// returned by the next call of Next, with the same timestamp.
func (m *Model) churn() feed.Message {
	ts := m.nextChurn
	m.nextChurn = m.churnAfter(ts)
	i := int32(m.rng.IntN(len(m.slots)))
	old := m.slots[i]
	del := feed.Message{TS: ts, Kind: feed.KindDelete, ISIN: old.isin, Description: old.desc}
	delete(m.active, old.isin)
	m.remember(old.isin)

	isin, reused := m.addISIN()
	m.slots[i] = m.newInstrument(isin)
	m.active[isin] = i
	m.add = feed.Message{TS: ts, Kind: feed.KindAdd, ISIN: isin, Description: m.slots[i].desc}
	m.addReused = reused
	m.pendingAdd = true
	return del
}

// remember keeps isin as a candidate for reuse.
func (m *Model) remember(isin feed.ISIN) {
	if len(m.recent) < recentDeleted {
		m.recent = append(m.recent, isin)
		return
	}
	m.recent[m.recentPos] = isin
	m.recentPos = (m.recentPos + 1) % recentDeleted
}

// addISIN returns the ISIN of a new instrument: with probability reuseFraction a recently
// deleted one (removed from the candidates), else a fresh random one.
func (m *Model) addISIN() (feed.ISIN, bool) {
	if len(m.recent) > 0 && m.rng.Float64() < reuseFraction {
		k := m.rng.IntN(len(m.recent))
		isin := m.recent[k]
		last := len(m.recent) - 1
		m.recent[k] = m.recent[last]
		m.recent = m.recent[:last]
		if m.recentPos > len(m.recent) {
			m.recentPos = 0
		}
		if _, busy := m.active[isin]; !busy {
			return isin, true
		}
	}
	return m.newISIN(), false
}

// newISIN returns a random ISIN that is not active.
func (m *Model) newISIN() feed.ISIN {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for {
		var isin feed.ISIN
		v := m.rng.Uint64()
		for j := range isin {
			isin[j] = alphabet[v%36]
			v /= 36
		}
		if _, busy := m.active[isin]; !busy {
			return isin
		}
	}
}

// newInstrument returns a fresh instrument: 2–4 lorem-ipsum words, a first price in
// [100, 2000).
func (m *Model) newInstrument(isin feed.ISIN) slot {
	n := 2 + m.rng.IntN(3)
	var b strings.Builder
	for k := 0; k < n; k++ {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(m.words[m.rng.IntN(len(m.words))])
	}
	p := math.Log(100 + 1900*m.rng.Float64())
	return slot{isin: isin, desc: b.String(), logp: p, anchor: p}
}

// interval draws the time to an instrument's next quote: uniform in [0.5, 1.5] × the mean,
// in whole milliseconds, at least 1 ms.
func (m *Model) interval() int64 {
	ms := int64(m.meanMs * (0.5 + m.rng.Float64()))
	if ms < 1 {
		ms = 1
	}
	return ms * tickNanos
}

// churnAfter draws the time of the churn event after ts (a Poisson process), in whole
// milliseconds.
func (m *Model) churnAfter(ts int64) int64 {
	if m.churnRate <= 0 {
		return math.MaxInt64
	}
	return ts + int64(m.rng.ExpFloat64()/m.churnRate)*tickNanos
}

// toPrice rounds exp(logp) to 4 decimals, within [0.0001, 1e9].
func toPrice(logp float64) feed.Price {
	t := math.Round(math.Exp(logp) * 1e4)
	switch {
	case t < minTicks || math.IsNaN(t):
		t = minTicks
	case t > maxTicks:
		t = maxTicks
	}
	return feed.Price(int64(t) * priceTick)
}

// less orders heap entries by (ts, slot), so ties are deterministic.
func less(a, b entry) bool { return a.ts < b.ts || a.ts == b.ts && a.slot < b.slot }

// down restores the heap property below i in the 4-ary heap.
func (m *Model) down(i int) {
	h := m.heap
	n := len(h)
	e := h[i]
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		best := c
		end := c + 4
		if end > n {
			end = n
		}
		for k := c + 1; k < end; k++ {
			if less(h[k], h[best]) {
				best = k
			}
		}
		if !less(h[best], e) {
			break
		}
		h[i] = h[best]
		i = best
	}
	h[i] = e
}

// String describes the model for logs.
func (m *Model) String() string {
	return fmt.Sprintf("%d instruments, quote every %.0fms, churn %g/s", len(m.slots), m.meanMs, m.churnRate*1000)
}
