package tuner

import (
	"math"
	"time"
)

// The load model's constants.
const (
	// jumpRecords: a change of the arrival rate counts as a regime change
	// only when at least this many records arrive in an interval (at the
	// rate before or after); below it Poisson noise alone doubles rates.
	// Design choice.
	jumpRecords = 50
	// maxBoost bounds how far past the measured sizes the model may reach
	// after a load jump (×64). Design choice.
	maxBoost = 64
	// arrivalAlpha is the EWMA weight of the newest arrival rate: a time
	// constant of about three intervals. Design choice.
	arrivalAlpha = 0.3
	// searchTop is the largest size the model searches when nothing bounds
	// it: the node's default maximum batch size (20 000 records).
	searchTop = 20000.0
	// trustReach and backlogReach: the model's size stays within twice the
	// largest size measured (four times with a backlog); trustBelow: not
	// under a quarter of the smallest unless the fill time asks for it.
	// A trust region, as in trust-region optimisation: the cost model is
	// extrapolated no further than it can be believed. Design choices.
	trustReach   = 2.0
	backlogReach = 4
	trustBelow   = 4
	// modelPoints is how many sizes, spaced evenly in log size over the
	// trust region, the model evaluates (about 5 % apart over ×100, the
	// order of DeadBand).
	modelPoints = 96
	// variability is Sakasegawa's (ca²+cs²)/2 (Sakasegawa 1977, "An
	// approximation formula L_q ≈ α·ρ^β/(1−ρ)", Annals of the Institute of
	// Statistical Mathematics 29), taken as ½: Poisson arrivals (ca² = 1)
	// and a steady write time (cs² ≈ 0), an M/D/K queue.
	variability = 0.5
	// capacityShare: overloaded at every size, any size with 90 % of the
	// most capacity qualifies, and the nearest to the current one wins.
	capacityShare = 0.9
)

// observeConcurrency sets K, the batches written at once: the flush
// concurrency when the node reports it, else the batch-seconds per second
// of the busiest recent interval.
func (g *Gradient) observeConcurrency(obs Observation, iv float64) {
	if obs.FlushConcurrency > 0 {
		g.k = float64(obs.FlushConcurrency)
	} else {
		busy := float64(obs.Batches) * obs.MeanBatchTime.Seconds() / iv
		g.k = math.Max(1, math.Max(g.k*kForget, busy))
	}
}

// observeArrival updates the arrival-rate estimate and reports a regime
// change when the rate jumps by RegimeFactor. A jump in an interval with
// fewer than jumpRecords records could be Poisson noise; a second interval
// that jumps the same way from the same rate confirms it once the two
// together hold jumpRecords, and the regime starts at their mean rate.
// (At a 250 ms interval a load stepping from 20 to 200 records/s brings
// 47 records an interval; without the confirmation the estimate crept up
// by the EWMA for a second while the queue refused the step.) A jump up in
// an interval in which the node refused records needs no confirmation:
// noise that the queue absorbs is refused by nobody, and the node decides
// early when it first refuses (node's pacer), over too short an interval
// for jumpRecords. So does one in which the node let a request past its
// delay bound on its grace (graced): it fell behind as when it refuses,
// and stepped early on it.
//
// While the node refuses records (in this interval or the last, or within
// backoffHold of an interval that refused) the estimate does not fall: a
// client refused with Retry-After waits it out before it sends anything,
// its new records too, so the arrivals measured fall with the clients'
// back-off, not with their demand. On the quick overload scenario (250 ms
// intervals, Retry-After 1 s) the rate measured swung 4,960 → 520 → 2,120
// → 0 → 8,400 records/s while the clients' demand stayed 3,000, and each
// swing was taken for a new regime: the size fell from 331 to 10 with
// 1,500 records queued. A real fall shows once the refusals stop and the
// clients' wait is over. (One interval was the rule until session 14: at
// a 250 ms interval the second interval after the last refusal measured
// the back-off, 0 then 800 records/s of 3,000, and the size fell from 250
// to 39 with 1,300 records queued.)
func (g *Gradient) observeArrival(rate, iv float64, refused, graced bool, now time.Time) string {
	refusing := refused || g.refusedLast ||
		(!now.IsZero() && !g.refusedAt.IsZero() && now.Sub(g.refusedAt) <= backoffHold)
	g.refusedLast = refused
	if refused {
		g.refusedAt = now
	}
	if !g.lamSeen {
		g.lam, g.lamSeen = rate, true
		return ""
	}
	if refusing && rate < g.lam {
		g.jumpFrom, g.jumpRate = 0, 0
		return ""
	}
	rf := g.cfg.RegimeFactor
	jumped := func(from, to float64) bool { return to > rf*from || to*rf < from }
	pending, from := g.jumpRate, g.jumpFrom
	g.jumpFrom, g.jumpRate = 0, 0
	switch {
	case jumped(g.lam, rate) && (math.Max(rate, g.lam)*iv >= jumpRecords || (refused || graced) && rate > g.lam):
		return g.arrivalRegime(g.lam, rate)
	case pending > 0 && jumped(from, rate) && (rate > from) == (pending > from) &&
		(math.Max(rate, from)+math.Max(pending, from))*iv >= jumpRecords:
		return g.arrivalRegime(from, (rate+pending)/2)
	case jumped(g.lam, rate):
		g.jumpFrom, g.jumpRate = g.lam, math.Max(rate, 1e-9)
	}
	g.lam += arrivalAlpha * (rate - g.lam)
	return ""
}

