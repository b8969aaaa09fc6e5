package consensus

import (
	"math"
	"time"
)

// The budget modes (limit budget_mode).
const (
	// BudgetLearned: the leader learns the budget below the operator's
	// cluster_budget_bytes, which is its ceiling (the default; "" reads as
	// it).
	BudgetLearned = "learned"
	// BudgetFixed: the budget is cluster_budget_bytes, as set.
	BudgetFixed = "fixed"
)

// The reasons of a budget decision, as the API and the metrics spell them.
const (
	BudgetReasonStart    = "start"     // first decision of a leader: from what the nodes hold
	BudgetReasonFixed    = "fixed"     // budget_mode=fixed: the budget is the ceiling
	BudgetReasonCeiling  = "ceiling"   // at the operator's ceiling, or lowered to a lowered one
	BudgetReasonFloor    = "floor"     // raised to the floor (more nodes, whose baselines it keeps)
	BudgetReasonNoData   = "no_data"   // no node reported within the interval: hold
	BudgetReasonPushback = "pushback"  // downstream 429/503: multiplicative decrease
	BudgetReasonSLO      = "slo"       // p99 over the SLO, from nodes that report no write times: multiplicative decrease
	BudgetReasonQueueing = "queueing"  // p99 over the SLO, but the last cut cost throughput: the nodes' queues, not the downstream; undo and hold
	BudgetReasonTooLarge = "too_large" // downstream 413: hold (a batch size matter, not capacity)
	BudgetReasonIdle     = "idle"      // the nodes want less than the budget, or do not use it: hold; a growth step they did not take up is not judged
	BudgetReasonKnee     = "knee"      // the last increase did not raise goodput: step back
	BudgetReasonSettled  = "settled"   // holding at the knee before the next probe
	BudgetReasonWait     = "wait"      // the last growth step is not in use yet: hold before judging it
	BudgetReasonProbe    = "probe"     // growing again from the knee, one step; with a remembered knee, one step above it
	BudgetReasonGrow     = "grow"      // goodput rises inside the SLO: grow
	BudgetReasonLatency  = "latency"   // writes take longer than their size explains: past the knee; down to a margin below the knee estimate
	BudgetReasonRecover  = "recover"   // growing back to the margin below the remembered knee
	BudgetReasonRebase   = "rebase"    // writes stay slow with far less in flight: the downstream got slower at any load; its write time is the new base
)

// BudgetReasons lists every reason, in the order above (the API's enum).
var BudgetReasons = []string{
	BudgetReasonStart, BudgetReasonFixed, BudgetReasonCeiling, BudgetReasonFloor, BudgetReasonNoData,
	BudgetReasonPushback, BudgetReasonSLO, BudgetReasonQueueing, BudgetReasonTooLarge, BudgetReasonIdle,
	BudgetReasonKnee, BudgetReasonSettled, BudgetReasonWait, BudgetReasonProbe, BudgetReasonGrow,
	BudgetReasonLatency, BudgetReasonRecover, BudgetReasonRebase,
}

// BudgetObservation is what the leader knows of the cluster over one
// budget interval: the aggregate of the health the lease requests carried.
type BudgetObservation struct {
	Now      time.Time
	Interval time.Duration
	// Ceiling is the operator's cluster_budget_bytes; Floor keeps every
	// node's baseline (the budget never goes below it).
	Ceiling, Floor int64
	// Nodes is how many nodes reported within the interval.
	Nodes int
	// WantBytes and HasBytes are the sums of what the nodes would like to
	// hold and what they hold.
	WantBytes, HasBytes int64
	// GoodputRPS is the records per second written within the SLO, summed
	// over the nodes; ThroughputRPS all records written.
	GoodputRPS, ThroughputRPS float64
	// WritesPS is the sink writes (batches) per second; PushbackPS those the
	// downstream refused with 429 or 503 (or timed out), TooLargePS with
	// 413, ErrorsPS every failed write.
	WritesPS, PushbackPS, TooLargePS, ErrorsPS float64
	// P99ms is the worst node's p99 end-to-end latency; WriteMS the mean
	// sink write time over the nodes' writes; SLOms the objective.
	P99ms, WriteMS float64
	// BytesPS is the batch bytes the nodes wrote per second; InFlightBytes
	// the bytes in writes to the downstream on average over the interval,
	// summed over the nodes: the load the downstream carried (0: the nodes
	// did not say).
	BytesPS, InFlightBytes float64
	// QueuedRecords is the records waiting in the nodes' queues, summed
	// (each node's at its last control interval): the demand the budget
	// holds back, if any.
	QueuedRecords int64
	SLOms         int
	Fixed         bool // budget_mode=fixed
}

