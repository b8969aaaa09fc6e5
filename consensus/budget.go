package consensus

import (
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
	BudgetReasonSLO      = "slo"       // p99 over the SLO: multiplicative decrease
	BudgetReasonQueueing = "queueing"  // p99 over the SLO, but the last cut cost throughput: the nodes' queues, not the downstream; undo and hold
	BudgetReasonTooLarge = "too_large" // downstream 413: hold (a batch size matter, not capacity)
	BudgetReasonIdle     = "idle"      // the nodes want less than the budget: hold
	BudgetReasonKnee     = "knee"      // the last increase did not raise goodput: step back
	BudgetReasonSettled  = "settled"   // holding at the knee before the next probe
	BudgetReasonWait     = "wait"      // the last growth step is not in use yet: hold before judging it
	BudgetReasonProbe    = "probe"     // growing again from the knee, one step
	BudgetReasonGrow     = "grow"      // goodput rises inside the SLO: grow
)

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
	SLOms          int
	Fixed          bool // budget_mode=fixed
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
	SLOms         int     `json:"slo_ms"`
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
//   - Growing follows TCP Vegas rather than Reno: Reno grows until it
//     loses, which against a database past its knee means slow writes
//     for everybody before the first 429; Vegas compares the throughput it
//     gets with the throughput the extra window should have given and
//     stops growing when the difference shows queueing. Here, after each
//     growth step the controller compares the relative goodput gain with
//     the relative budget gain (the elasticity); below MinElasticity the
//     extra bytes only queued at the downstream (its knee), so the budget
//     steps back to the last paying value and settles there for
//     SettleSteps intervals, then probes one step up again, so that a
//     downstream that gained capacity is found.
//   - A cut for a p99 over the SLO is judged the same way on the next
//     interval: a downstream past its knee gets more through with less in
//     flight, but nodes offered more than the downstream takes at its knee
//     queue records whatever the budget, and a cut then only lowers the
//     throughput. A cut that cost more than MinElasticity of its share of
//     the throughput is undone (reason queueing) and the budget holds for
//     SettleSteps intervals before it tries another.
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
	grew        bool
	waited      int
	settle      int
	lastReason  string
	// cut says the last decision was a cut for a p99 over the SLO, from
	// cutFrom, when the throughput was cutThroughput.
	cut           bool
	cutFrom       int64
	cutThroughput float64
}

// maxWait is how many intervals a growth step may wait to be taken up by
// the nodes (grants follow at their next lease refresh, and the node
// tuners take a few control intervals to use them) before it is judged on
// what it gave.
const maxWait = 3

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
	next = clamp64(next, floor, max(o.Ceiling, floor))
	c.budget = next
	d.New, d.Reason = next, reason
	d.Recorded = next != old || reason != c.lastReason
	c.lastReason = reason
	return d
}

func (c *BudgetController) decide(o BudgetObservation, floor int64) (int64, string) {
	wasCut := c.cut
	c.cut = false
	switch {
	case o.Fixed:
		// Back in learned mode it starts again from what the nodes hold.
		c.started, c.grew, c.settle = false, false, 0
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
		c.grew, c.waited, c.settle = false, 0, 0
		return mulF(c.budget, c.cfg.PushbackDecrease), BudgetReasonPushback
	case o.SLOms > 0 && o.P99ms > float64(o.SLOms):
		c.grew, c.waited = false, 0
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
	if c.grew {
		// Did the last step pay? Elasticity: relative goodput gain over
		// relative gain of the bytes the nodes hold. A step the nodes have
		// not half taken up yet is not judged (up to maxWait intervals):
		// the grants follow the budget one lease refresh later, and grow
		// by at most max_growth_percent an epoch, and the goodput of an
		// interval in which the holdings were still growing shows only
		// part of what they give (the cluster bench saw a step judged on a
		// third of its bytes, and undone, one interval before it paid).
		db := float64(c.budget-c.prevBudget) / float64(max(c.prevBudget, 1))
		dh := float64(o.HasBytes-c.prevHas) / float64(max(c.prevHas, 1))
		if dh < db/2 && c.waited < maxWait && o.WantBytes > c.prevBudget {
			c.waited++
			return c.budget, BudgetReasonWait
		}
		c.grew, c.waited = false, 0
		dx := max(dh, db/2)
		dg := (o.GoodputRPS - c.prevGoodput) / max(c.prevGoodput, 1)
		if db > 0 && dg < c.cfg.MinElasticity*dx {
			c.settle = c.cfg.SettleSteps
			return c.prevBudget, BudgetReasonKnee
		}
	}
	if !c.binds(o) {
		return c.budget, BudgetReasonIdle
	}
	reason := BudgetReasonGrow
	if c.settle > 0 {
		c.settle--
		if c.settle > 0 {
			return c.budget, BudgetReasonSettled
		}
		reason = BudgetReasonProbe
	}
	if c.budget >= o.Ceiling {
		return c.budget, BudgetReasonCeiling
	}
	c.prevBudget, c.prevGoodput, c.prevHas, c.grew, c.waited = c.budget, o.GoodputRPS, o.HasBytes, true, 0
	step := max(mulDiv(c.budget, int64(c.cfg.IncreasePercent), 100), c.cfg.MinStepBytes)
	return c.budget + step, reason
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
		P99ms: o.P99ms, WriteMS: o.WriteMS, SLOms: o.SLOms,
	}
}

func mulF(v int64, f float64) int64 { return int64(float64(v) * f) }

func clamp64(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }
