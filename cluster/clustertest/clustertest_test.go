package clustertest

import (
	"strings"
	"testing"
)

// fakeT records what the helpers report instead of failing the real test.
type fakeT struct {
	testing.TB
	logs    []string
	cleanup []func()
}

func (f *fakeT) Helper()           {}
func (f *fakeT) Log(args ...any)   { f.logs = append(f.logs, args[0].(string)) }
func (f *fakeT) Cleanup(fn func()) { f.cleanup = append(f.cleanup, fn) }

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	WaitFor(t, "the third poll", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}
}

func TestLoggerKeepsWarningsUntilTheTestEnds(t *testing.T) {
	f := &fakeT{}
	log := Logger(f)
	log.Info("dropped: below warn")
	log.Warn("kept")
	for _, fn := range f.cleanup {
		fn()
	}
	log.Error("dropped: after the test")
	if len(f.logs) != 1 || !strings.Contains(f.logs[0], "msg=kept") {
		t.Fatalf("logged %q, want only the warning", f.logs)
	}
}
