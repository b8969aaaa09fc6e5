package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

// The cluster benchmark runs only when BATCHPILOT_BENCH_CLUSTER names a file
// for its figures (make bench-cluster sets it). It is a test, not a
// testing.B: one run is minutes of real time, and its figures are
// measurements to read, not assertions.
//
//   - TestClusterBenchCoordination: five nodes in this process share one
//     downstream (sinksim) and take a load that steps up on all of them at
//     once, with coordination on (grants from the leader cap each node's
//     in-flight bytes) and off (the same cluster, every node ignoring its
//     grant). It measures the aggregate in-flight bytes every 2ms against the
//     cluster budget, and the goodput: records written within the latency
//     SLO, per second.
//   - TestClusterBenchScale (make bench-scale, cluster_scale_test.go): three
//     real servers and up to a thousand workers.
func benchOut(t *testing.T) string {
	out := os.Getenv("BATCHPILOT_BENCH_CLUSTER")
	if out == "" {
		t.Skip("a benchmark: set BATCHPILOT_BENCH_CLUSTER=FILE (make bench-cluster) to run it")
	}
	return out
}

// benchEnv reads a tuning knob of the benchmark from the environment.
func benchEnv(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

type coordinationRun struct {
	Coordination    bool    `json:"coordination"`
	BudgetBytes     int64   `json:"budget_bytes"`
	PeakInflight    int64   `json:"peak_aggregate_inflight_bytes"`
	P99Inflight     int64   `json:"p99_aggregate_inflight_bytes"`
	MeanInflight    int64   `json:"mean_aggregate_inflight_bytes"`
	OverBudget      float64 `json:"fraction_of_samples_over_budget"`
	NodeOverGrant   int64   `json:"samples_with_a_node_over_its_grant"`
	GoodputRPS      float64 `json:"goodput_rps"`
	ThroughputRPS   float64 `json:"throughput_rps"`
	OfferedRPS      float64 `json:"offered_rps"`
	ClientP99ms     float64 `json:"client_p99_ms"`
	Epochs          uint64  `json:"lease_requests"`
	MaxGrantedBytes int64   `json:"max_held_bytes"`
	Samples         int     `json:"samples"`
}

func TestClusterBenchCoordination(t *testing.T) {
	out := benchOut(t)
	// The budget the comparison is made at, and the budgets coordination
	// is also run with, to show where a budget starts to cost goodput.
	budget := int64(benchEnv("BENCH_BUDGET_BYTES", 256<<10))
	budgets := []int64{budget}
	for _, f := range strings.Split(envOr("BENCH_MORE_BUDGETS", "131072,524288"), ",") {
		if b, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64); err == nil && b != budget {
			budgets = append(budgets, b)
		}
	}
	off := runCoordination(t, false, budget)
	logRun(t, off)
	runs := []coordinationRun{off}
	for _, b := range budgets {
		on := runCoordination(t, true, b)
		logRun(t, on)
		runs = append(runs, on)
		if b == budget && off.GoodputRPS > 0 {
			t.Logf("at a budget of %s: goodput with coordination %.1f%% of without; peak in flight %s with, %s without",
				formatBytes(b), 100*on.GoodputRPS/off.GoodputRPS, formatBytes(on.PeakInflight), formatBytes(off.PeakInflight))
		}
	}
	mergeBenchFile(t, out, "coordination", runs)
}

func logRun(t *testing.T, r coordinationRun) {
	t.Logf("coordination %-5v budget %s: peak in flight %s (p99 %s, mean %s), %.2f%% of samples over the budget, %d with a node over its grant; goodput %.0f/s, throughput %.0f/s of %.0f/s offered, client p99 %.0fms; %d lease requests, at most %s held",
		r.Coordination, formatBytes(r.BudgetBytes), formatBytes(r.PeakInflight), formatBytes(r.P99Inflight), formatBytes(r.MeanInflight),
		100*r.OverBudget, r.NodeOverGrant, r.GoodputRPS, r.ThroughputRPS, r.OfferedRPS, r.ClientP99ms, r.Epochs, formatBytes(r.MaxGrantedBytes))
}

