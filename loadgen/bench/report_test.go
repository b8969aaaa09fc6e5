package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"math"
	"strings"
	"testing"
	"time"
)

const ms1 = time.Millisecond

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// Two phases of 2 s each; one request per second of 100 records unless a
// test says otherwise.
var twoPhases = []span{{name: "a", start: 0, length: 2 * time.Second}, {name: "b", start: 2 * time.Second, length: 2 * time.Second}}

func TestSummarize(t *testing.T) {
	slo := 500 * ms1
	for _, tc := range []struct {
		name string
		outs []outcome
		want func(t *testing.T, r Result)
	}{
		{
			name: "goodput counts only records acknowledged within the SLO, per second of the whole run",
			outs: []outcome{
				{phase: 0, sec: 0, n: 100, acked: true, latency: 100 * ms1},
				{phase: 0, sec: 1, n: 100, acked: true, latency: 600 * ms1}, // late
				{phase: 1, sec: 2, n: 100, acked: false},                    // never acknowledged
				{phase: 1, sec: 3, n: 100, acked: true, latency: 500 * ms1}, // exactly at the SLO: good
			},
			want: func(t *testing.T, r Result) {
				if !near(r.GoodputRPS, 200.0/4) || !near(r.ThroughputRPS, 300.0/4) || !near(r.OfferedRPS, 100) {
					t.Errorf("goodput %v throughput %v offered %v, want 50 75 100", r.GoodputRPS, r.ThroughputRPS, r.OfferedRPS)
				}
				if r.Unacked != 100 {
					t.Errorf("unacked %d, want 100", r.Unacked)
				}
				if !near(r.Phases[0].GoodputRPS, 50) || !near(r.Phases[1].GoodputRPS, 50) {
					t.Errorf("phase goodput %v %v, want 50 50", r.Phases[0].GoodputRPS, r.Phases[1].GoodputRPS)
				}
				// Windows 0 and 3 are within the SLO; 1 is late and 2 was
				// never acknowledged.
				if !near(r.SLOOKRatio, 0.5) || !near(r.Phases[0].SLOOKRatio, 0.5) || !near(r.Phases[1].SLOOKRatio, 0.5) {
					t.Errorf("slo_ok %v (phases %v %v), want 0.5", r.SLOOKRatio, r.Phases[0].SLOOKRatio, r.Phases[1].SLOOKRatio)
				}
			},
		},
		{
			name: "a window whose p99 is within the SLO is ok even if 1 % of its records are late",
			outs: []outcome{
				{phase: 0, sec: 0, n: 99, acked: true, latency: 50 * ms1},
				{phase: 0, sec: 0, n: 1, acked: true, latency: 5 * time.Second},
				{phase: 0, sec: 1, n: 98, acked: true, latency: 50 * ms1},
				{phase: 0, sec: 1, n: 2, acked: true, latency: 5 * time.Second},
			},
			want: func(t *testing.T, r Result) {
				if !r.Series[0].OK || r.Series[1].OK {
					t.Errorf("windows ok %v %v, want true false", r.Series[0].OK, r.Series[1].OK)
				}
				// Seconds without records do not count.
				if !near(r.SLOOKRatio, 0.5) {
					t.Errorf("slo_ok %v, want 0.5", r.SLOOKRatio)
				}
			},
		},
		{
			name: "unacknowledged records count as infinitely late in their window",
			outs: []outcome{
				{phase: 0, sec: 0, n: 98, acked: true, latency: 10 * ms1},
				{phase: 0, sec: 0, n: 2, acked: false},
			},
			want: func(t *testing.T, r Result) {
				if r.Series[0].OK || r.SLOOKRatio != 0 {
					t.Errorf("window ok %v, slo_ok %v: want a failed window", r.Series[0].OK, r.SLOOKRatio)
				}
				// The latency quantiles are of the acknowledged records.
				if !near(r.P99ms, 10) {
					t.Errorf("p99 %v ms, want 10", r.P99ms)
				}
			},
		},
		{
			name: "latency quantiles weigh each request by its records",
			outs: []outcome{
				{phase: 0, sec: 0, n: 49, acked: true, latency: 10 * ms1},
				{phase: 0, sec: 0, n: 50, acked: true, latency: 20 * ms1},
				{phase: 1, sec: 2, n: 1, acked: true, latency: 900 * ms1},
			},
			want: func(t *testing.T, r Result) {
				if !near(r.P50ms, 20) || !near(r.P99ms, 20) {
					t.Errorf("p50 %v p99 %v, want 20 20", r.P50ms, r.P99ms)
				}
				if !near(r.Phases[1].P99ms, 900) {
					t.Errorf("phase b p99 %v, want 900", r.Phases[1].P99ms)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := summarize("static:100", twoPhases, tc.outs, nil, slo)
			if len(r.Phases) != 2 || len(r.Series) != 4 {
				t.Fatalf("%d phases, %d seconds, want 2 and 4", len(r.Phases), len(r.Series))
			}
			tc.want(t, r)
		})
	}
}

func TestSummarizeAckedSLOOK(t *testing.T) {
	slo := 500 * ms1
	for _, tc := range []struct {
		name        string
		outs        []outcome
		want        float64 // acked_slo_ok_ratio
		wantWindows int
		wantPhases  [2]float64
		wantSLOOK   float64 // slo_ok_ratio, unchanged by the new measure
		// acked_goodput_rps: records within the SLO of their accepted
		// attempt, per second of the 4 s run.
		wantAckedGoodput float64
	}{
		{
			name: "a retried record is judged by the attempt the node accepted, not by its intended time",
			outs: []outcome{
				// Due at 0.1 s, refused, accepted on its retry at 1.2 s and
				// written 100 ms later: 1.2 s late for slo_ok, on time for
				// the node.
				{phase: 0, sec: 0, n: 100, acked: true, latency: 1300 * ms1, attempt: 1200 * ms1, attemptLatency: 100 * ms1},
				{phase: 1, sec: 2, n: 100, acked: true, latency: 100 * ms1, attempt: 2000 * ms1, attemptLatency: 100 * ms1},
			},
			want: 1, wantWindows: 2, wantPhases: [2]float64{1, 1}, wantSLOOK: 0.5, wantAckedGoodput: 200.0 / 4,
		},
		{
			name: "records never acknowledged are not in it; windows without an acknowledgement do not count",
			outs: []outcome{
				{phase: 0, sec: 0, n: 98, acked: true, latency: 10 * ms1, attempt: 0, attemptLatency: 10 * ms1},
				{phase: 0, sec: 0, n: 2, acked: false},
				{phase: 1, sec: 3, n: 100, acked: false},
			},
			want: 1, wantWindows: 1, wantPhases: [2]float64{1, 0}, wantSLOOK: 0, wantAckedGoodput: 98.0 / 4,
		},
		{
			name: "a window whose accepted records' p99 is over the SLO fails",
			outs: []outcome{
				{phase: 0, sec: 0, n: 98, acked: true, latency: 10 * ms1, attempt: 0, attemptLatency: 10 * ms1},
				{phase: 0, sec: 0, n: 2, acked: true, latency: 900 * ms1, attempt: 300 * ms1, attemptLatency: 600 * ms1},
				{phase: 1, sec: 2, n: 100, acked: true, latency: 100 * ms1, attempt: 2000 * ms1, attemptLatency: 100 * ms1},
			},
			want: 0.5, wantWindows: 2, wantPhases: [2]float64{0, 1}, wantSLOOK: 0.5, wantAckedGoodput: 198.0 / 4,
		},
		{
			name: "attempts accepted after the schedule (the grace time) count, in the last phase",
			outs: []outcome{
				{phase: 1, sec: 3, n: 100, acked: true, latency: 2 * time.Second, attempt: 4500 * ms1, attemptLatency: 800 * ms1},
				{phase: 1, sec: 3, n: 100, acked: true, latency: 100 * ms1, attempt: 3000 * ms1, attemptLatency: 100 * ms1},
			},
			want: 0.5, wantWindows: 2, wantPhases: [2]float64{0, 0.5}, wantSLOOK: 0, wantAckedGoodput: 100.0 / 4,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := summarize("gradient", twoPhases, tc.outs, nil, slo)
			if !near(r.AckedSLOOKRatio, tc.want) || r.AckedWindows != tc.wantWindows {
				t.Errorf("acked_slo_ok %v over %d windows, want %v over %d", r.AckedSLOOKRatio, r.AckedWindows, tc.want, tc.wantWindows)
			}
			for i, w := range tc.wantPhases {
				if !near(r.Phases[i].AckedSLOOKRatio, w) {
					t.Errorf("phase %d acked_slo_ok %v, want %v", i, r.Phases[i].AckedSLOOKRatio, w)
				}
			}
			if !near(r.SLOOKRatio, tc.wantSLOOK) {
				t.Errorf("slo_ok %v, want %v (its meaning is unchanged)", r.SLOOKRatio, tc.wantSLOOK)
			}
			if !near(r.AckedGoodputRPS, tc.wantAckedGoodput) {
				t.Errorf("acked goodput %v/s, want %v", r.AckedGoodputRPS, tc.wantAckedGoodput)
			}
		})
	}
}

