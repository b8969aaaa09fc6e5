package tuner

import (
	"context"
	"testing"

	"github.com/shirou/gopsutil/v4/cpu"
)

func TestSamplerReadsThisHost(t *testing.T) {
	ctx := context.Background()
	s, err := NewSampler(ctx)
	if err != nil {
		t.Skipf("no process figures on this platform: %v", err)
	}
	// Some work so that the CPU figure covers a non-empty span.
	x := 0
	for i := 0; i < 5_000_000; i++ {
		x += i % 7
	}
	_ = x
	r, err := s.Sample(ctx)
	if err != nil {
		t.Skipf("no host figures on this platform: %v", err)
	}
	if r.CPUPercent < 0 || r.CPUPercent > 100 {
		t.Errorf("cpu %.1f%%, want 0-100", r.CPUPercent)
	}
	if r.MemPercent <= 0 || r.MemPercent > 100 {
		t.Errorf("memory %.1f%%, want 0-100", r.MemPercent)
	}
	if r.RSSBytes == 0 {
		t.Error("rss 0")
	}
	var obs Observation
	r.ApplyTo(&obs)
	if obs.RSSBytes != r.RSSBytes || obs.MemPercent != r.MemPercent || obs.CPUPercent != r.CPUPercent {
		t.Errorf("ApplyTo copied %+v", obs)
	}
}

func TestBusyPercentCountsIdleAndIowaitAsIdle(t *testing.T) {
	a := cpu.TimesStat{User: 10, System: 5, Idle: 80, Iowait: 5}
	b := cpu.TimesStat{User: 40, System: 15, Idle: 130, Iowait: 15}
	// 40 busy seconds out of 100.
	if got := busyPercent(a, b); got < 39.99 || got > 40.01 {
		t.Errorf("busy %.2f%%, want 40%%", got)
	}
	if got := busyPercent(b, b); got != 0 {
		t.Errorf("no time passed: %.2f%%, want 0", got)
	}
}
