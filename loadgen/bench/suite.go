package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Suite is what "bench --suite --out" writes: one report per scenario, as
// "bench --out" writes it for one.
type Suite struct {
	Scenarios []*Report `json:"scenarios"`
}

// Spread is how a figure varied over the seeds a result was run on.
type Spread struct {
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// Spreads are a result's headline figures over its seeds.
type Spreads struct {
	GoodputRPS Spread `json:"goodput_rps"`
	SLOOKRatio Spread `json:"slo_ok_ratio"`
	P99ms      Spread `json:"p99_ms"`
}

// RunSeeds runs the bench (Run) once per seed, seeds seed, seed+1, ...
// from the scenario's own (or cfg.Scenario's, already set by WithSeed),
// and merges the reports: every figure of a result is its mean over the
// seeds, with the range of goodput, slo_ok and p99 in Spread; the best
// static size is the sweep's best mean; the oracle is the mean of the
// seeds' oracles. One seed is Run itself.
func RunSeeds(ctx context.Context, cfg Config, seeds int) (*Report, error) {
	if cfg.Scenario == nil {
		return nil, errors.New("bench: no scenario")
	}
	if seeds < 1 || seeds > maxSeeds {
		return nil, fmt.Errorf("bench: seeds %d out of [1, %d]", seeds, maxSeeds)
	}
	base := cfg.Scenario.Seed
	var reps []*Report
	for i := range seeds {
		c := cfg
		c.Scenario = cfg.Scenario.WithSeed(base + uint64(i))
		if seeds > 1 && cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "bench: scenario %s, seed %d (%d of %d)\n", cfg.Scenario.Name, c.Scenario.Seed, i+1, seeds)
		}
		rep, err := Run(ctx, c)
		if err != nil {
			return nil, err
		}
		reps = append(reps, rep)
	}
	if seeds == 1 {
		return reps[0], nil
	}
	return mergeSeeds(reps), nil
}

// maxSeeds bounds --seeds.
const maxSeeds = 100

// RunSuite runs the bench on every scenario, one after the other, each on
// seeds seeds (RunSeeds).
func RunSuite(ctx context.Context, cfg Config, scenarios []*Scenario, seeds int) (*Suite, error) {
	if len(scenarios) == 0 {
		return nil, errors.New("bench: an empty suite")
	}
	s := &Suite{}
	for i, sc := range scenarios {
		c := cfg
		c.Scenario = sc
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "suite: scenario %d of %d: %s\n", i+1, len(scenarios), sc.Name)
		}
		rep, err := RunSeeds(ctx, c, seeds)
		if err != nil {
			return nil, fmt.Errorf("suite: %s: %w", sc.Name, err)
		}
		s.Scenarios = append(s.Scenarios, rep)
	}
	return s, nil
}

// mergeSeeds merges the reports of one scenario on several seeds.
func mergeSeeds(reps []*Report) *Report {
	first := reps[0]
	m := *first
	m.Seeds = nil
	m.ElapsedS = 0
	for _, r := range reps {
		m.Seeds = append(m.Seeds, r.Seed)
		m.ElapsedS += r.ElapsedS
	}
	m.Results = mergeResults(reps, func(r *Report) []Result { return r.Results })
	m.Sweep = mergeResults(reps, func(r *Report) []Result { return r.Sweep })
	if len(m.Sweep) > 0 {
		m.BestStatic = bestStatic(m.Sweep)
	}
	m.Oracle = Oracle{Method: first.Oracle.Method}
	for k, p := range first.Oracle.Phases {
		op := p
		var good, capacity, offered float64
		for _, r := range reps {
			if k < len(r.Oracle.Phases) {
				good += r.Oracle.Phases[k].GoodputRPS
				capacity += r.Oracle.Phases[k].CapacityRPS
				offered += r.Oracle.Phases[k].OfferedRPS
			}
		}
		n := float64(len(reps))
		op.GoodputRPS, op.CapacityRPS, op.OfferedRPS = good/n, capacity/n, offered/n
		m.Oracle.Phases = append(m.Oracle.Phases, op)
	}
	for _, r := range reps {
		m.Oracle.GoodputRPS += r.Oracle.GoodputRPS / float64(len(reps))
	}
	return &m
}