// runCoordination starts five nodes on one downstream, warms them with a
// low load, steps the load up on all of them at once and measures the step.
func runCoordination(t *testing.T, coordination bool, budget int64) coordinationRun {
	base := benchEnv("BENCH_BASE_RPS", 2000)
	step := benchEnv("BENCH_STEP_RPS", 30000)
	warm := time.Duration(benchEnv("BENCH_WARM_S", 10)) * time.Second
	hold := time.Duration(benchEnv("BENCH_STEP_S", 20)) * time.Second

	sim, err := sinksim.Start(sinksim.Config{
		Cost: sinksim.Cost{
			PerRequest: time.Duration(benchEnv("BENCH_SINK_PER_REQUEST_US", 2000)) * time.Microsecond,
			PerRecord:  time.Duration(benchEnv("BENCH_SINK_PER_RECORD_US", 20)) * time.Microsecond,
		},
		MaxConcurrency: int(benchEnv("BENCH_SINK_CONCURRENCY", 8)),
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	limits := fmt.Sprintf("cluster_budget_bytes=%d,budget_mode=fixed,node_floor_bytes=%d,epoch_ms=1000,lease_ttl_ms=3000,slo_ms=512,cpu_limit_percent=100,mem_limit_percent=100",
		budget, budget/20)
	dir := t.TempDir()
	var agents []*agent
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		for _, a := range agents {
			_ = a.stop(sctx, false)
		}
	}()
	for i := 0; i < 5; i++ {
		cfg := agentConfig{
			NodeName: fmt.Sprintf("b%d", i+1), DataDir: filepath.Join(dir, fmt.Sprintf("b%d", i+1)),
			HTTPAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
			Sink: "http", SinkURL: sim.URL() + "/ingest", Controller: "gradient",
			BatchSize: 100, MaxBatchSize: 20000, MaxLinger: 50 * time.Millisecond, LatencySLO: 512 * time.Millisecond,
			FlushConcurrency: 4, QueueRecords: 200000, QueueBytes: 128 << 20, MaxBodyBytes: 16 << 20, MaxLineBytes: 1 << 20,
			LogLevel: "error", InitialLimits: limits, ignoreGrant: !coordination,
		}
		if i < 3 {
			cfg.Server, cfg.BootstrapExpect = true, 3
		}
		if i > 0 {
			cfg.Join = agents[0].gossip.Addr()
		}
		a, err := startAgent(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	var leader *agent
	pollFor(t, "five nodes with fresh leases from one leader", func() bool {
		leader = nil
		for _, a := range agents {
			if a.raft.IsLeader() {
				leader = a
			}
			if _, fresh := a.raft.Grant(time.Now()); !fresh {
				return false
			}
		}
		if leader == nil {
			return false
		}
		ls, _ := leader.raft.Leases(time.Now())
		return len(ls) == 5
	})

	var targets []string
	for _, a := range agents {
		targets = append(targets, a.URL())
	}
	var rep *loadgen.Report
	loadDone := make(chan error, 1)
	started := time.Now()
	go func() {
		var err error
		rep, err = loadgen.Run(ctx, loadgen.Config{
			Targets: targets, Concurrency: 128, Logger: log,
			Scenario: &loadgen.Scenario{Name: "step", Phases: []loadgen.Phase{
				{Name: "base", Pattern: "constant", Rate: base, Duration: loadgen.Duration(warm), Protocol: "http", Batch: 100},
				{Name: "step", Pattern: "constant", Rate: step, Duration: loadgen.Duration(hold), Protocol: "http", Batch: 100},
			}},
		})
		loadDone <- err
	}()

	// Sample the aggregate in flight every 2ms over the step, and each
	// node against its grant.
	var samples []int64
	var nodeOver int64
	var written0, good0 float64
	var leases0 uint64
	for time.Since(started) < warm {
		time.Sleep(10 * time.Millisecond)
	}
	written0, good0 = clusterCounts(t, agents)
	leases0 = leader.raft.LeaseRequests()
	stepStart := time.Now()
	var maxGranted int64
	// A node starts no batch above the grant it was given; the batches in
	// flight when a grant is cut finish (they take up to a few hundred ms
	// here), so each sample is held to the largest grant of the last 500ms.
	type given struct {
		at    time.Time
		bytes int64
	}
	recent := map[*agent][]given{}
	for time.Since(stepStart) < hold {
		var agg int64
		now := time.Now()
		for _, a := range agents {
			in := a.node.InflightBytes()
			agg += in
			if coordination {
				h := append(recent[a], given{now, a.grant.Load()})
				for len(h) > 1 && now.Sub(h[0].at) > 500*time.Millisecond {
					h = h[1:]
				}
				recent[a] = h
				var bound int64
				for _, g := range h {
					bound = max(bound, g.bytes)
				}
				if in > bound {
					nodeOver++
				}
			}
		}
		samples = append(samples, agg)
		_, held := leader.raft.Leases(time.Now())
		maxGranted = max(maxGranted, held)
		time.Sleep(2 * time.Millisecond)
	}
	secs := time.Since(stepStart).Seconds()
	written1, good1 := clusterCounts(t, agents)
	epochs := leader.raft.LeaseRequests() - leases0
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}

	r := coordinationRun{Coordination: coordination, BudgetBytes: budget, Samples: len(samples), NodeOverGrant: nodeOver,
		GoodputRPS: (good1 - good0) / secs, ThroughputRPS: (written1 - written0) / secs, Epochs: epochs, MaxGrantedBytes: maxGranted}
	var sum, over int64
	for _, s := range samples {
		sum += s
		if s > budget {
			over++
		}
	}
	sorted := append([]int64(nil), samples...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	if n := len(sorted); n > 0 {
		r.PeakInflight, r.P99Inflight, r.MeanInflight = sorted[n-1], sorted[n*99/100], sum/int64(n)
		r.OverBudget = float64(over) / float64(n)
	}
	for _, p := range rep.Phases {
		if p.Name == "step" {
			r.OfferedRPS, r.ClientP99ms = p.OfferedRPS, p.Latency.P99
		}
	}
	return r
}

// clusterCounts sums, over the nodes, the records written and those
// written within the SLO (512 ms: a bucket bound of the end-to-end latency
// histogram).
func clusterCounts(t *testing.T, agents []*agent) (written, good float64) {
	t.Helper()
	for _, a := range agents {
		mfs, err := a.node.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "batchpilot_records_written_total":
				written += mf.GetMetric()[0].GetCounter().GetValue()
			case "batchpilot_end_to_end_latency_seconds":
				for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
					if math.Abs(b.GetUpperBound()-0.512) < 1e-9 {
						good += float64(b.GetCumulativeCount())
					}
				}
			}
		}
	}
	return written, good
}

