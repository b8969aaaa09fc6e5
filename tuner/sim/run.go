package sim

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

// Result is one controller's run over a scenario. The JSON names are the
// bench report's (see the contract).
type Result struct {
	Controller    string        `json:"controller"`
	GoodputRPS    float64       `json:"goodput_rps"`
	ThroughputRPS float64       `json:"throughput_rps"`
	P50ms         float64       `json:"p50_ms"`
	P99ms         float64       `json:"p99_ms"`
	SLOOKRatio    float64       `json:"slo_ok_ratio"`
	PeakRSSBytes  uint64        `json:"peak_rss_bytes"`
	MeanBatchSize float64       `json:"mean_batch_size"`
	Phases        []PhaseResult `json:"phases"`
	// Trace is every interval's observation and the decision taken on it.
	Trace []Interval `json:"-"`
}

// PhaseResult is a Result restricted to one phase.
type PhaseResult struct {
	Name          string  `json:"name"`
	GoodputRPS    float64 `json:"goodput_rps"`
	P99ms         float64 `json:"p99_ms"`
	MeanBatchSize float64 `json:"mean_batch_size"`
	// SizeCV is the coefficient of variation of the batch size over the
	// phase's second half (its steady state).
	SizeCV float64 `json:"size_cv"`
}

// Interval is one control interval of a run.
type Interval struct {
	Phase    int
	Obs      tuner.Observation
	Decision tuner.Decision
	// Pressure is the resource the guard found over its limit (a node
	// would refuse new work); TripNone without a guard or pressure.
	Pressure tuner.TripCause
}

// Run drives a fresh simulator with c from the initial batch size to the end
// of the scenario, taking tuner.Step each interval as the node does. c may
// be a *tuner.Guarded: its breaker is then the guard.
func Run(cfg Config, c tuner.Controller, initial int) Result {
	s := New(cfg)
	cfg = s.cfg
	res := Result{Controller: c.Name()}
	ctrl, guard := tuner.StepOf(c) // the node's guarded step
	size := tuner.Clamp(initial, cfg.MaxBatchSize)
	var all hist
	phase := make([]hist, len(cfg.Phases))
	good := make([]int, len(cfg.Phases))
	sizes := make([][]float64, len(cfg.Phases))
	var acked, goodAll, ok, n int
	for !s.Done() {
		p := s.Phase()
		obs := s.Step(size)
		all.merge(&s.iv.hist)
		phase[p].merge(&s.iv.hist)
		good[p] += s.iv.good
		goodAll += s.iv.good
		acked += s.iv.acked
		sizes[p] = append(sizes[p], float64(obs.BatchSize))
		if obs.P99 <= cfg.SLO && (obs.Throughput > 0 || obs.QueueDepth == 0) {
			ok++
		}
		n++
		res.PeakRSSBytes = max(res.PeakRSSBytes, obs.RSSBytes)
		v := tuner.Step(ctrl, guard, obs)
		res.Trace = append(res.Trace, Interval{Phase: p, Obs: obs, Decision: v.Decision, Pressure: v.Pressure})
		size = v.Decision.BatchSize
		s.SetFlushLimit(v.Decision.FlushConcurrency)
	}
	secs := float64(n) * cfg.Interval.Seconds()
	res.GoodputRPS = float64(goodAll) / secs
	res.ThroughputRPS = float64(acked) / secs
	res.P50ms = ms(all.quantile(0.5))
	res.P99ms = ms(all.quantile(0.99))
	res.SLOOKRatio = float64(ok) / float64(n)
	var sum float64
	for i, p := range cfg.Phases {
		m, _ := meanStd(sizes[i])
		_, cv := meanStd(sizes[i][len(sizes[i])/2:])
		for _, v := range sizes[i] {
			sum += v
		}
		res.Phases = append(res.Phases, PhaseResult{
			Name:          p.Name,
			GoodputRPS:    float64(good[i]) / (float64(len(sizes[i])) * cfg.Interval.Seconds()),
			P99ms:         ms(phase[i].quantile(0.99)),
			MeanBatchSize: m,
			SizeCV:        cv,
		})
	}
	res.MeanBatchSize = sum / float64(n)
	return res
}