// mergeResults averages the results of each controller over the reports;
// a controller missing from any report is left out.
func mergeResults(reps []*Report, of func(*Report) []Result) []Result {
	var out []Result
	for _, res := range of(reps[0]) {
		var runs []Result
		for _, r := range reps {
			i := slices.IndexFunc(of(r), func(x Result) bool { return x.Controller == res.Controller })
			if i < 0 {
				break
			}
			runs = append(runs, of(r)[i])
		}
		if len(runs) == len(reps) {
			out = append(out, meanResult(runs))
		}
	}
	return out
}

// meanResult is the mean of runs of one controller; the per-second series
// and decisions are the first run's.
func meanResult(runs []Result) Result {
	m := runs[0]
	n := float64(len(runs))
	mean := func(f func(Result) float64) float64 {
		var s float64
		for _, r := range runs {
			s += f(r)
		}
		return s / n
	}
	spread := func(f func(Result) float64) Spread {
		sp := Spread{Mean: mean(f), Min: math.Inf(1), Max: math.Inf(-1)}
		for _, r := range runs {
			sp.Min, sp.Max = math.Min(sp.Min, f(r)), math.Max(sp.Max, f(r))
		}
		return sp
	}
	m.GoodputRPS = mean(func(r Result) float64 { return r.GoodputRPS })
	m.ThroughputRPS = mean(func(r Result) float64 { return r.ThroughputRPS })
	m.P50ms = mean(func(r Result) float64 { return r.P50ms })
	m.P99ms = mean(func(r Result) float64 { return r.P99ms })
	m.SLOOKRatio = mean(func(r Result) float64 { return r.SLOOKRatio })
	m.AckedSLOOKRatio = mean(func(r Result) float64 { return r.AckedSLOOKRatio })
	m.AckedGoodputRPS = mean(func(r Result) float64 { return r.AckedGoodputRPS })
	m.MeanBatchSize = mean(func(r Result) float64 { return r.MeanBatchSize })
	m.OfferedRPS = mean(func(r Result) float64 { return r.OfferedRPS })
	m.CPUSeconds = mean(func(r Result) float64 { return r.CPUSeconds })
	m.HostLoad = mean(func(r Result) float64 { return r.HostLoad })
	m.BreakerS = mean(func(r Result) float64 { return r.BreakerS })
	m.Spread = &Spreads{
		GoodputRPS: spread(func(r Result) float64 { return r.GoodputRPS }),
		SLOOKRatio: spread(func(r Result) float64 { return r.SLOOKRatio }),
		P99ms:      spread(func(r Result) float64 { return r.P99ms }),
	}
	m.Phases = slices.Clone(runs[0].Phases)
	for k := range m.Phases {
		ph := func(f func(PhaseResult) float64) float64 {
			return mean(func(r Result) float64 {
				if k < len(r.Phases) {
					return f(r.Phases[k])
				}
				return 0
			})
		}
		p := &m.Phases[k]
		p.GoodputRPS = ph(func(p PhaseResult) float64 { return p.GoodputRPS })
		p.ThroughputRPS = ph(func(p PhaseResult) float64 { return p.ThroughputRPS })
		p.P99ms = ph(func(p PhaseResult) float64 { return p.P99ms })
		p.MeanBatchSize = ph(func(p PhaseResult) float64 { return p.MeanBatchSize })
		p.OfferedRPS = ph(func(p PhaseResult) float64 { return p.OfferedRPS })
		p.SLOOKRatio = ph(func(p PhaseResult) float64 { return p.SLOOKRatio })
		p.AckedSLOOKRatio = ph(func(p PhaseResult) float64 { return p.AckedSLOOKRatio })
		p.AckedGoodputRPS = ph(func(p PhaseResult) float64 { return p.AckedGoodputRPS })
	}
	return m
}

// WriteJSON writes the suite to path.
func (s *Suite) WriteJSON(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write suite report: %w", err)
	}
	return nil
}

