package sim

import (
	"reflect"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

func cheap(name string, rate float64, d time.Duration) Phase {
	return Phase{Name: name, Duration: d, Arrival: rate,
		PerBatch: 5 * time.Millisecond, PerRecord: 10 * time.Microsecond}
}

func TestSameSeedSameRun(t *testing.T) {
	cfg := Shifting(42, 10*time.Second)
	a := Run(cfg, tuner.NewGradient(tuner.GradientConfig{Initial: 100}), 100)
	b := Run(cfg, tuner.NewGradient(tuner.GradientConfig{Initial: 100}), 100)
	if len(a.Trace) != len(b.Trace) {
		t.Fatalf("%d and %d intervals", len(a.Trace), len(b.Trace))
	}
	for i := range a.Trace {
		if !reflect.DeepEqual(a.Trace[i].Obs, b.Trace[i].Obs) || a.Trace[i].Decision != b.Trace[i].Decision {
			t.Fatalf("interval %d differs:\n%+v\n%+v", i, a.Trace[i], b.Trace[i])
		}
	}
	c := Run(Shifting(43, 10*time.Second), tuner.NewGradient(tuner.GradientConfig{Initial: 100}), 100)
	if c.GoodputRPS == a.GoodputRPS {
		t.Error("another seed gave the very same run")
	}
}

func TestThroughputFollowsTheCapacityFormula(t *testing.T) {
	// capacity(n) = K·n/(F + c·n): 4·20/(5 ms + 0.2 ms) ≈ 15 400 records/s.
	for _, tc := range []struct {
		name    string
		size    int
		backlog bool
	}{
		{"a size below the arrival rate's needs builds a backlog", 20, true},
		{"a size above them keeps up", 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Seed: 1, Noise: 1e-9, Phases: []Phase{cheap("p", 30000, 20*time.Second)}})
			var obs tuner.Observation
			for i := 0; i < 10; i++ {
				obs = s.Step(tc.size)
			}
			if got := obs.QueueDepth > 50000; got != tc.backlog {
				t.Errorf("queue %d after 10 s, backlog %v, want %v", obs.QueueDepth, got, tc.backlog)
			}
			if tc.backlog && (obs.Throughput < 14500 || obs.Throughput > 16500) {
				t.Errorf("throughput %.0f, want about 15 400", obs.Throughput)
			}
		})
	}
}

func TestLingerFlushesPartialBatches(t *testing.T) {
	s := New(Config{Seed: 1, Phases: []Phase{cheap("p", 500, 10*time.Second)}})
	var obs tuner.Observation
	for i := 0; i < 5; i++ {
		obs = s.Step(1000)
	}
	// 500 records/s for 200 ms: about 100 records a batch; the oldest
	// waits the whole linger, then 5-6 ms of writing.
	if obs.MeanBatchFill < 80 || obs.MeanBatchFill > 120 {
		t.Errorf("mean fill %.0f, want about 100", obs.MeanBatchFill)
	}
	if obs.P99 < 195*time.Millisecond || obs.P99 > 230*time.Millisecond {
		t.Errorf("p99 %v, want just over the 200 ms linger", obs.P99)
	}
}

func TestBrownoutRefusesBatchesLargerThanItsBucket(t *testing.T) {
	ph := Shifting(1, 10*time.Second).Phases[5]
	s := New(Config{Seed: 1, Phases: []Phase{ph}})
	var obs tuner.Observation
	for i := 0; i < 5; i++ {
		obs = s.Step(1200)
	}
	if obs.Backpressure == 0 || obs.SinkErrors == 0 || obs.Goodput != 0 {
		t.Errorf("backpressure %d errors %d goodput %.0f, want 429s, failed batches and no goodput",
			obs.Backpressure, obs.SinkErrors, obs.Goodput)
	}
	s = New(Config{Seed: 1, Phases: []Phase{ph}})
	for i := 0; i < 5; i++ {
		obs = s.Step(200)
	}
	if obs.SinkErrors != 0 || obs.Goodput < 5500 {
		t.Errorf("errors %d goodput %.0f at 200, want none and all of it", obs.SinkErrors, obs.Goodput)
	}
}

func TestBackgroundLoadShowsInCPUAndMemory(t *testing.T) {
	ph := cheap("p", 1000, 5*time.Second)
	ph.BackgroundCPU, ph.BackgroundMem = 95, 50
	obs := New(Config{Seed: 1, Phases: []Phase{ph}}).Step(100)
	if obs.CPUPercent < 95 || obs.MemPercent < 50 {
		t.Errorf("cpu %.1f%% memory %.1f%%, want the background on top", obs.CPUPercent, obs.MemPercent)
	}
}

// TestFlushLimitBoundsTheWritesInFlight: as the node does with a
// Decision's FlushConcurrency, SetFlushLimit lets no more batches be written
// at once, and the throughput of a saturated pipeline falls with it.
func TestFlushLimitBoundsTheWritesInFlight(t *testing.T) {
	s := New(Config{Seed: 1, Noise: 1e-9, Phases: []Phase{cheap("p", 30000, 20*time.Second)}})
	var four, one tuner.Observation
	for i := 0; i < 5; i++ {
		four = s.Step(20)
	}
	s.SetFlushLimit(1)
	s.SetFlushLimit(0) // leaves it
	s.Step(20)         // writes begun at four finish
	for i := 0; i < 5; i++ {
		one = s.Step(20)
	}
	if one.FlushLimit != 1 || four.FlushLimit != 4 {
		t.Fatalf("FlushLimit %d then %d, want 4 then 1", four.FlushLimit, one.FlushLimit)
	}
	for _, a := range one.Attempts {
		if a.InFlight > 1 {
			t.Fatalf("an attempt began with %d in flight at a limit of 1", a.InFlight)
		}
	}
	if r := one.Throughput / four.Throughput; r < 0.2 || r > 0.3 {
		t.Errorf("throughput %.0f at one flush, %.0f at four: ratio %.2f, want about 0.25", one.Throughput, four.Throughput, r)
	}
}
