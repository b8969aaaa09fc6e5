package tuner

import (
	"math"
	"sort"
	"time"
)

// csample is one interval of the linear cost fit: the mean batch fill,
// its mean write time in seconds, and its weight (the batches behind it).
type csample struct{ n, b, w float64 }

// costPoint is the measured write time of batches in one size band.
type costPoint struct {
	band int
	n, b float64
	busy float64 // batches being written at once while it was measured (batch-seconds per second)
	at   int     // tick of the last measurement
}

// The cost model's constants. "Design choice": set by hand on the
// simulator's shifting scenario (tuner/sim) and pinned by
// TestGradientReplaysItsGoldenDecisions; none is measured from a system.
const (
	// costWindow (intervals) is the linear fit's memory: a dozen seconds of
	// batches, enough points for two parameters under 10 % noise, short
	// enough to follow a downstream that changes. Design choice.
	costWindow = 12
	// bandRatio is the width of a cost-memory band: sizes within 15 % of
	// each other share one measured cost. Design choice, about three
	// times the probe's ±2 % swing so that probing does not split bands.
	bandRatio = 1.15
	// memMaxAge (intervals) is how long a band's cost is kept at all;
	// memRecent how long it counts as measured lately (for the best
	// measured size, exploring down, the fixed-cost test and the span in
	// which regime changes are detected). Design choices.
	memMaxAge = 45
	memRecent = 30
	// fixedCostShare: a size at most 80 % of n that took at least 80 % as
	// long shows the write time is mostly per batch. Design choice.
	fixedCostShare = 0.8
	// leftoverFill: batches fuller than 110 % of the larger of the sizes in
	// force now and before are leftovers of larger ones, not this size's.
	leftoverFill = 1.1
	// regimeBatches: a cost regime change is judged on intervals of at
	// least three batches; regimeQuiet (intervals) follows one without
	// detection while the memory refills. Design choices.
	regimeBatches = 3
	regimeQuiet   = 3
	// memAlpha is the EWMA weight of a band's newest measurement.
	memAlpha = 0.5
	// appLimited: a size measured with fewer than K batches in flight tells
	// its capacity only up to twice the concurrency in use, as Netflix
	// concurrency-limits' Gradient2Limit does not grow its limit while
	// "app limited" (Gradient2Limit._update: inflight < estimatedLimit / 2).
	// A write measured at light load did not wait for the others: K·n/B(n)
	// would credit a downstream that serves 2 requests at once with 4.
	appLimited = 2
	// fitMaxWeight caps an interval's weight in the fit at 20 batches, so
	// that one busy interval does not outweigh the window.
	fitMaxWeight = 20
	// fitKernel is the width, in log size, of the fit's Gaussian kernel
	// around the current size (a sample at ×1.65 weighs e^-½ of one at the
	// current size); fitRecency the weight lost per interval of age.
	// fitPrior is the pseudo-points' share of the weight, fitPriorSpread
	// their distance either side of the mean size (±50 %): a ridge that
	// keeps the fit well posed when sizes barely vary. Design choices.
	fitKernel      = 0.5
	fitRecency     = 0.8
	fitPrior       = 0.05
	fitPriorSpread = 0.5
	// costFloor (seconds) keeps predicted write times positive.
	costFloor = 1e-6
	// elasticitySpan: the local elasticity d log B / d log n is measured
	// between remembered sizes at least 30 % apart (closer ones give mostly
	// noise); beyond the memory it is bounded to [0, maxElasticity] going
	// up (a knee may be steep, but not arbitrarily) and [0, 1] going down.
	elasticitySpan = 1.3
	maxElasticity  = 3
	// contradicts: a write of n records that took this many times longer
	// than a size at least elasticitySpan larger took, or a size that much
	// smaller taking this many times longer than it, contradicts the
	// memory (forgetContradicted). Design choice: well above the
	// simulator's 10 % write-time noise; at 1.2 and 1.35 the simulator's
	// step from heavy records to the knee (tuner/sim) forgot the heavy
	// phase's sizes as the record size changed, climbed into the knee and
	// missed its optimum by half.
	contradicts = 1.5
)

