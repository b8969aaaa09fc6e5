package tuner_test

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
	"github.com/batchpilot/batchpilot/tuner/sim"
)

// updateGolden rewrites testdata/gradient_decisions.jsonl.gz from fresh
// simulator runs: go test ./tuner -run TestGradientReplaysItsGoldenDecisions -update-golden
var updateGolden = flag.Bool("update-golden", false, "rewrite the gradient's golden decisions from the simulator")

const goldenPath = "testdata/gradient_decisions.jsonl.gz"

// goldenStep is one interval of a recorded run: what Gradient saw and what
// it answered (before any breaker or clamp).
type goldenStep struct {
	Run string            `json:"run"`
	Obs tuner.Observation `json:"obs"`
	Dec tuner.Decision    `json:"dec"`
}

// recorder sits between the breaker and Gradient and writes down every
// observation and the gradient's own decision on it.
type recorder struct {
	run   string
	inner tuner.Controller
	steps *[]goldenStep
}

func (r recorder) Name() string { return r.inner.Name() }

func (r recorder) Next(obs tuner.Observation) tuner.Decision {
	d := r.inner.Next(obs)
	// Of the attempts, Gradient reads the 413s (its byte bound), the
	// deferrals, and the successful attempts' RTT (writeTime), which is the
	// mean batch time itself when every batch was written at its first
	// attempt. So an interval's attempts are kept whole when one of them
	// was not a first try that succeeded, and otherwise dropped: kept
	// always, they would make the file twelve times larger. Should Gradient
	// come to read others, the replay of a freshly written file fails at
	// once.
	kept := obs
	kept.Attempts = nil
	if slices.ContainsFunc(obs.Attempts, func(a tuner.Attempt) bool { return a.N > 0 || a.Outcome != tuner.AttemptOK }) {
		kept.Attempts = obs.Attempts
	}
	*r.steps = append(*r.steps, goldenStep{Run: r.run, Obs: kept, Dec: d})
	return d
}

// goldenRuns are the closed-loop simulator runs the golden file records:
// the shifting scenario on several seeds and phase lengths, bare and behind
// the breaker (which overrides sizes, so the gradient sees sizes it did
// not ask for), plus variants that reach the rarer paths — failing writes
// (hard sink errors), a CPU-bound host, and a slow downstream that stalls.
func goldenRuns() []struct {
	name    string
	cfg     sim.Config
	guarded bool
	initial int
} {
	type run = struct {
		name    string
		cfg     sim.Config
		guarded bool
		initial int
	}
	var runs []run
	for _, seed := range []uint64{1, 2, 3} {
		runs = append(runs, run{fmt.Sprintf("shifting/seed=%d", seed), sim.Shifting(seed, 30*time.Second), false, 100})
		runs = append(runs, run{fmt.Sprintf("shifting-guarded/seed=%d", seed), sim.Shifting(seed, 30*time.Second), true, 5000})
	}
	failing := sim.Shifting(4, 20*time.Second)
	for i := range failing.Phases {
		failing.Phases[i].FailRate = 0.6
	}
	runs = append(runs, run{"shifting-failing", failing, false, 1000})
	busy := sim.Shifting(5, 20*time.Second)
	busy.CPULimit = 60
	for i := range busy.Phases {
		busy.Phases[i].BackgroundCPU = 50
		busy.Phases[i].BackgroundMem = 85
	}
	runs = append(runs, run{"shifting-busy-host", busy, false, 100})
	stall := sim.Config{Name: "stall", Seed: 6, Phases: []sim.Phase{
		{Name: "fast", Duration: 20 * time.Second, Arrival: 20000, PerBatch: 2 * time.Millisecond, PerRecord: 2 * time.Microsecond},
		{Name: "slow", Duration: 30 * time.Second, Arrival: 20000, PerBatch: 1500 * time.Millisecond, PerRecord: 100 * time.Microsecond},
		{Name: "cheap-again", Duration: 20 * time.Second, Arrival: 2000, PerBatch: 20 * time.Millisecond, PerRecord: 1 * time.Microsecond},
		{Name: "per-record", Duration: 20 * time.Second, Arrival: 2000, PerBatch: 1 * time.Millisecond, PerRecord: 150 * time.Microsecond},
	}}
	runs = append(runs, run{"stall-and-cost-changes", stall, false, 2000})
	pressure := sim.Config{Name: "pressure", Seed: 7, Phases: []sim.Phase{
		{Name: "idle", Duration: 5 * time.Second},
		{Name: "brownout", Duration: 30 * time.Second, Arrival: 6000, PerBatch: 20 * time.Millisecond, PerRecord: 30 * time.Microsecond, AdmitRate: 3000, AdmitBurst: 400},
		{Name: "overload", Duration: 30 * time.Second, Arrival: 60000, PerBatch: 40 * time.Millisecond, PerRecord: 50 * time.Microsecond, Knee: 800, KneeFactor: 4},
		{Name: "drain", Duration: 20 * time.Second, Arrival: 500, PerBatch: 40 * time.Millisecond, PerRecord: 50 * time.Microsecond, Knee: 800, KneeFactor: 4},
	}}
	runs = append(runs, run{"idle-brownout-overload", pressure, false, 500})
	runs = append(runs, run{"idle-brownout-overload-guarded", pressure, true, 500})
	return runs
}