// arrivalRegime starts a new arrival regime at rate: sizes far from those
// measured are worth trying at once when the load itself jumped that far.
// A jump that goes on the same way in the next interval is the same jump
// seen in two parts, measured from where it began: the node's early step
// (a twentieth of a second after a quarter-second interval, when the node
// first refuses) catches the start of a step and the next interval the
// rest. Taken apart, the quick shifting bench's step from 200 to 18,000
// records/s was two jumps of 38x and 2.4x, and the second, the one the
// size is decided on, reached only 4x past the sizes measured.
func (g *Gradient) arrivalRegime(from, rate float64) string {
	if g.jumpAt == g.tick-1 && (rate > from) == (from > g.jumpBase) {
		from = g.jumpBase
	}
	g.jumpAt, g.jumpBase = g.tick, from
	g.boost = math.Min(maxBoost, rate/math.Max(from, 1e-9))
	g.lam = rate
	return "arrival"
}

// fillBudget is the share of the SLO a batch may take to fill: FillBudget,
// or the whole LatencyBudget while the downstream defers requests
// (deferring). A request deferred by a Retry-After at least as long as
// the SLO makes all of its records late, whatever its size, so the records
// late are the share p of requests deferred at any size; but the p99 of a
// span of time holds only if no request in it was deferred, with a chance
// of (1-p)^requests: fewer, larger requests meet fewer deferrals. The
// brown-out bench (2 % of requests deferred 2 s) kept 0.46 of its seconds
// within the SLO at 128 records a batch, where 500 kept 0.95 (docs/bench.md,
// session 14). Elasticsearch's advice on its 429s is the same: fewer, larger
// bulk requests. The latency budget still bounds the batch, so the records
// that are not deferred stay within the SLO.
func (g *Gradient) fillBudget() float64 {
	if g.deferring() {
		return math.Max(g.cfg.FillBudget, g.cfg.LatencyBudget)
	}
	return g.cfg.FillBudget
}