// bestMeasured is the remembered size (of the last 30 intervals) whose
// measured write time is within maxB seconds with the most measured
// capacity K·n/B(n) — K capped at twice the batches in flight when it was
// measured (appLimited) — and that capacity.
func (g *Gradient) bestMeasured(maxB float64) (n, capacity float64) {
	for _, p := range g.mem {
		if c := g.concurrency(p) * p.n / p.b; g.tick-p.at <= memRecent && p.b <= maxB && c > capacity {
			n, capacity = p.n, c
		}
	}
	return n, capacity
}

// concurrency is the K a remembered size's capacity K·n/B(n) is credited
// with: at most twice the batches in flight when it was measured
// (appLimited).
func (g *Gradient) concurrency(p costPoint) float64 {
	return math.Min(g.k, appLimited*p.busy)
}

// concurrencyAt is the K credited to size n: that of the remembered size
// nearest to it (in log size), or K itself when nothing is remembered.
// The model's write time for n comes from the same sizes (cost), measured
// at the concurrency then in use.
func (g *Gradient) concurrencyAt(n float64) float64 {
	k, dist := g.k, math.Inf(1)
	for _, p := range g.mem {
		if d := math.Abs(math.Log(p.n / n)); d < dist {
			k, dist = g.concurrency(p), d
		}
	}
	return k
}

// measured reports whether a size in [lo, hi] was measured in the last 30
// intervals.
func (g *Gradient) measured(lo, hi float64) bool {
	for _, p := range g.mem {
		if p.n >= lo && p.n <= hi && g.tick-p.at <= memRecent {
			return true
		}
	}
	return false
}

// inMemory reports whether size n lies within the sizes measured in the
// last 30 intervals (give or take a band).
func (g *Gradient) inMemory(n float64) bool {
	lo, hi := math.Inf(1), 0.0
	for _, p := range g.mem {
		if g.tick-p.at <= memRecent {
			lo, hi = math.Min(lo, p.n), math.Max(hi, p.n)
		}
	}
	return n >= lo/bandRatio && n <= hi*bandRatio
}

// fixedCostBound reports whether the cost memory shows that smaller batches
// than n were not much quicker than bt: the write time is then mostly per
// batch and shrinking would not shorten it.
func (g *Gradient) fixedCostBound(n, bt float64) bool {
	for _, p := range g.mem {
		if p.n <= fixedCostShare*n && p.b >= fixedCostShare*bt && g.tick-p.at <= memRecent {
			return true
		}
	}
	return false
}

