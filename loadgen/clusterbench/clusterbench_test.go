package clusterbench

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

func TestJain(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64
	}{
		{"equal shares are perfectly fair", []float64{0.8, 0.8, 0.8, 0.8, 0.8}, 1},
		{"one node with everything is 1/n", []float64{1, 0, 0, 0, 0}, 0.2},
		{"half the nodes served is 1/2", []float64{1, 1, 0, 0}, 0.5},
		{"no nodes count as fair", nil, 1},
		{"nobody served counts as fair", []float64{0, 0, 0}, 1},
		{"a hot node served at half its demand", []float64{0.5, 1, 1, 1, 1}, 4.5 * 4.5 / (5 * 4.25)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Jain(tc.xs); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Jain(%v) = %v, want %v", tc.xs, got, tc.want)
			}
		})
	}
}

func TestCommittedScenariosParse(t *testing.T) {
	if len(Names()) == 0 {
		t.Fatal("no committed cluster scenario")
	}
	for _, name := range Names() {
		sc, err := Named(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		q := sc.QuickVersion()
		if q.Duration() >= sc.Duration() || len(q.Budgets) > len(sc.Budgets) || len(q.Budgets) == 0 {
			t.Errorf("%s: quick version %v with %d budgets, from %v with %d", name, q.Duration(), len(q.Budgets), sc.Duration(), len(sc.Budgets))
		}
		if q.Phases[0].Duration < sinksim.Duration(2*time.Second) {
			t.Errorf("%s: a quick phase under 2 s", name)
		}
	}
	if _, err := Named("nope"); err == nil || !strings.Contains(err.Error(), DefaultScenario) {
		t.Errorf("an unknown scenario: %v, want an error listing the committed ones", err)
	}
}

const goodScenario = `{"name": "t", "batch": 10,
 "sink": {"per_request": "5ms", "knee_bytes": 16384},
 "phases": [{"name": "step", "duration": "2s", "rate": 300}, {"name": "shift", "duration": "2s", "rate": 200, "sink": {"knee_bytes": 8192}}],
 "budgets": [16384], "ceiling": 1048576}`

func TestScenarioIsChecked(t *testing.T) {
	if _, err := ParseScenario([]byte(goodScenario)); err != nil {
		t.Fatalf("a good scenario: %v", err)
	}
	for _, tc := range []struct{ name, edit, want string }{
		{"no knee to share", `"knee_bytes": 16384}`, "a knee"},
		{"a phase without a name", `"name": "step"`, "a name"},
		{"a rate of zero", `"rate": 300`, "rate 0"},
		{"a phase under a second", `"duration": "2s", "rate": 300`, "below 1s"},
		{"no budgets to sweep", `"budgets": [16384]`, "at least one hand-set budget"},
		{"a budget under 1 KiB", `"budgets": [16384]`, "budget 10"},
		{"a bad sink phase", `"sink": {"knee_bytes": 8192}`, "knee_bytes -1"},
		{"an unknown field", `"batch": 10`, "unknown field"},
		{"a hot factor out of range", `"rate": 200,`, "hot_factor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := map[string]string{
				"no knee to share":          `"knee_bytes": 0}`,
				"a phase without a name":    `"name": ""`,
				"a rate of zero":            `"rate": 0`,
				"a phase under a second":    `"duration": "500ms", "rate": 300`,
				"no budgets to sweep":       `"budgets": []`,
				"a budget under 1 KiB":      `"budgets": [10]`,
				"a bad sink phase":          `"sink": {"knee_bytes": -1}`,
				"an unknown field":          `"batch": 10, "bogus": 1`,
				"a hot factor out of range": `"rate": 200, "hot_factor": 500,`,
			}[tc.name]
			_, err := ParseScenario([]byte(strings.Replace(goodScenario, tc.edit, bad, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseScenario: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestKneeFollowsThePhases(t *testing.T) {
	sc, err := ParseScenario([]byte(goodScenario))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Duration
		want int64
	}{{0, 16384}, {1999 * time.Millisecond, 16384}, {2 * time.Second, 8192}, {time.Hour, 8192}} {
		if got := sc.kneeAt(tc.at); got != tc.want {
			t.Errorf("kneeAt(%v) = %d, want %d", tc.at, got, tc.want)
		}
	}
	if ss := sc.sinkScenario(); ss == nil || len(ss.Phases) != 2 || ss.Phases[1].KneeBytes == nil || *ss.Phases[1].KneeBytes != 8192 {
		t.Errorf("sink scenario %+v: want the shift in the second phase", ss)
	}
}

func TestSummarizeCountsGoodputWithinTheSLOPerNodeAndPhase(t *testing.T) {
	sc, err := ParseScenario([]byte(goodScenario))
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	outs := []outcome{
		{node: 0, sent: 100 * ms, records: 10, latency: 50 * ms, ok: true},           // good
		{node: 0, sent: 200 * ms, records: 10, latency: 900 * ms, ok: true},          // acked late
		{node: 1, sent: 300 * ms, records: 10, latency: 5 * time.Second},             // failed
		{node: 1, sent: 2500 * ms, records: 10, latency: 100 * ms, ok: true},         // good, shift
		{node: 0, sent: 3500 * ms, records: 10, latency: 100 * ms, ok: true},         // good, shift
		{node: 1, sent: 3600 * ms, records: 10, latency: 400 * ms, ok: true},         // good, shift
		{node: 0, sent: 3700 * ms, records: 10, latency: 499 * ms, ok: true},         // good, shift
		{node: 1, sent: 3800 * ms, records: 10, latency: 501 * ms, ok: true},         // late, shift
		{node: 1, sent: 3900 * ms, records: 10, latency: 5 * time.Second, ok: false}, // failed, shift
	}
	wins := []window{{overloaded: true, peakBytes: 20000}, {}, {}, {}}
	a := summarize("x", sc, 2, outs, wins)
	if a.GoodputRPS != 50.0/4 || a.ThroughputRPS != 70.0/4 || a.OfferedRPS != 90.0/4 {
		t.Errorf("goodput %v throughput %v offered %v, want 12.5, 17.5, 22.5", a.GoodputRPS, a.ThroughputRPS, a.OfferedRPS)
	}
	if a.OverloadRatio != 0.25 || a.Phases[0].OverloadRatio != 0.5 || a.Phases[1].OverloadRatio != 0 {
		t.Errorf("overload %v (phases %v, %v), want 0.25 (0.5, 0)", a.OverloadRatio, a.Phases[0].OverloadRatio, a.Phases[1].OverloadRatio)
	}
	if a.Phases[0].GoodputRPS != 5 || a.Phases[1].GoodputRPS != 20 {
		t.Errorf("phase goodput %v, %v, want 5, 20", a.Phases[0].GoodputRPS, a.Phases[1].GoodputRPS)
	}
	// Node 0: 30 good of 40 offered; node 1: 20 of 50.
	if want := Jain([]float64{0.75, 0.4}); math.Abs(a.JainIndex-want) > 1e-9 {
		t.Errorf("jain %v, want %v", a.JainIndex, want)
	}
	if len(a.Series) != 4 || !a.Series[0].Overloaded || a.Series[0].InFlightBytes != 20000 || a.Series[3].KneeBytes != 8192 {
		t.Errorf("series %+v", a.Series)
	}
	if a.P99ms != 5000 {
		t.Errorf("p99 %v ms, want the timeout's 5000 (two of nine failed)", a.P99ms)
	}
}

func FuzzClusterScenario(f *testing.F) {
	f.Add([]byte(goodScenario))
	for _, name := range Names() {
		b, _ := committed.ReadFile("scenarios/" + name + ".json")
		f.Add(b)
	}
	f.Add([]byte(`{"name": "x", "batch": 1, "sink": {"per_request": 1, "knee_requests": 2}, "phases": [{"name": "a", "duration": 1, "rate": 1e6, "hot_factor": 100}], "budgets": [1024], "ceiling": 1024}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseScenario(b)
		if err != nil {
			return
		}
		q := sc.QuickVersion()
		if sc.Duration() <= 0 || q.Duration() <= 0 || len(q.Budgets) == 0 {
			t.Fatalf("a scenario that parsed runs for %v (quick %v) with %d budgets", sc.Duration(), q.Duration(), len(q.Budgets))
		}
		for i := range 3 {
			for _, p := range sc.Phases {
				if r := p.rateOf(i); !(r > 0) || math.IsInf(r, 0) {
					t.Fatalf("phase %s rate for node %d: %v", p.Name, i, r)
				}
			}
		}
		if _, err := sinksim.New(sc.sinkConfig()); err != nil {
			t.Fatalf("the sink of a scenario that parsed: %v", err)
		}
	})
}

func TestScrapeGaugesReadsUnlabelledSamples(t *testing.T) {
	page := strings.Join([]string{
		"# HELP batchpilot_grant_bytes The in-flight byte budget granted to this node (0: none).",
		"# TYPE batchpilot_grant_bytes gauge",
		"batchpilot_grant_bytes 1.1288e+06",
		`batchpilot_breaker_state{state="closed"} 1`,
		"batchpilot_queue_depth 0",
		"batchpilot_batch_size_total 9", // a longer name with the same prefix
		"batchpilot_batch_size 37",
	}, "\n") + "\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, page)
	}))
	defer srv.Close()
	v, err := scrapeGauges(srv.Client(), srv.URL+"/metrics", gaugeGrant, gaugeQueue, gaugeBatch, gaugeInFlight)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{gaugeGrant: 1128800, gaugeQueue: 0, gaugeBatch: 37}
	if len(v) != len(want) {
		t.Errorf("got %v, want %v (no %s: the page has none)", v, want, gaugeInFlight)
	}
	for k, w := range want {
		if got, ok := v[k]; !ok || got != w {
			t.Errorf("%s = %v (%v), want %v", k, got, ok, w)
		}
	}
	if _, err := scrapeGauge(srv.Client(), srv.URL+"/metrics", gaugeInFlight); err == nil {
		t.Errorf("scrapeGauge of a gauge the page lacks: no error")
	}
	if _, err := scrapeGauges(srv.Client(), srv.URL+"/nothing", gaugeGrant); err == nil {
		t.Errorf("a 404 page: no error")
	}
}

func TestSVGDrawsEachNodesGrantWhereABudgetIsShared(t *testing.T) {
	series := []Second{{T: 0, Phase: "step", OfferedRPS: 100, KneeBytes: 1000}, {T: 1, Phase: "step", OfferedRPS: 100, KneeBytes: 1000}}
	nodes := []NodeResult{
		{Name: "n1", Series: []NodeSecond{{T: 0, GrantBytes: 4096}, {T: 1, GrantBytes: 8192}}},
		{Name: "n2", Series: []NodeSecond{{T: 0, GrantBytes: 2048}, {T: 1, GrantBytes: 1024}}},
	}
	r := &Report{Nodes: 2}
	for _, tc := range []struct {
		arm    string
		grants bool
	}{{ArmLearned, true}, {"budget:65536", true}, {ArmUncoordinated, false}} {
		svg := string(Arm{Name: tc.arm, Series: series, Nodes: nodes}.svg(r))
		if got := strings.Contains(svg, "each node's grant"); got != tc.grants {
			t.Errorf("%s: grants panel %v, want %v", tc.arm, got, tc.grants)
		}
		if tc.grants && (!strings.Contains(svg, `>n1</tspan>`) || !strings.Contains(svg, `>n2</tspan>`) || !strings.Contains(svg, ">8 KiB<")) {
			t.Errorf("%s: the panel misses a node or its scale:\n%s", tc.arm, svg)
		}
		if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(svg, "</svg>\n") {
			t.Errorf("%s: not one SVG document", tc.arm)
		}
	}
}

func TestTableComparesLearnedOnlyWithArmsThatRan(t *testing.T) {
	learned := Arm{Name: ArmLearned, GoodputRPS: 300, Phases: []PhaseResult{{Name: "step", GoodputRPS: 600}}}
	other := Arm{Name: ArmUncoordinated, GoodputRPS: 200, Phases: []PhaseResult{{Name: "step", GoodputRPS: 400}}}
	for _, tc := range []struct {
		arms []Arm
		want string // the summary line; "" for none
	}{
		{[]Arm{other, learned}, "learned: step 1.50x vs uncoordinated, whole run 1.50x vs uncoordinated\n"},
		{[]Arm{learned}, ""},
		{[]Arm{other}, ""},
	} {
		var b strings.Builder
		if err := (&Report{Arms: tc.arms}).WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		_, summary, _ := strings.Cut(b.String(), "learned: ")
		if summary != "" {
			summary = "learned: " + summary
		}
		if summary != tc.want {
			t.Errorf("arms %d: summary %q, want %q\n%s", len(tc.arms), summary, tc.want, b.String())
		}
	}
}
