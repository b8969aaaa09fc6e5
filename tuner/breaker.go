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
	// CPULimit and MemLimit (percent of the host) apply when the
	// observation carries no limit of its own (obs.CPULimit, obs.MemLimit).
	CPULimit float64 // 90
	MemLimit float64 // 90
	// RSSLimit trips on this process's resident memory; 0 disables it.
	RSSLimit uint64
	// ErrorRatio trips when more than this share of the interval's batches
	// failed in the sink (after the sink's own retries).
	ErrorRatio float64 // 0.2
	// Shrink is the factor applied to the size in force on a trip (and
	// again for every interval memory keeps rising while open).
	Shrink float64 // 0.5
	// Floor is the smallest size the breaker shrinks to.
	Floor int // 1
	// CoolDown is how long the breaker stays open once the limits are no
	// longer crossed before it probes.
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

// Breaker is the safety breaker that sits between a controller and the
// batcher. It trips when, over an interval, the host's CPU or memory use,
// this process's RSS, or the share of batches the sink failed exceeds its
// limit (batches refused for their size, and batches that failed on the
// downstream's back pressure, are not failures: see failedBatches): it shrinks the size at once (×Shrink; again while memory keeps
// rising), holds it while open, and
// after CoolDown without a crossed limit probes a limited size half-open;
// one healthy interval half-open closes it, a crossed limit reopens it.
// Safety wins over the objective: while the breaker is not closed, a
// controller's decision is only ever lowered, never raised.
//
// Apply is called once per control interval, after the controller's Next
// and before the size is clamped to the grant, from one goroutine at a
// time. Like the controllers it reads no clock (obs.Now is the time) and
// the same observations give the same decisions. State and Reason may be
// called from any goroutine.
type Breaker struct {
	cfg BreakerConfig

	mu       sync.Mutex
	state    string
	reason   string    // what tripped it last
	since    time.Time // when it last opened, or last saw a crossed limit while open
	tripSize int       // the size in force when it tripped
	hold     int       // the size held while open
	lastMem  float64   // the previous interval's memory figures
	lastRSS  uint64
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	cfg.defaults()
	return &Breaker{cfg: cfg, state: BreakerClosed}
}

// State is "closed", "open" or "half-open".
func (b *Breaker) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Reason is what tripped the breaker last ("cpu 95.0% > 90%"), or "".
func (b *Breaker) Reason() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reason
}

// Apply returns the decision to carry out for the next interval: d itself
// while the breaker is closed and the limits hold, a smaller one otherwise.
// The returned Decision's Breaker field is the state after this call.
func (b *Breaker) Apply(obs Observation, d Decision) Decision {
	b.mu.Lock()
	defer b.mu.Unlock()
	kind, why := b.crossed(obs)
	crossed := kind != ""
	rising := obs.MemPercent > b.lastMem || obs.RSSBytes > b.lastRSS
	b.lastMem, b.lastRSS = obs.MemPercent, obs.RSSBytes
	inForce := obs.BatchSize
	if inForce <= 0 {
		inForce = d.BatchSize
	}
	switch b.state {
	case BreakerClosed:
		if !crossed {
			d.Breaker = BreakerClosed
			return d
		}
		b.trip(obs.Now, inForce, inForce, why)
	case BreakerOpen:
		if crossed {
			// Still over: restart the cool-down. Memory still rising with
			// the held size in force means too much is still in flight:
			// shrink again. (CPU or sink errors that persist are held at
			// the shrunk size; shrinking further would only add per-batch
			// work.)
			if (kind == "memory" || kind == "rss") && rising && inForce <= b.hold {
				b.hold = max(b.cfg.Floor, int(float64(b.hold)*b.cfg.Shrink))
			}
			b.since, b.reason = obs.Now, why
		} else if obs.Now.Sub(b.since) >= b.cfg.CoolDown {
			b.state = BreakerHalfOpen
			probe := max(b.hold, int(float64(b.tripSize)*b.cfg.Probe))
			return b.limit(d, probe, "breaker:half-open:probe")
		}
	case BreakerHalfOpen:
		if crossed {
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

// crossed reports which limit obs crosses ("cpu", "memory", "rss",
// "sink-errors"; "" for none) and how, for the reason.
func (b *Breaker) crossed(obs Observation) (kind, detail string) {
	cpuLimit, memLimit := obs.CPULimit, obs.MemLimit
	if cpuLimit <= 0 {
		cpuLimit = b.cfg.CPULimit
	}
	if memLimit <= 0 {
		memLimit = b.cfg.MemLimit
	}
	switch {
	case obs.CPUPercent > cpuLimit:
		return "cpu", fmt.Sprintf("cpu %.1f%% > %.0f%%", obs.CPUPercent, cpuLimit)
	case obs.MemPercent > memLimit:
		return "memory", fmt.Sprintf("memory %.1f%% > %.0f%%", obs.MemPercent, memLimit)
	case b.cfg.RSSLimit > 0 && obs.RSSBytes > b.cfg.RSSLimit:
		return "rss", fmt.Sprintf("rss %d > %d bytes", obs.RSSBytes, b.cfg.RSSLimit)
	case failedBatches(obs) > 0:
		failed := failedBatches(obs)
		ratio := 1.0
		if obs.Batches > 0 {
			ratio = float64(failed) / float64(obs.Batches)
		}
		if ratio > b.cfg.ErrorRatio {
			return "sink-errors", fmt.Sprintf("sink errors %d of %d batches", failed, obs.Batches)
		}
	}
	return "", ""
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

// Guarded is a Controller whose decisions pass through a Breaker and are
// then clamped to obs.MaxBatchSize (the node's grant): the one call the
// node's control loop makes per interval. It is itself a Controller.
type Guarded struct {
	Controller Controller
	Breaker    *Breaker
}

// Guard wraps c with b.
func Guard(c Controller, b *Breaker) *Guarded { return &Guarded{Controller: c, Breaker: b} }

// Name implements Controller: the inner controller's name.
func (g *Guarded) Name() string { return g.Controller.Name() }

// Next implements Controller: controller, then breaker, then the grant.
func (g *Guarded) Next(obs Observation) Decision {
	d := g.Controller.Next(obs)
	if g.Breaker != nil {
		d = g.Breaker.Apply(obs, d)
	}
	d.BatchSize = Clamp(d.BatchSize, obs.MaxBatchSize)
	return d
}

// State is the breaker's state ("closed" without a breaker).
func (g *Guarded) State() string {
	if g.Breaker == nil {
		return BreakerClosed
	}
	return g.Breaker.State()
}
