package tuner

import (
	"fmt"
	"sync"
	"time"
)

// The Breaker's states, as the API and gossip spell them.
const (
	BreakerClosed   = "closed"    // decisions pass through
	BreakerOpen     = "open"      // tripped: the size is held small
	BreakerHalfOpen = "half-open" // cooling down is over: a limited size is probed
)

// BreakerConfig are the Breaker's limits and timings; zero fields take the
// defaults noted.
type BreakerConfig struct {
	// CPULimit (percent of the CPU the process may use: its
	// CPUAllowance) and MemLimit (percent of the host's memory) apply when
	// the observation carries no limit of its own (obs.CPULimit,
	// obs.MemLimit).
	CPULimit float64 // 90
	MemLimit float64 // 90
	// RSSLimit puts the node under memory pressure on this process's
	// resident memory; 0 disables it.
	RSSLimit uint64
	// PressureBand is the hysteresis of the resource limits, in points of
	// percent (and percent of RSSLimit): pressure that began above a limit
	// lasts until the figure has stayed at or below the limit less the
	// band for PressureRelease.
	PressureBand float64 // 10
	// PressureRelease is how long the figure must stay under the band
	// before the pressure clears.
	PressureRelease time.Duration // 3s
	// ErrorRatio trips when more than this share of the interval's batches
	// failed in the sink (after the sink's own retries).
	ErrorRatio float64 // 0.2
	// Shrink is the factor applied to the size in force on a trip.
	Shrink float64 // 0.5
	// Floor is the smallest size the breaker shrinks to.
	Floor int // 1
	// CoolDown is how long the breaker stays open once the sink no longer
	// fails before it probes.
	CoolDown time.Duration // 5s
	// Probe is the half-open size as a share of the size in force when the
	// breaker tripped (never less than the size held while open).
	Probe float64 // 0.75
}

func (c *BreakerConfig) defaults() {
	if c.CPULimit <= 0 {
		c.CPULimit = 90
	}
	if c.MemLimit <= 0 {
		c.MemLimit = 90
	}
	if c.PressureBand <= 0 {
		c.PressureBand = 10
	}
	if c.PressureRelease <= 0 {
		c.PressureRelease = 3 * time.Second
	}
	if c.ErrorRatio <= 0 {
		c.ErrorRatio = 0.2
	}
	if c.Shrink <= 0 || c.Shrink >= 1 {
		c.Shrink = 0.5
	}
	if c.Floor < 1 {
		c.Floor = 1
	}
	if c.CoolDown <= 0 {
		c.CoolDown = 5 * time.Second
	}
	if c.Probe <= 0 || c.Probe > 1 {
		c.Probe = 0.75
	}
}

// TripCause is why the guard stepped in: a failing sink, or a resource of
// the node over its limit.
type TripCause int

// The trip causes.
const (
	TripNone       TripCause = iota
	TripSinkErrors           // the sink failed more than ErrorRatio of the batches
	TripCPU                  // the process's CPU over CPULimit of its allowance
	TripMemory               // the host's memory over MemLimit
	TripRSS                  // the process's resident memory over RSSLimit
)

// String is the cause as logs, metrics and the API spell it: "",
// "sink-errors", "cpu", "memory", "rss".
func (c TripCause) String() string {
	switch c {
	case TripSinkErrors:
		return "sink-errors"
	case TripCPU:
		return "cpu"
	case TripMemory:
		return "memory"
	case TripRSS:
		return "rss"
	}
	return ""
}

// Pressure reports whether c is one of the node's own resources (CPU,
// memory, RSS): answered by refusing new work, not by a smaller batch.
func (c TripCause) Pressure() bool { return c == TripCPU || c == TripMemory || c == TripRSS }

