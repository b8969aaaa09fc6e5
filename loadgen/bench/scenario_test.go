package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

func TestCommittedScenariosParse(t *testing.T) {
	names := Names()
	if len(names) == 0 || names[0] == "" {
		t.Fatal("no committed scenarios")
	}
	for _, name := range names {
		sc, err := Named(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := newSchedule(mustLoad(t, sc, 0, len(sc.Phases))); err != nil {
			t.Errorf("%s: schedule: %v", name, err)
		}
		q := sc.QuickVersion()
		if q.Duration() >= sc.Duration() || len(q.Sweep) == 0 || len(q.Sweep) > len(sc.Sweep) {
			t.Errorf("%s: quick version lasts %v with sweep %v (full: %v, %v)", name, q.Duration(), q.Sweep, sc.Duration(), sc.Sweep)
		}
	}
	if _, err := Named("../scenarios/shifting"); err == nil {
		t.Error("a path was taken for a scenario name")
	}
	if _, err := Named("nope"); err == nil || !strings.Contains(err.Error(), "shifting") {
		t.Errorf("unknown scenario: %v, want an error listing the committed ones", err)
	}
}

func mustLoad(t *testing.T, sc *Scenario, from, to int) *loadgen.Scenario {
	t.Helper()
	l, err := sc.loadScenario(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestShiftingPhasesAsTheIssueAsks(t *testing.T) {
	sc, err := Named("shifting")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range sc.Phases {
		names = append(names, p.Name)
		if p.Source == "" {
			t.Errorf("phase %s does not say where its figures come from", p.Name)
		}
	}
	if got := strings.Join(names, ","); got != "light,saturation,knee,heavy,burst,brownout" {
		t.Errorf("phases %s", got)
	}
	if sc.Sink.RetryAfter == nil {
		t.Error("no Retry-After set for the brown-out's 429s")
	}
}

// TestTheSuiteAsTheIssueAsks checks that the committed suite has the
// scenarios issue #16 names, each saying where its figures come from.
func TestTheSuiteAsTheIssueAsks(t *testing.T) {
	want := []string{"brownout", "bytes", "cpu", "diurnal", "knee", "light", "overload", "shifting"}
	if got := Names(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("committed scenarios %v, want %v", got, want)
	}
	for _, name := range want {
		sc, err := Named(name)
		if err != nil {
			t.Fatal(err)
		}
		if sc.Description == "" {
			t.Errorf("%s has no description", name)
		}
		for _, p := range sc.Phases {
			if p.Source == "" {
				t.Errorf("%s phase %s does not say where its figures come from", name, p.Name)
			}
		}
	}
	cpu, _ := Named("cpu")
	if cpu.Phases[1].Process.of(100) <= cpu.Phases[0].Process.of(100) {
		t.Error("the cpu scenario's middle phase costs no more CPU than its first")
	}
}

func TestProcessCostOfABatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		cost *ProcessCost
		n    int
		want time.Duration
	}{
		{"no cost is free", nil, 100, 0},
		{"per batch once plus per record", &ProcessCost{PerBatch: loadgen.Duration(5 * time.Millisecond),
			PerRecord: loadgen.Duration(200 * time.Microsecond)}, 10, 7 * time.Millisecond},
		{"an empty batch pays the call", &ProcessCost{PerBatch: loadgen.Duration(time.Millisecond)}, 0, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cost.of(tc.n); got != tc.want {
				t.Errorf("cost of %d records: %v, want %v", tc.n, got, tc.want)
			}
		})
	}
	sc, err := ParseScenario([]byte(`{"phases": [
		{"name": "a", "duration": "10s", "load": {"rate": 1}, "sink": {}},
		{"name": "b", "duration": "10s", "load": {"rate": 1}, "sink": {}, "process": {"per_record": "1ms"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	costs := sc.processCosts(0, 2)
	if costAt(costs, 5*time.Second) != nil || costAt(costs, 15*time.Second) == nil || costAt(costs, time.Minute) == nil {
		t.Error("the process cost is not the phase's in force")
	}
	if sc.processCosts(0, 1) != nil {
		t.Error("a run of phases without a process cost carries one")
	}
}

func TestQuickVersionScalesTheLoadsOwnDurations(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"name": "q", "quick": {"phase_duration": "3s", "control_interval": "250ms", "sweep": [10, 100]},
		"phases": [{"name": "b", "duration": "30s",
		  "load": {"pattern": "burst", "rate": 1000, "burst_every": "10s", "burst_for": "2s"}, "sink": {"per_request": "1ms"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	q := sc.QuickVersion()
	p := q.Phases[0]
	if p.Duration.D() != 3*time.Second || p.Load.BurstEvery.D() != time.Second || p.Load.BurstFor.D() != 200*time.Millisecond {
		t.Errorf("quick phase %v, bursts every %v for %v; want 3s, 1s, 200ms", p.Duration.D(), p.Load.BurstEvery.D(), p.Load.BurstFor.D())
	}
	if q.ControlInterval() != 250*time.Millisecond || len(q.Sweep) != 2 {
		t.Errorf("quick control interval %v sweep %v", q.ControlInterval(), q.Sweep)
	}
	// The full scenario is left as it was.
	if sc.Phases[0].Duration.D() != 30*time.Second || sc.ControlInterval() != time.Second {
		t.Error("QuickVersion changed the scenario it was called on")
	}
}

func TestParseScenarioDefaultsAndLoadDefaults(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"load_defaults": {"batch": 50, "record_size": 512},
		"phases": [{"duration": "5s", "load": {"rate": 100}, "sink": {}},
		           {"duration": "5s", "load": {"rate": 200, "batch": 10}, "sink": {}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Name != "scenario" || sc.Seed != 1 || sc.SLO.D() != 500*time.Millisecond || sc.Senders != 256 || len(sc.Sweep) != len(DefaultSweep) {
		t.Errorf("defaults: %+v", sc)
	}
	if sc.Phases[0].Name != "phase1" || sc.Phases[0].Load.Batch != 50 || sc.Phases[0].Load.RecordSize.Mean != 512 ||
		sc.Phases[1].Load.Batch != 10 || sc.Phases[1].Load.Pattern != "constant" {
		t.Errorf("phases: %+v", sc.Phases)
	}
}

func TestParseScenarioRejects(t *testing.T) {
	phase := func(load, sink string) string {
		return `{"phases": [{"name": "p", "duration": "5s", "load": ` + load + `, "sink": ` + sink + `}]}`
	}
	for _, tc := range []struct {
		name, json, want string
	}{
		{"no phases", `{"phases": []}`, "no phases"},
		{"an unknown field", `{"phases": [], "nope": 1}`, "unknown field"},
		{"an unknown load field", phase(`{"rate": 1, "nope": 1}`, `{}`), "unknown field"},
		{"an unknown sink field", phase(`{"rate": 1}`, `{"nope": 1}`), "unknown field"},
		{"no rate", phase(`{}`, `{}`), "rate"},
		{"closed loop", phase(`{"pattern": "closed"}`, `{}`), "no schedule known in advance"},
		{"replay", phase(`{"pattern": "replay", "trace": "x"}`, `{}`), "no schedule known in advance"},
		{"syslog", phase(`{"rate": 1, "protocol": "tcp"}`, `{}`), "HTTP"},
		{"gzip", phase(`{"rate": 1, "gzip": true}`, `{}`), "gzip"},
		{"a count", phase(`{"rate": 1, "count": 5}`, `{}`), "count"},
		{"a load duration", phase(`{"rate": 1, "duration": "1s"}`, `{}`), "leave duration out"},
		{"a sink duration", phase(`{"rate": 1}`, `{"duration": "1s"}`), "leave duration out"},
		{"a negative cost", phase(`{"rate": 1}`, `{"per_request": -1}`), "duration"},
		{"an error rate over 1", phase(`{"rate": 1}`, `{"error_rate": 2}`), "error_rate"},
		{"a bad error kind", phase(`{"rate": 1}`, `{"error_rate": 0.1, "error_kinds": ["418"]}`), "418"},
		{"no duration", `{"phases": [{"load": {"rate": 1}, "sink": {}}]}`, "duration"},
		{"a phase name twice", `{"phases": [{"name": "a", "duration": "1s", "load": {"rate": 1}, "sink": {}},
			{"name": "a", "duration": "1s", "load": {"rate": 1}, "sink": {}}]}`, "twice"},
		{"a sweep size of 0", `{"sweep": [0], "phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}}]}`, "size 0"},
		{"a sweep size above the maximum", `{"node": {"max_batch_size": 100}, "sweep": [200], "phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}}]}`, "size 200"},
		{"a quick section without a duration", `{"quick": {}, "phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}}]}`, "phase_duration"},
		{"trailing data", `{"phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}}]} {}`, "after"},
		{"a rate out of range", phase(`{"rate": 1e12}`, `{}`), "rate"},
		{"a negative process cost", `{"phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}, "process": {"per_record": -1}}]}`, "duration"},
		{"a process cost per record above 10ms", `{"phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}, "process": {"per_record": "20ms"}}]}`, "per_record"},
		{"a process cost per batch above 1s", `{"phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}, "process": {"per_batch": "2s"}}]}`, "per_batch"},
		{"a negative byte bound", `{"node": {"max_batch_bytes": -1}, "phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}}]}`, "max_batch_bytes"},
		{"an unknown process field", `{"phases": [{"duration": "1s", "load": {"rate": 1}, "sink": {}, "process": {"per_byte": "1ns"}}]}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseScenario(f *testing.F) {
	for _, name := range Names() {
		b, err := builtin.ReadFile("scenarios/" + name + ".json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"phases": [{"duration": "1s", "load": {"pattern": "burst", "rate": 10}, "sink": {"knee_batch": 5}}]}`))
	f.Add([]byte(`{"quick": {"phase_duration": 1}, "phases": [{"duration": 2, "load": {"rate": 1, "batch": 3}, "sink": {"scale": 2}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseScenario(b)
		if err != nil {
			return
		}
		// A scenario that parses can be scheduled and shortened.
		if sc.Duration() <= 0 {
			t.Fatal("a parsed scenario with no duration")
		}
		q := sc.QuickVersion()
		for _, s := range []*Scenario{sc, q} {
			l, err := s.loadScenario(0, len(s.Phases))
			if err != nil {
				t.Fatalf("load scenario: %v", err)
			}
			if _, err := newSchedule(l); err != nil {
				t.Fatalf("schedule: %v", err)
			}
			if _, err := s.sinkScenario(0, len(s.Phases)); err != nil {
				t.Fatalf("sink scenario: %v", err)
			}
		}
	})
}