// BudgetDecision is one decision of the budget controller, with the
// figures behind it.
type BudgetDecision struct {
	Time     time.Time         `json:"time"`
	Old      int64             `json:"old_bytes"`
	New      int64             `json:"new_bytes"`
	Ceiling  int64             `json:"ceiling_bytes"`
	Floor    int64             `json:"floor_bytes"`
	Reason   string            `json:"reason"`
	Figures  BudgetObservation `json:"-"`
	Detail   BudgetFigures     `json:"figures"`
	Recorded bool              `json:"-"` // a change, or a new reason: worth a log entry
}

// BudgetFigures are the observation's figures as the API shows them.
type BudgetFigures struct {
	Nodes         int     `json:"nodes"`
	WantBytes     int64   `json:"want_bytes"`
	HasBytes      int64   `json:"has_bytes"`
	GoodputRPS    float64 `json:"goodput_rps"`
	ThroughputRPS float64 `json:"throughput_rps"`
	WritesPS      float64 `json:"writes_per_s"`
	PushbackPS    float64 `json:"pushback_per_s"`
	TooLargePS    float64 `json:"too_large_per_s"`
	ErrorsPS      float64 `json:"errors_per_s"`
	P99ms         float64 `json:"p99_ms"`
	WriteMS       float64 `json:"write_ms"`
	BytesPS       float64 `json:"bytes_per_s"`
	InFlightBytes float64 `json:"in_flight_bytes"`
	QueuedRecords int64   `json:"queued_records"`
	SLOms         int     `json:"slo_ms"`
	// KneeBytes is the controller's knee estimate after the decision, in
	// bytes in flight at the downstream (0: none yet); BaseWriteMS the
	// write time it expects below the knee for this interval's write size.
	KneeBytes   int64   `json:"knee_bytes"`
	BaseWriteMS float64 `json:"base_write_ms"`
}

// BudgetConfig tunes the BudgetController; zero fields take the defaults.
type BudgetConfig struct {
	// IncreasePercent is one growth step, as a share of the budget
	// (default 12): growth is geometric, so the knee is found in a number
	// of steps logarithmic in ceiling/floor.
	IncreasePercent int
	// MinStepBytes is the least one growth step (default 64 KiB).
	MinStepBytes int64
	// PushbackDecrease is what the budget is multiplied by on pushback
	// (default 0.7); SLODecrease on a p99 over the SLO (default 0.9,
	// Vector ARC's decrease_ratio).
	PushbackDecrease, SLODecrease float64
	// PushbackRatio is the share of writes refused that counts as pushback
	// (default 0.01: one write in a hundred).
	PushbackRatio float64
	// MinElasticity is the least relative goodput gain per relative budget
	// gain for an increase to count as paying (default 0.3): below it the
	// downstream is at its knee.
	MinElasticity float64
	// SettleSteps is how many intervals the budget holds at the knee before
	// it probes again (default 10).
	SettleSteps int
	// BindPercent: the budget binds when the nodes want more than this
	// share of it (default 90). What they hold says nothing here: it
	// counts the baselines, which every node holds, busy or not.
	BindPercent int
	// LatencyRise: the downstream is past its knee when its writes take
	// more than 1+LatencyRise times the base write time (default 0.4: the
	// mean write time of nodes sharing two cores with the downstream
	// varies by a quarter below the knee, in the cluster bench).
	LatencyRise float64
	// KneeMargin: with a knee estimate, the budget grows back to this share
	// of it and holds there (default 0.9).
	KneeMargin float64
	// ProbeEvery is how many intervals the budget holds below a
	// remembered knee before one probe above it (default 30): the memory
	// is forgotten that slowly, so a knee that moved up is found again.
	ProbeEvery int
	// ProbeAbove is how far above the knee estimate a probe goes (default
	// 0.15): the least overshoot whose latency rise stands out of the
	// noise of a mean write time. An estimate that moves by more than
	// this share is a new knee (the probe interval starts over).
	ProbeAbove float64
	// MaxProbeEvery caps the probe interval (default 8 × ProbeEvery):
	// every probe that fails (the knee is where it was) doubles the
	// interval up to it, and a knee estimate that moves resets it to
	// ProbeEvery. It bounds how long a knee that moved up goes unfound.
	MaxProbeEvery int
	// UsePercent: the budget limits the nodes only while the bytes they
	// have in writes (on average over the interval) are at least this
	// share of the budget above the floor (default 50), and records wait
	// in their queues that would fill one more growth step (see bound).
	// Otherwise their load limits them, not the budget: the budget does
	// not grow, and a growth step they did not need is not judged (it
	// says nothing of the knee). The floor is left out because idle nodes
	// hold their baselines without using them.
	UsePercent int
	// MinWritesPS: write times are judged only over intervals with at
	// least this many writes per second (default 5).
	MinWritesPS float64
	// BaseForget is the weight of each clean interval in the base write
	// time (default 0.1).
	BaseForget float64
}

