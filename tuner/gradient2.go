package tuner

import (
	"math"
	"time"
)

// Gradient2 is Netflix's Gradient2Limit applied to the batch size instead
// of the concurrency limit, on the latency per record. It follows
// Netflix/concurrency-limits 78a74b9
// concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/Gradient2Limit.java
// (_update, lines 277-323; the builder's defaults, 75-83) and
// limit/measurement/ExpAvgMeasurement.java (add, lines 34-45), with the
// source's defaults (smoothing 0.2, rttTolerance 1.5, a warm-up of 10
// samples), one update per sample as in _update:
//
//	shortRtt = this sample
//	longRtt  = ExpAvg(longWindow) of the samples; if longRtt/shortRtt > 2, longRtt ×= 0.95
//	if inflight < limit/2: keep the limit (app-limited)
//	gradient = clamp(tolerance × longRtt/shortRtt, 0.5, 1.0)
//	newLimit = limit × gradient + queueSize
//	newLimit = limit × (1−smoothing) + newLimit × smoothing, within [min, max]
//
// Where the mapping to a batch size departs, and why:
//
//   - A sample is one successful attempt of the sink (Observation.Attempts)
//     and its measure is the attempt's RTT per record. Netflix samples each
//     request's RTT, which does not grow with the limit unless the server
//     queues; a batch's RTT grows with its size whatever the downstream's
//     state, so the raw RTT would read every increase as queueing (the
//     first port fed the interval's mean batch time and fell to a few
//     records whatever happened). The RTT per record grows only past a
//     knee or in a queue.
//   - "inflight" is the attempt's records: a batch flushed less than half
//     full by the linger is the app-limited case, where the limit is kept.
//   - The long window is sized to the control rate: it spans ten control
//     intervals' worth of samples (ten times the attempts of the interval,
//     at least the warm-up of 10), where Netflix's default 600 samples
//     assume a server's request rate (a second or two of RPCs). At one
//     sample per interval, as the first port had it, 600 samples were ten
//     minutes, longer than the bench.
//   - queueSize is √limit, the square-root function Netflix ships for its
//     Gradient limits; Gradient2's builder default is a constant 4, which
//     is nothing against batches of hundreds of records. The minimum is 1
//     record, not Netflix's 20 requests.
//   - Back pressure: Gradient2Limit ignores didDrop, and a 429 answered at
//     once would read as a fast sample, so attempts that are not
//     successes are not samples (Netflix's onIgnore). A 413, though, says
//     the size itself is refused, which a latency sample never shows: it
//     counts as a sample at the gradient's floor (0.5), the sharpest cut
//     Gradient2 ever makes.
//   - The node applies the size once per control interval, so the samples
//     of one interval are all measured at the size in force during it.
type Gradient2 struct {
	estimated float64
	max       int
	min       int
	smoothing float64
	tolerance float64
	intervals int
	last      int

	long longAvg
}

// Gradient2Config are Gradient2's parameters; zero fields take Netflix's
// defaults.
type Gradient2Config struct {
	Initial   int
	Min       int     // 1
	Max       int     // 0: no bound but obs.MaxBatchSize
	Smoothing float64 // 0.2
	Tolerance float64 // 1.5
	// LongIntervals is how many control intervals the long window spans
	// (10).
	LongIntervals int
}

// longAvg is Netflix's ExpAvgMeasurement: a plain mean over the first
// warmup samples, then an EWMA with factor 2/(window+1).
type longAvg struct {
	value, sum    float64
	count, warmup int
	factor        float64
}

func (m *longAvg) add(x float64) float64 {
	if m.count < m.warmup {
		m.count++
		m.sum += x
		m.value = m.sum / float64(m.count)
	} else {
		m.value = m.value*(1-m.factor) + x*m.factor
	}
	return m.value
}

// NewGradient2 returns a Gradient2 controller starting at cfg.Initial.
func NewGradient2(cfg Gradient2Config) *Gradient2 {
	if cfg.Initial < 1 {
		cfg.Initial = 100
	}
	if cfg.Min < 1 {
		cfg.Min = 1
	}
	if cfg.Smoothing <= 0 || cfg.Smoothing > 1 {
		cfg.Smoothing = 0.2
	}
	if cfg.Tolerance < 1 {
		cfg.Tolerance = 1.5
	}
	if cfg.LongIntervals <= 0 {
		cfg.LongIntervals = 10
	}
	return &Gradient2{
		estimated: float64(cfg.Initial), min: cfg.Min, max: cfg.Max,
		smoothing: cfg.Smoothing, tolerance: cfg.Tolerance, intervals: cfg.LongIntervals,
		long: longAvg{warmup: 10, factor: 2 / (10.0 + 1)},
	}
}

// Name implements Controller.
func (g *Gradient2) Name() string { return "gradient2" }

// Next implements Controller.
func (g *Gradient2) Next(obs Observation) Decision {
	if g.last > 0 && obs.BatchSize > 0 && obs.BatchSize < g.last {
		g.estimated = float64(obs.BatchSize) // overridden by a breaker or the grant
	}
	maxSize := bound(g.max, obs.MaxBatchSize)
	samples := 0
	for _, a := range obs.Attempts {
		if a.Outcome == AttemptOK && a.Records > 0 {
			samples++
		}
	}
	window := max(g.long.warmup, g.intervals*samples)
	g.long.factor = 2 / (float64(window) + 1)

	reason := "hold:no-sample"
	for _, a := range obs.Attempts {
		switch {
		case a.Outcome == AttemptTooLarge:
			g.update(0.5, maxSize)
			reason = "shrink:too-large"
		case a.Outcome != AttemptOK || a.Records <= 0 || a.RTT <= 0:
			continue // onIgnore
		default:
			if r := g.sample(a.RTT, a.Records, maxSize); r != "" {
				reason = r
			}
		}
	}
	g.last = Clamp(int(g.estimated), maxSize)
	return Decision{BatchSize: g.last, Reason: reason}
}

// sample is _update for one successful attempt.
func (g *Gradient2) sample(rtt time.Duration, records, maxSize int) string {
	shortRtt := rtt.Seconds() / float64(records)
	longRtt := g.long.add(shortRtt)
	if longRtt/shortRtt > 2 {
		g.long.value *= 0.95
	}
	if float64(records) < g.estimated/2 {
		return "hold:app-limited"
	}
	gradient := math.Max(0.5, math.Min(1.0, g.tolerance*longRtt/shortRtt))
	before := g.estimated
	g.update(gradient, maxSize)
	switch {
	case gradient < 1 && g.estimated < before:
		return "shrink:gradient"
	case gradient < 1:
		return "grow:queue"
	}
	return "grow"
}

// update moves the limit by a gradient: newLimit = limit × gradient +
// queueSize, smoothed, within [min, max].
func (g *Gradient2) update(gradient float64, maxSize int) {
	queueSize := math.Sqrt(g.estimated)
	newLimit := g.estimated*gradient + queueSize
	newLimit = g.estimated*(1-g.smoothing) + newLimit*g.smoothing
	newLimit = math.Max(float64(g.min), newLimit)
	if maxSize > 0 {
		newLimit = math.Min(float64(maxSize), newLimit)
	}
	g.estimated = newLimit
}
