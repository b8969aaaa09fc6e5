package tuner

import (
	"math"
	"slices"
	"time"
)

// Target is Apache Flink's buffer debloating applied to the batch size: the
// data in flight should take a target time to consume at the throughput
// measured while busy. It follows apache/flink flink-runtime/src/main/java/
// org/apache/flink/runtime/throughput/BufferDebloater.java at 45f8c8bf
// (recalculateBufferSize, about lines 73-109; skipUpdate, about 111-127),
// BufferSizeEMA.java at 036179f8 (calculateBufferSize, about lines 52-74) and
// ThroughputCalculator.java at 1d3cbf97 (calculateThroughput and
// pauseMeasurement: the time the task is idle is left out), with Flink's
// defaults (taskmanager.network.memory.buffer-debloat.samples 20,
// .threshold-percentages 25, .period 200 ms):
//
//	desiredTotal = throughput × target
//	desirable    = min(desiredTotal / buffersInUse, 2 × ema)    (BufferSizeEMA)
//	ema         += alpha × (desirable − ema), within [min, max]
//	announce the new size unless it is within 25 % of the last one
//
// Where the mapping to a batch size departs, and why:
//
//   - The throughput is records acknowledged per second of the interval
//     during which the sink had an attempt in flight (Flink: bytes
//     consumed per second, its measurement paused while the task is
//     idle), read from Observation.Attempts; buffersInUse is the mean of
//     the batches in flight as each attempt started.
//   - The target time is half the latency SLO (Flink's default is 1 s and
//     its documentation asks that it be set to the latency wanted): the
//     data in flight drains in half the SLO, which leaves the other half
//     for a batch to fill.
//   - The EMA's sample count is scaled to the control interval so that it
//     spans what Flink's 20 samples of 200 ms span (4 s): 4 samples at a
//     1 s interval, 16 at 250 ms.
//   - Flink starts at the maximum buffer size; this starts at the initial
//     size, like the other controllers, so that a run does not begin with
//     a batch of the node's whole cap.
//   - Flink has no 413 or 429: a refused batch is simply not throughput,
//     and the size follows the throughput down.
type Target struct {
	ema       float64 // BufferSizeEMA.lastBufferSize
	lastSize  int     // BufferDebloater.lastBufferSize
	threshold float64
	target    time.Duration
	fraction  float64
	span      time.Duration
	min, max  int
	lastAsked int
}

// TargetConfig are Target's parameters; zero fields take the defaults.
type TargetConfig struct {
	Initial int
	Min     int // 1
	Max     int // 0: no bound but obs.MaxBatchSize
	// TargetTime is the time the data in flight should take to consume; 0
	// means SLOFraction of the observation's SLO.
	TargetTime  time.Duration
	SLOFraction float64 // 0.5
	// Span is the time Flink's EMA spans (20 samples of 200 ms: 4 s).
	Span      time.Duration
	Threshold float64 // relative change below which the size is kept, 0.25
}

// NewTarget returns a Target controller starting at cfg.Initial.
func NewTarget(cfg TargetConfig) *Target {
	if cfg.Initial < 1 {
		cfg.Initial = 100
	}
	if cfg.Min < 1 {
		cfg.Min = 1
	}
	if cfg.SLOFraction <= 0 {
		cfg.SLOFraction = 0.5
	}
	if cfg.Span <= 0 {
		cfg.Span = 20 * 200 * time.Millisecond
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = 0.25
	}
	return &Target{
		ema: float64(cfg.Initial), lastSize: cfg.Initial, threshold: cfg.Threshold,
		target: cfg.TargetTime, fraction: cfg.SLOFraction, span: cfg.Span, min: cfg.Min, max: cfg.Max,
	}
}

// Name implements Controller.
func (t *Target) Name() string { return "target" }

// Next implements Controller.
func (t *Target) Next(obs Observation) Decision {
	if t.lastAsked > 0 && obs.BatchSize > 0 && obs.BatchSize < t.lastAsked {
		// Overridden by a breaker or the grant: continue from there.
		t.ema, t.lastSize = float64(obs.BatchSize), obs.BatchSize
	}
	maxSize := bound(t.max, obs.MaxBatchSize)
	if len(obs.Attempts) == 0 {
		// Idle: Flink pauses its measurement and announces nothing.
		t.lastAsked = Clamp(t.lastSize, maxSize)
		return Decision{BatchSize: t.lastAsked, Reason: "hold:idle"}
	}
	target := t.target
	if target <= 0 {
		slo := obs.SLO
		if slo <= 0 {
			slo = defaultSLO
		}
		target = time.Duration(float64(slo) * t.fraction)
	}
	busy, inUse := busyTime(obs), buffersInUse(obs)
	throughput := 0.0
	if busy > 0 {
		written := math.Max(0, obs.Throughput) * obs.Interval.Seconds()
		throughput = written / busy.Seconds()
	}
	desiredTotal := throughput * target.Seconds()

	// BufferSizeEMA.calculateBufferSize
	samples := 20.0
	if obs.Interval > 0 {
		samples = math.Max(1, math.Round(float64(t.span)/float64(obs.Interval)))
	}
	alpha := 2 / (samples + 1)
	desirable := math.Min(desiredTotal/inUse, 2*t.ema)
	t.ema += alpha * (desirable - t.ema)
	hi := math.Inf(1)
	if maxSize > 0 {
		hi = float64(maxSize)
	}
	t.ema = math.Max(float64(t.min), math.Min(t.ema, hi))
	newSize := int(math.Round(t.ema))

	// BufferDebloater.skipUpdate
	reason := "hold:threshold"
	if !t.skip(newSize, maxSize) {
		reason = "grow:throughput"
		if newSize < t.lastSize {
			reason = "shrink:throughput"
		}
		t.lastSize = newSize
	}
	t.lastAsked = Clamp(t.lastSize, maxSize)
	return Decision{BatchSize: t.lastAsked, Reason: reason}
}

func (t *Target) skip(newSize, maxSize int) bool {
	if newSize == t.lastSize {
		return true
	}
	if newSize <= t.min || (maxSize > 0 && newSize >= maxSize) {
		return false
	}
	delta := int(float64(t.lastSize) * t.threshold)
	return abs(newSize-t.lastSize) < delta
}

// busyTime is how much of the interval the sink had an attempt in flight:
// the union of the attempts' spans within the interval.
func busyTime(obs Observation) time.Duration {
	type span struct{ from, to time.Time }
	start := obs.Now.Add(-obs.Interval)
	var spans []span
	for _, a := range obs.Attempts {
		from := a.End.Add(-a.RTT)
		if obs.Interval > 0 && from.Before(start) {
			from = start
		}
		if a.End.After(from) {
			spans = append(spans, span{from, a.End})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	var busy time.Duration
	var cur span
	for i, s := range spans {
		switch {
		case i == 0:
			cur = s
		case !s.from.After(cur.to):
			if s.to.After(cur.to) {
				cur.to = s.to
			}
		default:
			busy += cur.to.Sub(cur.from)
			cur = s
		}
	}
	if len(spans) > 0 {
		busy += cur.to.Sub(cur.from)
	}
	if obs.Interval > 0 {
		busy = min(busy, obs.Interval)
	}
	return busy
}

// buffersInUse is the mean number of batches in flight as the interval's
// attempts started (at least 1).
func buffersInUse(obs Observation) float64 {
	var sum, n float64
	for _, a := range obs.Attempts {
		if a.InFlight > 0 {
			sum += float64(a.InFlight)
			n++
		}
	}
	if n == 0 {
		return 1
	}
	return math.Max(1, sum/n)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
