package sim

import (
	"testing"
	"time"
)

// The controllers the bench compares by default.
var benchControllers = []string{"static:100", "aimd", "gradient2", "target", "gradient"}

func TestCompareOnTheShiftingScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every controller and a static sweep over six minutes of simulated load")
	}
	rep, err := Compare(Shifting(1, time.Minute), benchControllers, 100, DefaultSweep)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.Table())
	byName := map[string]Result{}
	for _, r := range rep.Results {
		byName[r.Controller] = r
	}
	g := byName["gradient"]
	// Whether gradient is ahead of every baseline is a figure to report,
	// not a property to assert: the baselines follow their authors (issue
	// #16), and on this simulation aimd comes within a percent of gradient.
	for _, name := range benchControllers[:4] {
		if r := byName[name]; g.GoodputRPS <= r.GoodputRPS {
			t.Logf("gradient goodput %.0f, not above %s's %.0f", g.GoodputRPS, name, r.GoodputRPS)
		}
	}
	// A single size that happens to suit every phase exists in hindsight
	// (see the report); gradient must come close to it without knowing it.
	if g.GoodputRPS < 0.95*rep.BestStatic.GoodputRPS {
		t.Errorf("gradient goodput %.0f, under 95 %% of the best static size's %.0f (size %d)",
			g.GoodputRPS, rep.BestStatic.GoodputRPS, rep.BestStatic.BatchSize)
	}
	if g.SLOOKRatio < 0.95 {
		t.Errorf("gradient kept p99 within the SLO in %.0f %% of intervals, want ≥ 95 %%", 100*g.SLOOKRatio)
	}
}

// BenchmarkShifting reports each controller's goodput on the shifting
// scenario as a share of the best static size in hindsight (%best) and of
// the per-phase oracle (%oracle): go test -run - -bench Shifting ./tuner/sim
func BenchmarkShifting(b *testing.B) {
	for b.Loop() {
		rep, err := Compare(Shifting(1, time.Minute), benchControllers, 100, DefaultSweep)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rep.Results {
			b.ReportMetric(100*r.GoodputRPS/rep.BestStatic.GoodputRPS, r.Controller+"_%best")
			b.ReportMetric(100*r.GoodputRPS/rep.Oracle.GoodputRPS, r.Controller+"_%oracle")
		}
	}
}
