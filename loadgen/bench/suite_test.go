package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOracleSaysWhatLimitsEachPhase(t *testing.T) {
	ph := func(name string, offered, throughput, goodput float64) PhaseResult {
		return PhaseResult{Name: name, OfferedRPS: offered, ThroughputRPS: throughput, GoodputRPS: goodput}
	}
	// Phase "easy": size 100 delivers everything. Phase "late": size 1000
	// carries the load but late, size 100 delivers some on time. Phase
	// "over": 10 000/s offered; no size carries more than 7 000/s and,
	// queueing the rest, none delivers much within the SLO.
	sweep := []Result{
		{Controller: "static:100", Phases: []PhaseResult{ph("easy", 1000, 1000, 1000), ph("late", 5000, 3000, 2500), ph("over", 10000, 4000, 300)}},
		{Controller: "static:1000", Phases: []PhaseResult{ph("easy", 1000, 1000, 900), ph("late", 5000, 5000, 1000), ph("over", 10000, 7000, 100)}},
	}
	phases := []span{{name: "easy", length: time.Second}, {name: "late", start: time.Second, length: time.Second},
		{name: "over", start: 2 * time.Second, length: time.Second}}
	o := oracleOf(phases, [][]Result{sweep, sweep, sweep}, OraclePhaseAlone)
	for i, want := range []struct {
		limit string
		size  int
		rps   float64
	}{
		{"offered", 100, 1000},
		{"slo", 100, 2500},       // the best goodput: the load was carried, not on time
		{"capacity", 1000, 7000}, // the capacity, not the offered 10 000 nor the late sizes' goodput
	} {
		p := o.Phases[i]
		if p.Limit != want.limit || p.BatchSize != want.size || !near(p.GoodputRPS, want.rps) {
			t.Errorf("phase %s: limit %s, %v@%d; want %s, %v@%d", p.Name, p.Limit, p.GoodputRPS, p.BatchSize, want.limit, want.rps, want.size)
		}
	}
	if !near(o.GoodputRPS, (1000+2500+7000)/3.0) {
		t.Errorf("oracle goodput %v", o.GoodputRPS)
	}
	if o.Phases[2].OfferedRPS != 10000 || o.Phases[2].CapacityRPS != 7000 || o.Phases[2].CapacityBatchSize != 1000 {
		t.Errorf("capacity phase %+v", o.Phases[2])
	}
}

func TestMergeSeedsAveragesAndKeepsTheRange(t *testing.T) {
	rep := func(seed uint64, gradient, s10, s100 float64) *Report {
		res := func(name string, g float64) Result {
			return Result{Controller: name, GoodputRPS: g, SLOOKRatio: g / 1000, P99ms: 1000 - g,
				Phases: []PhaseResult{{Name: "a", GoodputRPS: g}}}
		}
		return &Report{Scenario: "s", Seed: seed, ElapsedS: 10,
			Results: []Result{res("gradient", gradient)},
			Sweep:   []Result{res("static:10", s10), res("static:100", s100)},
			Oracle:  Oracle{Method: OracleWholeRun, GoodputRPS: max(s10, s100), Phases: []OraclePhase{{Name: "a", GoodputRPS: max(s10, s100), Limit: LimitOffered}}},
		}
	}
	// static:10 wins seed 1 narrowly, static:100 wins on the mean.
	m := mergeSeeds([]*Report{rep(1, 600, 500, 490), rep(2, 800, 300, 700)})
	if len(m.Seeds) != 2 || m.Seeds[0] != 1 || m.Seeds[1] != 2 || m.ElapsedS != 20 {
		t.Errorf("seeds %v elapsed %v", m.Seeds, m.ElapsedS)
	}
	g := m.Results[0]
	if !near(g.GoodputRPS, 700) || g.Spread == nil || g.Spread.GoodputRPS.Min != 600 || g.Spread.GoodputRPS.Max != 800 ||
		!near(g.Phases[0].GoodputRPS, 700) || !near(g.SLOOKRatio, 0.7) {
		t.Errorf("merged gradient %+v spread %+v", g, g.Spread)
	}
	if m.BestStatic.BatchSize != 100 || !near(m.BestStatic.GoodputRPS, 595) {
		t.Errorf("best static %+v, want size 100 at its mean 595", m.BestStatic)
	}
	if !near(m.Oracle.GoodputRPS, 600) || !near(m.Oracle.Phases[0].GoodputRPS, 600) {
		t.Errorf("oracle %+v, want the mean of 500 and 700", m.Oracle)
	}
}