func (c *BudgetConfig) setDefaults() {
	if c.IncreasePercent <= 0 {
		c.IncreasePercent = 12
	}
	if c.MinStepBytes <= 0 {
		c.MinStepBytes = 64 << 10
	}
	if c.PushbackDecrease <= 0 || c.PushbackDecrease >= 1 {
		c.PushbackDecrease = 0.7
	}
	if c.SLODecrease <= 0 || c.SLODecrease >= 1 {
		c.SLODecrease = 0.9
	}
	if c.PushbackRatio <= 0 {
		c.PushbackRatio = 0.01
	}
	if c.MinElasticity <= 0 {
		c.MinElasticity = 0.3
	}
	if c.SettleSteps <= 0 {
		c.SettleSteps = 10
	}
	if c.BindPercent <= 0 || c.BindPercent > 100 {
		c.BindPercent = 90
	}
	if c.LatencyRise <= 0 {
		c.LatencyRise = 0.4
	}
	if c.KneeMargin <= 0 || c.KneeMargin >= 1 {
		c.KneeMargin = 0.9
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 30
	}
	if c.ProbeAbove <= 0 {
		c.ProbeAbove = 0.15
	}
	if c.MaxProbeEvery < c.ProbeEvery {
		c.MaxProbeEvery = 8 * c.ProbeEvery
	}
	if c.UsePercent <= 0 || c.UsePercent > 100 {
		c.UsePercent = 50
	}
	if c.MinWritesPS <= 0 {
		c.MinWritesPS = 5
	}
	if c.BaseForget <= 0 || c.BaseForget > 1 {
		c.BaseForget = 0.1
	}
}

// BudgetController learns the cluster budget: the in-flight batch bytes the
// shared downstream takes before it stops paying. It is the leader's
// counterpart of the node controllers in tuner/: observation in, decision
// out, the time passed in, no goroutines and no clock reads. It is not
// safe for concurrent use; the leader calls it from one loop.
//
// It is AIMD with a gradient test, after two known designs:
//
//   - Backing off follows Vector's adaptive request concurrency (ARC, after
//     TCP's congestion avoidance): a downstream that answers 429 or 503 (or
//     times out) on more than PushbackRatio of the writes cuts the budget
//     multiplicatively, and so does a p99 past the SLO (ARC's rising round
//     trip time). ARC cuts by its decrease_ratio of 0.9 on either, but it
//     decides per response; this controller decides once per epoch for
//     the whole cluster, so pushback, the sure sign, cuts harder
//     (×PushbackDecrease, 0.7, between ARC's 0.9 and TCP's 0.5) and the
//     latency signal keeps ARC's 0.9. Multiplicative decrease is what
//     makes several senders sharing one bottleneck converge instead of
//     collapsing it.
//
//   - Growing follows TCP Vegas rather than Reno: Reno grows until it
//     loses, which against a database past its knee means slow writes
//     for everybody before the first 429; Vegas compares the throughput it
//     gets with the throughput the extra window should have given and
//     stops growing when the difference shows queueing. Here, after each
//     growth step the controller compares the relative goodput gain with
//     the relative budget gain (the elasticity); below MinElasticity the
//     extra bytes only queued at the downstream (its knee), so the budget
//     steps back to the last paying value, which becomes the knee
//     estimate (below).
//
//   - A p99 over the SLO cuts only when the nodes do not report their
//     write times (with them it is read through the writes: only writes
//     the downstream slowed can be shortened by a cut, and that is the
//     latency rule). Such a cut is judged the same way on the next
//     interval: a downstream past its knee gets more through with less in
//     flight, but nodes offered more than the downstream takes at its knee
//     queue records whatever the budget, and a cut then only lowers the
//     throughput. A cut that cost more than MinElasticity of its share of
//     the throughput is undone (reason queueing) and the budget holds for
//     SettleSteps intervals before it tries another.
//
//   - The knee is remembered. Below its knee a downstream's write time
//     does not depend on the load, so the knee is found only by touching
//     it: the first time writes take more than 1+LatencyRise (1.4) times
//     what their size explains (expectedMS), or a growth step stops
//     paying, or the downstream pushes back. The estimate is where that
//     happened (for a latency rise r at L bytes in writes, L/√r, see
//     pastKnee); the budget goes to
//     KneeMargin (90 %) of it at once, grows back only to there after a
//     cut (reason recover), holds there, and probes ProbeAbove (15 %) past
//     it once every ProbeEvery (30) intervals: the memory is forgotten
//     that slowly, and a probe that pays (no slower writes, more goodput)
//     raises the estimate and probes again at once, so a knee that moved
//     up is found in a few probes. A knee that moves down shows in the
//     next interval's write times, and the cut follows within the epoch.
//
//   - Probes back off while they fail. Each probe past a knee that is
//     still there costs overloaded seconds and teaches nothing new, so
//     every probe that fails (it did not pay, or slowed the writes with
//     an estimate within ProbeAbove of the old one) doubles the interval
//     to the next, up to MaxProbeEvery (8 × 30 intervals); an estimate
//     that moves by more than ProbeAbove (a knee that moved, found by a
//     probe that paid, by write times or by pushback) starts it over at
//     ProbeEvery. TCP's retransmission timer backs off the same way
//     while its probes go unanswered.
//
//   - Only a budget that holds the nodes back is evidence. A growth step
//     is a test of the downstream only when the budget, not their load,
//     limited the nodes: what they want counts the node tuners' wish for
//     bigger batches, which they have at any load, so the test is what
//     they do (bound): they use the budget (bytes in writes at least
//     UsePercent, 50 %, of the budget above the floor) and have records
//     waiting that would fill another step. The budget grows (or probes)
//     only then, and a growth step after which they are not bound (after
//     up to maxWait intervals to take it up) is not judged: it holds, as
//     idle, and a probe goes back to where it came from. The cluster
//     bench saw a step in a phase of light load judged as the knee (the
//     goodput did not rise because the load needed no more bytes), and
//     the budget held at that false knee for the whole run.
//
// The operator's cluster_budget_bytes is the ceiling; the floor keeps
// every node's baseline. The budget grows only while it binds (the nodes
// want more than 90 % of it) and the p99 is inside the SLO: a
// budget nobody uses teaches nothing about the downstream.
type BudgetController struct {
	cfg     BudgetConfig
	started bool
	budget  int64
	// prevBudget and prevGoodput are the budget before the last growth
	// step and the goodput it gave; grew says the last step grew.
	prevBudget  int64
	prevGoodput float64
	prevHas     int64
	// prevInFlight is the bytes the nodes had in writes before the step.
	prevInFlight float64
	grew         bool
	waited       int
	settle       int
	lastReason   string
	// cut says the last decision was a cut for a p99 over the SLO, from
	// cutFrom, when the throughput was cutThroughput.
	cut           bool
	cutFrom       int64
	cutThroughput float64
	// The knee memory. knee is the knee estimate in bytes (0: none):
	// the budget grows back only to KneeMargin of it, and probes past it
	// once every ProbeEvery intervals (probeIn counts down; probing says
	// the step in force is a probe). baseMS is the write time below the
	// knee; cutLoad and cutRise the load and rise of the first latency
	// cut since the knee was last found clean.
	knee    int64
	probeIn int
	probing bool
	// probeFails counts the probes in a row that failed with the knee
	// estimate where it was: the probe interval is ProbeEvery doubled as
	// many times (probeWait).
	probeFails int
	// lastInFlight is the bytes the nodes had in writes in the last
	// interval: a growth step is judged once their use stops rising.
	lastInFlight float64
	// baseMS and baseBytes are the write time and the bytes per write of
	// the base: moving averages, with the same weights, over the
	// intervals below the knee (see expectedMS).
	baseMS, baseBytes float64
	cutLoad, cutRise  float64
}

// maxWait is how many intervals a growth step may wait to be taken up by
// the nodes (grants follow at their next lease refresh, and the node
// tuners take a few control intervals to use them) before it is judged on
// what it gave.
const maxWait = 3

// useTakeUp and useRising: a growth step is not judged (up to maxWait
// intervals) before the nodes' bytes in writes rose by useTakeUp of what
// their grants grew since the step, nor while they rose by more than
// useRising since the last interval: the nodes are still taking it up.
const (
	useTakeUp = 0.5
	useRising = 0.1
)

// NewBudgetController returns a controller that starts, on its first
// decision, from what the nodes hold.
func NewBudgetController(cfg BudgetConfig) *BudgetController {
	cfg.setDefaults()
	return &BudgetController{cfg: cfg}
}

// Budget is the budget in force (0 before the first decision).
func (c *BudgetController) Budget() int64 { return c.budget }

// Next takes one interval's observation and returns the decision.
func (c *BudgetController) Next(o BudgetObservation) BudgetDecision {
	floor := clamp64(o.Floor, 1, max(o.Ceiling, 1))
	old := c.budget
	d := BudgetDecision{Time: o.Now, Old: old, Ceiling: o.Ceiling, Floor: floor, Figures: o, Detail: figuresOf(o)}
	next, reason := c.decide(o, floor)
	c.lastInFlight = o.InFlightBytes
	next = clamp64(next, floor, max(o.Ceiling, floor))
	c.budget = next
	d.New, d.Reason = next, reason
	d.Detail.KneeBytes, d.Detail.BaseWriteMS = c.knee, c.expectedMS(o)
	d.Recorded = next != old || reason != c.lastReason
	c.lastReason = reason
	return d
}

