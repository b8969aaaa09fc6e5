package tuner

import "math"

// AIMD is Vector's adaptive request concurrency (ARC) applied to the batch
// size instead of the number of requests in flight: the controller of
// vectordotdev/vector 05b56b79 src/sinks/util/adaptive_concurrency/controller.rs
// (record_attempt, lines 270-299; adjust_to_response_inner, 133-209;
// manage_limit, 211-256), with Vector's defaults (mod.rs:83-101:
// ewma_alpha 0.4, rtt_deviation_scale 2.5, decrease_ratio 0.9), ported in
// vectorARC (arc.go). It decides per RTT window as Vector does: the sink's
// attempts of a control interval (Observation.Attempts) are replayed in
// the order they ended, and a decision falls at the end of every window
// of past_rtt's mean length, not once per interval.
//
// Where the mapping to a batch size departs, and why:
//
//   - The sample is an attempt's RTT per record, not its RTT. A request's
//     RTT does not depend on the concurrency limit unless the service
//     queues, which is what lets Vector read a rising RTT as congestion; a
//     batch's RTT grows with its size whatever the downstream's state, so
//     the raw RTT would read every increase as congestion. The RTT per
//     record does not grow with the size unless the downstream is past a
//     knee or queueing.
//   - The limit counts as reached when the batch was cut at its size
//     rather than flushed by the linger with room to spare (Vector: the
//     requests in flight reached the limit). So a size only grows while
//     batches fill, which bounds it under light load as the concurrency
//     limit is bounded by the requests there are.
//   - A 413 (too large) is back pressure here: it is the downstream
//     refusing the batch's size, the one thing this controller sets.
//     Vector, which never changes a batch, does not retry a 413 and its
//     controller ignores it.
//   - The additive step is a tenth of the initial size (10 records for the
//     default 100), not one: Vector adds one request to limits in the
//     tens, a step of a few percent; one record is nothing against a
//     batch of hundreds. It is still a constant, as additive increase
//     requires.
//   - Every RTT window decides, as in Vector, but the node applies a size
//     once per control interval, where Vector's limit takes effect at
//     once; so the later windows of an interval see batches of the size
//     in force, not of the limit they decide on. A window takes only
//     evidence about that limit: batches that reached it (full, and at
//     least the limit) for growth, and back pressure and RTTs of batches
//     within it. After a step up, batches of the old size no longer reach
//     the new limit; after a cut, the 429s of the larger batches cut
//     before it say nothing of the new one. Acting on them anyway (the
//     first version of this port did) compounds a second's windows on one
//     stale size and swings the size by several times its capacity. So the
//     size moves at most about a step up or a cut per interval unless
//     batches within the new limit give new evidence: a sawtooth around
//     the downstream's edge, as Vector's.
type AIMD struct {
	core vectorARC
	max  int
	last int
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
	core := newVectorARC(float64(cfg.Initial), float64(cfg.Step))
	if cfg.Alpha > 0 && cfg.Alpha < 1 {
		core.alpha = cfg.Alpha
	}
	if cfg.DeviationScale > 0 {
		core.devScale = cfg.DeviationScale
	}
	if cfg.DecreaseRatio > 0 && cfg.DecreaseRatio < 1 {
		core.decrease = cfg.DecreaseRatio
	}
	return &AIMD{core: core, max: cfg.Max}
}

// Name implements Controller.
func (a *AIMD) Name() string { return "aimd" }

// Next implements Controller.
func (a *AIMD) Next(obs Observation) Decision {
	if adopted := adopt(int(a.core.limit), a.last, obs.BatchSize); adopted != int(a.core.limit) {
		a.core.limit = float64(adopted) // a breaker or the grant overrode it
	}
	maxSize := bound(a.max, obs.MaxBatchSize)
	a.core.max = float64(maxSize)
	reason := "hold"
	if len(obs.Attempts) == 0 {
		reason = "hold:no-attempts"
	}
	if !a.core.pastSeen && len(obs.Attempts) > 0 {
		reason = "hold:warmup"
	}
	for _, at := range obs.Attempts {
		perRecord := math.NaN()
		if at.Records > 0 {
			perRecord = at.RTT.Seconds() / float64(at.Records)
		}
		// A window takes only evidence about the limit it decides on (see
		// the type's comment).
		limit := int(a.core.limit)
		current := at.Records <= limit
		pushback := current && (at.Outcome == AttemptBackpressure || at.Outcome == AttemptTooLarge)
		ok := current && at.Outcome == AttemptOK
		if r := a.core.feed(at.End, at.RTT, perRecord, ok, pushback, at.Full && at.Records >= limit); r != "" {
			reason = r
		}
	}
	a.last = Clamp(int(a.core.limit), maxSize)
	return Decision{BatchSize: a.last, Reason: reason}
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
