package tuner

import (
	"math"
	"time"
)

// Gradient is batchpilot's own controller. It maximises an objective —
// goodput (records acknowledged within the SLO) as a share of the records
// written, penalised when p99 exceeds the SLO and when CPU or memory exceed
// their limits, with a slight preference for lower latency — by combining a
// cost model of the pipeline with a measured gradient.
//
// What decides the best size: a batch of n records costs B(n) = F + c·n to
// write (a fixed cost per batch, a cost per record, and for some downstreams
// a knee above which the cost climbs steeply); K batches are written at
// once, so the node keeps up with an arrival rate λ while the utilisation
// ρ(n) = λ·B(n)/(K·n) stays below 1; a record waits for its batch to fill
// (n/λ, at most the linger), for a free writer (queueing, growing as ρ → 1)
// and for the write. Small batches waste F; large ones wait to fill and take
// long to write.
//
//   - Model. Every interval's (mean fill, write time) is a measurement of B,
//     the write time being its successful attempts' RTT (a Retry-After waited
//     out before a retry is no size's cost). A least-squares fit of F and c,
//     weighted by recency and by closeness to the current size, describes the
//     cost locally; a memory of measured costs per size band (interpolated in
//     log-log space) describes it where the node has been, knee included; a
//     write that a remembered size contradicts (a larger size cheaper, or a
//     smaller one dearer, by more than noise) forgets that size. From B, λ (an
//     EWMA of the arrivals, which does not fall while the node refuses:
//     refused clients wait out their Retry-After) and K the model predicts
//     each size's latency (fill, write and queueing, the last by Sakasegawa's
//     approximation for a K-server queue) and picks the largest size whose
//     fill time stays within FillBudget of the SLO and whose predicted latency
//     stays within LatencyBudget of it (light load gets small batches at once;
//     while the downstream defers requests by a Retry-After past the SLO, the
//     fill may take the whole LatencyBudget: fewer, larger requests meet fewer
//     deferrals, fillBudget); with a backlog it plans for λ plus draining the
//     queue in DrainTime. It never reaches beyond twice the largest size
//     measured (four times with a backlog, as far as the load jumped after a
//     jump in load).
//   - Gradient. The slope of the objective against log(size) is fitted by
//     weighted least squares over the last Window clean intervals (no
//     backlog building or draining) and smoothed by an EWMA; when it is
//     significant and large enough to matter it is integrated into a
//     correction (in log space, within ×2 either way) added to the model's
//     size. It catches what the model does not see, such as a CPU limit
//     that per-batch overhead breaks. A probe alternates the size by ±Probe
//     so the slope stays observable in steady state.
//   - Saturation (a backlog of two rounds of batches and a quarter of the
//     SLO's worth of arrivals, a queue building up, or records refused):
//     go to the model's size if it is larger; else, once the batches
//     measured are of the size in force (the interval after a move
//     measures a mix of two, and one without a finished batch nothing),
//     to the remembered size
//     with clearly the most measured capacity K·n/B(n); else, unless the
//     backlog is draining, grow ×(1+SaturatedStep) — bigger batches
//     amortise F — or, if a ceiling rules growth out, explore smaller.
//   - Guards. A write that alone takes longer than LatencyBudget shrinks in
//     proportion (the write: its successful attempts' RTT, not the waits
//     before its retries); p99 above the SLO without a backlog shrinks ×0.8,
//     unless records deferred by a Retry-After as long as the SLO, in this
//     interval or acknowledged in it after their wait, explain it
//     (deferredTail); back pressure (429/503) shrinks ×0.8; growth under
//     saturation that lowered throughput goes back (a knee, not judged on an
//     interval shorter than a write in which none finished); an interval at
//     least two writes long without a finished batch halves (not one in which
//     the arrivals jumped up: the node's early step comes on the jump, before
//     a write could finish). Each sets a ceiling just under the size it left,
//     which relaxes 2 % per interval without back pressure. A ceiling from
//     p99, write time or back pressure is lifted while a backlog keeps growing
//     under it (the backlog makes the latency); a shrink for p99 that left p99
//     above the SLO at the smaller size stops such shrinks for 30 intervals
//     (the tail is not the size's: writes that waited out a Retry-After).
//     Batches the sink refused outright (most of an interval's, not back
//     pressure: a 413 body limit) cap the size at 0.7 of theirs until the
//     record size changes 2x or a minute passes.
//   - Regime changes (the arrival rate off by RegimeFactor from its EWMA,
//     over enough records or with records refused, or a size measured
//     recently now costing RegimeFactor more or less)
//     reset the slope, the correction and the ceilings — a cost change also
//     the cost memory — and move straight to the model's size instead of
//     crawling (after a cost rise without a backlog: ×0.6 first, which
//     tells per-batch from per-record cost apart). A jump in arrivals
//     that goes on in the next interval is one jump, measured from where
//     it began.
//   - Other steps are clamped to ±MaxStep per interval (moves down to the
//     model's size excepted); moves smaller than DeadBand are not made.
//
// Gradient is deterministic: it reads only its observations.
//
// Its parts live in files named for them: the policy (this file: the
// guards, the saturation climb and the decision reasons), the cost model B(n)
// and its memory (costmodel.go), the arrival rate and the queueing model
// that turns B into a size (queueing.go), and the objective and its slope
// fit (slopefit.go).
type Gradient struct {
	cfg GradientConfig

	base  float64 // the size before the probe
	asked int     // the size last returned
	sign  float64 // the probe's next direction
	tick  int

	samples  []gsample // (log size, objective), newest last
	slope    float64   // EWMA of the objective's elasticity
	corr     float64   // gradient correction to the model's size, log space
	ltSmooth float64   // EWMA of the log of the model's size

	lam     float64 // EWMA of the arrival rate
	lamSeen bool
	// A jump seen in one interval with too few records to trust: the
	// rate before it and the interval's rate (0: none pending).
	jumpFrom, jumpRate float64
	refusedLast        bool      // the last interval refused records
	refusedAt          time.Time // the end of the last interval that refused records

	costs     []csample   // recent (fill, write time) for the linear fit
	f, c      float64     // the fit: seconds per batch, seconds per record
	model     bool        // f and c are set
	mem       []costPoint // measured cost per size band, by band
	quiet     int         // intervals left without cost-regime detection
	votes     int         // consecutive intervals whose cost was off the memory
	boost     float64     // trust-region reach for this interval after a load jump
	jumpAt    int         // tick of the last arrival regime change
	jumpBase  float64     // the rate that jump started from
	lastRatio float64
	k         float64 // flush concurrency, given or estimated

	ceiling        float64    // sizes above this did worse (0: none)
	ceilingSoft    bool       // the ceiling came from p99, write time or back pressure only
	refused        float64    // sizes above this were refused by the sink (0: none)
	refusedAge     int        // intervals since refused was set
	refusedBytes   float64    // the mean record size when it was set
	bytes          byteMemory // a body limit in bytes learned from 413s
	p99ShrinkAt    int        // tick of the last shrink for p99 (0: none pending)
	p99ShrinkFrom  float64    // the size it shrank from
	p99Immune      int        // no shrink for p99 before this tick
	deferredAt     int        // tick of the last interval the downstream deferred a request past the SLO (0: none)
	deferrals      []deferral // those whose retry may still be late (deferredTail)
	prevSat        bool
	prevSize       float64
	prevThroughput float64
	prevFlushRate  float64 // records per second per busy flush: fill / batch time
	prevQueue      int
	lastWrite      float64 // seconds: the write time of the last interval with batches
}

