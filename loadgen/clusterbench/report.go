package clusterbench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

// Report is the cluster bench's result, in the shape contract.md gives
// ("Cluster bench report"); the fields beyond it say more.
type Report struct {
	Scenario string  `json:"scenario"`
	Nodes    int     `json:"nodes"`
	Seed     uint64  `json:"seed"`
	SLOms    float64 `json:"slo_ms"`
	Quick    bool    `json:"quick"`
	// Arms: uncoordinated, arc, budget:BYTES (the best of the sweep in
	// hindsight), learned.
	Arms []Arm `json:"arms"`
	// BudgetSweep is every hand-set budget tried, best or not.
	BudgetSweep []Arm  `json:"budget_sweep"`
	Machine     string `json:"machine"`
}

// Arm is one way of running the cluster, over the whole load.
type Arm struct {
	Name string `json:"name"`
	// GoodputRPS: records acknowledged within the SLO, per second of the
	// load, all nodes together.
	GoodputRPS    float64 `json:"goodput_rps"`
	ThroughputRPS float64 `json:"throughput_rps"`
	OfferedRPS    float64 `json:"offered_rps"`
	// P99ms of the requests' acknowledgement latency (a failed request
	// counts as the scenario's timeout).
	P99ms float64 `json:"p99_ms"`
	// AckedP99ms is the p99 of the acknowledged requests alone, and
	// FailedRatio the share of requests that failed (refused by the node,
	// timed out, or due while all the load's senders were busy): when more
	// than 1 % fail, P99ms is the timeout whatever the arm.
	AckedP99ms  float64 `json:"acked_p99_ms"`
	FailedRatio float64 `json:"failed_ratio"`
	// OverloadRatio: the share of 1-second windows in which the downstream
	// started a request past its knee or answered 429.
	OverloadRatio float64 `json:"overload_ratio"`
	// JainIndex of per-node goodput relative to per-node demand.
	JainIndex float64       `json:"jain_index"`
	Phases    []PhaseResult `json:"phases"`
	Nodes     []NodeResult  `json:"nodes"`
	Series    []Second      `json:"series"`
	// BudgetDecisions are the leader's budget decisions over the load
	// (the learned arm only), as GET /api/v1/budget/decisions gives them.
	BudgetDecisions []BudgetDecision `json:"budget_decisions,omitempty"`
}

// BudgetDecision is one decision of the leader's budget controller, T
// seconds into the load.
type BudgetDecision struct {
	T      float64 `json:"t"`
	Old    int64   `json:"old_bytes"`
	New    int64   `json:"new_bytes"`
	Reason string  `json:"reason"`
	BudgetFigures
}

// BudgetFigures are what a budget decision was made on, as the decision's
// "figures" in GET /api/v1/budget/decisions give them.
type BudgetFigures struct {
	GoodputRPS    float64 `json:"goodput_rps"`
	ThroughputRPS float64 `json:"throughput_rps"`
	P99ms         float64 `json:"p99_ms"`
	HasBytes      int64   `json:"has_bytes"`
	WantBytes     int64   `json:"want_bytes"`
	// WriteMS is the nodes' mean sink write time, WritesPS their writes
	// per second: what the controller judges the downstream's latency by.
	WriteMS  float64 `json:"write_ms"`
	WritesPS float64 `json:"writes_per_s"`
	// InFlightBytes is the bytes the nodes had in writes on average;
	// KneeBytes the controller's knee estimate after the decision and
	// BaseWriteMS the write time it expects below the knee.
	InFlightBytes float64 `json:"in_flight_bytes"`
	KneeBytes     int64   `json:"knee_bytes"`
	BaseWriteMS   float64 `json:"base_write_ms"`
	// BytesPS is the batch bytes the nodes wrote per second and
	// QueuedRecords the records waiting in their queues: with
	// InFlightBytes, whether the budget held them back (a growth step is
	// judged only then).
	BytesPS       float64 `json:"bytes_per_s"`
	QueuedRecords int64   `json:"queued_records"`
}