func (c *BudgetController) decide(o BudgetObservation, floor int64) (int64, string) {
	wasCut := c.cut
	c.cut = false
	switch {
	case o.Fixed:
		// Back in learned mode it starts again from what the nodes hold,
		// and learns the knee again: the downstream may have changed.
		c.started, c.grew, c.settle, c.knee, c.baseMS, c.baseBytes, c.probing, c.probeFails = false, false, 0, 0, 0, 0, false, 0
		return o.Ceiling, BudgetReasonFixed
	case !c.started:
		// A new leader (or a switch from fixed) starts from what the nodes
		// hold: the last leader's learned budget, as far as it was used.
		c.started = true
		c.prevBudget, c.prevGoodput, c.grew = 0, o.GoodputRPS, false
		return max(o.HasBytes, floor), BudgetReasonStart
	case c.budget > o.Ceiling:
		c.grew = false
		return o.Ceiling, BudgetReasonCeiling
	case c.budget < floor:
		c.grew = false
		return floor, BudgetReasonFloor
	case o.Nodes == 0:
		c.grew = false
		return c.budget, BudgetReasonNoData
	case o.WritesPS > 0 && o.PushbackPS/o.WritesPS > c.cfg.PushbackRatio:
		probed := c.probing
		c.grew, c.waited, c.settle, c.probing = false, 0, 0, false
		// Past the downstream's concurrency, so past its knee too: the
		// knee is below this budget.
		knee := c.knee
		if knee == 0 || c.budget < knee {
			knee = c.budget
		}
		c.setKnee(knee, probed)
		return mulF(c.budget, c.cfg.PushbackDecrease), BudgetReasonPushback
	}
	rise := c.writeRise(o)
	if rise > 1+c.cfg.LatencyRise {
		return c.pastKnee(o, rise)
	} else if rise > 0 {
		c.learnBase(o)
		c.cutLoad, c.cutRise = 0, 0
	}
	if c.grew {
		// Did the last step pay? Elasticity: relative goodput gain over
		// relative gain of the bytes the nodes hold. A step the nodes have
		// not half taken up yet is not judged (up to maxWait intervals):
		// the grants follow the budget one lease refresh later, and grow
		// by at most max_growth_percent an epoch, and the goodput of an
		// interval in which the holdings were still growing shows only
		// part of what they give (the cluster bench saw a step judged on a
		// third of its bytes, and undone, one interval before it paid).
		// The step is judged before the SLO: nodes offered more than the
		// downstream takes keep their p99 over the SLO whatever the
		// budget, and a cut for it must not hide a step that did not pay
		// (the cluster bench saw the budget climb to twice the knee, one
		// unjudged step after each cut).
		//
		// A step is also given those intervals to be used: the bytes in
		// writes follow the grants by up to a lease interval. A step
		// after which the budget does not hold the nodes back (bound) is
		// no test of the downstream: their load, not the budget, limited
		// them, and a goodput that did not rise says nothing of the knee.
		// It is not judged: the budget holds (a probe goes back to where
		// it came from) and grows again only once it binds them. Nor is a
		// step judged before the nodes' bytes in writes took up half of
		// what their grants grew, or while those still rise by more than
		// a tenth an interval: their tuners grow their batches into new
		// grants over a few control intervals, and the goodput follows
		// (the cluster bench saw steps judged flat one interval before
		// goodput rose by a third or a half, the bytes in writes not yet
		// or still rising).
		db := float64(c.budget-c.prevBudget) / float64(max(c.prevBudget, 1))
		dh := float64(o.HasBytes-c.prevHas) / float64(max(c.prevHas, 1))
		bound := c.bound(o, floor)
		using := o.InFlightBytes <= 0 || o.InFlightBytes-c.prevInFlight >= useTakeUp*float64(o.HasBytes-c.prevHas)
		rising := c.lastInFlight > 0 && o.InFlightBytes > (1+useRising)*c.lastInFlight
		if (dh < db/2 || !bound || !using || rising) && c.waited < maxWait && o.WantBytes > c.prevBudget {
			c.waited++
			return c.budget, BudgetReasonWait
		}
		c.grew, c.waited = false, 0
		if !bound {
			if c.probing {
				c.probing, c.probeIn = false, c.probeWait()
				return c.prevBudget, BudgetReasonIdle
			}
			return c.budget, BudgetReasonIdle
		}
		dx := max(dh, db/2)
		dg := (o.GoodputRPS - c.prevGoodput) / max(c.prevGoodput, 1)
		if db > 0 && dg < c.cfg.MinElasticity*dx {
			// The knee is where paying stopped: the last budget that
			// paid is its estimate (the settled budget is a margin below
			// it), and the next probe comes ProbeEvery intervals on. A
			// probe that did not pay leaves the estimate where it was,
			// and the next probe comes twice as late.
			c.settle = c.cfg.SettleSteps
			knee := c.prevBudget
			if c.probing {
				knee = c.knee
			}
			c.setKnee(knee, c.probing)
			c.probing = false
			return c.prevBudget, BudgetReasonKnee
		}
		if c.probing {
			// A probe above the knee that paid, its writes no slower: the
			// knee moved up. Probe on at once, so that it is found in a
			// number of probes logarithmic in how far it moved.
			c.knee, c.probeIn, c.probeFails = max(c.knee, c.budget), 1, 0
		}
		c.probing = false
	}
	// A p99 over the SLO is the SLO rule's only while the nodes do not
	// report their write times (older versions; too few writes). With
	// them, what the budget can do for the p99 is read from the writes:
	// a budget lowers the p99 only by shortening writes the downstream
	// slows past its knee, which is the latency rule above. Writes that
	// take no longer than their size explains (up to LatencyRise) leave
	// the nodes' queues as the p99's cause, and a cut only takes away
	// the throughput that drains them: the budget goes on as within the
	// SLO (a growth step is judged on its goodput as ever). The cluster
	// bench saw a step open with the nodes' p99 over the SLO and their
	// writes at their base: three cuts, and the budget held a third below
	// the knee for most of the step. (A threshold on the rise instead,
	// 1.2×, cut four times after a halved knee for the queues it left,
	// on writes slowed by the nodes' own CPU.)
	overSLO := o.SLOms > 0 && o.P99ms > float64(o.SLOms) && (rise == 0 || wasCut)
	switch {
	case overSLO:
		c.grew, c.waited, c.probing = false, 0, false
		// A p99 over the SLO is the downstream past its knee only if a
		// cut helps: a downstream past its knee gets more through with
		// less in flight. When the nodes are offered more than the
		// downstream takes at its knee, their queues keep the p99 over the
		// SLO whatever the budget, and a cut only takes throughput away:
		// Vegas' test again, on the way down. So each cut is judged on
		// the next interval's throughput; one that cost more than
		// MinElasticity of its share is undone, and the budget holds there
		// for SettleSteps intervals before it tries another cut.
		if wasCut {
			share := 1 - float64(c.budget)/float64(max(c.cutFrom, 1))
			if o.ThroughputRPS < c.cutThroughput*(1-c.cfg.MinElasticity*share) {
				c.settle = c.cfg.SettleSteps
				return c.cutFrom, BudgetReasonQueueing
			}
		}
		if c.settle > 0 {
			c.settle--
			return c.budget, BudgetReasonQueueing
		}
		c.cut, c.cutFrom, c.cutThroughput = true, c.budget, o.ThroughputRPS
		return mulF(c.budget, c.cfg.SLODecrease), BudgetReasonSLO
	case o.WritesPS > 0 && o.TooLargePS/o.WritesPS > c.cfg.PushbackRatio:
		c.grew = false
		return c.budget, BudgetReasonTooLarge
	}
	if !c.binds(o) {
		return c.budget, BudgetReasonIdle
	}
	if c.budget >= o.Ceiling {
		return c.budget, BudgetReasonCeiling
	}
	if !c.bound(o, floor) {
		return c.budget, BudgetReasonIdle
	}
	if c.knee > 0 {
		return c.nearKnee(o)
	}
	reason := BudgetReasonGrow
	if c.settle > 0 {
		c.settle--
		if c.settle > 0 {
			return c.budget, BudgetReasonSettled
		}
		reason = BudgetReasonProbe
	}
	return c.grow(o, c.budget+c.step()), reason
}