// observeCost adds the interval's batches to the cost model and reports a
// regime change: a size measured recently now costs RegimeFactor more or
// less.
func (g *Gradient) observeCost(obs Observation) bool {
	if obs.Batches == 0 || obs.MeanBatchFill <= 0 || obs.MeanBatchTime <= 0 {
		return false
	}
	if g.quiet > 0 {
		g.quiet--
	}
	// A write's cost is what its successful attempts took (writeTime), not
	// the batch's whole time: a batch the downstream deferred waited out a
	// Retry-After (2 s in the brown-out bench) that no size shortens. One
	// deferred batch among twenty doubled an interval's mean batch time, and
	// two such intervals were read as a new cost regime: the size fell to
	// 0.6x and the node, at the edge of a two-request downstream, queued
	// and refused (docs/bench.md, session 14).
	n, b := obs.MeanBatchFill, writeTime(obs)
	if b <= 0 {
		return false
	}
	iv := obs.Interval.Seconds()
	if iv <= 0 {
		iv = 1
	}
	busy := float64(obs.Batches) * b / iv
	cur := float64(obs.BatchSize)
	if cur > 0 && n > leftoverFill*math.Max(cur, g.prevSize) {
		// Leftovers of larger batches from before: not this size's cost.
		return false
	}
	band := int(math.Floor(math.Log(n) / math.Log(bandRatio)))
	regime := false
	if g.model && g.inMemory(n) && obs.Batches >= regimeBatches && g.quiet == 0 {
		ratio := b / g.cost(n)
		rf := g.cfg.RegimeFactor
		switch {
		case ratio > rf*rf || ratio*rf*rf < 1:
			g.votes += 2 // too far off for noise: one interval is enough
		case ratio > rf || ratio*rf < 1:
			g.votes++
		default:
			g.votes = 0
		}
		if g.votes >= 2 {
			// Sizes measured recently cost a different amount now: a new
			// regime.
			if g.lastRatio > 0 && g.votes == 2 && (ratio > 1) == (g.lastRatio > 1) {
				ratio = math.Sqrt(ratio * g.lastRatio)
			}
			regime = true
			g.votes = 0
			g.f *= ratio
			g.c *= ratio
			g.costs = g.costs[:0]
			g.mem = g.mem[:0]
			g.ceiling = 0
			g.quiet = regimeQuiet
		}
		g.lastRatio = ratio
	}
	if obs.Backpressure == 0 && obs.SinkErrors == 0 {
		g.forgetContradicted(n, b)
	}
	// Remember the band's cost (an EWMA) and drop stale bands.
	i := sort.Search(len(g.mem), func(i int) bool { return g.mem[i].band >= band })
	switch {
	case i < len(g.mem) && g.mem[i].band == band && (busy > appLimited*g.mem[i].busy || g.mem[i].busy > appLimited*busy):
		// Measured at another concurrency: a write that waited for
		// others in the downstream is not the one that did not, and their
		// mean is neither (it credited a size the node had left with 10 %
		// more capacity than the one it held, and the size fell to it).
		g.mem[i] = costPoint{band: band, n: n, b: b, busy: busy, at: g.tick}
	case i < len(g.mem) && g.mem[i].band == band:
		p := &g.mem[i]
		p.n += memAlpha * (n - p.n)
		p.b += memAlpha * (b - p.b)
		p.busy += memAlpha * (busy - p.busy)
		p.at = g.tick
	default:
		g.mem = append(g.mem, costPoint{})
		copy(g.mem[i+1:], g.mem[i:])
		g.mem[i] = costPoint{band: band, n: n, b: b, busy: busy, at: g.tick}
	}
	kept := g.mem[:0]
	for _, p := range g.mem {
		if g.tick-p.at <= memMaxAge {
			kept = append(kept, p)
		}
	}
	g.mem = kept

	if len(g.costs) == costWindow {
		copy(g.costs, g.costs[1:])
		g.costs = g.costs[:costWindow-1]
	}
	g.costs = append(g.costs, csample{n: n, b: b, w: math.Min(float64(obs.Batches), fitMaxWeight)})
	g.fitCost(n)
	return regime
}

// forgetContradicted drops the remembered costs that a write of n records
// in b seconds shows to be out of date. A batch never costs less to write
// than a smaller one, so a size at least elasticitySpan (30 %) larger
// remembered at less than b/contradicts, or one that much smaller
// remembered at more than b·contradicts, was measured against another
// downstream: one whose cost per request changed, or whose knee moved.
// Closer sizes are not compared: with a cost mostly per request their
// write times differ by noise alone. The caller passes only intervals
// without back pressure or failures: a batch's time includes any
// Retry-After it waited out, which is not the size's cost.
//
// Kept, such a point is believed over the write just measured. In the
// quick shifting bench, after a light load's 5.7 ms writes, 24 writes of 3
// records at 41 ms left the model planning 31-record batches for 18,000
// records/s (it predicted 5 ms for them); in the quick knee bench, after
// the knee moved below 160 records, the capacity remembered at 450 drew
// the size back there three times in a second (docs/bench.md).
func (g *Gradient) forgetContradicted(n, b float64) {
	stale := func(m, c float64) bool {
		return m > n*elasticitySpan && c*contradicts < b || m*elasticitySpan < n && c > b*contradicts
	}
	kept := g.mem[:0]
	for _, p := range g.mem {
		if !stale(p.n, p.b) {
			kept = append(kept, p)
		}
	}
	g.mem = kept
	fit := g.costs[:0]
	for _, s := range g.costs {
		if !stale(s.n, s.b) {
			fit = append(fit, s)
		}
	}
	g.costs = fit
}