// GradientConfig are Gradient's parameters; zero fields take the defaults
// noted.
type GradientConfig struct {
	Initial       int
	Min           int     // 1
	Max           int     // 0: no bound but obs.MaxBatchSize
	MaxStep       float64 // 0.25: largest relative change per interval
	SaturatedStep float64 // 1: growth per interval while saturated and the model sees no better size (×2)
	DeadBand      float64 // 0.05: smaller relative moves are not made
	Probe         float64 // 0.02: the probe's relative amplitude
	Window        int     // 10: intervals in the slope fit
	SlopeAlpha    float64 // 0.3: EWMA weight of the newest slope
	Gain          float64 // 0.3: log-step per unit of elasticity
	FillBudget    float64 // 0.1: share of the SLO a batch may take to fill (LatencyBudget while the downstream defers)
	LatencyBudget float64 // 0.5: share of the SLO the predicted latency may take
	Headroom      float64 // 1.1: factor on the arrival rate the model plans for
	DrainTime     time.Duration
	// DrainTime (5s) is how fast the model plans to drain a backlog.
	RegimeFactor float64 // 2: a jump by this factor is a regime change
	CPULimit     float64 // 90: used when the observation has none
	MemLimit     float64 // 90: used when the observation has none
}

// defaults fills zero fields. The defaults are design choices set by hand
// on the simulator (see the constants below). FillBudget and LatencyBudget
// split the SLO so that filling (a tenth) and the predicted mean latency
// (half) leave the rest to the tail that p99 measures; DrainTime is ten
// SLOs at the default 500 ms; RegimeFactor 2 is well outside the
// simulator's 10 % write-time noise.
func (c *GradientConfig) defaults() {
	def := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Initial < 1 {
		c.Initial = 100
	}
	if c.Min < 1 {
		c.Min = 1
	}
	def(&c.MaxStep, 0.25)
	def(&c.SaturatedStep, 1)
	def(&c.DeadBand, 0.05)
	def(&c.Probe, 0.02)
	if c.Window < 5 {
		c.Window = 10
	}
	def(&c.SlopeAlpha, 0.3)
	def(&c.Gain, 0.3)
	def(&c.FillBudget, 0.1)
	def(&c.LatencyBudget, 0.5)
	def(&c.Headroom, 1.1)
	if c.DrainTime <= 0 {
		c.DrainTime = 5 * time.Second
	}
	def(&c.RegimeFactor, 2)
	def(&c.CPULimit, 90)
	def(&c.MemLimit, 90)
}