// PhaseResult is an arm's figures over one phase of the load.
type PhaseResult struct {
	Name          string  `json:"name"`
	GoodputRPS    float64 `json:"goodput_rps"`
	OfferedRPS    float64 `json:"offered_rps"`
	P99ms         float64 `json:"p99_ms"`
	OverloadRatio float64 `json:"overload_ratio"`
	JainIndex     float64 `json:"jain_index"`
}

// NodeResult is one node's demand and goodput over the whole load, and
// what it held second by second.
type NodeResult struct {
	Name       string       `json:"name"`
	OfferedRPS float64      `json:"offered_rps"`
	GoodputRPS float64      `json:"goodput_rps"`
	Series     []NodeSecond `json:"series,omitempty"`
	// Decisions are the node tuner's decisions over the load, oldest
	// first, as its GET /api/v1/decisions gives them (a decision is
	// recorded when it changes the size or the flush limit). With Series
	// they say why a node's batch stayed where it did: a hot node once
	// held 16 records a batch through a hot spot with 600-850 records
	// queued and its grant room for 30.
	Decisions []NodeDecision `json:"decisions,omitempty"`
}

// NodeDecision is one decision of a node's tuner, T seconds into the load:
// the size from Old to New, the reason, and the figures it was taken on.
type NodeDecision struct {
	T               float64 `json:"t"`
	Old             int     `json:"old_size"`
	New             int     `json:"new_size"`
	Reason          string  `json:"reason"`
	ArrivalRPS      float64 `json:"arrival_rps"`
	ThroughputRPS   float64 `json:"throughput_rps"`
	P99ms           float64 `json:"p99_ms"`
	QueueDepth      int     `json:"queue_depth"`
	WriteMs         float64 `json:"write_ms,omitempty"`
	ExpectedWriteMs float64 `json:"expected_write_ms,omitempty"`
	FlushLimit      int     `json:"flush_limit,omitempty"`
}

// NodeSecond is one node's state at the start of a second of the load, as
// its /metrics gave it (a second it did not answer in is all zero): the
// bytes the leader granted it, the records in its queue, the batch size
// in force and the bytes of its batches being written. How a budget is
// shared shows here: the cluster bench once saw a hot node carry a third
// of its load with the budget far from used, and nothing in the report
// said what it was granted.
type NodeSecond struct {
	T             int   `json:"t"`
	GrantBytes    int64 `json:"grant_bytes"`
	QueueRecords  int64 `json:"queue_records"`
	BatchSize     int64 `json:"batch_size"`
	InFlightBytes int64 `json:"in_flight_bytes"`
}

// Second is one second of an arm: the goodput of the requests sent in it,
// the downstream's peak in-flight bytes and knee, and whether it was
// overloaded.
type Second struct {
	T             int     `json:"t"`
	Phase         string  `json:"phase"`
	GoodputRPS    float64 `json:"goodput_rps"`
	OfferedRPS    float64 `json:"offered_rps"`
	InFlightBytes int64   `json:"sink_in_flight_bytes"`
	KneeBytes     int64   `json:"knee_bytes"`
	// BudgetBytes is the cluster budget in force as the first node saw it.
	BudgetBytes int64 `json:"budget_bytes"`
	Overloaded  bool  `json:"overloaded"`
	// SinkRequests is the requests the downstream accepted in the second,
	// SinkBytesPerRequest their mean size and SinkCostMS their mean
	// configured cost (knee included): the write time the nodes see.
	SinkRequests        int64   `json:"sink_requests"`
	SinkBytesPerRequest float64 `json:"sink_bytes_per_request"`
	SinkCostMS          float64 `json:"sink_cost_ms"`
}

// Jain is Jain's fairness index of xs: (Σx)² / (n Σx²), 1 when all are
// equal, 1/n when one has everything; 1 for no values or all zero.
func Jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if len(xs) == 0 || sq == 0 {
		return 1
	}
	return sum * sum / (float64(len(xs)) * sq)
}

