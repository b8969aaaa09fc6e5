package tuner

import (
	"math"
	"time"
)

// ARC is what a Vector user runs: a fixed batch at the defaults of Vector's
// aws_cloudwatch_logs sink (max_events 10 000, max_bytes 1 048 576,
// vectordotdev/vector src/sinks/aws_cloudwatch_logs/config.rs
// CloudwatchLogsDefaultBatchSettings), the downstream whose limits the
// bench's scenarios model, with Vector's adaptive request concurrency
// (request.concurrency = "adaptive") setting how many batches are in
// flight at once. The batch never changes; the concurrency follows Vector's
// controller (see vectorARC), from Vector's defaults: an initial limit of 1
// and a ceiling of 200 (src/sinks/util/adaptive_concurrency/mod.rs,
// default_initial_concurrency and default_max_concurrency_limit), never
// above the node's FlushConcurrency.
//
// Where it departs from Vector: the batch's linger is the node's
// (MaxLinger, 200 ms by default), not the sink's batch.timeout_secs of 1 s,
// because the linger is the node's for every controller; the byte bound
// counts the batch as the node writes it (NDJSON with the node's fields),
// where Vector estimates the encoded size of its events. Vector adjusts the
// limit as each request completes; here the attempts of a control interval
// are replayed in order once per interval (see vectorARC), and the limit
// the controller reaches takes effect at the interval's end; a window
// takes only evidence about the limit it decides on (see AIMD).
type ARC struct {
	core      vectorARC
	batch     int
	bytes     int
	ceiling   int
	lastLimit int
}

// Vector's defaults for ARC.
const (
	// ARCBatchRecords and ARCBatchBytes are the aws_cloudwatch_logs
	// sink's batch.max_events and batch.max_bytes.
	ARCBatchRecords = 10_000
	ARCBatchBytes   = 1_048_576
	// ARCInitialConcurrency and ARCMaxConcurrency are adaptive
	// concurrency's initial_concurrency and max_concurrency_limit.
	ARCInitialConcurrency = 1
	ARCMaxConcurrency     = 200
)

// ARCConfig are ARC's parameters; zero fields take Vector's defaults.
type ARCConfig struct {
	BatchRecords int // 10 000
	BatchBytes   int // 1 048 576
	Initial      int // initial concurrency, 1
	Max          int // concurrency ceiling, 200 (and the node's FlushConcurrency)
}

// NewARC returns an ARC controller.
func NewARC(cfg ARCConfig) *ARC {
	if cfg.BatchRecords < 1 {
		cfg.BatchRecords = ARCBatchRecords
	}
	if cfg.BatchBytes < 1 {
		cfg.BatchBytes = ARCBatchBytes
	}
	if cfg.Initial < 1 {
		cfg.Initial = ARCInitialConcurrency
	}
	if cfg.Max < 1 {
		cfg.Max = ARCMaxConcurrency
	}
	return &ARC{core: newVectorARC(float64(cfg.Initial), 1), batch: cfg.BatchRecords, bytes: cfg.BatchBytes, ceiling: cfg.Max}
}

// Name implements Controller.
func (a *ARC) Name() string { return "arc" }

// InitialFlow implements FlowController: Vector's initial concurrency and
// the batch's byte bound, from the first batch.
func (a *ARC) InitialFlow() (int, int) { return int(a.core.limit), a.bytes }

// Next implements Controller. Each attempt is one request: its RTT (of a
// success) is a sample, a 429, 503 or timeout is back pressure, and the
// limit counts as reached when the batches in flight as it started were
// at the limit (Vector's start_request). A 413 is neither: Vector's
// retry logic does not retry it and the controller ignores it.
func (a *ARC) Next(obs Observation) Decision {
	ceiling := a.ceiling
	if obs.FlushConcurrency > 0 {
		ceiling = min(ceiling, obs.FlushConcurrency)
	}
	a.core.max = float64(ceiling)
	reason := "hold"
	for _, at := range obs.Attempts {
		// As in AIMD, a window takes only evidence about the limit it
		// decides on: requests started at it reached it; one started above
		// it (before a cut this interval) says nothing of it.
		limit := int(a.core.limit)
		current := at.InFlight <= limit
		if r := a.core.feed(at.End, at.RTT, at.RTT.Seconds(), current && at.Outcome == AttemptOK,
			current && at.Outcome == AttemptBackpressure, at.InFlight >= limit); r != "" {
			reason = r
		}
	}
	limit := min(max(1, int(a.core.limit)), ceiling)
	if limit != a.lastLimit && reason == "hold" {
		reason = "concurrency"
	}
	a.lastLimit = limit
	return Decision{BatchSize: Clamp(a.batch, obs.MaxBatchSize), FlushConcurrency: limit, BatchBytes: a.bytes,
		Reason: reason}
}

