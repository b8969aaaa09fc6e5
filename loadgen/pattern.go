package loadgen

import (
	"math"
	"time"
)

// Pattern is the offered load of one open-loop phase as a pure function of
// the time since the phase began. It has no clock and no state that changes
// after construction, so it may be called from any goroutine, and a test can
// evaluate it at any time without waiting.
//
// Offered must be the integral of Rate (for replay, the number of trace
// entries due at or before t): non-decreasing, Offered(0) ≥ 0. The scheduler
// derives every record's intended send time from Offered alone: record j
// (counting from 0) is due at the first t where Offered(t) > j.
type Pattern interface {
	// Rate is the offered rate in records per second at t.
	Rate(t time.Duration) float64
	// Offered is the number of records offered in [0, t].
	Offered(t time.Duration) float64
}

// inverter is implemented by patterns whose due times have a closed form;
// the scheduler uses it instead of searching Offered.
type inverter interface {
	// dueAt is the first t ≥ 0 with Offered(t) > j.
	dueAt(j int64) time.Duration
}

func seconds(t time.Duration) float64 { return t.Seconds() }

// Constant offers a fixed rate.
type Constant struct{ R float64 }

func (p Constant) Rate(time.Duration) float64      { return p.R }
func (p Constant) Offered(t time.Duration) float64 { return p.R * seconds(t) }
func (p Constant) dueAt(j int64) time.Duration {
	return time.Duration(float64(j) / p.R * 1e9)
}

// Ramp goes linearly from From to To over D, then stays at To.
type Ramp struct {
	From, To float64
	D        time.Duration
}

func (p Ramp) Rate(t time.Duration) float64 {
	if t >= p.D {
		return p.To
	}
	return p.From + (p.To-p.From)*seconds(t)/seconds(p.D)
}

func (p Ramp) Offered(t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	d := seconds(p.D)
	if t >= p.D {
		return (p.From+p.To)/2*d + p.To*(seconds(t)-d)
	}
	s := seconds(t)
	return p.From*s + (p.To-p.From)*s*s/(2*d)
}

// Step holds each of Levels for Every, then stays at the last level.
type Step struct {
	Levels []float64
	Every  time.Duration
}

func (p Step) Rate(t time.Duration) float64 {
	i := int(t / p.Every)
	if t < 0 {
		i = 0
	}
	if i >= len(p.Levels) {
		i = len(p.Levels) - 1
	}
	return p.Levels[i]
}

func (p Step) Offered(t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	var sum float64
	e := seconds(p.Every)
	for i, l := range p.Levels {
		start := time.Duration(i) * p.Every
		if t <= start {
			break
		}
		if i == len(p.Levels)-1 || t < start+p.Every {
			sum += l * (seconds(t) - seconds(start))
			break
		}
		sum += l * e
	}
	return sum
}

// Spike holds Base, jumps to Peak at At for For, then returns to Base.
type Spike struct {
	Base, Peak float64
	At, For    time.Duration
}

func (p Spike) Rate(t time.Duration) float64 {
	if t >= p.At && t < p.At+p.For {
		return p.Peak
	}
	return p.Base
}

func (p Spike) Offered(t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	return p.Base*seconds(t) + (p.Peak-p.Base)*seconds(overlap(0, t, p.At, p.At+p.For))
}

// overlap is the length of [a0, a1) ∩ [b0, b1).
func overlap(a0, a1, b0, b1 time.Duration) time.Duration {
	lo, hi := max(a0, b0), min(a1, b1)
	if hi <= lo {
		return 0
	}
	return hi - lo
}

// Sine is a diurnal curve: it starts at Min, peaks at Max half a Period
// later, and is back at Min after a whole Period.
type Sine struct {
	Min, Max float64
	Period   time.Duration
}

func (p Sine) Rate(t time.Duration) float64 {
	return p.Min + (p.Max-p.Min)*(1-math.Cos(2*math.Pi*seconds(t)/seconds(p.Period)))/2
}

func (p Sine) Offered(t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	s, per := seconds(t), seconds(p.Period)
	v := (p.Min+p.Max)/2*s - (p.Max-p.Min)/2*per/(2*math.Pi)*math.Sin(2*math.Pi*s/per)
	return max(v, 0)
}