// window is the sink's view of one second of the load.
type window struct {
	peakBytes  int64
	overloaded bool
	budget     int64 // the cluster budget in force (0: not read)
	// requests accepted in the window, their bytes and configured cost.
	requests, bytes int64
	costMS          float64
}

// summarize turns an arm's outcomes and the sink's windows into its figures.
func summarize(name string, sc *Scenario, nodes int, outs []outcome, wins []window) Arm {
	slo := time.Duration(sc.SLO)
	total := sc.Duration()
	arm := Arm{Name: name}
	secs := int(math.Ceil(total.Seconds()))
	type tally struct{ offered, acked, good float64 }
	perSec := make([]tally, secs)
	perNode := make([]tally, nodes)
	phaseOf := func(at time.Duration) int {
		var end time.Duration
		for i, p := range sc.Phases {
			end += time.Duration(p.Duration)
			if at < end {
				return i
			}
		}
		return len(sc.Phases) - 1
	}
	perPhase := make([]tally, len(sc.Phases))
	perPhaseNode := make([][]tally, len(sc.Phases))
	lat := make([][]time.Duration, len(sc.Phases))
	var all, acked []time.Duration
	failed := 0
	for i := range perPhaseNode {
		perPhaseNode[i] = make([]tally, nodes)
	}
	var whole tally
	for _, o := range outs {
		r := float64(o.records)
		t := tally{offered: r}
		if o.ok {
			t.acked = r
			if o.latency <= slo {
				t.good = r
			}
		}
		add := func(dst *tally) { dst.offered += t.offered; dst.acked += t.acked; dst.good += t.good }
		add(&whole)
		if s := int(o.sent / time.Second); s >= 0 && s < secs {
			add(&perSec[s])
		}
		add(&perNode[o.node])
		ph := phaseOf(o.sent)
		add(&perPhase[ph])
		add(&perPhaseNode[ph][o.node])
		lat[ph] = append(lat[ph], o.latency)
		all = append(all, o.latency)
		if o.ok {
			acked = append(acked, o.latency)
		} else {
			failed++
		}
	}
	d := total.Seconds()
	arm.GoodputRPS, arm.ThroughputRPS, arm.OfferedRPS = whole.good/d, whole.acked/d, whole.offered/d
	arm.P99ms, arm.AckedP99ms = p99ms(all), p99ms(acked)
	if len(all) > 0 {
		arm.FailedRatio = float64(failed) / float64(len(all))
	}
	ratios := func(ts []tally) []float64 {
		var xs []float64
		for _, t := range ts {
			if t.offered > 0 {
				xs = append(xs, t.good/t.offered)
			}
		}
		return xs
	}
	arm.JainIndex = Jain(ratios(perNode))
	for i, t := range perNode {
		arm.Nodes = append(arm.Nodes, NodeResult{Name: fmt.Sprintf("n%d", i+1), OfferedRPS: t.offered / d, GoodputRPS: t.good / d})
	}
	var start time.Duration
	over := 0
	for i, p := range sc.Phases {
		pd := time.Duration(p.Duration)
		from, to := int(start/time.Second), int((start+pd)/time.Second)
		n, o := 0, 0
		for s := from; s < to && s < len(wins); s++ {
			n++
			if wins[s].overloaded {
				o++
			}
		}
		pr := PhaseResult{Name: p.Name, GoodputRPS: perPhase[i].good / pd.Seconds(), OfferedRPS: perPhase[i].offered / pd.Seconds(),
			P99ms: p99ms(lat[i]), JainIndex: Jain(ratios(perPhaseNode[i]))}
		if n > 0 {
			pr.OverloadRatio = float64(o) / float64(n)
		}
		arm.Phases = append(arm.Phases, pr)
		start += pd
	}
	for _, w := range wins {
		if w.overloaded {
			over++
		}
	}
	if len(wins) > 0 {
		arm.OverloadRatio = float64(over) / float64(len(wins))
	}
	for s := range secs {
		sec := Second{T: s, Phase: sc.Phases[phaseOf(time.Duration(s)*time.Second)].Name,
			GoodputRPS: perSec[s].good, OfferedRPS: perSec[s].offered,
			KneeBytes: sc.kneeAt(time.Duration(s) * time.Second)}
		if s < len(wins) {
			w := wins[s]
			sec.InFlightBytes, sec.Overloaded, sec.BudgetBytes = w.peakBytes, w.overloaded, w.budget
			sec.SinkRequests = w.requests
			if w.requests > 0 {
				sec.SinkBytesPerRequest = float64(w.bytes) / float64(w.requests)
				sec.SinkCostMS = w.costMS / float64(w.requests)
			}
		}
		arm.Series = append(arm.Series, sec)
	}
	return arm
}

// kneeAt is the downstream's byte knee at elapsed into the load: the
// phase's when it sets one, else the scenario's (after the last phase, the
// last holds, as in sinksim).
func (sc *Scenario) kneeAt(elapsed time.Duration) int64 {
	var end time.Duration
	for i, p := range sc.Phases {
		end += time.Duration(p.Duration)
		if elapsed < end || i == len(sc.Phases)-1 {
			if p.Sink != nil && p.Sink.KneeBytes != nil {
				return *p.Sink.KneeBytes
			}
			return sc.Sink.KneeBytes
		}
	}
	return sc.Sink.KneeBytes
}

func p99ms(lat []time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[min(len(s)-1, len(s)*99/100)]) / float64(time.Millisecond)
}

// Arm returns the arm of that name, or nil.
func (r *Report) Arm(name string) *Arm {
	for i := range r.Arms {
		if r.Arms[i].Name == name {
			return &r.Arms[i]
		}
	}
	return nil
}

// Phase returns the arm's figures over a phase, or nil.
func (a *Arm) Phase(name string) *PhaseResult {
	for i := range a.Phases {
		if a.Phases[i].Name == name {
			return &a.Phases[i]
		}
	}
	return nil
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	return loadgen.WriteJSONFile(path, r)
}

// WriteTable prints one line per arm (and the sweep), the phases' goodput,
// and the learned arm against the others.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "cluster bench %s: %d nodes, seed %d, SLO %.0f ms%s\n", r.Scenario, r.Nodes, r.Seed, r.SLOms, map[bool]string{true: " (quick)"}[r.Quick])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "arm\tgoodput/s\toffered/s\tp99 ms\tacked p99\tfailed\toverload\tjain\t"
	if len(r.Arms) > 0 {
		for _, p := range r.Arms[0].Phases {
			head += p.Name + "\t"
		}
	}
	fmt.Fprintln(tw, head)
	row := func(a Arm, mark string) {
		line := fmt.Sprintf("%s%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f%%\t%.1f%%\t%.3f\t", a.Name, mark, a.GoodputRPS, a.OfferedRPS, a.P99ms, a.AckedP99ms, 100*a.FailedRatio, 100*a.OverloadRatio, a.JainIndex)
		for _, p := range a.Phases {
			line += fmt.Sprintf("%.0f\t", p.GoodputRPS)
		}
		fmt.Fprintln(tw, line)
	}
	for _, a := range r.Arms {
		row(a, "")
	}
	for _, a := range r.BudgetSweep {
		if r.Arm(a.Name) == nil {
			row(a, " (sweep)")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	learned := r.Arm("learned")
	if learned == nil {
		return nil
	}
	var parts []string
	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	for _, other := range r.Arms {
		if other.Name == "learned" {
			continue
		}
		if ls, os := learned.Phase("step"), other.Phase("step"); ls != nil && os != nil {
			parts = append(parts, fmt.Sprintf("step %s vs %s", ratio(ls.GoodputRPS, os.GoodputRPS), other.Name))
		}
		parts = append(parts, fmt.Sprintf("whole run %s vs %s", ratio(learned.GoodputRPS, other.GoodputRPS), other.Name))
	}
	if len(parts) == 0 {
		return nil // learned ran alone: nothing to compare it with
	}
	_, err := fmt.Fprintf(w, "learned: %s\n", strings.Join(parts, ", "))
	return err
}
