package node

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// window gathers one control interval's figures: what the flushes and the
// ingest paths saw since the last snapshot.
type window struct {
	mu           sync.Mutex
	arrived      int64
	written      int64
	good         int64 // written within the SLO
	bytes        int64
	batches      int64
	batchTime    time.Duration
	fill         int64
	sinkErrors   int64
	backpressure int64
	tooLarge     int64
	rejected     int64                   // refused because the queue was full
	latency      *hdrhistogram.Histogram // microseconds
}

func newWindow() *window {
	return &window{latency: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 2)}
}

func (w *window) addArrived(n int) {
	w.mu.Lock()
	w.arrived += int64(n)
	w.mu.Unlock()
}

func (w *window) addRejected(n int) {
	w.mu.Lock()
	w.rejected += int64(n)
	w.mu.Unlock()
}

// windowSnapshot is a window's figures at the end of an interval.
type windowSnapshot struct {
	arrived, written, good, bytes, batches int64
	batchTime                              time.Duration
	fill                                   int64
	sinkErrors, backpressure, rejected     int64
	tooLarge                               int64
	p50, p99                               time.Duration
}

// snapshot returns the figures and starts a new interval.
func (w *window) snapshot() windowSnapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := windowSnapshot{
		arrived: w.arrived, written: w.written, good: w.good, bytes: w.bytes,
		batches: w.batches, batchTime: w.batchTime, fill: w.fill,
		sinkErrors: w.sinkErrors, backpressure: w.backpressure, rejected: w.rejected, tooLarge: w.tooLarge,
	}
	if w.latency.TotalCount() > 0 {
		s.p50 = time.Duration(w.latency.ValueAtQuantile(50)) * time.Microsecond
		s.p99 = time.Duration(w.latency.ValueAtQuantile(99)) * time.Microsecond
	}
	w.arrived, w.written, w.good, w.bytes, w.batches = 0, 0, 0, 0, 0
	w.batchTime, w.fill, w.sinkErrors, w.backpressure, w.rejected, w.tooLarge = 0, 0, 0, 0, 0, 0
	w.latency.Reset()
	return s
}
