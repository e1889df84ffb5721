// Package simulator is the partner simulator behind `quotes generate` (SPEC §2, §3, §5): a
// deterministic model of the partner's feed, a recorder that writes it as JSONL, and a
// websocket server that serves it on the partner's /instruments and /quotes endpoints.
//
// # The model
//
// Model is a pure event generator over virtual time, driven by a math/rand/v2 PCG source
// seeded from Options.Seed: the same Options always produce the same messages.
//
//   - Instruments: Options.Instruments of them are active at all times. ISINs are random 12
//     characters of [A-Z0-9]; descriptions are 2–4 lorem-ipsum words.
//   - Start: one ADD per instrument at Options.Start.
//   - Quotes: each instrument quotes every Options.QuoteInterval on average, each interval
//     drawn uniformly from [0.5, 1.5] × the mean, the first ones spread evenly over the first
//     interval. Timestamps have millisecond resolution.
//   - Prices: a random walk in log price (steps of 0.05 %, a slight pull back to the first
//     price), starting in [100, 2000), rounded to at most 4 decimals, never ≤ 0. About once
//     every 4 hours per instrument a quote jumps by 12–25 % (in log terms) up or down, so
//     >10 % moves within 5 minutes (hot instruments, SPEC §4.5) occur regularly: about 4 a
//     minute with 1,000 instruments, 200 a minute with 50,000.
//   - Churn: churn events arrive as a Poisson process at Options.Churn per second. Each
//     deletes a random active instrument (DELETE) and adds a new one at the same time (ADD),
//     so the active set stays at Options.Instruments. 20 % of these ADDs reuse one of the
//     last 256 deleted ISINs (possibly the one just deleted) for an unrelated new
//     instrument with a new description and price; the rest get fresh random ISINs.
//   - Quotes are only ever generated for active instruments.
//
// # Recording
//
// Record writes the model as SPEC §3 JSONL with the virtual timestamps: byte-identical for
// the same Options, whatever the Speed. At SpeedMax it writes as fast as it can (tens of
// millions of lines a minute); at a real speed it is paced by an injected clock.Clock.
//
// # Serving
//
// Server serves the model in real time (at Options.Speed, by an injected clock.Clock) to any
// number of websocket clients (github.com/coder/websocket); see Server for the streams and
// the slow-client policy (bounded per-connection queue; a client that overflows it is
// disconnected).
package simulator
