// Package clustertest holds what the multi-node tests of cluster, consensus
// and web share: a deadline-bounded poll and a logger into the test's log.
package clustertest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitTimeout is generous because -race on two busy cores is slow; every
// wait is a poll that returns as soon as its condition holds.
const WaitTimeout = 30 * time.Second

// WaitFor polls cond every 20 ms until it holds, and fails the test when it
// does not within WaitTimeout; what names the condition in that failure.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", WaitTimeout, what)
		}
		<-tick.C
	}
}

// Logger sends warnings and errors to the test's log and drops what the
// libraries' goroutines write after the test has finished.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