// step is one growth step from the budget in force.
func (c *BudgetController) step() int64 {
	return max(mulDiv(c.budget, int64(c.cfg.IncreasePercent), 100), c.cfg.MinStepBytes)
}

// grow puts the budget at next and remembers what to judge it against.
func (c *BudgetController) grow(o BudgetObservation, next int64) int64 {
	c.prevBudget, c.prevGoodput, c.prevHas, c.grew, c.waited = c.budget, o.GoodputRPS, o.HasBytes, true, 0
	c.prevInFlight = o.InFlightBytes
	return next
}

// nearKnee is growth with a knee estimate: back up to the margin below
// it in growth steps (not judged: the knee says how far they pay), then
// hold, and once every probe interval (probeWait: ProbeEvery, doubled
// for each probe in a row that failed) one probe ProbeAbove past it,
// judged like a growth step and on the write times.
func (c *BudgetController) nearKnee(o BudgetObservation) (int64, string) {
	target := mulF(c.knee, c.cfg.KneeMargin)
	if c.budget < target {
		c.grew = false
		return min(c.budget+c.step(), target), BudgetReasonRecover
	}
	if c.probeIn > 1 {
		c.probeIn--
		return c.budget, BudgetReasonSettled
	}
	c.probeIn, c.settle, c.probing = c.probeWait(), 0, true
	return c.grow(o, max(c.budget+1, mulF(max(c.budget, c.knee), 1+c.cfg.ProbeAbove))), BudgetReasonProbe
}