func TestGeomean(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64
	}{
		{"of nothing is 0", nil, 0},
		{"of one is itself", []float64{1.5}, 1.5},
		{"of 2 and 0.5 is 1", []float64{2, 0.5}, 1},
		{"with a zero is 0", []float64{2, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := geomean(tc.xs); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("geomean(%v) = %v, want %v", tc.xs, got, tc.want)
			}
		})
	}
}

func TestSuiteTableHasEveryScenarioAndTheGeometricMean(t *testing.T) {
	rep := func(name string, g, best float64) *Report {
		return &Report{Scenario: name, CPULimitPercent: 100, Quick: true,
			Results:    []Result{{Controller: "gradient", GoodputRPS: g}},
			Sweep:      []Result{{Controller: "static:100", GoodputRPS: best}},
			BestStatic: Best{BatchSize: 100, GoodputRPS: best},
			Oracle: Oracle{Method: OracleWholeRun, GoodputRPS: 2 * best,
				Phases: []OraclePhase{{Name: "over", BatchSize: 500, GoodputRPS: 2 * best, Limit: LimitCapacity}}},
		}
	}
	s := &Suite{Scenarios: []*Report{rep("one", 200, 100), rep("two", 50, 100)}}
	var b bytes.Buffer
	if err := s.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	// gradient: 2x and 0.5x the best static size: a geometric mean of 1.
	for _, want := range []string{"one", "two", "best static:100", "oracle one (whole-run): over 200@500 [capacity]",
		"gradient     1.00x the best static size, 0.50x the oracle (2 scenarios)", "[capacity] no size carried it"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// A tiny suite on the real pipeline: one scenario of one short phase, one
// controller that is also the sweep, two seeds. It checks the suite's
// shape and the seeds' merge, not the figures.
func TestRunSuiteWritesOneReportPerScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real pipeline for a few seconds")
	}
	sc, err := ParseScenario([]byte(`{"name": "tiny", "seed": 3, "sweep": [20], "senders": 16,
		"node": {"control_interval": "250ms", "max_linger": "50ms"},
		"phases": [{"name": "only", "duration": "1s", "load": {"rate": 200, "batch": 10}, "sink": {"per_request": "2ms"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := RunSuite(ctx, Config{Controllers: []string{"static:20"}, CPULimit: 100, Quick: true}, []*Scenario{sc}, 2)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "suite.json")
	if err := s.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Scenarios []struct {
			Scenario string   `json:"scenario"`
			Seeds    []uint64 `json:"seeds"`
			Results  []struct {
				Controller string   `json:"controller"`
				Spread     *Spreads `json:"spread"`
			} `json:"results"`
			Oracle struct {
				GoodputRPS float64 `json:"goodput_rps"`
			} `json:"oracle"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Scenarios) != 1 || got.Scenarios[0].Scenario != "tiny" || len(got.Scenarios[0].Seeds) != 2 ||
		got.Scenarios[0].Seeds[0] != 3 || got.Scenarios[0].Seeds[1] != 4 {
		t.Fatalf("suite report %s", b)
	}
	r := got.Scenarios[0].Results
	if len(r) != 1 || r[0].Controller != "static:20" || r[0].Spread == nil || r[0].Spread.GoodputRPS.Max < r[0].Spread.GoodputRPS.Min {
		t.Errorf("results %+v", r)
	}
}
