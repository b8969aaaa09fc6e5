package bench

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
	"github.com/batchpilot/batchpilot/node/sink"
)

// TestBurnSpendsTheThreadsCPU checks that the process cost is CPU time
// actually spent, not a sleep: the thread's CPU clock advances by at least
// the cost (it may advance more; the test bounds only what the loop
// guarantees).
func TestBurnSpendsTheThreadsCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, ok := threadCPU()
	if !ok {
		t.Skip("no per-thread CPU clock on this platform")
	}
	const d = 20 * time.Millisecond
	burn(d)
	after, _ := threadCPU()
	if after-before < d {
		t.Errorf("burn(%v) spent %v of the thread's CPU", d, after-before)
	}
}

type nopSink struct{ writes int }

func (s *nopSink) Write(context.Context, *sink.Batch) error { s.writes++; return nil }
func (s *nopSink) Ready(context.Context) error              { return nil }
func (s *nopSink) Close() error                             { return nil }

func TestCutoffSinkPaysTheProcessCostBeforeWriting(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, ok := threadCPU()
	if !ok {
		t.Skip("no per-thread CPU clock on this platform")
	}
	next := &nopSink{}
	cost := &ProcessCost{PerBatch: loadgen.Duration(5 * time.Millisecond), PerRecord: loadgen.Duration(time.Millisecond)}
	s := &cutoffSink{Sink: next, process: []phaseCost{{end: time.Hour, cost: cost}}}
	s.begin(time.Now())
	b := &sink.Batch{Records: [][]byte{[]byte(`{}`), []byte(`{}`), []byte(`{}`)}}
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	after, _ := threadCPU()
	if spent := after - before; spent < 8*time.Millisecond || next.writes != 1 {
		t.Errorf("a batch of 3 at 5ms + 1ms a record spent %v of CPU and was written %d times", spent, next.writes)
	}
	s.cut.Store(true)
	if err := s.Write(context.Background(), b); err != errCutoff {
		t.Errorf("a write after the cut: %v", err)
	}
}