// The policy's thresholds and factors. Where a comment says "design
// choice", the value was set by hand on the simulator's shifting scenario
// (tuner/sim, commits 642727e and ea29d19) and on `batchpilot bench
// shifting` (077cf37), not derived: it is a knob with a reason, and
// TestGradientReplaysItsGoldenDecisions pins it.
const (
	// refusedMaxAge (intervals) is how long a size the sink refused is
	// remembered: a minute at the node's 1 s interval, long enough for the
	// breaker to close and the model to try growing again, which is what
	// walked back into a 1 MiB body limit four times in 077cf37's bench.
	refusedMaxAge = 60
	// refusedShare caps the size at this share of a refused batch's fill:
	// design choice (077cf37), room below a body limit for records that
	// vary in size.
	refusedShare = 0.7
	// refusedBytesChange: records this many times larger or smaller than
	// when a size was refused forget it, since a body limit then holds a
	// different count of them (077cf37).
	refusedBytesChange = 2
	// hardFailures and hardFailShare: an interval with at least this many
	// failed batches that were not back pressure, and at least this share
	// of its batches, is a refusal of the batches themselves (a 413), not a
	// stray error. Design choice: one failure is noise, most is a rule.
	hardFailures  = 2
	hardFailShare = 0.5
	// p99ImmuneFor (intervals) stops shrinks for p99 after one that did not
	// bring p99 under the SLO: the tail was a Retry-After's, not the
	// size's (077cf37). Half a minute: design choice.
	p99ImmuneFor = 30
	// backoffHold is how long after an interval that refused records the
	// arrivals measured are read as the refused clients' back-off, not
	// their demand (observeArrival): HTTP's Retry-After counts whole
	// seconds, and the node never asks for less than one (node.RetryAfter).
	backoffHold = time.Second
	// deferMemory (intervals) is how long after the downstream last
	// deferred a request past the SLO the batch may fill for the whole
	// latency budget (fillBudget): at 2 % of requests deferred and ten
	// requests a second, one comes every five seconds or so; half a minute
	// keeps the wider budget through such a brown-out and lets it go soon
	// after. Design choice, as p99ImmuneFor.
	deferMemory = 30
	// p99VerdictWindow (intervals) is how long after a shrink for p99 its
	// effect is judged: a batch or two of the old size may still be in
	// flight for an interval. p99ShrinkTook: the size in force is below
	// this share of the size shrunk from, so the shrink did take effect.
	p99VerdictWindow = 3
	p99ShrinkTook    = 0.95
	// overridden: a size in force below this share of the size last asked
	// for was imposed (a breaker, the leader's grant); the probe moves the
	// size only ±Probe (2 %), so 3 % tells them apart.
	overridden = 0.97
	// backlogRounds and backlogSLOShare: a backlog is more than this many
	// rounds of K batches and more than this share of the SLO's worth of
	// arrivals waiting (both, so that neither tiny batches nor a light load
	// call a few queued records a backlog). queuedBatches: a queue growing
	// by more than this many batches while throughput stays below
	// keepingUp of arrivals is a node that does not keep up. Design choices.
	backlogRounds   = 2
	backlogSLOShare = 0.25
	queuedBatches   = 2
	keepingUp       = 0.98
	// pressureShare: back pressure acts when it answers more than this
	// share of the interval's attempts, so one stray 429 in a thousand
	// writes does not shrink. Design choice.
	pressureShare = 0.02
	// tailShare is the share of an interval's records above its p99.
	tailShare = 0.01
	// kneeGrowth and kneeLoss: under saturation, a size grown by more than
	// 5 % whose throughput fell by more than 3 % passed a knee. The margins
	// sit above the simulator's 10 % write-time noise averaged over an
	// interval's batches. Design choice.
	kneeGrowth = 1.05
	kneeLoss   = 0.97
	// kneeLongJump: a jump back from a knee longer than this factor goes
	// only half way in log space (the geometric mean): the optimum lies
	// below, not necessarily at the size before.
	kneeLongJump = 1.5
	// ceilingRelax is the factor a ceiling rises by each interval without
	// back pressure (2 %: a ceiling set a third too low is gone in about
	// 15 s), and ceilingGone the height above which it is dropped.
	ceilingRelax = 1.02
	ceilingGone  = 1e9
	// ceilingBelow sets a ceiling just under the size a guard left.
	ceilingBelow = 0.9
	// modelSmoothing is the EWMA weight of the newest model size (in log
	// space) against the noise of the measured rates. Design choice.
	modelSmoothing = 0.3
	// stallCut halves the size when no batch finished in a whole interval:
	// a multiplicative decrease as in TCP's congestion avoidance (RFC 5681
	// halves the window on loss).
	stallCut = 0.5
	// stallWrites: an interval is judged a stall only when it lasted at
	// least this many of the last measured writes, so that one could have
	// finished. The node's early step (node/control.go, pacer) comes a
	// tenth of an interval after the last one: 25 ms at a 250 ms interval,
	// against writes of 100 ms, with none finished yet and the burst that
	// asked for the step queued, halved a size that was keeping up.
	stallWrites = 2
	// slowMargin aims a cut for write time at 90 % of the latency budget;
	// slowMinCut bounds one such cut to halving. fullLow and fullHigh: the
	// batches measured were full (80-110 % of the size in force), so their
	// write time is this size's. Design choices.
	slowMargin = 0.9
	slowMinCut = 0.5
	fullLow    = 0.8
	fullHigh   = 1.1
	// backoff is the multiplicative decrease for back pressure and for p99
	// above the SLO: gentler than TCP's halving because a batch size acts
	// on every request at once, harsher than Vector's ARC concurrency
	// decrease_ratio (0.9), which is applied once per RTT, not per second.
	// Design choice.
	backoff = 0.8
	// costExplore: after writes got dearer, try this much smaller first;
	// per-batch and per-record cost tell apart by their answer to it.
	costExplore = 0.6
	// bestMeasuredGain: under saturation move to the remembered size with
	// the most measured capacity when it has 10 % more than the size now,
	// more than the noise of one interval's measurement. Design choice.
	bestMeasuredGain = 1.1
	// draining: a queue that shrank by 10 % in an interval is draining at
	// the size in force; hold it.
	draining = 0.9
	// ceilingRoom: under saturation grow only if the ceiling leaves 20 %
	// room; exploreDown is the step down when it does not and sizes from
	// half the current one up to a band below it are unmeasured.
	ceilingRoom  = 1.2
	exploreDown  = 0.7
	exploreReach = 2
	// slowBatches: a write time is judged on at least two batches, not
	// one that met a hiccup.
	slowBatches = 2
	// kForget: without a given flush concurrency, K is estimated as the
	// busiest interval's batch-seconds per second, forgotten 1 % an
	// interval (half-life about 70 s) so that a past burst of parallel
	// writes does not count forever. Design choice.
	kForget = 0.99
	// corrStep bounds one interval's gradient correction (log space, about
	// ±16 %); corrMax bounds the total to about ×2 either way (ln 2 ≈
	// 0.69); corrDecay lets an unconfirmed correction fade (half-life about
	// 35 intervals); corrShown is the correction above which the reason
	// says "model+gradient". Design choices.
	corrStep  = 0.15
	corrMax   = 0.7
	corrDecay = 0.98
	corrShown = 0.05
)

