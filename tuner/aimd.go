package tuner

import "math"

// AIMD is Vector's adaptive request concurrency (ARC) applied to the batch
// size instead of the number of requests in flight. It is ported from
// vectordotdev/vector src/sinks/util/adaptive_concurrency/controller.rs
// (Controller::manage_limit and adjust_to_response_inner) with Vector's
// defaults (ewma_alpha 0.4, rtt_deviation_scale 2.5, decrease_ratio 0.9):
//
//   - the round-trip time is the interval's mean batch write time
//     (obs.MeanBatchTime), and past_rtt is an exponentially weighted mean and
//     variance of it (West's recurrence, as Vector's EwmaVar);
//   - the size grows additively when the limit was reached (Vector: in-flight
//     requests hit the limit; here: batches filled up to the size, or the
//     queue held a full batch), there was no back pressure and the RTT was
//     not above its past mean;
//   - it shrinks ×0.9 on back pressure (429/503/timeouts: obs.Backpressure)
//     or when the RTT is at or above the past mean plus 2.5 standard
//     deviations;
//   - past_rtt is updated after the decision, as in Vector.
//
// Vector adds one request of concurrency, against limits that usually sit
// in the tens: a step of a few to ten percent. One record is nothing against
// a batch of hundreds, so the additive step here is a tenth of the initial
// size (10 records for the default 100), still a constant as additive
// increase requires. Vector adjusts once per past-RTT mean; this runs once
// per control interval.
type AIMD struct {
	size     int
	max      int
	step     int
	alpha    float64
	devScale float64
	decrease float64
	last     int

	pastSeen bool
	pastMean float64
	pastVar  float64
}

// AIMDConfig are the AIMD's parameters; zero fields take Vector's defaults.
type AIMDConfig struct {
	Initial        int
	Max            int     // 0: no bound but obs.MaxBatchSize
	Step           int     // additive increase, records; default Initial/10 (at least 1)
	Alpha          float64 // EWMA weight of the newest RTT, 0.4
	DeviationScale float64 // RTT band in standard deviations, 2.5
	DecreaseRatio  float64 // multiplicative decrease, 0.9
}

// NewAIMD returns an AIMD controller starting at cfg.Initial.
func NewAIMD(cfg AIMDConfig) *AIMD {
	if cfg.Initial < 1 {
		cfg.Initial = 100
	}
	if cfg.Step <= 0 {
		cfg.Step = max(1, cfg.Initial/10)
	}
	if cfg.Alpha <= 0 {
		cfg.Alpha = 0.4
	}
	if cfg.DeviationScale <= 0 {
		cfg.DeviationScale = 2.5
	}
	if cfg.DecreaseRatio <= 0 || cfg.DecreaseRatio >= 1 {
		cfg.DecreaseRatio = 0.9
	}
	return &AIMD{size: cfg.Initial, max: cfg.Max, step: cfg.Step, alpha: cfg.Alpha,
		devScale: cfg.DeviationScale, decrease: cfg.DecreaseRatio}
}

// Name implements Controller.
func (a *AIMD) Name() string { return "aimd" }

// Next implements Controller.
func (a *AIMD) Next(obs Observation) Decision {
	a.size = adopt(a.size, a.last, obs.BatchSize)
	hasRTT := obs.Batches > 0 && obs.MeanBatchTime > 0
	rtt := obs.MeanBatchTime.Seconds()
	backPressure := obs.Backpressure > 0
	limit := obs.BatchSize
	if limit <= 0 {
		limit = a.size
	}
	reached := (obs.Batches > 0 && obs.MeanBatchFill >= 0.9*float64(limit)) || obs.QueueDepth >= limit
	maxSize := bound(a.max, obs.MaxBatchSize)

	reason := "hold"
	if !a.pastSeen {
		if hasRTT {
			a.pastSeen, a.pastMean, a.pastVar = true, rtt, 0
		}
		reason = "hold:warmup"
	} else {
		threshold := math.Sqrt(a.pastVar) * a.devScale
		cur := 0.0
		if hasRTT {
			cur = rtt
		}
		switch {
		case (maxSize <= 0 || a.size < maxSize) && reached && !backPressure && hasRTT && rtt <= a.pastMean:
			a.size += a.step
			reason = "grow:additive"
		case a.size > 1 && (backPressure || cur >= a.pastMean+threshold):
			a.size = max(1, int(float64(a.size)*a.decrease))
			reason = "shrink:latency"
			if backPressure {
				reason = "shrink:backpressure"
			}
		}
		if hasRTT {
			diff := rtt - a.pastMean
			inc := a.alpha * diff
			a.pastMean += inc
			a.pastVar = (1 - a.alpha) * (a.pastVar + diff*inc)
		}
	}
	a.size = Clamp(a.size, maxSize)
	a.last = a.size
	return Decision{BatchSize: a.size, Reason: reason}
}

// adopt returns the size a controller should continue from: its own, unless
// the size in force is smaller than what it last asked for (a breaker or the
// grant overrode it), in which case it continues from the size in force so
// that it does not wind up against a cap it cannot see.
func adopt(own, asked, inForce int) int {
	if asked > 0 && inForce > 0 && inForce < asked {
		return inForce
	}
	return own
}

// bound combines a configured maximum and the observation's cap; 0 means
// no bound.
func bound(cfgMax, obsMax int) int {
	switch {
	case cfgMax <= 0:
		return obsMax
	case obsMax <= 0:
		return cfgMax
	}
	return min(cfgMax, obsMax)
}
