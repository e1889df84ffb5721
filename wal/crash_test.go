package wal

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// crashEnv* configure the writer subprocess of TestCrash (this test binary re-executed).
const (
	crashEnvDir   = "WAL_CRASH_DIR"
	crashEnvMode  = "WAL_CRASH_MODE"
	crashEnvRound = "WAL_CRASH_ROUND"
	crashWriters  = 4
	crashMaxRecs  = 60_000 // per round, to bound verification time
)

// TestCrashWriterProcess is the writer subprocess of TestCrash; it skips unless started by it.
// It appends from crashWriters goroutines (writer ids round*100+i) with AppendFrom, recording
// per writer the count of its records as the source position, and prints
// "ack <writer> <lastIndex> <lastSeq>" after every acknowledged append, until killed.
func TestCrashWriterProcess(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("subprocess of TestCrash")
	}
	mode, err := ParseSyncMode(os.Getenv(crashEnvMode))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	round, _ := strconv.Atoi(os.Getenv(crashEnvRound))
	l, err := Open(Options{Dir: dir, Sync: mode, Logger: quietLogger(), MaxBlockBytes: 4 << 10})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	fmt.Printf("ready %d\n", l.LastSeq())
	var wg sync.WaitGroup
	for i := 0; i < crashWriters; i++ {
		wg.Add(1)
		go func(g uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(g, 7))
			n := uint64(0)
			for n < crashMaxRecs/crashWriters {
				k := 1 + rng.IntN(300)
				msgs := make([]feed.Message, k)
				for j := range msgs {
					msgs[j] = testMsg(g, n+uint64(j))
				}
				first, err := l.AppendFrom(msgs, fmt.Sprint("src-", g), binary.BigEndian.AppendUint64(nil, n+uint64(k)))
				if err != nil {
					fmt.Println("error", err)
					os.Exit(3)
				}
				n += uint64(k)
				mu.Lock()
				fmt.Printf("ack %d %d %d\n", g, n-1, first+uint64(k)-1)
				mu.Unlock()
			}
		}(uint64(round*100 + i))
	}
	wg.Wait()
	select {} // wait to be killed
}

// TestCrash kill -9s a writer subprocess at random moments, many times, and checks after each
// kill that every acknowledged record is present with its exact content, in order, with no
// gaps or duplicates, that each source position is exactly consistent with the records
// (atomicity of AppendFrom), and that appends continue at the right sequence.
func TestCrash(t *testing.T) {
	if os.Getenv(crashEnvDir) != "" {
		t.Skip("in subprocess")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	for _, mode := range []SyncMode{SyncAlways, SyncBatch, SyncNone} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(mode), 1))
			verified := uint64(0) // records up to here were checked in earlier rounds
			kills := 0
			for round := 1; round <= rounds; round++ {
				acks := runCrashWriter(t, exe, dir, mode, round, time.Duration(rng.IntN(250))*time.Millisecond)
				kills++
				verified = verifyCrashRound(t, dir, round, acks, verified)
			}
			t.Logf("%d kills, %d records verified", kills, verified)
		})
	}
}

// crashAcks is what the writer acknowledged before it died.
type crashAcks struct {
	lastIndex map[uint64]uint64 // writer -> last acknowledged index
	maxSeq    uint64
	readySeq  uint64
}

func runCrashWriter(t *testing.T, exe, dir string, mode SyncMode, round int, delay time.Duration) crashAcks {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^TestCrashWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvMode+"="+mode.String(),
		crashEnvRound+"="+strconv.Itoa(round))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := crashAcks{lastIndex: map[uint64]uint64{}}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		isReady := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "ready":
				acks.readySeq, _ = strconv.ParseUint(f[1], 10, 64)
				isReady = true
				close(ready)
			case len(f) == 4 && f[0] == "ack":
				g, _ := strconv.ParseUint(f[1], 10, 64)
				n, _ := strconv.ParseUint(f[2], 10, 64)
				s, _ := strconv.ParseUint(f[3], 10, 64)
				acks.lastIndex[g] = max(acks.lastIndex[g], n)
				acks.maxSeq = max(acks.maxSeq, s)
			default:
				done <- fmt.Errorf("writer said %q", sc.Text())
				return
			}
		}
		if !isReady {
			close(ready)
		}
		done <- sc.Err()
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("writer not ready after 60s")
	}
	time.Sleep(delay)
	_ = cmd.Process.Kill() // SIGKILL
	if err := <-done; err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	_ = cmd.Wait()
	return acks
}

func verifyCrashRound(t *testing.T, dir string, round int, acks crashAcks, verified uint64) uint64 {
	t.Helper()
	l, err := Open(Options{Dir: dir, Sync: SyncAlways, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer l.Close()
	last := l.LastSeq()
	if last < acks.maxSeq {
		t.Fatalf("round %d: LastSeq %d after reopen, but seq %d was acknowledged", round, last, acks.maxSeq)
	}
	if acks.readySeq < verified {
		t.Fatalf("round %d: writer started at seq %d, %d were there", round, acks.readySeq, verified)
	}
	next := map[uint64]uint64{} // writer -> next expected index
	seq := verified + 1
	r := l.NewReader(seq)
	for ; seq <= last; seq++ {
		rec, err := r.Next()
		if err != nil {
			t.Fatalf("round %d: read seq %d (LastSeq %d): %v", round, seq, last, err)
		}
		if rec.Seq != seq {
			t.Fatalf("round %d: got seq %d, want %d", round, rec.Seq, seq)
		}
		g, n, ok := identify(rec.Message)
		if !ok {
			t.Fatalf("round %d: seq %d has content no writer wrote: %+v", round, seq, rec.Message)
		}
		if rec.Seq <= acks.readySeq {
			if g >= 1_000_000 {
				continue // the test's own post-crash append
			}
			t.Fatalf("round %d: seq %d from writer %d predates this round", round, seq, g)
		}
		if g/100 != uint64(round) || n != next[g] {
			t.Fatalf("round %d: seq %d is writer %d index %d, want index %d (duplicate or gap)", round, seq, g, n, next[g])
		}
		next[g] = n + 1
	}
	for g, n := range acks.lastIndex {
		if next[g] <= n {
			t.Fatalf("round %d: writer %d acknowledged index %d, log has up to %d", round, g, n, int64(next[g])-1)
		}
	}
	for g, cnt := range next {
		pos, ok, err := l.SourcePosition(fmt.Sprint("src-", g))
		if err != nil || !ok || binary.BigEndian.Uint64(pos) != cnt {
			t.Fatalf("round %d: writer %d has %d records but position %x (%v, %v): not atomic", round, g, cnt, pos, ok, err)
		}
	}
	// appends continue right after the recovered end
	g := uint64(1_000_000 + round)
	first, err := l.Append([]feed.Message{testMsg(g, 0)})
	if err != nil || first != last+1 {
		t.Fatalf("round %d: append after recovery: first %d (want %d), %v", round, first, last+1, err)
	}
	return first
}