// modelTarget is the size the model recommends for arrival rate λ plus
// draining drain records per second: the largest size whose fill time is
// within FillBudget of the SLO and whose predicted latency is within
// LatencyBudget of it; failing that, the size with the lowest predicted
// latency that meets the latency budget; failing that, the lowest
// predicted latency (or the most capacity) of all.
func (g *Gradient) modelTarget(slo, linger, drain float64, maxSize int) float64 {
	cfg := &g.cfg
	if g.lam <= 0 {
		return g.base
	}
	hi := searchTop
	if maxSize > 0 {
		hi = float64(maxSize)
	}
	lo := float64(cfg.Min)
	fillBudget := g.fillBudget()
	fillCap := math.Max(lo, math.Min(hi, g.lam*fillBudget*slo))
	if !g.model {
		return fillCap
	}
	// Trust region: never more than twice the largest size measured, nor
	// less than a quarter of the smallest unless the fill time asks for it.
	if len(g.mem) > 0 {
		minN, maxN := math.Inf(1), 0.0
		for _, p := range g.mem {
			minN, maxN = math.Min(minN, p.n), math.Max(maxN, p.n)
		}
		reach := trustReach
		if drain > 0 {
			reach = backlogReach // a backlog: grow faster
		}
		reach = math.Max(reach, g.boost)
		hi = math.Max(lo, math.Min(hi, reach*maxN))
		lo = math.Min(hi, math.Max(lo, math.Min(minN/trustBelow, fillCap)))
	}
	lamH := g.lam*cfg.Headroom + drain
	// Sakasegawa's approximation of the mean wait in a G/G/K queue:
	// Wq ≈ B · ρ^(√(2(K+1))−1) / (K(1−ρ)) · (ca²+cs²)/2, taking the
	// variability term as ½.
	expo := math.Sqrt(2*(g.k+1)) - 1
	best := 0.0 // the largest size meeting both budgets
	fallback, fallbackLat := 0.0, math.Inf(1)
	caps := make([]float64, modelPoints)
	fits := make([]bool, modelPoints) // the write alone fits in the latency budget
	sizes := make([]float64, modelPoints)
	for i := 0; i < modelPoints; i++ {
		n := math.Round(lo * math.Pow(hi/lo, float64(i)/(modelPoints-1)))
		fill := n / g.lam
		if linger > 0 {
			fill = math.Min(fill, linger)
		}
		eff := math.Max(1, math.Min(n, g.lam*fill)) // records a batch really holds
		b := g.cost(eff)
		rho := lamH * b / (g.k * eff)
		sizes[i] = n
		if b <= slo {
			caps[i] = g.concurrencyAt(eff) * eff / b
			fits[i] = b <= cfg.LatencyBudget*slo
		}
		if rho >= 1 {
			continue
		}
		lat := fill + b + b*math.Pow(rho, expo)/(g.k*(1-rho))*variability
		if lat <= cfg.LatencyBudget*slo && fill <= fillBudget*slo {
			best = n
		}
		if lat < fallbackLat {
			fallback, fallbackLat = n, lat
		}
	}
	switch {
	case best > 0:
		return best
	case fallback > 0:
		return fallback
	}
	// Overloaded at every size: of the sizes with 90 % of the most capacity
	// any size whose write fits in the latency budget offers (else, if no
	// write fits there, in the SLO), the nearest to the current one (the
	// model is least wrong near what it has measured). Not past the
	// latency budget while a smaller size fits: the write-time guard would
	// cut such a size at once, and the node would swing between the two
	// while the backlog it is admitting is measured at the other size.
	most, mostFit := 0.0, 0.0
	for i, c := range caps {
		most = math.Max(most, c)
		if fits[i] {
			mostFit = math.Max(mostFit, c)
		}
	}
	if most == 0 {
		return lo
	}
	if mostFit > 0 {
		most = mostFit
	}
	pick, dist := g.base, math.Inf(1)
	for i, c := range caps {
		if mostFit > 0 && !fits[i] {
			continue
		}
		if d := math.Abs(math.Log(sizes[i] / g.base)); c >= capacityShare*most && d < dist {
			pick, dist = sizes[i], d
		}
	}
	return pick
}

// growthRoom is the largest size from cur up to cur·factor (searched in
// steps of about 5 %, the dead band) whose predicted write time is within
// limit seconds; cur when no larger one is.
func (g *Gradient) growthRoom(cur, factor, limit float64) float64 {
	room := cur
	const steps = 16
	for i := 1; i <= steps; i++ {
		n := cur * math.Pow(factor, float64(i)/steps)
		if g.cost(n) > limit {
			break
		}
		room = n
	}
	return room
}