// Breaker is the safety guard that sits between a controller and the
// batcher. It answers two kinds of trouble differently.
//
// A failing sink (more than ErrorRatio of the interval's batches failed;
// batches refused for their size, and batches that failed on the
// downstream's back pressure, are not failures: see failedBatches) opens
// it: it shrinks the size at once (×Shrink), holds it while open, and after
// CoolDown without failures probes a limited size half-open; one healthy
// interval half-open closes it, a failing one reopens it. While it is not
// closed a controller's decision is only ever lowered, never raised.
//
// A resource over its limit (the process's CPU as a share of its
// allowance, the host's memory, this process's RSS) puts the node under
// pressure (Verdict.Pressure), with hysteresis: it begins when a figure is
// over its limit and ends once that figure has stayed at or below the limit
// less PressureBand for PressureRelease. Pressure does not touch the size:
// a smaller batch costs more CPU (and no less memory) per record, so the
// controller's decision passes; the node answers pressure by refusing new
// work at its admission (429 with Retry-After, syslog TCP not read) until
// it clears.
//
// Check is called once per control interval, after the controller's Next
// and before the size is clamped to the grant (see Step), from one
// goroutine at a time. Like the controllers it reads no clock (obs.Now is
// the time) and the same observations give the same decisions. State,
// Reason and Pressure may be called from any goroutine.
type Breaker struct {
	cfg BreakerConfig

	mu       sync.Mutex
	state    string
	reason   string    // what tripped it last
	since    time.Time // when it last opened, or last saw the sink fail while open
	tripSize int       // the size in force when it tripped
	hold     int       // the size held while open

	pressure       TripCause // TripNone, TripCPU, TripMemory or TripRSS
	pressureDetail string
	pressureOver   time.Time // the last interval the figure was above the band
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	cfg.defaults()
	return &Breaker{cfg: cfg, state: BreakerClosed}
}

// State is "closed", "open" or "half-open": the sink breaker's state.
func (b *Breaker) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Reason is what tripped the breaker last ("sink errors 6 of 10
// batches"), or "".
func (b *Breaker) Reason() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reason
}

// Pressure is the resource over its limit now (TripNone when none) and how.
func (b *Breaker) Pressure() (TripCause, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pressure, b.pressureDetail
}

// Apply is Check's decision.
func (b *Breaker) Apply(obs Observation, d Decision) Decision { return b.Check(obs, d).Decision }

// Check implements Safeguard: d itself while the sink breaker is closed, a
// smaller one while it is not; and the pressure the node is under. The
// Decision's Breaker field is the state after this call.
func (b *Breaker) Check(obs Observation, d Decision) Verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.updatePressure(obs)
	d = b.sinkStep(obs, d)
	v := Verdict{Decision: d, Breaker: b.state, Pressure: b.pressure, PressureDetail: b.pressureDetail}
	if b.state != BreakerClosed {
		v.Trip, v.TripDetail = TripSinkErrors, b.reason
	}
	return v
}

// sinkStep is the sink breaker's state machine.
func (b *Breaker) sinkStep(obs Observation, d Decision) Decision {
	failing, why := b.sinkFailing(obs)
	inForce := obs.BatchSize
	if inForce <= 0 {
		inForce = d.BatchSize
	}
	switch b.state {
	case BreakerClosed:
		if !failing {
			d.Breaker = BreakerClosed
			return d
		}
		b.trip(obs.Now, inForce, inForce, why)
	case BreakerOpen:
		if failing {
			// Still failing: restart the cool-down, hold the shrunk size
			// (shrinking further would only add per-batch work).
			b.since, b.reason = obs.Now, why
		} else if obs.Now.Sub(b.since) >= b.cfg.CoolDown {
			b.state = BreakerHalfOpen
			probe := max(b.hold, int(float64(b.tripSize)*b.cfg.Probe))
			return b.limit(d, probe, "breaker:half-open:probe")
		}
	case BreakerHalfOpen:
		if failing {
			b.trip(obs.Now, b.tripSize, inForce, why)
			break
		}
		b.state = BreakerClosed
		d.Breaker = BreakerClosed
		if d.Reason == "" {
			d.Reason = "breaker:closed"
		}
		return d
	}
	return b.limit(d, b.hold, "breaker:open:"+b.reason)
}

// trip opens the breaker: it holds ×Shrink of the size in force.
func (b *Breaker) trip(now time.Time, tripSize, inForce int, why string) {
	b.state, b.since, b.reason = BreakerOpen, now, why
	b.tripSize = tripSize
	b.hold = max(b.cfg.Floor, int(float64(inForce)*b.cfg.Shrink))
}

// limit caps d at size, naming why when it lowered it.
func (b *Breaker) limit(d Decision, size int, reason string) Decision {
	if d.BatchSize <= 0 || d.BatchSize > size {
		d.BatchSize, d.Reason = size, reason
	}
	d.Breaker = b.state
	return d
}