// NewGradient returns a Gradient controller starting at cfg.Initial.
func NewGradient(cfg GradientConfig) *Gradient {
	cfg.defaults()
	return &Gradient{cfg: cfg, base: float64(cfg.Initial), sign: 1}
}

// Name implements Controller.
func (g *Gradient) Name() string { return "gradient" }

// Next implements Controller: the batch size, and the bound in bytes that a
// body limit taught it (bytebound.go).
func (g *Gradient) Next(obs Observation) Decision {
	g.bytes.observe(obs.Attempts)
	d := g.next(obs)
	d.BatchBytes = g.bytes.decision()
	return d
}

func (g *Gradient) next(obs Observation) Decision {
	cfg := &g.cfg
	g.tick++
	slo := obs.SLO.Seconds()
	if slo <= 0 {
		slo = defaultSLO.Seconds()
	}
	iv := obs.Interval.Seconds()
	if iv <= 0 {
		iv = 1
	}
	maxSize := bound(cfg.Max, obs.MaxBatchSize)
	cur := float64(obs.BatchSize)
	if cur <= 0 {
		cur = g.base
	}
	if g.asked > 0 && obs.BatchSize > 0 && cur < overridden*float64(g.asked) {
		g.base = cur // a breaker or the grant overrode the last decision
	}
	if obs.ArrivalRate <= 0 && obs.Batches == 0 && obs.QueueDepth == 0 {
		return g.emit("hold:idle", maxSize, false)
	}

	regime := g.observeArrival(obs.ArrivalRate, iv, obs.Rejected > 0, obs.Graced > 0, obs.Now)
	if g.observeCost(obs) && regime == "" {
		regime = "cost"
	}
	if regime != "" {
		g.samples, g.slope, g.corr, g.ceiling = g.samples[:0], 0, 0, 0
		g.p99Immune, g.p99ShrinkAt = 0, 0
	}
	g.rememberRefusals(obs, cur)
	g.observeConcurrency(obs, iv)
	g.noteDeferrals(obs, slo)

	// A backlog: more than two rounds of batches and more than a quarter
	// of the SLO's worth of arrivals waiting, or records refused.
	backlog := float64(obs.QueueDepth) > math.Max(backlogRounds*g.k*cur, backlogSLOShare*slo*g.lam)
	// Or a queue building up: the node is not keeping up.
	growing := obs.QueueDepth > g.prevQueue && float64(obs.QueueDepth) > queuedBatches*cur &&
		obs.Throughput < keepingUp*obs.ArrivalRate
	sat := obs.Rejected > 0 || obs.Graced > 0 || backlog || growing
	// Only clean intervals feed the slope: while a backlog builds or drains
	// the objective moves with it, not with the size.
	significant := false
	if !sat && !g.prevSat {
		g.addSample(math.Log(cur), g.objective(obs, slo))
		significant = g.fitSlope()
	}
	attempts := obs.Batches + obs.Backpressure
	pressure := obs.Backpressure > 0 && float64(obs.Backpressure) > pressureShare*float64(attempts)
	// Under saturation every flush is busy, so the throughput is K times
	// what one flush carries, fill / batch time. The count of records that
	// finished in an interval moves by a whole batch from one to the next
	// (±12 % with 8 batches at a 250 ms interval); a knee must show in the
	// rate of each write as well, which that count noise does not move.
	// An interval in which no write finished is a knee's sign only if one
	// could have: it lasted at least a write (lastWrite). The node's early
	// step, 30 ms after the last interval in the quick bytes bench, had
	// finished nothing against writes of 64 ms: its throughput of 0 was
	// taken for a knee, 333 -> 179, while 15,000 records/s were offered.
	// (Past a knee that moved, writes can outlast an interval; one without
	// a finished write after growth is then the knee's first sign.)
	flushRate := 0.0
	if bt := obs.MeanBatchTime.Seconds(); obs.Batches > 0 && bt > 0 {
		flushRate = obs.MeanBatchFill / bt
	}
	// The batches must be of the size grown to (unmeasuredMove): the
	// interval after a growth step writes a mix of both sizes, at 250 ms
	// intervals often most of the old, and the mix's count and rate were
	// taken for a knee in the quick overload bench (239 → 181 with
	// batches of 174 measured), whose ceiling then held the size down.
	knee := sat && g.prevSat && (obs.Batches > 0 || iv >= g.lastWrite) && (obs.Batches == 0 || !g.unmeasuredMove(obs, cur)) &&
		cur > kneeGrowth*g.prevSize && obs.Throughput < kneeLoss*g.prevThroughput &&
		(flushRate == 0 || g.prevFlushRate == 0 || flushRate < kneeLoss*g.prevFlushRate)
	if g.ceiling > 0 && !pressure && !knee {
		g.ceiling *= ceilingRelax
		if g.ceiling > ceilingGone {
			g.ceiling = 0
		}
	}

	g.judgeP99Shrink(cur, obs.P99.Seconds(), slo, sat)

	drain := 0.0
	if sat {
		drain = float64(obs.QueueDepth) / cfg.DrainTime.Seconds()
	}
	target := g.modelTarget(slo, obs.MaxLinger.Seconds(), drain, maxSize)
	g.boost = 0
	lb := math.Log(g.base)
	lt := math.Log(target)
	// The model's size, smoothed (in log space) against the noise of the
	// measured rates; a regime change or a backlog takes it as it is.
	if g.ltSmooth == 0 || regime != "" || sat {
		g.ltSmooth = lt
	} else {
		g.ltSmooth += modelSmoothing * (lt - g.ltSmooth)
	}
	var d float64
	var reason string
	fast := false // the move is made at once, not clamped by MaxStep
	// No write finished in an interval at least stallWrites writes long,
	// with a batch queued: a stall. Not in an interval in which the
	// arrivals jumped up: the node's early step comes on the jump itself,
	// the queue is the jump's, and the writes in flight may meet a
	// downstream that changed with the load (quick shifting: 200 ->
	// 18,000 records/s, writes of 6 ms before and 41 ms after, an early
	// step 40 ms long; halving 5 to 3 records spent the jump's reach, and
	// the climb from 3 took five intervals).
	jumpedUp := regime == "arrival" && g.lam > g.jumpBase
	stalled := !jumpedUp && obs.Batches == 0 && obs.Backpressure == 0 && float64(obs.QueueDepth) >= cur && iv >= stallWrites*g.lastWrite
	if obs.Batches > 0 {
		g.lastWrite = writeTime(obs)
	}
	// The write alone takes longer than the latency budget, and no smaller
	// size measured lately took about as long (a per-batch cost a smaller
	// batch would not shorten): cut in proportion. The write is what the
	// successful attempts took (writeTime), not the whole batch: the
	// waits for a Retry-After before its retries are not the size's.
	bt := writeTime(obs)
	budget := cfg.LatencyBudget * slo
	slowCut := math.Max(slowMinCut, slowMargin*budget/math.Max(bt, 1e-9))
	slow := obs.Batches >= slowBatches && bt > budget && obs.MeanBatchFill >= fullLow*cur &&
		obs.MeanBatchFill <= fullHigh*cur && !g.fixedCostBound(cur, bt)
	switch {
	case stalled && cur >= g.prevSize:
		// Not one batch finished in a whole interval while a full one
		// waits: the batches take far too long. (Once smaller batches are
		// asked for, wait for the big ones in flight to finish.)
		d, reason, fast = lb+math.Log(stallCut), "shrink:stalled", true
	case slow && !pressure:
		d, reason, fast = lb+math.Log(slowCut), "shrink:write-time", true
		g.setCeiling(ceilingBelow*cur, true)
	case pressure:
		d, reason = lb+math.Log(backoff), "shrink:backpressure"
		g.setCeiling(ceilingBelow*cur, true)
	case knee:
		// Back towards the last size, but a long jump only half way (in
		// log space): the optimum lies below here, not necessarily at the
		// size before.
		back := g.prevSize
		if cur > kneeLongJump*g.prevSize {
			back = math.Sqrt(g.prevSize * cur)
		}
		d, reason, fast = math.Log(back), "shrink:knee", true
		g.setCeiling(math.Max(back, ceilingBelow*cur), false)
	case regime == "cost" && g.lastRatio > 1 && !sat:
		// Writes got dearer and the model cannot yet tell whether per
		// batch or per record: try smaller, which is the safer guess and
		// tells the two apart.
		d, reason, fast = lb+math.Log(costExplore), "regime:cost:explore", true
	case regime != "" && (!sat || math.Abs(lt-lb) > math.Log(1+cfg.DeadBand)):
		d, reason, fast = lt, "regime:"+regime, true
	case sat:
		d, reason, fast = g.climbSaturated(obs, cur, lb, lt, budget)
	case obs.P99.Seconds() > slo && !g.prevSat && g.tick >= g.p99Immune && !g.deferredTail(obs, slo):
		// (After a backlog the latency is the backlog's, not the size's.)
		d, reason = lb+math.Log(backoff), "shrink:p99"
		g.p99ShrinkAt, g.p99ShrinkFrom = g.tick, cur
		g.setCeiling(ceilingBelow*cur, true)
	default:
		if significant {
			g.corr += math.Max(-corrStep, math.Min(corrStep, cfg.Gain*g.slope))
			g.corr = math.Max(-corrMax, math.Min(corrMax, g.corr))
		} else {
			g.corr *= corrDecay
		}
		lt = g.ltSmooth
		d, reason = lt+g.corr, "model"
		if g.corr < -corrShown || g.corr > corrShown {
			reason = "model+gradient"
		}
		// Down to the model's size (light load: small batches at once)
		// the move is made at once; the gradient's share is clamped.
		if lt < lb {
			fast = true
			d = math.Max(d, lt+math.Log(1-cfg.MaxStep))
		}
	}
	// A ceiling from latency or back pressure that holds the node below
	// its load while a backlog keeps growing does more harm than good: the
	// backlog is what makes the latency. Lift it and let the model (or the
	// knee guard, whose ceiling stays) decide.
	if g.ceiling > 0 && g.ceilingSoft && sat && g.prevSat && obs.QueueDepth >= g.prevQueue &&
		obs.Throughput < obs.ArrivalRate && d > math.Log(g.ceiling) {
		g.ceiling = 0
		reason += ":lift"
	}
	if g.ceiling > 0 && d > math.Log(g.ceiling) {
		d = math.Max(math.Log(g.ceiling), math.Min(d, lb))
		reason += ":ceiling"
	}
	if g.refused > 0 && d > math.Log(g.refused) {
		if lb > math.Log(g.refused) {
			fast = true // down to below the refused size at once
		}
		d = math.Log(g.refused)
		reason += ":refused"
	}
	g.prevSat, g.prevSize, g.prevThroughput, g.prevFlushRate, g.prevQueue = sat, cur, obs.Throughput, flushRate, obs.QueueDepth

	step := d - lb
	if !fast {
		step = math.Max(math.Log(1-cfg.MaxStep), math.Min(math.Log(1+cfg.MaxStep), step))
	}
	if math.Abs(step) < math.Log(1+cfg.DeadBand) {
		return g.emit("hold:deadband", maxSize, true)
	}
	g.base = math.Exp(lb + step)
	return g.emit(reason, maxSize, true)
}