// WriteTable writes the suite as one table: per scenario, each controller's
// goodput (with its range over the seeds) against the best static size and
// the oracle, then the geometric mean of those ratios over the suite.
func (s *Suite) WriteTable(w io.Writer) error {
	if len(s.Scenarios) == 0 {
		return nil
	}
	r0 := s.Scenarios[0]
	fmt.Fprintf(w, "suite: %d scenarios, CPU limit %.0f%%", len(s.Scenarios), r0.CPULimitPercent)
	if len(r0.Seeds) > 1 {
		fmt.Fprintf(w, ", %d seeds each (figures are means; [min-max] over the seeds)", len(r0.Seeds))
	}
	if r0.Quick {
		fmt.Fprint(w, ", quick")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tcontroller\tgoodput/s\trange\tvs best\tvs oracle\tslo_ok\tacked_ok\tp99 ms\tmean size\t")
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	var order []string
	vsBest := map[string][]float64{}
	vsOracle := map[string][]float64{}
	for _, r := range s.Scenarios {
		for _, res := range r.Results {
			rng := "-"
			if res.Spread != nil {
				rng = fmt.Sprintf("%.0f-%.0f", res.Spread.GoodputRPS.Min, res.Spread.GoodputRPS.Max)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%.2f\t%.2f\t%.0f\t%.0f\t\n", r.Scenario, res.Controller, res.GoodputRPS, rng,
				ratio(res.GoodputRPS, r.BestStatic.GoodputRPS), ratio(res.GoodputRPS, r.Oracle.GoodputRPS),
				res.SLOOKRatio, res.AckedSLOOKRatio, res.P99ms, res.MeanBatchSize)
			if !slices.Contains(order, res.Controller) {
				order = append(order, res.Controller)
			}
			if r.BestStatic.GoodputRPS > 0 {
				vsBest[res.Controller] = append(vsBest[res.Controller], res.GoodputRPS/r.BestStatic.GoodputRPS)
			}
			if r.Oracle.GoodputRPS > 0 {
				vsOracle[res.Controller] = append(vsOracle[res.Controller], res.GoodputRPS/r.Oracle.GoodputRPS)
			}
		}
		if len(r.Sweep) > 0 {
			fmt.Fprintf(tw, "%s\tbest static:%d\t%.0f\t\t1.00x\t%s\t\t\t\t\t\n", r.Scenario, r.BestStatic.BatchSize,
				r.BestStatic.GoodputRPS, ratio(r.BestStatic.GoodputRPS, r.Oracle.GoodputRPS))
			fmt.Fprintf(tw, "%s\toracle\t%.0f\t\t%s\t1.00x\t\t\t\t\t\n", r.Scenario, r.Oracle.GoodputRPS,
				ratio(r.Oracle.GoodputRPS, r.BestStatic.GoodputRPS))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range s.Scenarios {
		if len(r.Sweep) == 0 {
			continue
		}
		var parts []string
		for _, p := range r.Oracle.Phases {
			part := fmt.Sprintf("%s %.0f@%d", p.Name, p.GoodputRPS, p.BatchSize)
			if p.Limit != LimitOffered && p.Limit != "" {
				part += " [" + p.Limit + "]"
			}
			parts = append(parts, part)
		}
		fmt.Fprintf(w, "oracle %s (%s): %s\n", r.Scenario, r.Oracle.Method, strings.Join(parts, ", "))
	}
	for _, r := range s.Scenarios {
		if r.Oracle.marked() {
			fmt.Fprint(w, oracleLegend)
			break
		}
	}
	fmt.Fprintln(w, "geometric mean over the suite:")
	for _, c := range order {
		if len(vsBest[c]) == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-12s %.2fx the best static size, %.2fx the oracle (%d scenarios)\n",
			c, geomean(vsBest[c]), geomean(vsOracle[c]), len(vsBest[c]))
	}
	var took float64
	for _, r := range s.Scenarios {
		took += r.ElapsedS
	}
	fmt.Fprintf(w, "the suite took %s\n", time.Duration(took*float64(time.Second)).Round(time.Second))
	return nil
}

// geomean is the geometric mean of positive ratios; a zero ratio (a
// controller that delivered nothing) makes it 0.
func geomean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		if x <= 0 {
			return 0
		}
		s += math.Log(x)
	}
	return math.Exp(s / float64(len(xs)))
}
