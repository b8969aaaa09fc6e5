package tuner

import (
	"math"
	"testing"
	"time"
)

// interval is an observation of one control interval at size with the
// given mean batch write time, batches filled to fill of the size.
func interval(size int, rtt time.Duration, fill float64) Observation {
	return Observation{
		Interval: time.Second, BatchSize: size, Batches: 20,
		MeanBatchFill: fill * float64(size), MeanBatchTime: rtt,
		ArrivalRate: 1000, Throughput: 1000, Goodput: 1000,
		SLO: 500 * time.Millisecond, P99: 100 * time.Millisecond,
	}
}

func TestAIMDBehavesAsVectorsARC(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name string
		last Observation // after three intervals of a steady 50 ms RTT at 100, full batches
		want int
	}{
		{"grows by the additive step when batches fill and the RTT is not above its mean", interval(100, 50*ms, 1), 110},
		{"does not grow when batches are flushed part-full (the limit was not reached)", interval(100, 50*ms, 0.5), 100},
		{"backs off ×0.9 on back pressure", func() Observation { o := interval(100, 50*ms, 1); o.Backpressure = 1; return o }(), 90},
		{"backs off ×0.9 when the RTT is above the mean plus 2.5 deviations", interval(100, 80*ms, 1), 90},
		{"grows when the queue holds a full batch even if batches were part-full", func() Observation { o := interval(100, 50*ms, 0.5); o.QueueDepth = 150; return o }(), 110},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAIMD(AIMDConfig{Initial: 100, Step: 10})
			// Part-full batches and a falling RTT: neither growth nor
			// back-off while the past RTT (mean 50.24 ms, σ 1.53 ms)
			// builds up. (A rising second sample would back off: Vector's
			// band is zero wide until the variance has two samples.)
			for i, r := range []time.Duration{52, 48, 50} {
				if d := a.Next(interval(100, r*ms, 0.5)); d.BatchSize != 100 {
					t.Fatalf("warm-up interval %d moved to %d (%s)", i, d.BatchSize, d.Reason)
				}
			}
			if d := a.Next(tc.last); d.BatchSize != tc.want {
				t.Errorf("size %d (%s), want %d", d.BatchSize, d.Reason, tc.want)
			}
		})
	}
}

func TestAIMDHoldsInsideTheBandAboveTheMean(t *testing.T) {
	a := NewAIMD(AIMDConfig{Initial: 100})
	for _, r := range []time.Duration{60, 40, 60, 40, 60, 40} {
		if d := a.Next(interval(100, r*time.Millisecond, 0.5)); d.BatchSize != 100 {
			t.Fatalf("warm-up moved to %d (%s)", d.BatchSize, d.Reason)
		}
	}
	// Mean ≈ 47 ms with a deviation near 10 ms: 55 ms is above the mean
	// (no growth) but inside mean + 2.5σ (no back-off).
	if d := a.Next(interval(100, 55*time.Millisecond, 1)); d.BatchSize != 100 {
		t.Errorf("size %d (%s), want 100", d.BatchSize, d.Reason)
	}
}

func TestAIMDTracksRTTWithWestsRecurrence(t *testing.T) {
	a := NewAIMD(AIMDConfig{Initial: 100})
	xs := []float64{0.010, 0.020, 0.015}
	var mean, variance float64
	for i, x := range xs {
		a.Next(interval(100, time.Duration(x*float64(time.Second)), 0.5))
		if i == 0 {
			mean = x
			continue
		}
		diff := x - mean
		inc := 0.4 * diff
		mean += inc
		variance = 0.6 * (variance + diff*inc)
	}
	if math.Abs(a.pastMean-mean) > 1e-12 || math.Abs(a.pastVar-variance) > 1e-12 {
		t.Errorf("past RTT mean %g var %g, want %g %g", a.pastMean, a.pastVar, mean, variance)
	}
}

func TestAIMDDefaultStepIsATenthOfTheInitialSize(t *testing.T) {
	if a := NewAIMD(AIMDConfig{Initial: 400}); a.step != 40 {
		t.Errorf("step %d, want 40", a.step)
	}
	if a := NewAIMD(AIMDConfig{Initial: 5}); a.step != 1 {
		t.Errorf("step %d, want 1", a.step)
	}
}

func TestAIMDContinuesFromAnOverride(t *testing.T) {
	a := NewAIMD(AIMDConfig{Initial: 100, Step: 10})
	a.Next(interval(100, 50*time.Millisecond, 1))
	// The breaker held the size at 40: growth resumes from there.
	if d := a.Next(interval(40, 50*time.Millisecond, 1)); d.BatchSize != 50 {
		t.Errorf("size %d (%s), want 50", d.BatchSize, d.Reason)
	}
}