// rememberRefusals notes an interval in which most batches failed, and not
// from back pressure: the sink refuses the batches themselves (a body or
// entry limit, answered 413), which a smaller batch passes and a retry does
// not. The breaker shrinks at once; remembering the size keeps the model
// from growing back into the limit once the breaker closes. Records of
// another size forget it (a body limit holds other counts of them), and so
// does a minute. (Not a jump in arrivals: while the breaker refuses
// records, clients retry in waves.)
func (g *Gradient) rememberRefusals(obs Observation, cur float64) {
	rb := recordBytes(obs)
	if g.refused > 0 {
		g.refusedAge++
		if g.refusedAge > refusedMaxAge || (rb > 0 && g.refusedBytes > 0 && (rb > refusedBytesChange*g.refusedBytes || refusedBytesChange*rb < g.refusedBytes)) {
			g.refused = 0
		}
	}
	if hard := obs.SinkErrors - obs.Backpressure; hard >= hardFailures && float64(hard) >= hardFailShare*float64(obs.Batches) {
		n := cur
		if obs.MeanBatchFill > 0 {
			n = math.Min(n, obs.MeanBatchFill)
		}
		if v := math.Max(float64(g.cfg.Min), refusedShare*n); g.refused == 0 || v < g.refused {
			g.refused = v
		}
		g.refusedAge, g.refusedBytes = 0, rb
	}
}

