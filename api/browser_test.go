package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
)

// The browser tests drive Debian's Chromium (apt-get install chromium; scripts/deps.sh
// installs it) through chromedp. Without a browser they skip, unless the environment
// variable CI is set: then they fail, loudly.

// browserTimeout bounds one browser test.
const browserTimeout = 90 * time.Second

// chromiumPath returns the browser binary: $QUOTES_CHROMIUM, or the first of chromium,
// chromium-browser, google-chrome, headless-shell on PATH.
func chromiumPath() (string, error) {
	if p := os.Getenv("QUOTES_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("QUOTES_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium, chromium-browser, google-chrome or headless-shell on PATH (apt-get install chromium, or make deps)")
}

// noBrowser skips the test, or fails it when CI is set.
func noBrowser(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("BROWSER TESTS CANNOT RUN (CI is set, so this is a failure, not a skip): %v", err)
	}
	tb.Skipf("browser tests skipped: %v", err)
}

// newBrowser starts a headless Chromium with a width×height window and returns a tab's
// context, cancelled (browser stopped) at the end of the test.
func newBrowser(tb testing.TB, width, height int) context.Context {
	tb.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		tb.Skip("browser test (starts Chromium), skipped in -short mode")
	}
	bin, err := chromiumPath()
	if err != nil {
		noBrowser(tb, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		// Chromium's own temporary files (shared memory with disable-dev-shm-usage, …) go
		// into the test's directory, removed even if the browser is killed.
		chromedp.Env("TMPDIR="+tb.TempDir()),
		chromedp.ExecPath(bin),
		chromedp.WindowSize(width, height),
		chromedp.NoSandbox, // tests run as root in containers
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(tb.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	tb.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser, which lives as long as that action's context:
	// no timeout on it (chromedp.Run), only on what follows.
	if err := chromedp.Do(ctx); err != nil {
		noBrowser(tb, fmt.Errorf("start %s: %w", bin, err))
	}
	tctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	tb.Cleanup(cancelTimeout)
	return tctx
}

// run runs actions in the browser, failing the test on an error.
func run(tb testing.TB, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.Fatalf("browser: %v", err)
	}
}

// eval evaluates the JavaScript expression expr and decodes its value.
func eval[T any](tb testing.TB, ctx context.Context, expr string) T {
	tb.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression cond is true.
func waitJS(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(browserTimeout))
}

// replayRecording appends the recorded JSONL file path to p in batches, as `quotes replay`
// does, and returns the messages.
func replayRecording(tb testing.TB, p *pipeline.Pipeline, path string) []feed.Message {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	return replayFrom(tb, p, f)
}

func replayFrom(tb testing.TB, p *pipeline.Pipeline, r io.Reader) []feed.Message {
	tb.Helper()
	rr := feed.NewRecordingReader(r)
	var all, batch []feed.Message
	for {
		var m feed.Message
		err := rr.Next(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatalf("recording line %d: %v", rr.Line(), err)
		}
		all = append(all, m)
		if batch = append(batch, m); len(batch) == 4096 {
			appendMsgs(tb, p, batch...)
			batch = batch[:0]
		}
	}
	appendMsgs(tb, p, batch...)
	return all
}

// artifactPath returns where a test writes an artifact named name: under
// $QUOTES_TEST_ARTIFACTS if set, else in the test's temporary directory.
func artifactPath(tb testing.TB, name string) string {
	tb.Helper()
	dir := os.Getenv("QUOTES_TEST_ARTIFACTS")
	if dir == "" {
		dir = tb.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(name))
	if os.Getenv("QUOTES_TEST_ARTIFACTS") == "" {
		tb.Logf("artifact: %s (removed after the test; set QUOTES_TEST_ARTIFACTS=DIR to keep it)", path)
	} else {
		tb.Logf("artifact: %s", path)
	}
	return path
}