// fitCost fits B(n) = F + c·n by weighted least squares around size
// center: a sample weighs more the more recent it is, the more batches it
// covers and the closer its size is to center (a Gaussian kernel in log
// size), so that the line is the local one — a knee far above does not
// tilt it. Two pseudo-points on the previous fit (at first, on an even
// split of the first measurement between F and c·n) keep it well posed
// when the sizes barely vary.
func (g *Gradient) fitCost(center float64) {
	if len(g.costs) == 0 {
		return
	}
	weight := func(i int) float64 {
		s := g.costs[i]
		z := math.Log(s.n/center) / fitKernel
		return s.w * math.Pow(fitRecency, float64(len(g.costs)-1-i)) * math.Exp(-z*z/2)
	}
	var sw, sn float64
	for i, s := range g.costs {
		sw += weight(i)
		sn += weight(i) * s.n
	}
	if sw <= 0 {
		return
	}
	mean := sn / sw
	f0, c0 := g.f, g.c
	if !g.model {
		last := g.costs[len(g.costs)-1]
		f0, c0 = last.b/2, last.b/2/last.n
	}
	var w, x, y, xx, xy float64
	add := func(n, b, wt float64) {
		w += wt
		x += wt * n
		y += wt * b
		xx += wt * n * n
		xy += wt * n * b
	}
	for i, s := range g.costs {
		add(s.n, s.b, weight(i))
	}
	prior := fitPrior * sw
	for _, n := range []float64{(1 - fitPriorSpread) * mean, (1 + fitPriorSpread) * mean} {
		add(n, f0+c0*n, prior)
	}
	det := w*xx - x*x
	if det <= 0 {
		return
	}
	c := (w*xy - x*y) / det
	f := (y - c*x) / w
	if c < 0 {
		c, f = 0, y/w
	}
	if f < 0 {
		f, c = 0, xy/xx
	}
	g.f, g.c, g.model = f, c, true
}

// cost predicts the write time of a batch of n. Between remembered sizes
// it interpolates them (in log-log space, so a knee the node has seen is
// honoured); beyond them it extrapolates from the nearest one with the
// local elasticity d log B / d log n — measured between the two outermost
// sizes far enough apart, or else the linear fit's c·n/(F+c·n).
func (g *Gradient) cost(n float64) float64 {
	lin := func(n float64) float64 { return math.Max(costFloor, g.f+g.c*n) }
	if len(g.mem) == 0 {
		return lin(n)
	}
	m := g.mem
	i := sort.Search(len(m), func(i int) bool { return m[i].n >= n })
	switch {
	case i < len(m) && m[i].n == n:
		return m[i].b
	case i > 0 && i < len(m):
		lo, hi := m[i-1], m[i]
		t := math.Log(n/lo.n) / math.Log(hi.n/lo.n)
		return math.Exp(math.Log(lo.b) + t*(math.Log(math.Max(hi.b, lo.b))-math.Log(lo.b)))
	case i == len(m): // above every remembered size
		top := m[len(m)-1]
		e := g.c * top.n / lin(top.n)
		for j := len(m) - 2; j >= 0; j-- {
			if m[j].n*elasticitySpan <= top.n {
				e = math.Log(top.b/m[j].b) / math.Log(top.n/m[j].n)
				break
			}
		}
		e = math.Max(0, math.Min(maxElasticity, e))
		return top.b * math.Pow(n/top.n, e)
	default: // below every remembered size
		bot := m[0]
		e := g.c * bot.n / lin(bot.n)
		for j := 1; j < len(m); j++ {
			if m[j].n >= bot.n*elasticitySpan {
				e = math.Log(m[j].b/bot.b) / math.Log(m[j].n/bot.n)
				break
			}
		}
		e = math.Max(0, math.Min(1, e)) // per-record cost at most: B/n grows no faster going down
		return bot.b * math.Pow(n/bot.n, e)
	}
}

// Model returns the cost model's current estimates — the fixed cost per
// batch and the cost per record — and whether there is a model yet.
func (g *Gradient) Model() (perBatch, perRecord time.Duration, ok bool) {
	return time.Duration(g.f * float64(time.Second)), time.Duration(g.c * float64(time.Second)), g.model
}