func recordGolden(t *testing.T) []goldenStep {
	var steps []goldenStep
	for _, r := range goldenRuns() {
		var c tuner.Controller = recorder{run: r.name, inner: tuner.NewGradient(tuner.GradientConfig{Initial: r.initial}), steps: &steps}
		if r.guarded {
			c = tuner.Guard(c, tuner.NewBreaker(tuner.BreakerConfig{}))
		}
		sim.Run(r.cfg, c, r.initial)
	}
	return steps
}

func readGolden(t *testing.T) []goldenStep { return readSteps(t, goldenPath) }

// readSteps reads a gzipped file of recorded steps: the golden decisions,
// or control steps of a bench (bench --steps, the same fields).
func readSteps(t *testing.T, path string) []goldenStep {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open recorded steps: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("read recorded steps %s: %v", path, err)
	}
	var steps []goldenStep
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var s goldenStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("%s line %d: %v", path, len(steps)+1, err)
		}
		steps = append(steps, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read recorded steps %s: %v", path, err)
	}
	return steps
}

func writeGolden(t *testing.T, steps []goldenStep) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	enc := json.NewEncoder(zw)
	for _, s := range steps {
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGradientReplaysItsGoldenDecisions feeds the recorded observations of
// closed-loop simulator runs to a fresh Gradient per run and requires every
// decision (size and reason) to be the recorded one. Gradient reads only its
// observations, so a replay reproduces the run exactly; any change to its
// behaviour, however small, shows here. The file is replayed, not
// re-simulated, so changes to the simulator do not disturb it.
func TestGradientReplaysItsGoldenDecisions(t *testing.T) {
	if *updateGolden {
		writeGolden(t, recordGolden(t))
	}
	steps := readGolden(t)
	if len(steps) < 1000 {
		t.Fatalf("%d golden steps, want a few thousand", len(steps))
	}
	initial := map[string]int{}
	for _, r := range goldenRuns() {
		initial[r.name] = r.initial
	}
	var g *tuner.Gradient
	run := ""
	reasons := map[string]int{}
	bad := 0
	for i, s := range steps {
		if s.Run != run {
			run = s.Run
			g = tuner.NewGradient(tuner.GradientConfig{Initial: initial[run]})
		}
		d := g.Next(s.Obs)
		reasons[d.Reason]++
		if !sameDecision(d, s.Dec) {
			bad++
			if bad <= 5 {
				t.Errorf("step %d (%s, t=%s): decided %+v, golden %+v", i, run, s.Obs.Now.Format(time.TimeOnly), d, s.Dec)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d decisions differ from the golden run (a deliberate change of Gradient's behaviour rewrites the file with -update-golden, and says so in its commit)", bad, len(steps))
	}
	t.Logf("%d decisions replayed identically; reasons: %v", len(steps), reasons)
}

// sameDecision: the same decision, the expected write time within a
// microsecond (the observations are replayed from JSON, which rounds what
// the live run computed from; the cost model's figure moves in its last
// nanoseconds, the sizes and reasons do not).
func sameDecision(a, b tuner.Decision) bool {
	dw := a.WriteTime - b.WriteTime
	a.WriteTime, b.WriteTime = 0, 0
	return a == b && dw.Abs() <= time.Microsecond
}