// sinkFailing reports whether the interval's failed batches are over their
// share, and how, for the reason.
func (b *Breaker) sinkFailing(obs Observation) (bool, string) {
	failed := failedBatches(obs)
	if failed == 0 {
		return false, ""
	}
	ratio := 1.0
	if obs.Batches > 0 {
		ratio = float64(failed) / float64(obs.Batches)
	}
	if ratio > b.cfg.ErrorRatio {
		return true, fmt.Sprintf("sink errors %d of %d batches", failed, obs.Batches)
	}
	return false, ""
}

// updatePressure begins, moves or ends the pressure from obs.
func (b *Breaker) updatePressure(obs Observation) {
	if cause, detail := b.overLimit(obs, 0); cause != TripNone {
		b.pressure, b.pressureDetail, b.pressureOver = cause, detail, obs.Now
		return
	}
	if b.pressure == TripNone {
		return
	}
	if b.above(obs, b.pressure, b.cfg.PressureBand) {
		b.pressureOver = obs.Now // within the band: not clear yet
		return
	}
	if obs.Now.Sub(b.pressureOver) >= b.cfg.PressureRelease {
		b.pressure, b.pressureDetail = TripNone, ""
	}
}

// limits are the CPU and memory limits in force for obs.
func (b *Breaker) limits(obs Observation) (cpu, mem float64) {
	cpu, mem = obs.CPULimit, obs.MemLimit
	if cpu <= 0 {
		cpu = b.cfg.CPULimit
	}
	if mem <= 0 {
		mem = b.cfg.MemLimit
	}
	return cpu, mem
}

// above reports whether obs's figure for cause is over its limit less band
// (points of percent; percent of RSSLimit).
func (b *Breaker) above(obs Observation, cause TripCause, band float64) bool {
	cpu, mem := b.limits(obs)
	switch cause {
	case TripCPU:
		return obs.CPUPercent > cpu-band
	case TripMemory:
		return obs.MemPercent > mem-band
	case TripRSS:
		return b.cfg.RSSLimit > 0 && float64(obs.RSSBytes) > float64(b.cfg.RSSLimit)*(1-band/100)
	}
	return false
}

// overLimit reports the first resource of obs over its limit less band
// (CPU, then memory, then RSS; TripNone for none) and how, naming the
// limit that acts.
func (b *Breaker) overLimit(obs Observation, band float64) (TripCause, string) {
	cpu, mem := b.limits(obs)
	switch {
	case b.above(obs, TripCPU, band):
		of := "the host's CPUs"
		if obs.CPUAllowance.Source != "" {
			of = obs.CPUAllowance.String()
		}
		return TripCPU, fmt.Sprintf("cpu %.0f%% of %s > %.0f%%", obs.CPUPercent, of, cpu)
	case b.above(obs, TripMemory, band):
		return TripMemory, fmt.Sprintf("memory %.0f%% of the host > %.0f%%", obs.MemPercent, mem)
	case b.above(obs, TripRSS, band):
		return TripRSS, fmt.Sprintf("rss %d > %d bytes", obs.RSSBytes, b.cfg.RSSLimit)
	}
	return TripNone, ""
}

// failedBatches is the interval's batches that count as a failing sink:
// the sink errors less those refused for their size (413: the size is
// wrong, not the sink), and less those that failed on the downstream's back
// pressure (429, 503, timeouts: obs.Backpressure) while other batches of
// the interval were written. A downstream that takes part of the load and
// answers the rest 429 or Retry-After is well and asks the node to slow
// down; opening the breaker would refuse everybody's records (503) for the
// cool-down and then probe, when what helps is sending less: the node's
// admission bound follows the write rate the downstream allows and shrinks
// on back pressure, and the controller sees the signal. A downstream that
// takes nothing is down, whatever it answers: a storm of 503s (or 429s)
// with no batch written still opens the breaker, and so do other 5xx
// answers, refused connections and other failures.
func failedBatches(obs Observation) int {
	failed := obs.SinkErrors - obs.TooLarge
	if obs.Batches > obs.SinkErrors {
		failed -= min(obs.Backpressure, failed)
	}
	return max(0, failed)
}
