package loadgen

import (
	"math/rand/v2"
	"sort"
	"time"
)

// Burst holds Base and jumps to Peak during bursts whose starts form a
// Poisson process: the quiet gap before each burst is drawn from an
// exponential distribution with mean Every, and each burst lasts For. The
// bursts are drawn once, from Seed, up to Horizon, so the pattern is a pure
// function of time and a run is reproducible.
type Burst struct {
	Base, Peak float64
	// starts and ends of the bursts, sorted; before[i] is the total burst
	// time before starts[i].
	starts, ends, before []time.Duration
}

// maxBursts bounds the bursts one phase may draw (memory).
const maxBursts = 1 << 20

// NewBurst draws the bursts of a phase. every and dur must be positive.
func NewBurst(base, peak float64, every, dur, horizon time.Duration, seed uint64) *Burst {
	b := &Burst{Base: base, Peak: peak}
	rng := rand.New(rand.NewPCG(seed, 0x6275727374)) // "burst"
	var t, total time.Duration
	for len(b.starts) < maxBursts {
		t += time.Duration(rng.ExpFloat64() * float64(every))
		if t >= horizon {
			break
		}
		b.starts = append(b.starts, t)
		b.ends = append(b.ends, t+dur)
		b.before = append(b.before, total)
		total += dur
		t += dur
	}
	return b
}

// Bursts returns the start of every burst (for docs and tests).
func (p *Burst) Bursts() []time.Duration { return p.starts }

func (p *Burst) Rate(t time.Duration) float64 {
	i := sort.Search(len(p.starts), func(i int) bool { return p.starts[i] > t }) - 1
	if i >= 0 && t < p.ends[i] {
		return p.Peak
	}
	return p.Base
}

func (p *Burst) Offered(t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	in := p.burstTime(t)
	return p.Base*seconds(t) + (p.Peak-p.Base)*seconds(in)
}

// burstTime is the time spent in bursts during [0, t].
func (p *Burst) burstTime(t time.Duration) time.Duration {
	i := sort.Search(len(p.starts), func(i int) bool { return p.starts[i] > t }) - 1
	if i < 0 {
		return 0
	}
	return p.before[i] + min(t, p.ends[i]) - p.starts[i]
}