func TestSummarizeBatchSizes(t *testing.T) {
	var sizes []sizeSample
	// 100 for the first phase, 1000 for the second, samples every 100ms,
	// and samples outside the run that must be left out.
	sizes = append(sizes, sizeSample{t: -time.Second, size: 5}, sizeSample{t: 4 * time.Second, size: 5})
	for i := range 40 {
		size := 100
		if i >= 20 {
			size = 1000
		}
		sizes = append(sizes, sizeSample{t: time.Duration(i) * 100 * ms1, size: size})
	}
	r := summarize("gradient", twoPhases, nil, sizes, 500*ms1)
	if !near(r.MeanBatchSize, 550) || !near(r.Phases[0].MeanBatchSize, 100) || !near(r.Phases[1].MeanBatchSize, 1000) {
		t.Errorf("mean size %v, phases %v %v; want 550, 100, 1000", r.MeanBatchSize, r.Phases[0].MeanBatchSize, r.Phases[1].MeanBatchSize)
	}
	if r.Series[1].BatchSize != 100 || r.Series[2].BatchSize != 1000 {
		t.Errorf("series sizes %v %v, want 100 1000", r.Series[1].BatchSize, r.Series[2].BatchSize)
	}
}

func TestBestStaticAndOracle(t *testing.T) {
	run := func(name string, a, b float64) Result {
		return Result{Controller: name, GoodputRPS: (a + b) / 2,
			Phases: []PhaseResult{{Name: "a", GoodputRPS: a}, {Name: "b", GoodputRPS: b}}}
	}
	// static:10 wins phase a, static:1000 phase b, static:100 is the best
	// compromise over the whole run.
	sweep := []Result{run("static:10", 1000, 0), run("static:100", 800, 700), run("static:1000", 0, 1000)}
	best := bestStatic(sweep)
	if best.BatchSize != 100 || !near(best.GoodputRPS, 750) {
		t.Errorf("best static %+v, want size 100 at 750", best)
	}
	phases := []span{{name: "a", length: 1 * time.Second}, {name: "b", start: time.Second, length: 3 * time.Second}}
	o := oracleOf(phases, [][]Result{sweep, sweep}, OracleWholeRun)
	// The oracle weighs phases by their length: (1000×1 + 1000×3) / 4.
	if !near(o.GoodputRPS, 1000) || o.Phases[0].BatchSize != 10 || o.Phases[1].BatchSize != 1000 || o.Method != OracleWholeRun {
		t.Errorf("oracle %+v, want 1000 from sizes 10 and 1000", o)
	}
	// Controllers that are not static sizes are never candidates.
	if b := bestStatic([]Result{run("gradient", 5000, 5000)}); b.BatchSize != 0 {
		t.Errorf("best static %+v from a non-static run", b)
	}
}

