package tuner

import (
	"math"
	"time"
)

// Target is Apache Flink's buffer debloating applied to the batch size: size
// = throughput × target time. It is ported from apache/flink
// flink-runtime/src/main/java/org/apache/flink/runtime/throughput/BufferDebloater.java
// (recalculateBufferSize, skipUpdate) and BufferSizeEMA.java
// (calculateBufferSize), with Flink's defaults (an EMA over 20 samples, a
// 25 % threshold below which a new size is not announced, and at most
// doubling per step because the instant value is capped at twice the current
// EMA value).
//
// Adaptations: throughput is records written per second (Flink: bytes
// consumed per second) and one batch is in use (Flink divides by the
// buffers in use). The target time is a quarter of the latency SLO (Flink's
// default is 1 s of in-flight data): a batch then takes at most a quarter of
// the SLO to fill at the current throughput, which leaves three quarters for
// queueing and the write. Flink starts at the maximum buffer size; this
// starts at the initial size, like the other controllers, so that a run does
// not begin with a batch of the node's whole cap. Flink recalculates every
// 200 ms; this runs once per control interval.
type Target struct {
	ema       float64 // BufferSizeEMA.lastBufferSize
	lastSize  int     // BufferDebloater.lastBufferSize
	alpha     float64
	threshold float64
	target    time.Duration
	fraction  float64
	min, max  int
	lastAsked int
}

// TargetConfig are Target's parameters; zero fields take the defaults.
type TargetConfig struct {
	Initial int
	Min     int // 1
	Max     int // 0: no bound but obs.MaxBatchSize
	// TargetTime is the fill time a batch aims at; 0 means SLOFraction of
	// the observation's SLO.
	TargetTime  time.Duration
	SLOFraction float64 // 0.25
	Samples     int     // EMA samples, 20
	Threshold   float64 // relative change below which the size is kept, 0.25
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
		cfg.SLOFraction = 0.25
	}
	if cfg.Samples <= 0 {
		cfg.Samples = 20
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = 0.25
	}
	return &Target{
		ema: float64(cfg.Initial), lastSize: cfg.Initial,
		alpha: 2 / (float64(cfg.Samples) + 1), threshold: cfg.Threshold,
		target: cfg.TargetTime, fraction: cfg.SLOFraction, min: cfg.Min, max: cfg.Max,
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
	target := t.target
	if target <= 0 {
		slo := obs.SLO
		if slo <= 0 {
			slo = defaultSLO
		}
		target = time.Duration(float64(slo) * t.fraction)
	}
	desired := math.Max(0, obs.Throughput) * target.Seconds()

	// BufferSizeEMA.calculateBufferSize
	desirable := math.Min(desired, 2*t.ema)
	t.ema += t.alpha * (desirable - t.ema)
	hi := math.Inf(1)
	if maxSize > 0 {
		hi = float64(maxSize)
	}
	t.ema = math.Max(float64(t.min), math.Min(t.ema, hi))
	newSize := int(math.Round(t.ema))

	// BufferDebloater.skipUpdate
	reason := "resize"
	if t.skip(newSize, maxSize) {
		reason = "hold:threshold"
	} else {
		if newSize < t.lastSize {
			reason = "shrink:throughput"
		} else {
			reason = "grow:throughput"
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

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