// writeRise is how many times longer than their size explains the
// interval's writes took (expectedMS); 0 when it cannot say (too few
// writes, no base yet).
func (c *BudgetController) writeRise(o BudgetObservation) float64 {
	if o.WritesPS < c.cfg.MinWritesPS || o.WriteMS <= 0 {
		return 0
	}
	if c.baseMS <= 0 {
		c.baseMS, c.baseBytes = o.WriteMS, writeBytes(o)
		return 0
	}
	return o.WriteMS / c.expectedMS(o)
}

// expectedMS is the longest the interval's writes can take below the
// knee: the base write time, scaled up by how many times bigger than the
// base's the interval's writes are. Below its knee a write of s bytes
// costs a + b·s (a per request, b per byte, both unknown and ≥ 0); the
// base is the average of such writes, a point on that line, so a write k
// times the base's size takes between one and k times the base write
// time, k only if the whole cost is per byte. A rise is measured against
// that upper bound: the node tuners grow their batches into new grants,
// and bigger writes that took longer were read as the downstream past
// its knee (the cluster bench's run K: writes 1.44× their base, learned
// on the small writes of a light phase, with the downstream at 42 % of
// its knee; a false knee that held for the step). The price: a knee
// reached while the batches grow shows in the write times only once the
// rise outgrows the batches (the growth step's goodput and pushback
// still show it). Smaller writes are held to the base time (their cost
// per request may be all of it). Without bytes per write (older nodes)
// it is the base write time.
func (c *BudgetController) expectedMS(o BudgetObservation) float64 {
	e := c.baseMS
	if s := writeBytes(o); s > c.baseBytes && c.baseBytes > 0 {
		e *= s / c.baseBytes
	}
	return e
}

// writeBytes is the interval's mean bytes per write (0: not reported).
func writeBytes(o BudgetObservation) float64 {
	if o.WritesPS <= 0 || o.BytesPS <= 0 {
		return 0
	}
	return o.BytesPS / o.WritesPS
}

// learnBase moves the base towards an interval's write time and size when
// the writes did not rise past LatencyRise, by BaseForget: batch sizes and
// the downstream's own speed drift, and the base follows them. Time and
// size move with the same weights, so the base stays a point on the
// downstream's cost line (expectedMS).
func (c *BudgetController) learnBase(o BudgetObservation) {
	c.baseMS += c.cfg.BaseForget * (o.WriteMS - c.baseMS)
	switch s := writeBytes(o); {
	case s <= 0:
	case c.baseBytes <= 0:
		c.baseBytes = s
	default:
		c.baseBytes += c.cfg.BaseForget * (s - c.baseBytes)
	}
}

// pastKnee is the decision on writes that took rise times the base: the
// downstream is past its knee. Below its knee a downstream's write time
// does not depend on the load; past it, it grows with the load (a
// database under lock contention: the sinksim knee makes it grow with the
// square of the load over the knee). The knee is then between load/rise
// (the load that, at the base write time, carries the same throughput)
// and the load itself; its estimate is their geometric mean, load/√rise.
// The load is the bytes the nodes had in writes (or the budget, which
// bounds them, when they did not say); the budget never rises on it. The budget goes at once to the
// margin below the estimate: the nodes take the lower grants at their
// next lease request, within one epoch.
//
// A rise that stays as high with far less in flight is not a knee (a
// knee's rise falls with the load), nor is one, after a latency cut, at
// a load at or under that cut's knee estimate: the downstream got slower
// at any load (or its requests queue for its connections), its write
// time is the new base (reason rebase), and the budget holds.
func (c *BudgetController) pastKnee(o BudgetObservation, rise float64) (int64, string) {
	probed := c.probing
	c.grew, c.waited, c.settle, c.probing = false, 0, 0, false
	// The load the interval carried: after a cut the nodes still hold
	// the old grants until their next lease request, and judging the
	// rise against the new budget would cut again and again (the cluster
	// bench saw three cuts in a row take the budget to its floor).
	load := float64(c.budget)
	if o.InFlightBytes > 0 {
		load = o.InFlightBytes
	}
	// After a latency cut, a rise at a load at or under that cut's own
	// knee estimate is not the knee's either: the model the estimate
	// comes from puts writes there at their base. The cluster bench saw
	// writes stay 1.4-1.5 times their base as the budget fell from 86 to
	// 43 KiB in five cuts after its downstream's knee halved: smaller
	// budgets, smaller batches and more requests queued for the
	// downstream's 24 connections, every cut read as the knee again.
	underKnee := c.knee > 0 && load <= float64(c.knee)
	if c.cutLoad > 0 && (underKnee || load < 0.6*c.cutLoad && rise > 0.8*c.cutRise) {
		c.baseMS, c.baseBytes, c.cutLoad, c.cutRise = o.WriteMS, writeBytes(o), 0, 0
		// The downstream changed: probe at the first interval again.
		c.probeFails, c.probeIn = 0, c.cfg.ProbeEvery
		return c.budget, BudgetReasonRebase
	}
	if c.cutLoad == 0 || load > c.cutLoad {
		c.cutLoad, c.cutRise = load, rise
	}
	c.setKnee(max(int64(load/math.Sqrt(rise)), 1), probed)
	return min(c.budget, mulF(c.knee, c.cfg.KneeMargin)), BudgetReasonLatency
}