func TestReportJSONHasTheContractsFields(t *testing.T) {
	r := summarize("gradient", twoPhases, []outcome{{phase: 0, sec: 0, n: 10, acked: true, latency: ms1}}, nil, 500*ms1)
	rep := Report{Scenario: "shifting", Seed: 1, SLOms: 500, Results: []Result{r},
		BestStatic: Best{BatchSize: 100, GoodputRPS: 1}, Oracle: Oracle{GoodputRPS: 2}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "seed", "slo_ms", "results", "best_static", "oracle"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	res := m["results"].([]any)[0].(map[string]any)
	for _, k := range []string{"controller", "goodput_rps", "throughput_rps", "p50_ms", "p99_ms", "slo_ok_ratio",
		"peak_rss_bytes", "mean_batch_size", "phases"} {
		if _, ok := res[k]; !ok {
			t.Errorf("result lacks %q", k)
		}
	}
	ph := res["phases"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "goodput_rps", "p99_ms", "mean_batch_size"} {
		if _, ok := ph[k]; !ok {
			t.Errorf("phase lacks %q", k)
		}
	}
	if _, ok := m["best_static"].(map[string]any)["batch_size"]; !ok {
		t.Error("best_static lacks batch_size")
	}
	if _, ok := m["oracle"].(map[string]any)["goodput_rps"]; !ok {
		t.Error("oracle lacks goodput_rps")
	}
}

func TestTableAndSVG(t *testing.T) {
	sizes := []sizeSample{{t: 0, size: 100}, {t: 3 * time.Second, size: 2000}}
	outs := []outcome{{phase: 0, sec: 0, n: 10, acked: true, latency: ms1}, {phase: 1, sec: 3, n: 10, acked: true, latency: 700 * ms1}}
	rep := &Report{Scenario: "shifting", Seed: 1, SLOms: 500, DurationS: 4, ControlIntervalMS: 1000, CPULimitPercent: 100,
		PhaseNames: []string{"a", "b"}, PhaseLengthsS: []float64{2, 2},
		Results: []Result{summarize("static:100", twoPhases, outs, sizes, 500*ms1), summarize("gradient<&>", twoPhases, outs, sizes, 500*ms1)},
		Sweep:   []Result{summarize("static:100", twoPhases, outs, sizes, 500*ms1)},
	}
	rep.BestStatic = bestStatic(rep.Sweep)
	rep.Oracle = oracleOf(twoPhases, [][]Result{rep.Sweep, rep.Sweep}, OraclePhaseAlone)
	var tb bytes.Buffer
	if err := rep.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"controller", "static:100", "1.00x", "best static in hindsight: size 100", "per-phase oracle (phase-alone)"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tb.String())
		}
	}
	svg := rep.SVG()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	lines := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	// Per controller: batch size, goodput, p99; plus the offered rate.
	if lines != 2*3+1 {
		t.Errorf("%d polylines, want 7", lines)
	}
	if !strings.Contains(string(svg), "gradient&lt;&amp;&gt;") {
		t.Error("controller names are not escaped")
	}
}