// vectorARC is Vector's adaptive concurrency controller
// (vectordotdev/vector 05b56b79 src/sinks/util/adaptive_concurrency/controller.rs)
// over a sequence of attempts, with Vector's defaults (mod.rs:
// decrease_ratio 0.9, ewma_alpha 0.4, rtt_deviation_scale 2.5):
//
//   - record_attempt (controller.rs:270-300): back pressure marks the
//     window; only a successful attempt's RTT is a sample of the window's
//     mean (current_rtt);
//   - adjust_to_response_inner (controller.rs:133-209): the first samples
//     set past_rtt, an exponentially weighted mean and variance (Vector's
//     EwmaVar); then, once the window (past_rtt's mean long) is over,
//     manage_limit decides, past_rtt takes the window's mean, and the next
//     window starts;
//   - manage_limit (controller.rs:211-256): the limit grows by one step if
//     it was reached, there was no back pressure and the window's mean RTT
//     is not above past_rtt's mean; it shrinks ×0.9 (at least by one, never
//     below 1) on back pressure or when the window's mean RTT is at or
//     above past_rtt's mean plus 2.5 standard deviations.
//
// The limit is a concurrency for ARC and a batch size for AIMD; the
// sample is whatever the caller measures (an RTT, or an RTT per record).
type vectorARC struct {
	limit    float64
	max      float64 // 0: no ceiling
	step     float64
	alpha    float64
	devScale float64
	decrease float64

	pastSeen        bool
	pastMean        float64 // past_rtt of the samples
	pastVar         float64
	pastRTT         float64 // past_rtt of the RTTs: the window's length
	nextUpdate      time.Time
	curSum, curRTT  float64
	curN            int
	hadBackPressure bool
	reachedLimit    bool
}

func newVectorARC(initial, step float64) vectorARC {
	return vectorARC{limit: initial, step: step, alpha: 0.4, devScale: 2.5, decrease: 0.9}
}

// feed takes one attempt that ended at end after rtt: sample is its
// measure (used only when ok; the RTT itself for ARC), backPressure and
// reached as Vector's. A window lasts past_rtt's mean of the RTTs, whatever
// the sample. It returns the reason when the limit changed.
func (c *vectorARC) feed(end time.Time, rtt time.Duration, sample float64, ok, backPressure, reached bool) string {
	// start_request
	if reached {
		c.reachedLimit = true
	}
	// record_attempt
	if backPressure {
		c.hadBackPressure = true
	}
	if ok && sample >= 0 && !math.IsNaN(sample) && !math.IsInf(sample, 0) {
		c.curSum += sample
		c.curRTT += rtt.Seconds()
		c.curN++
	}
	// adjust_to_completion
	var cur, curRTT float64
	hasCur := c.curN > 0
	if hasCur {
		cur, curRTT = c.curSum/float64(c.curN), c.curRTT/float64(c.curN)
	}
	if !c.pastSeen {
		if hasCur {
			c.pastSeen, c.pastMean, c.pastVar, c.pastRTT = true, cur, 0, curRTT
			c.nextUpdate = end.Add(seconds(curRTT))
		}
		return ""
	}
	if end.Before(c.nextUpdate) {
		return ""
	}
	reason := c.manage(cur, hasCur)
	if hasCur {
		diff := cur - c.pastMean
		inc := c.alpha * diff
		c.pastMean += inc
		c.pastVar = (1 - c.alpha) * (c.pastVar + diff*inc)
		c.pastRTT += c.alpha * (curRTT - c.pastRTT)
	}
	c.nextUpdate = end.Add(seconds(c.pastRTT))
	c.curSum, c.curRTT, c.curN = 0, 0, 0
	c.hadBackPressure, c.reachedLimit = false, false
	return reason
}

// manage is manage_limit.
func (c *vectorARC) manage(cur float64, hasCur bool) string {
	threshold := math.Sqrt(c.pastVar) * c.devScale
	switch {
	case (c.max <= 0 || c.limit < c.max) && c.reachedLimit && !c.hadBackPressure && hasCur && cur <= c.pastMean:
		c.limit += c.step
		if c.max > 0 {
			c.limit = math.Min(c.limit, c.max)
		}
		return "grow:additive"
	case c.limit > 1 && (c.hadBackPressure || cur >= c.pastMean+threshold):
		// Vector floors the product, so that the limit always falls.
		c.limit = math.Max(1, math.Min(c.limit-1, math.Floor(c.limit*c.decrease)))
		if c.hadBackPressure {
			return "shrink:backpressure"
		}
		return "shrink:latency"
	}
	return ""
}

// seconds converts seconds to a Duration, bounded to an hour.
func seconds(s float64) time.Duration {
	if math.IsNaN(s) || s < 0 {
		return 0
	}
	return time.Duration(math.Min(s, 3600) * float64(time.Second))
}
