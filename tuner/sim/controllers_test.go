package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

// windowGoodput is the mean goodput over intervals [from, to) of a trace.
func windowGoodput(tr []Interval, from, to int) float64 {
	var sum float64
	for _, iv := range tr[from:to] {
		sum += iv.Obs.Goodput
	}
	return sum / float64(to-from)
}

// optimum is the best mean goodput over intervals [from, to) that any
// static size of the sweep reaches on cfg.
func optimum(cfg Config, from, to int) (int, float64) {
	bestSize, best := 0, -1.0
	for _, sz := range DefaultSweep {
		r := Run(cfg, &tuner.Static{Size: sz}, sz)
		if g := windowGoodput(r.Trace, from, to); g > best {
			bestSize, best = sz, g
		}
	}
	return bestSize, best
}

func TestGradientReachesTheOptimumWithinFiveIntervalsOfAStepChange(t *testing.T) {
	const phase = 30 // seconds
	phases := Shifting(1, phase*time.Second).Phases
	// The optimum after a step into each phase: the best static size on
	// that phase alone, over the same window.
	sizes, bests := make([]int, len(phases)), make([]float64, len(phases))
	for j, b := range phases {
		sizes[j], bests[j] = optimum(Config{Seed: 7, Phases: []Phase{b}}, 5, phase)
	}
	for i, a := range phases {
		for j, b := range phases {
			if i == j {
				continue
			}
			size, best := sizes[j], bests[j]
			t.Run(a.Name+" to "+b.Name, func(t *testing.T) {
				t.Parallel()
				cfg := Config{Seed: 7, Phases: []Phase{a, b}}
				r := Run(cfg, tuner.NewGradient(tuner.GradientConfig{Initial: 100}), 100)
				got := windowGoodput(r.Trace, phase+5, 2*phase)
				if got < 0.9*best {
					t.Errorf("goodput %.0f from 5 intervals after the step, want within 10 %% of the optimum %.0f (static %d)",
						got, best, size)
				}
			})
		}
	}
}

func TestGradientBatchSizeIsSteadyInSteadyState(t *testing.T) {
	for _, ph := range Shifting(1, time.Minute).Phases {
		if ph.BurstEvery > 0 {
			continue // bursts are not a steady state
		}
		t.Run(ph.Name, func(t *testing.T) {
			t.Parallel()
			r := Run(Config{Seed: 3, Phases: []Phase{ph}}, tuner.NewGradient(tuner.GradientConfig{Initial: 100}), 100)
			if cv := r.Phases[0].SizeCV; cv > 0.05 {
				t.Errorf("coefficient of variation of the size over the second half %.3f, want ≤ 0.05", cv)
			}
		})
	}
}

func TestGradientKeepsLightLoadInsideTheSLO(t *testing.T) {
	light := Shifting(1, time.Minute).Phases[0]
	r := Run(Config{Seed: 5, Phases: []Phase{light}}, tuner.NewGradient(tuner.GradientConfig{Initial: 100}), 100)
	for i, iv := range r.Trace {
		if iv.Obs.P99 > iv.Obs.SLO {
			t.Errorf("interval %d: p99 %v over the SLO %v at size %d", i, iv.Obs.P99, iv.Obs.SLO, iv.Obs.BatchSize)
		}
	}
	// Small batches: the fill time stays within a tenth of the SLO.
	if m := r.Phases[0].MeanBatchSize; m > 20 {
		t.Errorf("mean size %.0f at 300 records/s, want small batches (≤ 20)", m)
	}
}

