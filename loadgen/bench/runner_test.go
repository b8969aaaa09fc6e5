package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A tiny scenario on the real pipeline: two short phases, two controllers
// and a sweep of two sizes. It checks the report's shape, not the
// controllers' figures (the bench command measures those).
func TestRunReportsEveryControllerAndTheSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real pipeline for a few seconds")
	}
	sc, err := ParseScenario([]byte(`{"name": "smoke", "seed": 7, "slo": "500ms",
		"node": {"control_interval": "250ms", "max_linger": "50ms"},
		"sweep": [20, 200], "senders": 32,
		"phases": [
		  {"name": "slow", "duration": "1500ms", "load": {"rate": 400, "batch": 10}, "sink": {"per_request": "5ms"}},
		  {"name": "busy", "duration": "1500ms", "load": {"pattern": "burst", "from": 500, "rate": 3000, "batch": 50},
		   "sink": {"per_request": "10ms", "per_record": "10us", "error_rate": 0.05, "error_kinds": ["429"]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var progress, steps bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Scenario: sc, Controllers: []string{"static:20", "gradient"}, CPULimit: 100,
		Oracle: OracleWholeRun, Progress: &progress, ProgressEvery: time.Second, Steps: &steps})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if rep.Scenario != "smoke" || rep.Seed != 7 || rep.SLOms != 500 || rep.DurationS != 3 || rep.ControlIntervalMS != 250 {
		t.Errorf("report header %+v", rep)
	}
	if len(rep.Results) != 2 || rep.Results[0].Controller != "static:20" || rep.Results[1].Controller != "gradient" {
		t.Fatalf("results %+v", rep.Results)
	}
	// static:20 is both a controller and a size of the sweep: run once.
	if len(rep.Sweep) != 2 || rep.Sweep[0].Controller != "static:20" || rep.Sweep[1].Controller != "static:200" {
		t.Fatalf("sweep %+v", rep.Sweep)
	}
	if got := strings.Count(progress.String(), "goodput"); got != 3 {
		t.Errorf("%d runs reported, want 3:\n%s", got, progress.String())
	}
	for _, r := range append(rep.Results, rep.Sweep...) {
		if len(r.Phases) != 2 || r.Phases[0].Name != "slow" || r.Phases[1].Name != "busy" {
			t.Errorf("%s: phases %+v", r.Controller, r.Phases)
		}
		if r.OfferedRPS <= 0 || r.ThroughputRPS <= 0 || r.GoodputRPS > r.ThroughputRPS || r.ThroughputRPS > r.OfferedRPS {
			t.Errorf("%s: offered %.0f, throughput %.0f, goodput %.0f", r.Controller, r.OfferedRPS, r.ThroughputRPS, r.GoodputRPS)
		}
		if r.SLOOKRatio < 0 || r.SLOOKRatio > 1 || r.P99ms < r.P50ms || r.MeanBatchSize <= 0 || r.PeakRSSBytes == 0 {
			t.Errorf("%s: slo_ok %v p50 %v p99 %v mean size %v rss %d", r.Controller, r.SLOOKRatio, r.P50ms, r.P99ms, r.MeanBatchSize, r.PeakRSSBytes)
		}
		if len(r.Series) != 3 {
			t.Errorf("%s: %d seconds in the series, want 3", r.Controller, len(r.Series))
		}
		if r.Decisions == nil {
			t.Errorf("%s: no decision counts", r.Controller)
		}
		if r.SinkRequests == 0 {
			t.Errorf("%s: the downstream saw no requests", r.Controller)
		}
	}
	if s := rep.Results[0]; s.MeanBatchSize != 20 {
		t.Errorf("static:20 ran at a mean size of %v", s.MeanBatchSize)
	}
	if rep.BestStatic.BatchSize != 20 && rep.BestStatic.BatchSize != 200 {
		t.Errorf("best static %+v", rep.BestStatic)
	}
	if rep.Oracle.Method != OracleWholeRun || len(rep.Oracle.Phases) != 2 || rep.Oracle.GoodputRPS < rep.BestStatic.GoodputRPS-1e-9 {
		t.Errorf("oracle %+v (best static %+v)", rep.Oracle, rep.BestStatic)
	}
	b, err := json.Marshal(rep)
	if err != nil || !bytes.Contains(b, []byte(`"best_static":{"batch_size":`)) {
		t.Errorf("JSON: %v %.200s", err, b)
	}

	// The control steps: every one of every run, named; the steps that
	// changed the size are the decisions the report counts.
	count, changed := map[string]int{}, map[string]int{}
	for i, line := range bytes.Split(bytes.TrimSpace(steps.Bytes()), []byte("\n")) {
		var s ControlStep
		if err := json.Unmarshal(line, &s); err != nil {
			t.Fatalf("steps line %d: %v: %.200s", i+1, err, line)
		}
		count[s.Run]++
		if s.Dec.BatchSize != s.Obs.BatchSize {
			changed[s.Run]++
		}
	}
	for _, r := range append(rep.Results, rep.Sweep...) {
		name := "smoke/seed=7/" + r.Controller
		if count[name] < 10 { // 3 s at 250 ms
			t.Errorf("%d steps of %s, want at least 10 (runs: %v)", count[name], name, count)
		}
		counted := 0
		for _, n := range r.Decisions {
			counted += n
		}
		if changed[name] != counted {
			t.Errorf("%d steps of %s changed the size, the report counts %d decisions", changed[name], name, counted)
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"phases": [{"duration": "1s", "load": {"rate": 10}, "sink": {}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no scenario", Config{}, "no scenario"},
		{"an unknown controller", Config{Scenario: sc, Controllers: []string{"pid"}}, "unknown controller"},
		{"a controller twice", Config{Scenario: sc, Controllers: []string{"aimd", " aimd"}}, "twice"},
		{"an unknown oracle", Config{Scenario: sc, Oracle: "magic"}, "oracle"},
		{"a CPU limit over 100", Config{Scenario: sc, CPULimit: 120}, "CPU limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
