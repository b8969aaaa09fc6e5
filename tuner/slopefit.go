package tuner

import (
	"math"
)

// gsample is one clean interval of the slope fit: the log of the size in
// force and the objective measured at it.
type gsample struct{ x, j float64 }

// The objective's and the slope fit's constants. "Design choice": set by
// hand on the simulator (tuner/sim) and pinned by
// TestGradientReplaysItsGoldenDecisions.
const (
	// limitPenalty: each percentage point of CPU or memory over its limit
	// costs a tenth of the objective (zero at ten points over). Design
	// choice: steep enough that no goodput gain pays for a host over its
	// limit.
	limitPenalty = 10
	// latencyPreference: the objective loses up to 5 % with p99 rising to
	// latencyPreferenceCap (twice) the SLO, a tie-breaker between sizes of
	// equal goodput, too small to move the slope past minElasticity.
	latencyPreference    = 0.05
	latencyPreferenceCap = 2
	// minSlopeSamples: a slope is fitted on at least five intervals.
	minSlopeSamples = 5
	// slopeRecency is the weight lost per interval of age in the fit
	// (half-life about 4 intervals). Design choice.
	slopeRecency = 0.85
	// minSpread: sizes whose log varies by less than this (about 1 %)
	// carry no information about the slope.
	minSpread = 1e-4
	// significantT is the |t| a slope must exceed to count: a two-sided
	// test at roughly the 5 % level for the few degrees of freedom of a
	// 10-interval window (Student's t, 8 d.f.: 2.31). noErrorT is the t
	// given a slope fitted without residual.
	significantT = 2.5
	noErrorT     = 100
	// minElasticity: a 10 % change of size must move the objective by at
	// least 0.2 % to be acted on. Design choice.
	minElasticity = 0.02
	// objectiveFloor keeps the elasticity finite when the objective is
	// near zero.
	objectiveFloor = 0.05
)

// objective is the quantity the gradient climbs, per interval: goodput as a
// fraction of what was written, penalised above the SLO and the resource
// limits, with a slight preference for lower latency.
func (g *Gradient) objective(obs Observation, slo float64) float64 {
	// Goodput as a share of what was written: it is only measured in
	// intervals without a backlog, where the node writes what arrives, and
	// it is free of the Poisson noise of the arrival count.
	if obs.Throughput <= 0 {
		return 0
	}
	j := obs.Goodput / obs.Throughput
	p99 := obs.P99.Seconds()
	if p99 > slo {
		j *= slo / p99
	}
	cpuLimit, memLimit := obs.CPULimit, obs.MemLimit
	if cpuLimit <= 0 {
		cpuLimit = g.cfg.CPULimit
	}
	if memLimit <= 0 {
		memLimit = g.cfg.MemLimit
	}
	if over := obs.CPUPercent - cpuLimit; over > 0 {
		j *= math.Max(0, 1-over/limitPenalty)
	}
	if over := obs.MemPercent - memLimit; over > 0 {
		j *= math.Max(0, 1-over/limitPenalty)
	}
	return j * (1 - latencyPreference*math.Min(p99/slo, latencyPreferenceCap))
}

func (g *Gradient) addSample(x, j float64) {
	if len(g.samples) == g.cfg.Window {
		copy(g.samples, g.samples[1:])
		g.samples = g.samples[:g.cfg.Window-1]
	}
	g.samples = append(g.samples, gsample{x: x, j: j})
}

// fitSlope fits the objective against log size over the window (newer
// samples weigh more), folds the elasticity into the EWMA and reports
// whether the slope is significant (|t| > 2.5) and large enough to act on.
func (g *Gradient) fitSlope() bool {
	n := len(g.samples)
	if n < minSlopeSamples {
		return false
	}
	w := func(i int) float64 { return math.Pow(slopeRecency, float64(n-1-i)) }
	var sw, sx, sj float64
	for i, s := range g.samples {
		sw += w(i)
		sx += w(i) * s.x
		sj += w(i) * s.j
	}
	mx, mj := sx/sw, sj/sw
	var sxx, sxj float64
	for i, s := range g.samples {
		sxx += w(i) * (s.x - mx) * (s.x - mx)
		sxj += w(i) * (s.x - mx) * (s.j - mj)
	}
	if sxx/sw < minSpread { // sizes within about 1 %: no information
		return false
	}
	b := sxj / sxx
	var rss float64
	for i, s := range g.samples {
		r := s.j - mj - b*(s.x-mx)
		rss += w(i) * r * r
	}
	se := math.Sqrt(rss / math.Max(sw-2, 0.5) / sxx)
	t := math.Copysign(noErrorT, b)
	if se > 0 {
		t = b / se
	}
	e := b / math.Max(mj, objectiveFloor)
	g.slope = g.cfg.SlopeAlpha*e + (1-g.cfg.SlopeAlpha)*g.slope
	// Significant, and big enough to matter: a 10 % change of size moving
	// the objective by at least 0.2 % (the latency preference alone does
	// not, so on a plateau the model decides).
	return b != 0 && math.Abs(t) > significantT && math.Abs(g.slope) > minElasticity
}
