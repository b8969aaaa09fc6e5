package tuner

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// Resources are the host and process figures the tuner weighs, as a
// Sampler reads them.
type Resources struct {
	CPUPercent float64 // whole-host CPU use since the previous sample, 0-100
	MemPercent float64 // whole-host memory in use, 0-100
	RSSBytes   uint64  // this process's resident memory
}

// ApplyTo copies the figures into obs.
func (r Resources) ApplyTo(obs *Observation) {
	obs.CPUPercent, obs.MemPercent, obs.RSSBytes = r.CPUPercent, r.MemPercent, r.RSSBytes
}

// Sampler reads the host's CPU and memory use and this process's RSS with
// gopsutil. It is the tuner's only contact with the operating system: the
// node's control loop calls Sample once per interval and merges the result
// into the Observation it hands the controller.
//
// CPU use is the busy share of the whole host's CPU time between two calls
// (gopsutil's cpu.Times, differenced here rather than with cpu.Percent(0),
// whose "since the last call" state is global to the process and would be
// shared by every node of a `dev` cluster). A sample costs a few reads of
// /proc on Linux: cheap enough for every second. Sample is safe for
// concurrent use.
type Sampler struct {
	mu   sync.Mutex
	proc *process.Process
	last cpu.TimesStat
	have bool
}

// NewSampler returns a Sampler for this process, primed so that the first
// Sample's CPU figure covers the time since NewSampler.
func NewSampler(ctx context.Context) (*Sampler, error) {
	p, err := process.NewProcessWithContext(ctx, int32(os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("sampler: open process %d: %w", os.Getpid(), err)
	}
	s := &Sampler{proc: p}
	if t, err := cpu.TimesWithContext(ctx, false); err == nil && len(t) > 0 {
		s.last, s.have = t[0], true
	}
	return s, nil
}

// Sample reads the figures now. On an error it returns what it could read
// and the first error; a figure it could not read is 0.
func (s *Sampler) Sample(ctx context.Context) (Resources, error) {
	var r Resources
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	if t, err := cpu.TimesWithContext(ctx, false); err != nil || len(t) == 0 {
		note(fmt.Errorf("sampler: cpu times: %w", orEmpty(err)))
	} else {
		s.mu.Lock()
		if s.have {
			r.CPUPercent = busyPercent(s.last, t[0])
		}
		s.last, s.have = t[0], true
		s.mu.Unlock()
	}
	if v, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		note(fmt.Errorf("sampler: virtual memory: %w", err))
	} else {
		r.MemPercent = v.UsedPercent
	}
	if m, err := s.proc.MemoryInfoWithContext(ctx); err != nil {
		note(fmt.Errorf("sampler: process memory: %w", err))
	} else {
		r.RSSBytes = m.RSS
	}
	return r, first
}

func orEmpty(err error) error {
	if err == nil {
		return fmt.Errorf("no figures")
	}
	return err
}

// busyPercent is the busy share of CPU time between a and b, the way
// gopsutil's cpu.Percent computes it: idle and iowait are not busy, and on
// Linux guest time is already counted in user time.
func busyPercent(a, b cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) (all, busy float64) {
		all = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
		if runtime.GOOS != "linux" {
			all += t.Guest + t.GuestNice
		}
		return all, all - t.Idle - t.Iowait
	}
	a1, b1 := total(a)
	a2, b2 := total(b)
	if a2 <= a1 {
		return 0
	}
	p := (b2 - b1) / (a2 - a1) * 100
	return max(0, min(100, p))
}