// procCPU is the CPU seconds a process has used.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// procRSS is a process's resident set, in bytes.
func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

var benchFileMu sync.Mutex

// mergeBenchFile sets one key of the JSON object in path, keeping the
// others, so that the two benchmarks can run apart or together.
func mergeBenchFile(t *testing.T, path, key string, v any) {
	benchFileMu.Lock()
	defer benchFileMu.Unlock()
	all := map[string]any{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &all)
	}
	all[key] = v
	all["machine"] = fmt.Sprintf("%d cores", runtime.NumCPU())
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("figures written to %s", path)
}

// tinyClusterScenario is a cluster bench of four seconds of load: enough
// to check the report's shape, not to measure anything.
const tinyClusterScenario = `{"name": "tiny", "record_size": 100, "batch": 10,
 "sink": {"per_request": "5ms", "per_byte": "1us", "knee_bytes": 16384, "max_concurrency": 8, "queue": 8},
 "phases": [{"name": "step", "duration": "2s", "rate": 200},
            {"name": "shift", "duration": "2s", "rate": 100, "hot_factor": 3, "sink": {"knee_bytes": 8192}}],
 "budgets": [16384], "ceiling": 1048576}`

func TestBenchNodesWritesTheClusterReport(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(scenario, []byte(tinyClusterScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.json")
	svgDir := filepath.Join(dir, "svg") + "/"
	cmd := exec.Command(binPath, "bench", "--nodes", "2", "--arms", "uncoordinated,learned", "--scenario-file", scenario,
		"--out", out, "--svg", svgDir, "--progress-interval", "1s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	table, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench --nodes: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "cluster bench: arm 1/2 uncoordinated") {
		t.Errorf("no progress line on stderr:\n%s", stderr.String())
	}
	if !strings.Contains(string(table), "learned") {
		t.Errorf("no table on stdout:\n%s", table)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Scenario string  `json:"scenario"`
		Nodes    int     `json:"nodes"`
		Seed     uint64  `json:"seed"`
		SLOms    float64 `json:"slo_ms"`
		Arms     []struct {
			Name          string   `json:"name"`
			GoodputRPS    *float64 `json:"goodput_rps"`
			OfferedRPS    float64  `json:"offered_rps"`
			P99ms         *float64 `json:"p99_ms"`
			OverloadRatio *float64 `json:"overload_ratio"`
			JainIndex     *float64 `json:"jain_index"`
			Phases        []struct {
				Name          string   `json:"name"`
				GoodputRPS    *float64 `json:"goodput_rps"`
				P99ms         *float64 `json:"p99_ms"`
				OverloadRatio *float64 `json:"overload_ratio"`
			} `json:"phases"`
			Nodes []struct {
				Name   string `json:"name"`
				Series []struct {
					T          int   `json:"t"`
					GrantBytes int64 `json:"grant_bytes"`
					BatchSize  int64 `json:"batch_size"`
				} `json:"series"`
				Decisions []struct {
					T      float64 `json:"t"`
					Old    int     `json:"old_size"`
					New    int     `json:"new_size"`
					Reason string  `json:"reason"`
				} `json:"decisions"`
			} `json:"nodes"`
		} `json:"arms"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	if rep.Scenario != "tiny" || rep.Nodes != 2 || rep.Seed != 1 || rep.SLOms != 500 || len(rep.Arms) != 2 ||
		rep.Arms[0].Name != "uncoordinated" || rep.Arms[1].Name != "learned" {
		t.Fatalf("report head: %s", b)
	}
	// 2 s at 200/s on both nodes, then 2 s at 300/s and 100/s.
	const offered = (2*200*2 + 2*300 + 2*100) / 4.0
	for _, a := range rep.Arms {
		if a.GoodputRPS == nil || a.P99ms == nil || a.OverloadRatio == nil || a.JainIndex == nil {
			t.Fatalf("arm %s misses a field: %s", a.Name, b)
		}
		if math.Abs(a.OfferedRPS-offered) > 1 || *a.GoodputRPS < 0 || *a.GoodputRPS > a.OfferedRPS ||
			*a.P99ms <= 0 || *a.OverloadRatio < 0 || *a.OverloadRatio > 1 || *a.JainIndex < 0.5 || *a.JainIndex > 1 {
			t.Errorf("arm %s: offered %v (want %v), goodput %v, p99 %v, overload %v, jain %v: out of range",
				a.Name, a.OfferedRPS, offered, *a.GoodputRPS, *a.P99ms, *a.OverloadRatio, *a.JainIndex)
		}
		if len(a.Phases) != 2 || a.Phases[0].Name != "step" || a.Phases[1].Name != "shift" ||
			a.Phases[0].GoodputRPS == nil || a.Phases[0].P99ms == nil || a.Phases[0].OverloadRatio == nil {
			t.Errorf("arm %s phases: %s", a.Name, b)
		}
		// Each node's grant and batch size, once a second of the 4 s load.
		if len(a.Nodes) != 2 {
			t.Fatalf("arm %s: %d nodes in the report, want 2", a.Name, len(a.Nodes))
		}
		// Each node's tuner decisions over the load: the agents start at
		// 100 records a batch (their default), far from what 100-300
		// records/s need, so every node decides at least once.
		for _, n := range a.Nodes {
			if len(n.Decisions) == 0 {
				t.Errorf("arm %s node %s: no tuner decisions in the report", a.Name, n.Name)
			}
			for _, d := range n.Decisions {
				if d.T < 0 || d.T > 10 || d.Reason == "" || d.Old <= 0 || d.New <= 0 {
					t.Errorf("arm %s node %s: decision %+v", a.Name, n.Name, d)
				}
			}
		}
		for _, n := range a.Nodes {
			granted, batched := false, false
			for i, s := range n.Series {
				granted, batched = granted || s.GrantBytes > 0, batched || s.BatchSize > 0
				if s.T != i {
					t.Errorf("arm %s node %s: second %d says t=%d", a.Name, n.Name, i, s.T)
				}
			}
			if len(n.Series) != 4 || !granted || !batched {
				t.Errorf("arm %s node %s: series %+v, want 4 seconds with a grant and a batch size", a.Name, n.Name, n.Series)
			}
		}
		svg, err := os.ReadFile(filepath.Join(svgDir, "cluster-"+a.Name+".svg"))
		if err != nil || !strings.HasPrefix(string(svg), "<svg") {
			t.Errorf("arm %s: no SVG (%v)", a.Name, err)
		}
	}
}

func TestBenchNodesRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"one node", []string{"--nodes", "1"}, "--nodes 1"},
		{"an unknown arm", []string{"--nodes", "3", "--arms", "bogus"}, `arm "bogus"`},
		{"an unknown scenario", []string{"--nodes", "3", "--scenario", "bogus"}, "no cluster bench scenario"},
		{"a missing scenario file", []string{"--nodes", "3", "--scenario-file", "/nonexistent.json"}, "read cluster bench scenario"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runBench(context.Background(), tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("bench %v: %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
	for _, args := range [][]string{{"--nodes", "3", "--suite"}, {"--nodes", "3", "--controllers", "gradient"}} {
		if err := runBench(context.Background(), args); !errors.Is(err, errUsage) {
			t.Errorf("bench %v: %v, want a usage error", args, err)
		}
	}
}
