package tuner

import "math"

// Gradient2 is Netflix's Gradient2Limit applied to the batch size instead of
// the concurrency limit. It is ported from Netflix/concurrency-limits
// concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/Gradient2Limit.java
// (_update) and limit/measurement/ExpAvgMeasurement.java, with the source's
// defaults (smoothing 0.2, rttTolerance 1.5, longWindow 600 with a warm-up of
// 10 samples):
//
//	shortRtt = this sample's RTT
//	longRtt  = ExpAvg(longWindow) of the RTT; if longRtt/shortRtt > 2, longRtt ×= 0.95
//	if inflight < limit/2: keep the limit (app-limited)
//	gradient = clamp(tolerance × longRtt/shortRtt, 0.5, 1.0)
//	newLimit = limit × gradient + queueSize
//	newLimit = limit × (1−smoothing) + newLimit × smoothing
//
// Adaptations: one sample per control interval, the interval's mean batch
// write time (Netflix takes one per request); "in flight" is the mean batch
// fill (a batch flushed half empty by the linger is the app-limited case);
// queueSize is √limit, the square-root function Netflix ships for its
// Gradient limits (Gradient2's builder defaults to a constant 4, which is
// nothing against batches of hundreds of records); the minimum is 1 record,
// not Netflix's 20 requests.
type Gradient2 struct {
	estimated float64
	max       int
	min       int
	smoothing float64
	tolerance float64
	last      int

	long longAvg
}

// Gradient2Config are Gradient2's parameters; zero fields take Netflix's
// defaults.
type Gradient2Config struct {
	Initial    int
	Min        int     // 1
	Max        int     // 0: no bound but obs.MaxBatchSize
	Smoothing  float64 // 0.2
	Tolerance  float64 // 1.5
	LongWindow int     // 600 samples
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
	if cfg.LongWindow <= 0 {
		cfg.LongWindow = 600
	}
	return &Gradient2{
		estimated: float64(cfg.Initial), min: cfg.Min, max: cfg.Max,
		smoothing: cfg.Smoothing, tolerance: cfg.Tolerance,
		long: longAvg{warmup: 10, factor: 2 / (float64(cfg.LongWindow) + 1)},
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
	if obs.Batches == 0 || obs.MeanBatchTime <= 0 {
		return g.decide("hold:no-sample", maxSize)
	}
	queueSize := math.Sqrt(g.estimated)
	shortRtt := obs.MeanBatchTime.Seconds()
	longRtt := g.long.add(shortRtt)
	if longRtt/shortRtt > 2 {
		g.long.value *= 0.95
	}
	if obs.MeanBatchFill < g.estimated/2 {
		return g.decide("hold:app-limited", maxSize)
	}
	gradient := math.Max(0.5, math.Min(1.0, g.tolerance*longRtt/shortRtt))
	newLimit := g.estimated*gradient + queueSize
	newLimit = g.estimated*(1-g.smoothing) + newLimit*g.smoothing
	newLimit = math.Max(float64(g.min), newLimit)
	if maxSize > 0 {
		newLimit = math.Min(float64(maxSize), newLimit)
	}
	reason := "grow"
	if gradient < 1 {
		reason = "shrink:gradient"
		if newLimit >= g.estimated {
			reason = "grow:queue"
		}
	}
	g.estimated = newLimit
	return g.decide(reason, maxSize)
}

func (g *Gradient2) decide(reason string, maxSize int) Decision {
	g.last = Clamp(int(g.estimated), maxSize)
	return Decision{BatchSize: g.last, Reason: reason}
}