// writeTime is the time one write of the interval took, in seconds: the
// mean RTT of its successful attempts when the sink reports attempts, else
// the mean batch time. A batch's time includes every wait before a retry,
// and a downstream under load asks for seconds (a 429 with Retry-After: 2)
// that a smaller batch would not shorten; read as a slow write, one retried
// batch among eight made the guard halve a size the downstream carried.
// The attempt's RTT is what Vector's adaptive request concurrency times as
// well, retries and deferrals being counted apart as back pressure
// (src/sinks/util/adaptive_concurrency/controller.rs, record_attempt).
func writeTime(obs Observation) float64 {
	if st := obs.AttemptStats(); st.OK > 0 && st.MeanRTT > 0 {
		return math.Min(obs.MeanBatchTime.Seconds(), st.MeanRTT.Seconds())
	}
	return obs.MeanBatchTime.Seconds()
}

// deferredTail reports whether the interval's tail is explained by the
// downstream's Retry-After: the records of attempts it answered with back
// pressure and a Retry-After at least the SLO long, whose wait and retry
// overlap the interval, are at least 1 % of those written, so at least the
// slowest 1 % waited past the SLO, whatever the size. A smaller batch does
// not shorten a Retry-After; it only sends more requests to a downstream
// that asked for fewer. A deferral counts from its answer until its retry
// may have been written (Retry-After, then an SLO): in the brown-out bench
// the 429 came one interval and its records were acknowledged, 2 s late,
// two intervals on, and the p99 of that interval shrank the size
// (docs/bench.md, session 14). (judgeP99Shrink finds the same after a
// shrink, but only when the smaller size still keeps up; a brown-out that
// already takes most of the capacity is saturated by the shrink, and the
// verdict never came.)
func (g *Gradient) deferredTail(obs Observation, slo float64) bool {
	from := obs.Now.Add(-obs.Interval)
	late := time.Duration(slo * float64(time.Second))
	deferred := 0
	for _, d := range g.deferrals {
		if !d.at.After(obs.Now) && !d.due.Add(late).Before(from) {
			deferred += d.records
		}
	}
	return deferred > 0 && float64(deferred) >= tailShare*float64(obs.AttemptStats().OKRecords)
}

