package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/quotesdev/quotes/alert"
	"github.com/quotesdev/quotes/internal/proc"
)

// receiver is the webhook endpoint ingest delivers hot events to: it checks each request
// (signature, Idempotency-Key = the body's id) and counts the deliveries per event id.
// Kill closes it abruptly (listener and connections in flight); Restart serves again on
// the same address.
type receiver struct {
	addr   string
	secret []byte

	mu        sync.Mutex
	srv       *http.Server
	delivered map[uint64]*delivery // by Idempotency-Key
	bad       []string             // requests that failed a check, for the report
	requests  int
}

// delivery is what arrived for one event id.
type delivery struct {
	count int
	body  [sha256.Size]byte // of the first delivery
	event json.RawMessage   // the first body
	// changed counts later deliveries whose body differed from the first.
	changed int
}

func newReceiver(secret []byte) (*receiver, error) {
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	r := &receiver{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), secret: secret, delivered: map[uint64]*delivery{}}
	return r, r.start()
}

// URL is where ingest posts.
func (r *receiver) URL() string { return "http://" + r.addr + "/hook" }

func (r *receiver) start() error {
	var ln net.Listener
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger a moment after Kill
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Kill closes the server at once: requests in flight get no answer.
func (r *receiver) Kill() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart serves again after Kill.
func (r *receiver) Restart() error {
	r.Kill()
	return r.start()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return // cut off: ingest retries
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if err := r.check(req, body); err != nil {
		if len(r.bad) < 20 {
			r.bad = append(r.bad, err.Error())
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, _ := strconv.ParseUint(req.Header.Get(alert.HeaderIdempotencyKey), 10, 64)
	sum := sha256.Sum256(body)
	if d := r.delivered[id]; d != nil {
		d.count++
		if d.body != sum {
			d.changed++
		}
	} else {
		r.delivered[id] = &delivery{count: 1, body: sum, event: json.RawMessage(body)}
	}
	w.WriteHeader(http.StatusNoContent)
}

// check verifies the signature and that the Idempotency-Key is the event's id.
func (r *receiver) check(req *http.Request, body []byte) error {
	if req.Method != http.MethodPost {
		return errors.New("method " + req.Method)
	}
	if !alert.Verify(r.secret, body, req.Header.Get(alert.HeaderSignature)) {
		return errors.New("bad signature")
	}
	key := req.Header.Get(alert.HeaderIdempotencyKey)
	if _, err := strconv.ParseUint(key, 10, 64); err != nil {
		return errors.New("Idempotency-Key " + strconv.Quote(key) + " is not an event id")
	}
	var ev struct {
		ID json.Number `json:"id"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return errors.New("body: " + err.Error())
	}
	if ev.ID.String() != key {
		return errors.New("Idempotency-Key " + key + " but body id " + ev.ID.String())
	}
	return nil
}

// snapshot returns a copy of the deliveries and the failed checks.
func (r *receiver) snapshot() (map[uint64]delivery, []string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[uint64]delivery, len(r.delivered))
	for id, d := range r.delivered {
		out[id] = *d
	}
	return out, append([]string(nil), r.bad...), r.requests
}
