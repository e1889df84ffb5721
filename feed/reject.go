package feed

import "strconv"

// Reason names why a message was rejected (SPEC §8). Every rejection is counted under its
// reason in quotes_feed_rejected_total{reason=…}; the string values are the label values and
// appear in summaries, so they must stay stable.
type Reason string

// The rejection reasons of the decoder, the recording reader and the websocket client.
const (
	ReasonMalformedJSON Reason = "malformed_json" // not a JSON object
	ReasonUnknownType   Reason = "unknown_type"   // "type" is not ADD, DELETE or QUOTE
	ReasonMissingField  Reason = "missing_field"  // type, data, isin, price or description absent or of the wrong JSON type
	ReasonBadISIN       Reason = "bad_isin"       // ISIN not 12 characters [A-Z0-9]
	ReasonBadPrice      Reason = "bad_price"      // price not a JSON number, or ≤ 0, or > 1e9 after rounding
	ReasonBadTimestamp  Reason = "bad_timestamp"  // recorded line without a valid RFC 3339 "ts"
	ReasonOversized     Reason = "oversized"      // frame or line larger than the configured limit
	ReasonBinaryFrame   Reason = "binary_frame"   // websocket binary frame (the protocol is text)
)

// Reasons lists every Reason, for pre-registering metric label values and for summaries.
var Reasons = []Reason{
	ReasonMalformedJSON, ReasonUnknownType, ReasonMissingField, ReasonBadISIN,
	ReasonBadPrice, ReasonBadTimestamp, ReasonOversized, ReasonBinaryFrame,
}

// DecodeError is a rejected message: why, and (for recordings) where.
type DecodeError struct {
	Reason Reason
	// Line is the 1-based line number in a recording, 0 for a websocket frame.
	Line int64
	// Detail says what exactly was wrong, e.g. `price "-1": not positive`.
	Detail string
}

func (e *DecodeError) Error() string {
	s := string(e.Reason)
	if e.Line > 0 {
		s = "line " + strconv.FormatInt(e.Line, 10) + ": " + s
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}
