package tuner

import (
	"math"
)

type gsample struct{ x, j float64 }

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
		j *= math.Max(0, 1-over/10)
	}
	if over := obs.MemPercent - memLimit; over > 0 {
		j *= math.Max(0, 1-over/10)
	}
	return j * (1 - 0.05*math.Min(p99/slo, 2))
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
	if n < 5 {
		return false
	}
	w := func(i int) float64 { return math.Pow(0.85, float64(n-1-i)) }
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
	if sxx/sw < 1e-4 { // sizes within about 1 %: no information
		return false
	}
	b := sxj / sxx
	var rss float64
	for i, s := range g.samples {
		r := s.j - mj - b*(s.x-mx)
		rss += w(i) * r * r
	}
	se := math.Sqrt(rss / math.Max(sw-2, 0.5) / sxx)
	t := math.Copysign(100, b)
	if se > 0 {
		t = b / se
	}
	e := b / math.Max(mj, 0.05)
	g.slope = g.cfg.SlopeAlpha*e + (1-g.cfg.SlopeAlpha)*g.slope
	// Significant, and big enough to matter: a 10 % change of size moving
	// the objective by at least 0.2 % (the latency preference alone does
	// not, so on a plateau the model decides).
	return b != 0 && math.Abs(t) > 2.5 && math.Abs(g.slope) > 0.02
}
