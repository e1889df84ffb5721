package hot

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// ParseEventJSON parses the SPEC §4.5 JSON of an event (as AppendJSON writes it). The
// incarnation is not part of the JSON and stays 0; ChangePercent is recomputed from the
// prices.
func ParseEventJSON(b []byte) (Event, error) {
	var raw struct {
		ID             uint64     `json:"id"`
		ISIN           string     `json:"isin"`
		TS             time.Time  `json:"ts"`
		Price          feed.Price `json:"price"`
		ReferencePrice feed.Price `json:"referencePrice"`
		ReferenceTS    time.Time  `json:"referenceTs"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Event{}, fmt.Errorf("hot: parse event: %w", err)
	}
	isin, ok := feed.ParseISIN(raw.ISIN)
	if !ok {
		return Event{}, fmt.Errorf("hot: parse event %d: bad isin %q", raw.ID, raw.ISIN)
	}
	return Event{
		ID: raw.ID, ISIN: isin, TS: raw.TS.UnixNano(), Price: raw.Price,
		ReferencePrice: raw.ReferencePrice, ReferenceTS: raw.ReferenceTS.UnixNano(),
		ChangePercent: Change(raw.Price, raw.ReferencePrice),
	}, nil
}