// A deferral is an attempt the downstream answered with back pressure and
// a Retry-After at least the SLO long: its records are late for certain,
// whatever the batch size. at is the answer, due the end of the wait.
type deferral struct {
	at, due time.Time
	records int
}

// maxDeferrals bounds the deferrals remembered (deferredTail needs only
// those of the last Retry-After and SLO).
const maxDeferrals = 256

// noteDeferrals remembers the interval's deferrals and forgets those whose
// retry is past the SLO before the interval.
func (g *Gradient) noteDeferrals(obs Observation, slo float64) {
	late := time.Duration(slo * float64(time.Second))
	from := obs.Now.Add(-obs.Interval)
	kept := g.deferrals[:0]
	for _, d := range g.deferrals {
		if !d.due.Add(late).Before(from) {
			kept = append(kept, d)
		}
	}
	g.deferrals = kept
	for _, a := range obs.Attempts {
		if a.Outcome == AttemptBackpressure && a.RetryAfter.Seconds() >= slo {
			g.deferredAt = g.tick
			if len(g.deferrals) < maxDeferrals {
				g.deferrals = append(g.deferrals, deferral{at: a.End, due: a.End.Add(a.RetryAfter), records: a.Records})
			}
		}
	}
}

// deferring reports whether the downstream deferred a request past the SLO
// within the last deferMemory intervals.
func (g *Gradient) deferring() bool {
	return g.deferredAt > 0 && g.tick-g.deferredAt < deferMemory
}

// judgeP99Shrink looks at the intervals after a shrink for p99: if p99 is
// still above the SLO at the smaller size, the tail is not the size's
// (writes that waited out a Retry-After, a stall downstream), and smaller
// batches only send more requests. Shrinks for p99 stop, and a soft ceiling
// is lifted, for a while.
func (g *Gradient) judgeP99Shrink(cur, p99, slo float64, sat bool) {
	if g.p99ShrinkAt > 0 && g.tick-g.p99ShrinkAt <= p99VerdictWindow && !sat {
		if cur < p99ShrinkTook*g.p99ShrinkFrom && p99 > slo {
			g.p99Immune, g.p99ShrinkAt = g.tick+p99ImmuneFor, 0
			if g.ceilingSoft {
				g.ceiling = 0
			}
		}
	} else {
		g.p99ShrinkAt = 0
	}
}

