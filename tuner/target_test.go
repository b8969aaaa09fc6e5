package tuner

import (
	"math"
	"testing"
	"time"
)

func TestTargetBehavesAsFlinksBufferDebloater(t *testing.T) {
	// One interval of 1 s in which the sink was busy half the time, one
	// batch in flight, writing 1 000 records: 2 000 records a second while
	// busy; with half the 500 ms SLO as the target the data in flight
	// should be 500 records. Flink's EMA of 20 samples of 200 ms is 4
	// samples at 1 s.
	busyHalf := func(size, flying int) Observation {
		obs, _ := observe(epoch, size, run{n: 5, every: 200 * ms, rtt: 100 * ms, records: 200, outcome: AttemptOK, flying: flying})
		obs.Throughput = 1000
		return obs
	}
	alpha := 2 / 5.0
	t.Run("follows the busy throughput × SLO/2 through the EMA", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 2000})
		want := int(math.Round(2000 + alpha*(500-2000)))
		if d := tg.Next(busyHalf(2000, 1)); d.BatchSize != want {
			t.Errorf("size %d (%s), want %d", d.BatchSize, d.Reason, want)
		}
	})
	t.Run("divides the data in flight by the batches in flight", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 2000})
		want := int(math.Round(2000 + alpha*(250-2000)))
		if d := tg.Next(busyHalf(2000, 2)); d.BatchSize != want {
			t.Errorf("size %d (%s), want %d", d.BatchSize, d.Reason, want)
		}
	})
	t.Run("keeps the size while the change is under 25 %", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 450})
		if d := tg.Next(busyHalf(450, 1)); d.BatchSize != 450 || d.Reason != "hold:threshold" {
			t.Errorf("size %d (%s), want 450 held", d.BatchSize, d.Reason)
		}
	})
	t.Run("grows at most as if the instant value were twice the EMA", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 100})
		want := int(math.Round(100 + alpha*(200-100)))
		if d := tg.Next(busyHalf(100, 1)); d.BatchSize != want {
			t.Errorf("size %d (%s), want %d", d.BatchSize, d.Reason, want)
		}
	})
	t.Run("holds while idle (Flink pauses its measurement)", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 300})
		if d := tg.Next(Observation{BatchSize: 300, Interval: time.Second, Throughput: 0}); d.BatchSize != 300 {
			t.Errorf("size %d (%s), want 300", d.BatchSize, d.Reason)
		}
	})
}

func TestBusyTimeIsTheUnionOfTheAttempts(t *testing.T) {
	end := epoch.Add(time.Second)
	obs := Observation{Now: end, Interval: time.Second, Attempts: []Attempt{
		{End: epoch.Add(300 * ms), RTT: 200 * ms}, // 100-300
		{End: epoch.Add(400 * ms), RTT: 200 * ms}, // 200-400: overlaps
		{End: epoch.Add(900 * ms), RTT: 100 * ms}, // 800-900
		{End: epoch.Add(50 * ms), RTT: 500 * ms},  // before the interval: 0-50
	}}
	if got := busyTime(obs); got != 450*ms {
		t.Errorf("busy %v, want 450ms", got)
	}
}
