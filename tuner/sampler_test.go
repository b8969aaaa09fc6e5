package tuner

import (
	"context"
	"math"
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
	if r.HostCPUPercent < 0 || r.HostCPUPercent > 100 {
		t.Errorf("host cpu %.1f%%, want 0-100", r.HostCPUPercent)
	}
	if r.CPUAllowance.Cores <= 0 || r.CPUAllowance.Source == "" {
		t.Errorf("cpu limit %v, want some cores and a source", r.CPUAllowance)
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

func TestCPUShareIsTheShareOfTheCPUTheProcessMayUse(t *testing.T) {
	for _, tc := range []struct {
		name              string
		used, wall, cores float64
		want              float64
	}{
		{"one core busy on a 2-CPU host is half", 1, 1, 2, 50},
		{"half a core used under a half-core quota is all of it", 0.5, 1, 0.5, 100},
		{"a quarter core over two seconds under one core", 0.5, 2, 1, 25},
		{"tick rounding above the limit reads 100", 1.01, 1, 1, 100},
		{"no wall time reads 0", 1, 0, 2, 0},
		{"CPU time read out of order (concurrent samples) reads 0", -0.01, 1, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cpuShare(tc.used, tc.wall, tc.cores); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("cpuShare(%v, %v, %v) = %v, want %v", tc.used, tc.wall, tc.cores, got, tc.want)
			}
		})
	}
}
