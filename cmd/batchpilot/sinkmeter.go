package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/consensus"
	"github.com/batchpilot/batchpilot/node/sink"
)

// sinkMeter counts the node's writes to its sink and how the downstream
// answered them, for the health the node reports with its lease requests:
// the leader's budget controller learns the cluster budget from 429/503
// (sink.ErrBackpressure) and 413 (sink.ErrBatchTooLarge) rates and write
// times. It passes every call through unchanged.
type sinkMeter struct {
	sink.Sink

	mu                                sync.Mutex
	writes, pushback, tooLarge, fails int64
	writeTime                         time.Duration
	// bytes written (or tried) and byteSeconds, each write's bytes times
	// its duration: over the interval, the mean bytes in flight.
	bytes       int64
	byteSeconds float64
	// last is when downstream was last called.
	last time.Time
}

func newSinkMeter(s sink.Sink) *sinkMeter { return &sinkMeter{Sink: s, last: time.Now()} }

func (m *sinkMeter) Write(ctx context.Context, b *sink.Batch) error {
	start := time.Now()
	err := m.Sink.Write(ctx, b)
	took := time.Since(start)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	m.writeTime += took
	m.bytes += int64(b.Bytes)
	m.byteSeconds += float64(b.Bytes) * took.Seconds()
	if err != nil {
		m.fails++
		switch {
		case errors.Is(err, sink.ErrBackpressure):
			m.pushback++
		case errors.Is(err, sink.ErrBatchTooLarge):
			m.tooLarge++
		}
	}
	return err
}

// downstream reports the rates since the last call at now and starts a new
// interval; goodput is the node's goodput (records within the SLO per
// second) over its last control interval.
func (m *sinkMeter) downstream(now time.Time, goodput float64) consensus.DownstreamHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	secs := now.Sub(m.last).Seconds()
	d := consensus.DownstreamHealth{IntervalMS: now.Sub(m.last).Milliseconds(), GoodputRPS: max(goodput, 0)}
	if secs > 0 {
		d.WritesPS = float64(m.writes) / secs
		d.PushbackPS = float64(m.pushback) / secs
		d.TooLargePS = float64(m.tooLarge) / secs
		d.ErrorsPS = float64(m.fails) / secs
		d.BytesPS = float64(m.bytes) / secs
		d.InFlightBytes = m.byteSeconds / secs
	}
	if m.writes > 0 {
		d.WriteMS = float64(m.writeTime.Microseconds()) / 1000 / float64(m.writes)
	}
	m.writes, m.pushback, m.tooLarge, m.fails, m.writeTime, m.last = 0, 0, 0, 0, 0, now
	m.bytes, m.byteSeconds = 0, 0
	return d
}
