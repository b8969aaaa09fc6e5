package clusterbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
	"github.com/batchpilot/batchpilot/tuner"
)

// Config is one cluster bench run.
type Config struct {
	// Binary is the batchpilot executable whose `agent` the nodes run.
	Binary   string
	Scenario *Scenario
	Nodes    int
	Quick    bool
	// Arms to run (default all: uncoordinated, arc, the budget sweep,
	// learned); "budget" stands for the whole sweep.
	Arms []string
	// Dir holds the nodes' data dirs (default a temporary one).
	Dir string
	// Progress receives a line per arm and one every ProgressEvery.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// The arms.
const (
	ArmUncoordinated = "uncoordinated"
	ArmARC           = "arc"
	ArmBudget        = "budget"
	ArmLearned       = "learned"
)

// AllArms is the default set, in the order they run.
var AllArms = []string{ArmUncoordinated, ArmARC, ArmBudget, ArmLearned}

// unbounded is a budget no cluster of the bench reaches: the grants never
// bind (the limit's largest value, 1 PiB; every node's floor 1 TiB).
const (
	unboundedBudget = 1 << 50
	unboundedFloor  = 1 << 40
	// coordinatedFloor is every node's floor in the coordinated arms: a
	// batch of about 40 records of 200 bytes may always be in flight.
	coordinatedFloor = 8 << 10
)

// armSpec is how one arm runs the nodes.
type armSpec struct {
	name       string
	controller string
	limits     string
}

func (cfg *Config) specs() ([]armSpec, error) {
	sc := cfg.Scenario
	common := fmt.Sprintf("epoch_ms=%d,lease_ttl_ms=%d,slo_ms=%d,cpu_limit_percent=100,mem_limit_percent=100",
		sc.Node.EpochMS, 3*sc.Node.EpochMS, time.Duration(sc.SLO).Milliseconds())
	free := fmt.Sprintf("%s,budget_mode=fixed,cluster_budget_bytes=%d,node_floor_bytes=%d", common, int64(unboundedBudget), int64(unboundedFloor))
	arms := cfg.Arms
	if len(arms) == 0 {
		arms = AllArms
	}
	var out []armSpec
	for _, a := range arms {
		switch a {
		case ArmUncoordinated:
			out = append(out, armSpec{a, "gradient", free})
		case ArmARC:
			out = append(out, armSpec{a, "arc", free})
		case ArmBudget:
			for _, b := range sc.Budgets {
				out = append(out, armSpec{fmt.Sprintf("budget:%d", b), "gradient",
					fmt.Sprintf("%s,budget_mode=fixed,cluster_budget_bytes=%d,node_floor_bytes=%d", common, b, min(b, coordinatedFloor))})
			}
		case ArmLearned:
			out = append(out, armSpec{a, "gradient",
				fmt.Sprintf("%s,budget_mode=learned,cluster_budget_bytes=%d,node_floor_bytes=%d", common, sc.Ceiling, min(sc.Ceiling, coordinatedFloor))})
		default:
			return nil, fmt.Errorf("arm %q: want %s", a, strings.Join(AllArms, ", "))
		}
	}
	return out, nil
}

// Run runs every arm, one after the other, on the same seeded load.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Binary == "" || cfg.Scenario == nil {
		return nil, fmt.Errorf("cluster bench: a binary and a scenario are needed")
	}
	if cfg.Nodes < 2 || cfg.Nodes > 64 {
		return nil, fmt.Errorf("cluster bench: --nodes %d: want 2 to 64", cfg.Nodes)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 10 * time.Second
	}
	specs, err := cfg.specs()
	if err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "batchpilot-cluster-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	sc := cfg.Scenario
	rep := &Report{Scenario: sc.Name, Nodes: cfg.Nodes, Seed: sc.Seed, SLOms: float64(time.Duration(sc.SLO).Milliseconds()),
		Quick: cfg.Quick, Machine: fmt.Sprintf("%d cores", runtime.NumCPU())}
	var best *Arm
	for i, spec := range specs {
		fmt.Fprintf(cfg.Progress, "cluster bench: arm %d/%d %s (%s, %v of load)\n", i+1, len(specs), spec.name, spec.controller, sc.Duration())
		arm, err := runArm(ctx, cfg, spec, fmt.Sprintf("%s/%d", dir, i))
		if err != nil {
			return nil, fmt.Errorf("arm %s: %w", spec.name, err)
		}
		fmt.Fprintf(cfg.Progress, "cluster bench: arm %s: goodput %.0f/s of %.0f/s offered, p99 %.0f ms, overloaded %.1f%% of seconds, jain %.3f\n",
			arm.Name, arm.GoodputRPS, arm.OfferedRPS, arm.P99ms, 100*arm.OverloadRatio, arm.JainIndex)
		if strings.HasPrefix(arm.Name, "budget:") {
			rep.BudgetSweep = append(rep.BudgetSweep, arm)
			if best == nil || arm.GoodputRPS > best.GoodputRPS {
				a := arm
				best = &a
			}
			continue
		}
		rep.Arms = append(rep.Arms, arm)
	}
	if best != nil {
		// The best hand-set budget in hindsight, placed before learned.
		at := len(rep.Arms)
		for i, a := range rep.Arms {
			if a.Name == ArmLearned {
				at = i
			}
		}
		rep.Arms = append(rep.Arms[:at], append([]Arm{*best}, rep.Arms[at:]...)...)
	}
	return rep, nil
}

// runArm starts the downstream and the nodes, offers the load, and
// measures.
func runArm(ctx context.Context, cfg Config, spec armSpec, dir string) (Arm, error) {
	sc := cfg.Scenario
	// The downstream's scenario clock starts with the load: until then it
	// stands at zero, so the phases line up with the load's.
	var loadStart atomic.Int64
	origin := time.Now()
	simCfg := sc.sinkConfig()
	simCfg.Scenario = sc.sinkScenario()
	simCfg.Now = func() time.Time {
		s := loadStart.Load()
		if s == 0 {
			return origin
		}
		return origin.Add(time.Since(time.Unix(0, s)))
	}
	sim, err := sinksim.Start(simCfg)
	if err != nil {
		return Arm{}, err
	}
	defer sim.Close()
	extra := []string{"--controller", spec.controller, "--initial-limits", spec.limits,
		"--latency-slo", time.Duration(sc.SLO).String(), "--max-linger", time.Duration(sc.Node.MaxLinger).String(),
		"--flush-concurrency", fmt.Sprint(sc.Node.FlushConcurrency), "--queue-records", fmt.Sprint(sc.Node.QueueRecords)}
	cl, err := startCluster(ctx, cfg.Binary, dir, cfg.Nodes, sim.URL(), extra)
	if err != nil {
		return Arm{}, err
	}
	defer cl.stop()
	if err := cl.waitLeases(ctx, 2*time.Minute); err != nil {
		return Arm{}, err
	}

	start := time.Now()
	loadStart.Store(start.UnixNano())
	var (
		mu   sync.Mutex
		outs []outcome
		wg   sync.WaitGroup
	)
	for i, a := range cl.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := offer(ctx, sc, i, a.url, start)
			mu.Lock()
			outs = append(outs, o...)
			mu.Unlock()
		}()
	}
	// Once a second, every node's grant, queue and batch, and the cluster
	// budget in force as the first node (a server) knows it.
	secs := int(sc.Duration() / time.Second)
	budgets := make([]int64, secs)
	nodeSecs := make([][]NodeSecond, len(cl.agents))
	for i := range nodeSecs {
		nodeSecs[i] = make([]NodeSecond, secs)
	}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		client := &http.Client{Timeout: time.Second}
		for s := range secs {
			var swg sync.WaitGroup
			for i, a := range cl.agents {
				swg.Add(1)
				go func() {
					defer swg.Done()
					v, err := scrapeGauges(client, a.url+"/metrics", gaugeBudget, gaugeGrant, gaugeQueue, gaugeBatch, gaugeInFlight)
					if err != nil {
						return
					}
					nodeSecs[i][s] = NodeSecond{GrantBytes: int64(v[gaugeGrant]), QueueRecords: int64(v[gaugeQueue]),
						BatchSize: int64(v[gaugeBatch]), InFlightBytes: int64(v[gaugeInFlight])}
					if i == 0 {
						budgets[s] = int64(v[gaugeBudget])
					}
				}()
			}
			swg.Wait()
			for i := range nodeSecs {
				nodeSecs[i][s].T = s // also in a second a node did not answer in
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(time.Duration(s+1) * time.Second))):
			}
		}
	}()
	wins := watchSink(ctx, sim, sc, start, cfg.Progress, cfg.ProgressEvery, spec.name)
	<-sampled
	for s := range min(len(wins), len(budgets)) {
		wins[s].budget = budgets[s]
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Arm{}, err
	}
	arm := summarize(spec.name, sc, cfg.Nodes, outs, wins)
	for i := range arm.Nodes { // one per agent, in order
		arm.Nodes[i].Series = nodeSecs[i]
		arm.Nodes[i].Decisions = nodeDecisions(cl.agents[i].url, cl.agents[i].name, start)
	}
	if spec.name == ArmLearned {
		arm.BudgetDecisions = budgetDecisions(cl.agents[0].url, start)
	}
	return arm, nil
}

