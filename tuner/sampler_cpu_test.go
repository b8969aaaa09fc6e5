//go:build unix

package tuner

import (
	"syscall"
	"testing"
	"time"
)

// rusageCPU is this process's CPU time (user + system) by getrusage(2),
// independent of the /proc figures the Sampler reads.
func rusageCPU(t *testing.T) float64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// TestSamplerMeasuresThisProcessCPU spins a busy loop and polls the Sampler
// until it has seen the process use a good share of a second of CPU time
// (deadline-bounded; on a busy machine the loop gets what the scheduler
// gives it). Every sample's CPU time lies between getrusage's readings just
// before and after it (give or take the 10 ms ticks /proc counts in), and
// its percentage lies within 0-100 of the limit in force.
func TestSamplerMeasuresThisProcessCPU(t *testing.T) {
	s, err := NewSampler(t.Context())
	if err != nil {
		t.Skipf("no process figures on this platform: %v", err)
	}
	first, _ := s.Sample(t.Context())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		x := 0
		for {
			select {
			case <-stop:
				_ = x
				return
			default:
			}
			for i := 0; i < 100_000; i++ {
				x += i % 7
			}
		}
	}()
	defer func() { close(stop); <-done }()

	const tick = 0.02 // seconds: /proc/self/stat counts in 10 ms ticks, rounded down
	sawShare := false
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case <-deadline:
			t.Fatalf("the sampler did not see 0.3 s of CPU time used within 60 s (share seen: %v)", sawShare)
		case <-tk.C:
		}
		before := rusageCPU(t)
		r, err := s.Sample(t.Context())
		after := rusageCPU(t)
		if err != nil {
			t.Fatalf("sample: %v", err)
		}
		if r.ProcessCPUSeconds < before-tick || r.ProcessCPUSeconds > after+tick {
			t.Fatalf("process cpu %.3f s, getrusage said %.3f s before and %.3f s after", r.ProcessCPUSeconds, before, after)
		}
		if r.CPUPercent < 0 || r.CPUPercent > 100 {
			t.Fatalf("cpu %.1f%% of %v, want 0-100", r.CPUPercent, r.CPUAllowance)
		}
		sawShare = sawShare || r.CPUPercent > 0
		if sawShare && r.ProcessCPUSeconds-first.ProcessCPUSeconds >= 0.3 {
			t.Logf("busy loop: %.2f s of CPU, last share %.1f%% of %v", r.ProcessCPUSeconds-first.ProcessCPUSeconds, r.CPUPercent, r.CPUAllowance)
			return
		}
	}
}