// setKnee puts the knee estimate at k and the next probe a probe interval
// on. An estimate that moved by more than ProbeAbove is a new knee: the
// interval starts over at ProbeEvery. Otherwise a probe that failed
// (failedProbe: it found the knee where it was) doubles it.
func (c *BudgetController) setKnee(k int64, failedProbe bool) {
	switch {
	case c.knee == 0 || math.Abs(float64(k-c.knee)) > c.cfg.ProbeAbove*float64(c.knee):
		c.probeFails = 0
	case failedProbe:
		c.probeFails = min(c.probeFails+1, 30)
	}
	c.knee = k
	c.probeIn = c.probeWait()
}

// probeWait is the probe interval: ProbeEvery, doubled for every probe in
// a row that failed, at most MaxProbeEvery.
func (c *BudgetController) probeWait() int {
	w := c.cfg.ProbeEvery
	for range c.probeFails {
		if w >= c.cfg.MaxProbeEvery {
			break
		}
		w *= 2
	}
	return min(w, c.cfg.MaxProbeEvery)
}

// bound reports whether the budget in force holds the nodes back (they
// are bound by it, not by their load): the bytes they had in writes, on
// average over the interval, are at least UsePercent of the budget above
// the floor, and the records waiting in their queues would fill at least
// one more growth step (at the bytes per record they wrote). Below
// their knee, nodes with a light load use the bytes their load needs and
// queue only the records of the batch they are filling; nodes the budget
// holds back fill it, and queue. Nodes that wrote nothing are not bound;
// nodes that do not report their bytes (older versions) are taken to be,
// as before there was this test.
func (c *BudgetController) bound(o BudgetObservation, floor int64) bool {
	if o.WritesPS <= 0 {
		return false
	}
	if o.BytesPS <= 0 && o.InFlightBytes <= 0 {
		return true
	}
	if o.InFlightBytes < float64(c.cfg.UsePercent)/100*float64(max(c.budget-floor, 0)) {
		return false
	}
	if o.ThroughputRPS <= 0 || o.BytesPS <= 0 {
		return true // no bytes per record to weigh the queue with
	}
	return queuedBytes(o.QueuedRecords, o.BytesPS, o.ThroughputRPS) >= float64(c.step())
}

// queuedBytes is the bytes of queued records at the bytes per record
// written (bytesPS over recordsPS); 0 when the rates do not say.
func queuedBytes(queued int64, bytesPS, recordsPS float64) float64 {
	if queued <= 0 || bytesPS <= 0 || recordsPS <= 0 {
		return 0
	}
	return float64(queued) * bytesPS / recordsPS
}

// binds reports whether the budget limits the nodes: they want (nearly)
// all of it or more.
func (c *BudgetController) binds(o BudgetObservation) bool {
	return o.WantBytes > mulDiv(c.budget, int64(c.cfg.BindPercent), 100)
}

// LearnedFloor is the least learned budget: every one of n nodes keeps the
// baseline the ceiling gives it (the lease table takes baselines from the
// ceiling, whatever the learned budget), plus the room kept for nodes
// joining.
func LearnedFloor(l Limits, n int) int64 {
	f := Baseline(l, n)*int64(max(n, 1)) + joinHeadroom
	return min(f, l.ClusterBudgetBytes)
}

func figuresOf(o BudgetObservation) BudgetFigures {
	return BudgetFigures{
		Nodes: o.Nodes, WantBytes: o.WantBytes, HasBytes: o.HasBytes,
		GoodputRPS: o.GoodputRPS, ThroughputRPS: o.ThroughputRPS,
		WritesPS: o.WritesPS, PushbackPS: o.PushbackPS, TooLargePS: o.TooLargePS, ErrorsPS: o.ErrorsPS,
		P99ms: o.P99ms, WriteMS: o.WriteMS, BytesPS: o.BytesPS, InFlightBytes: o.InFlightBytes,
		QueuedRecords: o.QueuedRecords, SLOms: o.SLOms,
	}
}

func mulF(v int64, f float64) int64 { return int64(float64(v) * f) }

func clamp64(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }
