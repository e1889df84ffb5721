package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/quotesdev/quotes/feed"
)

// syncBuffer is a bytes.Buffer safe for the command and the test goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// execGenerate runs `quotes <args>` in-process and returns its error, stdout and stderr.
func execGenerate(ctx context.Context, args ...string) (*syncBuffer, *syncBuffer, error) {
	root := newRootCmd()
	var out, errOut syncBuffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(ctx)
	return &out, &errOut, err
}

// TestGenerateRecordDeterministic: the same seed gives byte-identical recordings.
func TestGenerateRecordDeterministic(t *testing.T) {
	dir := t.TempDir()
	var files [2][]byte
	for i := range files {
		path := filepath.Join(dir, "f"+string(rune('0'+i))+".jsonl")
		_, stderr, err := execGenerate(context.Background(), "generate", "--record", path,
			"--instruments", "2000", "--duration", "3m", "--speed", "max", "--seed", "42")
		if err != nil {
			t.Fatalf("generate: %v\n%s", err, stderr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[i] = data
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("two recordings with --seed 42 differ")
	}
	lines := bytes.Count(files[0], []byte("\n"))
	if lines <= 100_000 {
		t.Errorf("%d lines, want more than 100,000", lines)
	}
	// Every line reads back.
	rr := feed.NewRecordingReader(bytes.NewReader(files[0]))
	var m feed.Message
	n := 0
	for ; ; n++ {
		err := rr.Next(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("line %d: %v", rr.Line(), err)
		}
		if ts := m.Time(); ts.Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !ts.Before(time.Date(2026, 1, 1, 0, 3, 0, 0, time.UTC)) {
			t.Fatalf("line %d: ts %v outside the 3 minutes from the default start", rr.Line(), ts)
		}
	}
	if n != lines {
		t.Errorf("read %d messages from %d lines", n, lines)
	}
	t.Logf("%d lines, %d bytes", lines, len(files[0]))
}

// TestGenerateRecordStdout: --record - writes the same recording to stdout.
func TestGenerateRecordStdout(t *testing.T) {
	args := []string{"--instruments", "50", "--duration", "10s", "--speed", "max", "--seed", "3", "--start", "2026-11-26T13:00:00Z"}
	path := filepath.Join(t.TempDir(), "f.jsonl")
	if _, stderr, err := execGenerate(context.Background(), append([]string{"generate", "--record", path}, args...)...); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := execGenerate(context.Background(), append([]string{"generate", "--record", "-"}, args...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if out.String() != string(want) {
		t.Error("--record - wrote something else than --record FILE")
	}
	if !strings.HasPrefix(string(want), `{"ts":"2026-11-26T13:00:00Z","type":"ADD"`) {
		t.Errorf("recording starts %.60q, want the --start time", want)
	}
}

func TestGenerateUsageErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "missing", "f.jsonl")
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--instruments", "0"}, "--instruments"},
		{[]string{"--instruments", "many"}, "--instruments"},
		{[]string{"--quote-interval", "1ms"}, "--quote-interval"},
		{[]string{"--quote-interval", "soon"}, "--quote-interval"},
		{[]string{"--churn", "-1"}, "--churn"},
		{[]string{"--seed", "-5"}, "--seed"},
		{[]string{"--duration", "-1s"}, "--duration"},
		{[]string{"--speed", "fast"}, "--speed"},
		{[]string{"--speed", "0x"}, "--speed"},
		{[]string{"--speed", "max"}, "--record"},
		{[]string{"--speed", "max", "--record", "x.jsonl"}, "--duration"},
		{[]string{"--start", "yesterday"}, "--start"},
		{[]string{"--client-queue", "0"}, "--client-queue"},
		{[]string{"--record", bad, "--speed", "max", "--duration", "1s"}, "--record"},
		{[]string{"extra-argument"}, "arg"},
	} {
		_, _, err := execGenerate(context.Background(), append([]string{"generate"}, tc.args...)...)
		var ue *usageError
		if err == nil || !(errors.As(err, &ue) || isCobraUsageError(err)) {
			t.Errorf("generate %v: %v, want a usage error (exit 2)", tc.args, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("generate %v: %q does not name %s", tc.args, err, tc.flag)
		}
	}
	t.Setenv("QUOTES_SPEED", "sometimes")
	_, _, err := execGenerate(context.Background(), "generate")
	var ue *usageError
	if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "--speed") || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("QUOTES_SPEED=sometimes: %v, want a usage error naming --speed and the value", err)
	}
}

// TestGenerateServes runs the server through the command, finds the address it prints and
// reads both streams with a plain websocket client.
func TestGenerateServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs([]string{"generate", "--listen", "127.0.0.1:0", "--instruments", "20",
			"--quote-interval", "100ms", "--churn", "1", "--speed", "1x", "--seed", "9"})
		root.SetOut(&out)
		root.SetErr(&errOut)
		done <- root.ExecuteContext(ctx)
	}()
	re := regexp.MustCompile(`listening on (ws://127\.0\.0\.1:\d+)`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == ""; time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no listening address printed; stdout %q, stderr %q", out.String(), errOut.String())
		}
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	inst, _, err := websocket.Dial(dctx, url+"/instruments", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.CloseNow()
	quotes, _, err := websocket.Dial(dctx, url+"/quotes", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer quotes.CloseNow()
	dec := feed.NewDecoder(0)
	var m feed.Message
	for i := 0; i < 20; i++ {
		_, data, err := inst.Read(dctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(data, &m); err != nil || m.Kind != feed.KindAdd {
			t.Fatalf("snapshot message %d: %s (%v), want an ADD", i, data, err)
		}
	}
	for i := 0; i < 10; i++ {
		_, data, err := quotes.Read(dctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(data, &m); err != nil || m.Kind != feed.KindQuote {
			t.Fatalf("quote %d: %s (%v), want a QUOTE", i, data, err)
		}
	}
	// Ctrl-C: the command stops, the clients get a close frame (status 1001).
	cancel()
	instEnd := make(chan error, 1)
	go func() {
		for {
			if _, _, err := inst.Read(dctx); err != nil {
				instEnd <- err
				return
			}
		}
	}()
	for {
		if _, _, err := quotes.Read(dctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Errorf("quotes stream ended with %v, want close status 1001", err)
			}
			break
		}
	}
	if err := <-instEnd; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("instruments stream ended with %v, want close status 1001", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("generate: %v", err)
		}
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("generate did not stop on cancel\n%s", buf[:runtime.Stack(buf, true)])
	}
}