// meanStd returns the mean and the coefficient of variation.
func meanStd(v []float64) (mean, cv float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	if mean == 0 {
		return 0, 0
	}
	return mean, math.Sqrt(ss/float64(len(v))) / mean
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// DefaultSweep is the set of static sizes tried to find the best static
// size in hindsight and the per-phase oracle.
var DefaultSweep = []int{5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 3000, 5000}

// Best is a static size and the goodput it reached.
type Best struct {
	BatchSize  int     `json:"batch_size"`
	GoodputRPS float64 `json:"goodput_rps"`
}

// Oracle is the goodput of the best static size chosen afresh for every
// phase, in hindsight: each phase is run alone (from an empty queue) at
// every size of the sweep and its best goodput is kept.
type Oracle struct {
	GoodputRPS float64 `json:"goodput_rps"`
	Phases     []Best  `json:"phases"`
}

// Sweep runs every static size over the whole scenario and returns the best
// one (the best static size in hindsight) with all the runs.
func Sweep(cfg Config, sizes []int) (Best, []Result) {
	var best Best
	var runs []Result
	for _, sz := range sizes {
		r := Run(cfg, &tuner.Static{Size: sz}, sz)
		runs = append(runs, r)
		if r.GoodputRPS > best.GoodputRPS || best.BatchSize == 0 {
			best = Best{BatchSize: sz, GoodputRPS: r.GoodputRPS}
		}
	}
	return best, runs
}

// PhaseOracle runs each phase of cfg alone at every size and returns the
// per-phase oracle.
func PhaseOracle(cfg Config, sizes []int) Oracle {
	cfg.defaults()
	or := Oracle{Phases: make([]Best, len(cfg.Phases))}
	total := cfg.Duration().Seconds()
	for i, p := range cfg.Phases {
		one := cfg
		one.Phases = []Phase{p}
		one.Seed = cfg.Seed + uint64(i)
		best, _ := Sweep(one, sizes)
		or.Phases[i] = best
		or.GoodputRPS += best.GoodputRPS * p.Duration.Seconds() / total
	}
	return or
}

// Report is the comparison of controllers on one scenario, shaped like the
// bench report of the contract.
type Report struct {
	Scenario   string   `json:"scenario"`
	Seed       uint64   `json:"seed"`
	SLOms      float64  `json:"slo_ms"`
	Results    []Result `json:"results"`
	BestStatic Best     `json:"best_static"`
	Oracle     Oracle   `json:"oracle"`
	phases     []string
}

// Compare runs each controller spec (as tuner.New parses it, starting at
// initial) and the static sweep on cfg.
func Compare(cfg Config, specs []string, initial int, sweep []int) (Report, error) {
	cfg.defaults()
	rep := Report{Scenario: cfg.Name, Seed: cfg.Seed, SLOms: ms(cfg.SLO)}
	for _, p := range cfg.Phases {
		rep.phases = append(rep.phases, p.Name)
	}
	for _, spec := range specs {
		c, err := tuner.New(spec, initial, cfg.MaxBatchSize)
		if err != nil {
			return Report{}, err
		}
		rep.Results = append(rep.Results, Run(cfg, c, initial))
	}
	rep.BestStatic, _ = Sweep(cfg, sweep)
	rep.Oracle = PhaseOracle(cfg, sweep)
	return rep, nil
}

// Table renders the report for a terminal: one row per controller with its
// goodput against the best static size and the oracle, then per phase.
func (r Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s seed %d slo %.0fms\n", r.Scenario, r.Seed, r.SLOms)
	fmt.Fprintf(&b, "%-12s %9s %7s %7s %8s %6s %7s |", "controller", "goodput", "%best", "%oracle", "p99ms", "slo_ok", "size")
	for _, p := range r.phases {
		fmt.Fprintf(&b, " %14s", p)
	}
	b.WriteString("\n")
	row := func(name string, g, p99, ok, size float64, phases []string) {
		fmt.Fprintf(&b, "%-12s %9.0f %6.1f%% %6.1f%% %8.0f %6.2f %7.0f |", name, g,
			100*g/r.BestStatic.GoodputRPS, 100*g/r.Oracle.GoodputRPS, p99, ok, size)
		for _, s := range phases {
			fmt.Fprintf(&b, " %14s", s)
		}
		b.WriteString("\n")
	}
	for _, res := range r.Results {
		var ph []string
		for _, p := range res.Phases {
			ph = append(ph, fmt.Sprintf("%.0f@%.0f", p.GoodputRPS, p.MeanBatchSize))
		}
		row(res.Controller, res.GoodputRPS, res.P99ms, res.SLOOKRatio, res.MeanBatchSize, ph)
	}
	fmt.Fprintf(&b, "best static in hindsight: size %d, goodput %.0f\n", r.BestStatic.BatchSize, r.BestStatic.GoodputRPS)
	fmt.Fprintf(&b, "per-phase oracle: goodput %.0f (", r.Oracle.GoodputRPS)
	for i, p := range r.Oracle.Phases {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.0f@%d", r.phases[i], p.GoodputRPS, p.BatchSize)
	}
	b.WriteString(")\n")
	return b.String()
}