// A noisy neighbour pushes the CPU over its limit: the guard reports CPU
// pressure within one interval (the node would refuse new work), never
// shrinks the batch for it (a smaller batch costs more CPU per record),
// keeps the sink breaker closed, and the pressure clears within the
// release time once the neighbour leaves.
func TestCPUPressureIsReportedWithinOneIntervalAndNeverShrinks(t *testing.T) {
	normal := cheap("normal", 20000, 20*time.Second)
	hog := normal
	hog.Name, hog.Duration, hog.BackgroundCPU = "noisy neighbour", 10*time.Second, 93
	after := normal
	after.Duration = 30 * time.Second
	cfg := Config{Seed: 11, Phases: []Phase{normal, hog, after}}
	g := tuner.Guard(tuner.NewGradient(tuner.GradientConfig{Initial: 100}), tuner.NewBreaker(tuner.BreakerConfig{PressureRelease: 3 * time.Second}))
	r := Run(cfg, g, 100)

	if p := r.Trace[19].Pressure; p != tuner.TripNone {
		t.Fatalf("pressure %v before the neighbour came", p)
	}
	if first := r.Trace[20]; first.Obs.CPUPercent <= 90 || first.Pressure != tuner.TripCPU {
		t.Fatalf("first interval of the neighbour: cpu %.1f%% pressure %v, want over 90%% and cpu", first.Obs.CPUPercent, first.Pressure)
	}
	for i := 20; i < 30; i++ {
		if r.Trace[i].Pressure != tuner.TripCPU {
			t.Errorf("interval %d: pressure %v while the host is over its limit", i, r.Trace[i].Pressure)
		}
	}
	for i, iv := range r.Trace {
		if iv.Decision.Breaker != tuner.BreakerClosed || strings.HasPrefix(iv.Decision.Reason, "breaker:") {
			t.Fatalf("interval %d: %+v; want the controller's decision with the breaker closed", i, iv.Decision)
		}
	}
	clearBy := -1
	for i := 30; i < len(r.Trace); i++ {
		if r.Trace[i].Pressure == tuner.TripNone {
			clearBy = i
			break
		}
	}
	if clearBy < 0 || clearBy > 30+3+1 {
		t.Errorf("pressure cleared at interval %d, want within the 3 s release plus one interval of 30", clearBy)
	}
	if got := windowGoodput(r.Trace, 50, 60); got < 0.95*normal.Arrival {
		t.Errorf("goodput %.0f over the last 10 s, want the arrival rate back (%.0f)", got, normal.Arrival)
	}
}

func TestAIMDBacksOffOn429sInTheBrownout(t *testing.T) {
	// Vector's controller needs a successful request to seed its past RTT
	// (a batch of 1500 never gets through the brown-out's 1000-record
	// bucket): two seconds of the light phase come first.
	light := Shifting(1, 2*time.Second).Phases[0]
	brownout := Shifting(1, 20*time.Second).Phases[5]
	r := Run(Config{Seed: 2, Phases: []Phase{light, brownout}}, tuner.NewAIMD(tuner.AIMDConfig{Initial: 1500}), 1500)
	first := r.Trace[2] // the brown-out's first interval
	if first.Obs.Backpressure == 0 || first.Decision.BatchSize >= first.Obs.BatchSize {
		t.Errorf("first brown-out interval: %d 429s, size %d -> %d (%s); want a cut",
			first.Obs.Backpressure, first.Obs.BatchSize, first.Decision.BatchSize, first.Decision.Reason)
	}
	// Then a sawtooth around the bucket, as Vector's limit saws around a
	// service's capacity.
	var sum float64
	var sizes []int
	for _, iv := range r.Trace[6:] {
		sum += float64(iv.Decision.BatchSize)
		sizes = append(sizes, iv.Decision.BatchSize)
	}
	if mean := sum / float64(len(sizes)); mean < 800 || mean > 1200 {
		t.Errorf("mean size %.0f over the brown-out (sizes %v), want within 20 %% of the 1000-record bucket", mean, sizes)
	}
}

func Example() {
	cfg := Shifting(1, 10*time.Second)
	r := Run(cfg, tuner.NewGradient(tuner.GradientConfig{Initial: 100}), 100)
	fmt.Println(r.Controller, len(r.Trace), "intervals,", len(r.Phases), "phases")
	// Output: gradient 60 intervals, 6 phases
}