// The gauges the bench reads from each node's /metrics.
const (
	gaugeBudget   = "batchpilot_cluster_budget_bytes"
	gaugeGrant    = "batchpilot_grant_bytes"
	gaugeQueue    = "batchpilot_queue_depth"
	gaugeBatch    = "batchpilot_batch_size"
	gaugeInFlight = "batchpilot_inflight_bytes"
)

// budgetDecisions reads the leader's budget decisions (any node relays
// them) made since the load started, oldest first.
func budgetDecisions(base string, start time.Time) []BudgetDecision {
	var v struct {
		Decisions []struct {
			Time    time.Time     `json:"time"`
			Old     int64         `json:"old_bytes"`
			New     int64         `json:"new_bytes"`
			Reason  string        `json:"reason"`
			Figures BudgetFigures `json:"figures"`
		} `json:"decisions"`
	}
	if !getJSON(base+"/api/v1/budget/decisions?limit=1000", &v) {
		return nil
	}
	var out []BudgetDecision
	for _, d := range slices.Backward(v.Decisions) {
		if d.Time.Before(start) {
			continue
		}
		out = append(out, BudgetDecision{T: d.Time.Sub(start).Seconds(), Old: d.Old, New: d.New, Reason: d.Reason, BudgetFigures: d.Figures})
	}
	return out
}

// nodeDecisions reads a node's tuner decisions made since the load
// started, oldest first (nil if it does not answer).
func nodeDecisions(base, name string, start time.Time) []NodeDecision {
	q := url.Values{"node": {name}, "limit": {"1000"}, "since": {start.UTC().Format(time.RFC3339Nano)}}
	var v struct {
		Decisions []tuner.DecisionRecord `json:"decisions"`
	}
	if !getJSON(base+"/api/v1/decisions?"+q.Encode(), &v) {
		return nil
	}
	out := make([]NodeDecision, 0, len(v.Decisions))
	for _, d := range slices.Backward(v.Decisions) {
		out = append(out, NodeDecision{T: d.Time.Sub(start).Seconds(), Old: d.OldSize, New: d.NewSize, Reason: d.Reason,
			ArrivalRPS: d.ArrivalRPS, ThroughputRPS: d.ThroughputRPS, P99ms: d.P99ms, QueueDepth: d.QueueDepth,
			WriteMs: d.WriteMs, ExpectedWriteMs: d.ExpectedWriteMs, FlushLimit: d.FlushLimit})
	}
	return out
}

// getJSON decodes the JSON body of GET u into v; false if it did not
// answer 200 with JSON within five seconds.
func getJSON(u string, v any) bool {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// watchSink samples the downstream every 50 ms for the length of the load
// and returns one window a second: the peak in-flight bytes, and whether
// the downstream was overloaded in it: a sample past the byte knee in
// force, a request that started past a knee, or a 429.
func watchSink(ctx context.Context, sim *sinksim.Server, sc *Scenario, start time.Time, progress io.Writer, every time.Duration, arm string) []window {
	secs := int(sc.Duration() / time.Second)
	wins := make([]window, secs)
	rejected := func(st sinksim.Stats) int64 { return st.Rejected[sinksim.Kind429] + st.Rejected["queue_full"] }
	prev := sim.Stats()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	nextProgress := every
	cur := 0
	for cur < secs {
		select {
		case <-ctx.Done():
			return wins[:cur]
		case <-tick.C:
		}
		el := time.Since(start)
		st := sim.Stats()
		if cur < secs {
			wins[cur].peakBytes = max(wins[cur].peakBytes, st.InFlightBytes)
		}
		if s := int(el / time.Second); s > cur {
			// Close the window: anything past the knee or refused since the
			// last close falls in it.
			knee := sc.kneeAt(time.Duration(cur) * time.Second)
			if st.PastKnee > prev.PastKnee || rejected(st) > rejected(prev) || (knee > 0 && wins[cur].peakBytes > knee) {
				wins[cur].overloaded = true
			}
			wins[cur].requests, wins[cur].bytes = st.Accepted-prev.Accepted, st.Bytes-prev.Bytes
			wins[cur].costMS = st.CostMS - prev.CostMS
			prev = st
			cur = min(s, secs)
		}
		if el >= nextProgress {
			fmt.Fprintf(progress, "cluster bench: %s t=%ds phase %s: sink %d requests (%d past the knee), %d in flight (%d bytes)\n",
				arm, int(el.Seconds()), st.Phase, st.Requests, st.PastKnee, st.InFlight, st.InFlightBytes)
			nextProgress += every
		}
	}
	return wins
}
