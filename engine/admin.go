package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/quotesdev/quotes/export"
)

// The admin API: what other commands on the same data directory ask the process holding it
// to do (SPEC §10), over its HTTP API, authenticated with the token in <dir>/running.token
// (mode 0600: only the same user reads it).
//
//	POST /admin/backfill   body: BackfillSpec (JSON)
//	  → 200, application/x-ndjson: {"progress":"…"} lines, then {"result":{…}} or {"error":"…"}
//
// The backfill runs inside the process, beside its pipeline, and is canceled when the client
// goes away (Ctrl-C).

// BackfillSpec is a backfill asked over the admin API: what BackfillRequest holds, as flags
// name it (the process opens the archive and ClickHouse itself).
type BackfillSpec struct {
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Store      bool      `json:"store"`
	ClickHouse string    `json:"clickhouse,omitempty"`
	// Archive and S3Endpoint, for --source archive.
	Archive    string `json:"archive,omitempty"`
	S3Endpoint string `json:"s3Endpoint,omitempty"`
	// Repair is BackfillRequest.Repair (refused by a process delivering to ClickHouse).
	Repair bool `json:"repair,omitempty"`
}

// adminLine is one line of the admin API's answer.
type adminLine struct {
	Progress string          `json:"progress,omitempty"`
	Result   *BackfillResult `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	// Usage marks an Error that is the request's fault (exit code 2).
	Usage bool `json:"usage,omitempty"`
}

// BackfillOpener turns a spec into a request: it opens the archive and ClickHouse (with
// the process's own credentials); close releases them.
type BackfillOpener func(ctx context.Context, spec BackfillSpec) (req BackfillRequest, close func(), err error)

// AdminHandler serves /admin/… with the engine's token (Options.Announce); open turns a
// backfill spec into a request.
func (e *Engine) AdminHandler(open BackfillOpener) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/backfill", func(w http.ResponseWriter, r *http.Request) {
		var spec BackfillSpec
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
			http.Error(w, `{"error":"malformed backfill request"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		send := func(l adminLine) {
			enc.Encode(l)
			if flusher != nil {
				flusher.Flush()
			}
		}
		req, closeReq, err := open(r.Context(), spec)
		if err != nil {
			var oe *OptionError
			send(adminLine{Error: err.Error(), Usage: errors.As(err, &oe)})
			return
		}
		defer closeReq()
		req.Progress = func(p string) { send(adminLine{Progress: p}) }
		res, err := e.Backfill(r.Context(), req)
		if err != nil {
			var oe *OptionError
			send(adminLine{Error: err.Error(), Usage: errors.As(err, &oe)})
			return
		}
		// Counts stay; the lists are cut to their first few (the answer stays small).
		res.ClickHouse.Insert = nil
		res.ClickHouse.Conflicts = res.ClickHouse.Conflicts[:min(len(res.ClickHouse.Conflicts), 10)]
		res.ClickHouse.Extra = res.ClickHouse.Extra[:min(len(res.ClickHouse.Extra), 10)]
		send(adminLine{Result: res})
	})
	want := sha256.Sum256([]byte(e.token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if e.token == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"the admin API needs the token of the data directory (running.token)"}`+"\n")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// RemoteError is an error the process holding the data directory answered.
type RemoteError struct {
	Msg   string
	Usage bool // the request's fault
}

func (e *RemoteError) Error() string { return e.Msg }

// RemoteBackfill asks the process rp holding dir to run spec, passing its progress lines
// to progress; canceling ctx cancels the backfill there.
func RemoteBackfill(ctx context.Context, dir string, rp Running, spec BackfillSpec, progress func(string)) (*BackfillResult, error) {
	token, err := ReadToken(dir)
	if err != nil {
		return nil, err
	}
	base := rp.HTTP
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	body, _ := json.Marshal(spec)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/admin/backfill", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("backfill through %s: %w", rp.HTTP, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("backfill through `quotes %s` (pid %d) at %s: %w", rp.Command, rp.PID, rp.HTTP, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("backfill through `quotes %s` (pid %d): %s: %s", rp.Command, rp.PID, resp.Status, bytes.TrimSpace(b))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var l adminLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("backfill through %s: malformed answer: %w", rp.HTTP, err)
		}
		switch {
		case l.Error != "":
			return nil, &RemoteError{Msg: l.Error, Usage: l.Usage}
		case l.Result != nil:
			return l.Result, nil
		case l.Progress != "" && progress != nil:
			progress(l.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("backfill through %s: %w", rp.HTTP, err)
	}
	return nil, fmt.Errorf("backfill through `quotes %s` (pid %d): the answer ended without a result (did it stop?)", rp.Command, rp.PID)
}

// SpecOpener is the BackfillOpener of a process: it opens the spec's archive (with the S3
// options s3 gives for its endpoint: this process's credentials) and ClickHouse.
func SpecOpener(s3 func(endpoint string) export.S3Options) BackfillOpener {
	return func(ctx context.Context, spec BackfillSpec) (BackfillRequest, func(), error) {
		req := BackfillRequest{From: spec.From.UnixNano(), To: spec.To.UnixNano(), Store: spec.Store, Repair: spec.Repair}
		if spec.Archive != "" {
			st, err := OpenArchive(spec.Archive, s3(spec.S3Endpoint))
			if err != nil {
				return req, nil, &OptionError{Option: "archive", Err: err}
			}
			req.Archive = st
		}
		if spec.ClickHouse == "" {
			return req, func() {}, nil
		}
		ch, err := OpenClickHouse(ctx, spec.ClickHouse)
		if err != nil {
			return req, nil, err
		}
		req.ClickHouse = ch
		return req, func() { ch.Close() }, nil
	}
}
