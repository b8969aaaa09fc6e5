package tuner_test

import (
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

// TestGradientDoesNotJumpPastItsWriteBudgetOnAnExtrapolatedCost replays the
// start of a quick overload bench (bench --scenario overload --quick
// --controllers gradient --steps F, seed 1; a downstream serving 2 of the
// node's 4 flushes at once): 3 000 records/s, then 10 000. Overloaded at
// every size it had measured, the model extrapolated their cost and, in
// the last recorded interval, asked for 1,575 records a batch on a write
// it predicted at 450 ms, past the 250 ms latency budget; the write-time
// guard cut it back the interval after, and the size swung between 700
// and 1,500 for three seconds (overload phase 2,133 records/s against
// 5,500-6,000 in the runs without the jump). Every decision up to that
// interval is the run's own, so the replay is exact; the last must not
// grow into a write the budget does not allow.
func TestGradientDoesNotJumpPastItsWriteBudgetOnAnExtrapolatedCost(t *testing.T) {
	steps := readSteps(t, "testdata/overload-quick-model-jump.jsonl.gz")
	g := tuner.NewGradient(tuner.GradientConfig{Initial: steps[0].Obs.BatchSize})
	budget := time.Duration(0.9 * 0.5 * float64(steps[0].Obs.SLO)) // slowMargin × LatencyBudget × SLO
	for i, s := range steps {
		d := g.Next(s.Obs)
		if i < len(steps)-1 {
			if d.BatchSize != s.Dec.BatchSize || d.Reason != s.Dec.Reason {
				t.Fatalf("step %d: decided %d %s, the run %d %s: the replay is no longer exact", i, d.BatchSize, d.Reason, s.Dec.BatchSize, s.Dec.Reason)
			}
			continue
		}
		if d.BatchSize > s.Obs.BatchSize && d.WriteTime > budget {
			t.Errorf("step %d: %d → %d (%s) on a predicted write of %v, past %v (the run: %d %s)",
				i, s.Obs.BatchSize, d.BatchSize, d.Reason, d.WriteTime.Round(time.Millisecond), budget, s.Dec.BatchSize, s.Dec.Reason)
		}
		t.Logf("step %d: %d → %d (%s), predicted write %v", i, s.Obs.BatchSize, d.BatchSize, d.Reason, d.WriteTime.Round(time.Millisecond))
	}
}