// climbSaturated decides under saturation: a hill-climb on measured
// capacity, with the model as a guide. lb and lt are the logs of the base
// size and of the model's size; budget is the latency budget in seconds,
// past which the write-time guard cuts a size.
//
// It never climbs into a size whose write alone would take longer than the
// latency budget: neither a remembered size measured slower than that nor,
// growing, one predicted past slowMargin of it (where the write-time guard
// would send it back). Past that, a larger batch buys capacity only with
// latency: when the downstream serves fewer requests at once than the node
// sends, each write waits for the one before it, and the write time grows
// with the size as fast as the capacity does. Growing there and being cut
// back made the size swing by 2x every second or two in an overload, and
// the node's admission, which bounds the queue by the last interval's
// write time, admitted a queue measured at the other size.
func (g *Gradient) climbSaturated(obs Observation, cur, lb, lt, budget float64) (d float64, reason string, fast bool) {
	cfg := &g.cfg
	best, bestCap := g.bestMeasured(budget)
	curCap := g.k * cur / g.cost(cur)
	room := g.growthRoom(cur, 1+cfg.SaturatedStep, slowMargin*budget)
	free := g.ceiling == 0 || g.ceiling > ceilingRoom*cur // no ceiling rules growth out
	switch {
	case lt > lb+math.Log(1+cfg.DeadBand) && room > (1+cfg.DeadBand)*cur:
		// The model's size, but not one predicted to write past
		// slowMargin of the budget either: overloaded at the sizes it
		// measured, the model extrapolates their cost, and in the quick
		// overload bench it jumped 370 → 1,575 records on a write it
		// predicted at 450 ms, which the write-time guard then cut.
		d, reason, fast = math.Min(lt, math.Log(g.growthRoom(cur, math.Exp(lt)/cur, slowMargin*budget))), "saturated:model", true
	case obs.Batches == 0 || g.unmeasuredMove(obs, cur):
		// Nothing finished (the node's early step, or writes longer than
		// the interval), or not yet at the size in force: the interval
		// measured no size to climb from.
		d, reason = lb, "hold:measuring"
	case best > 0 && bestCap > bestMeasuredGain*curCap && math.Abs(math.Log(best/cur)) > math.Log(1+cfg.DeadBand):
		d, reason, fast = math.Log(best), "saturated:best-measured", true
	case float64(obs.QueueDepth) < draining*float64(g.prevQueue):
		d, reason = lb, "hold:draining"
	case room < (1+cfg.DeadBand)*cur:
		// A larger size would write past the latency budget: this is as
		// far as bigger batches help, whatever a ceiling says.
		d, reason = lb, "hold:saturated"
	case free:
		// Bigger batches amortise the per-batch cost: grow quickly (as
		// far as the write stays within the budget) and let the knee
		// guard catch an overshoot.
		d, reason, fast = lb+math.Log(room/cur), "grow:saturated", true
	case !g.measured(cur/exploreReach, cur/bandRatio):
		// Growing is ruled out and smaller sizes are unexplored.
		d, reason, fast = lb+math.Log(exploreDown), "explore:down", true
	default:
		d, reason = lb, "hold:saturated"
	}
	return d, reason, fast
}

// unmeasuredMove reports that the last decision moved the size and the
// batches this interval measured were not yet of the size in force (a
// batch is written after it is cut: at a 250 ms interval the batches that
// finish in the one after a move are a mix of both sizes). The hill-climb
// compares the capacity measured at the size in force with the others';
// judged on the mix, it undid every growth step at once and the size swung
// by 2x from one interval to the next. Wait one interval: Vector's
// adaptive request concurrency, likewise, judges a limit on the RTTs of
// the window after it set it, once a mean RTT has passed (controller.rs
// adjust_to_response_inner: manage_limit runs when now >= next_update and
// current_rtt is reset).
func (g *Gradient) unmeasuredMove(obs Observation, cur float64) bool {
	if g.prevSize <= 0 || math.Abs(math.Log(cur/g.prevSize)) <= math.Log(1+g.cfg.DeadBand) {
		return false
	}
	// The batches are the size in force once their mean fill lies within
	// one band of the cost memory (bandRatio) of it.
	if cur > g.prevSize {
		return obs.MeanBatchFill < cur/bandRatio
	}
	return obs.MeanBatchFill > cur*bandRatio
}

// emit bounds the base size, applies the probe and remembers the decision.
func (g *Gradient) emit(reason string, maxSize int, probe bool) Decision {
	hi := math.Inf(1)
	if maxSize > 0 {
		hi = float64(maxSize)
	}
	g.base = math.Max(float64(g.cfg.Min), math.Min(hi, g.base))
	size := g.base
	if probe {
		size *= 1 + g.sign*g.cfg.Probe
		g.sign = -g.sign
	}
	n := max(Clamp(int(math.Round(size)), maxSize), g.cfg.Min)
	g.asked = n
	d := Decision{BatchSize: n, Reason: reason}
	if g.model || len(g.mem) > 0 {
		d.WriteTime = time.Duration(g.cost(float64(n)) * float64(time.Second))
	}
	return d
}

func (g *Gradient) setCeiling(v float64, soft bool) {
	v = math.Max(v, float64(g.cfg.Min))
	if g.ceiling == 0 || v < g.ceiling {
		g.ceiling, g.ceilingSoft = v, soft
	}
}

// recordBytes is the mean size of the records at hand: of those queued,
// which are the ones being batched now, or else of those last written; 0
// when unknown.
func recordBytes(obs Observation) float64 {
	if obs.QueueDepth > 0 && obs.QueueBytes > 0 {
		return float64(obs.QueueBytes) / float64(obs.QueueDepth)
	}
	return obs.AvgRecordBytes
}
