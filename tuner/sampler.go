package tuner

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// Resources are the process and host figures the tuner weighs, as a
// Sampler reads them.
type Resources struct {
	// CPUPercent is this process's CPU use since the previous sample as a
	// share of what it may use (CPUAllowance: a cgroup quota, or the host's
	// CPUs), 0-100. 100 means the process uses all the CPU it is allowed,
	// whatever the rest of the host does.
	CPUPercent float64
	MemPercent float64 // whole-host memory in use, 0-100
	RSSBytes   uint64  // this process's resident memory

	// CPUAllowance is the CPU CPUPercent is a share of, and which limit
	// sets it (the host's CPUs or a cgroup quota): the one that acts.
	CPUAllowance CPUAllowance
	// ProcessCPUSeconds is the CPU time (user + system) this process has
	// used since it started.
	ProcessCPUSeconds float64
	// HostCPUPercent is the whole host's busy share since the previous
	// sample, 0-100: context (what else runs), not the node's own load.
	HostCPUPercent float64
}

// ApplyTo copies the figures the controllers read into obs.
func (r Resources) ApplyTo(obs *Observation) {
	obs.CPUPercent, obs.MemPercent, obs.RSSBytes = r.CPUPercent, r.MemPercent, r.RSSBytes
	obs.CPUAllowance = r.CPUAllowance
}

// Sampler reads this process's CPU use, the CPU it may use, the host's
// memory and CPU use and this process's RSS with gopsutil and the cgroup
// files. It is the tuner's only contact with the operating system: the
// node's control loop calls Sample once per interval and merges the result
// into the Observation it hands the controller.
//
// The CPU figure is the process's CPU time (gopsutil's Process.Times,
// /proc/self/stat on Linux, in 10 ms ticks) between two calls over the CPU
// time it may use in that wall time: the tightest of the CPUs it may run on
// (runtime.NumCPU) and the cgroup quota of its cgroup and its ancestors
// (cgroup v2 cpu.max, v1 cpu.cfs_quota_us/cpu.cfs_period_us), re-read at
// every sample so that a quota changed at run time is seen. So a node's CPU
// percent says how close the process is to its own limit, not how busy the
// machine is. Every Sampler of one process (the nodes of a `dev` cluster)
// sees the same process figure.
//
// The host's CPU is still read, as HostCPUPercent, from gopsutil's
// cpu.Times differenced here rather than with cpu.Percent(0), whose "since
// the last call" state is global to the process. A sample costs a few reads
// of /proc and of the cgroup's quota files: cheap enough for every second.
// Sample is safe for concurrent use.
type Sampler struct {
	mu        sync.Mutex
	proc      *process.Process
	cgroup    cgroupCPU
	cgroupErr error // from finding the cgroup; reported by every Sample
	hostCores int

	last     cpu.TimesStat // host
	have     bool
	lastCPU  float64   // process CPU seconds
	lastWall time.Time // when lastCPU was read
	haveProc bool
}

// NewSampler returns a Sampler for this process, primed so that the first
// Sample's CPU figures cover the time since NewSampler. A cgroup it cannot
// read does not stop it: the host's CPUs are then the limit and every
// Sample reports the error.
func NewSampler(ctx context.Context) (*Sampler, error) {
	return newSampler(ctx, "/", runtime.NumCPU())
}

func newSampler(ctx context.Context, root string, hostCores int) (*Sampler, error) {
	p, err := process.NewProcessWithContext(ctx, int32(os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("sampler: open process %d: %w", os.Getpid(), err)
	}
	s := &Sampler{proc: p, hostCores: hostCores}
	s.cgroup, s.cgroupErr = findCgroupCPU(root)
	if s.cgroupErr != nil {
		s.cgroupErr = fmt.Errorf("sampler: cgroup cpu: %w", s.cgroupErr)
	}
	if t, err := cpu.TimesWithContext(ctx, false); err == nil && len(t) > 0 {
		s.last, s.have = t[0], true
	}
	if t, err := p.TimesWithContext(ctx); err == nil {
		s.lastCPU, s.lastWall, s.haveProc = t.User+t.System, time.Now(), true
	}
	return s, nil
}

// Sample reads the figures now. On an error it returns what it could read
// and the first error; a figure it could not read is 0 (the CPU limit falls
// back to the host's CPUs).
func (s *Sampler) Sample(ctx context.Context) (Resources, error) {
	var r Resources
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	if s.cgroupErr != nil {
		note(s.cgroupErr)
	}
	lim, err := readCPUAllowance(s.cgroup, s.hostCores)
	if err != nil {
		note(fmt.Errorf("sampler: cgroup cpu: %w", err))
	}
	r.CPUAllowance = lim
	if t, err := s.proc.TimesWithContext(ctx); err != nil {
		note(fmt.Errorf("sampler: process cpu times: %w", err))
	} else {
		now, used := time.Now(), t.User+t.System
		r.ProcessCPUSeconds = used
		s.mu.Lock()
		if s.haveProc {
			r.CPUPercent = cpuShare(used-s.lastCPU, now.Sub(s.lastWall).Seconds(), lim.Cores)
		}
		s.lastCPU, s.lastWall, s.haveProc = used, now, true
		s.mu.Unlock()
	}
	if t, err := cpu.TimesWithContext(ctx, false); err != nil || len(t) == 0 {
		note(fmt.Errorf("sampler: cpu times: %w", orEmpty(err)))
	} else {
		s.mu.Lock()
		if s.have {
			r.HostCPUPercent = busyPercent(s.last, t[0])
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

// cpuShare is CPU seconds used over wall seconds as a percentage of cores
// CPUs' worth of time, within 0-100 (the 10 ms ticks of the process's CPU
// time can round a fully used interval a little above).
func cpuShare(used, wall, cores float64) float64 {
	if wall <= 0 || cores <= 0 || used <= 0 {
		return 0
	}
	return min(100, used/(wall*cores)*100)
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
