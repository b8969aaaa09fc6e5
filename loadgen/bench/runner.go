package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

// DefaultControllers are the controllers "bench" compares by default.
var DefaultControllers = []string{"static:100", "aimd", "gradient2", "target", "arc", "gradient"}

// SuiteControllers are the controllers "bench --suite" compares by default:
// DefaultControllers without static:100, whose column the suite's table
// does not have (each scenario's sweep has the static sizes).
var SuiteControllers = []string{"aimd", "gradient2", "target", "arc", "gradient"}

// Config is one bench.
type Config struct {
	// Scenario to run; for --quick, pass Scenario.QuickVersion() and set
	// Quick.
	Scenario *Scenario
	Quick    bool
	// Controllers are tuner specs ("gradient", "static:100"), run one after
	// the other in this order (default DefaultControllers).
	Controllers []string
	// CPULimit is the host CPU limit, in percent, given to the breaker and
	// to the controllers' objectives (node.Limits.CPULimit). 0 keeps the
	// agent's default (90 %). See docs/bench.md for why the bench uses 100.
	CPULimit float64
	// Oracle is "phase-alone" or "whole-run" (see Oracle.Method); default
	// phase-alone, or whole-run with Quick.
	Oracle string
	// NoSweep runs the controllers only: no best static size, no oracle.
	NoSweep bool
	// Progress receives a line per run and, every ProgressEvery (default
	// 10s), a line on the run in progress.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Steps, when set, receives every control step of every run as a JSON
	// line (ControlStep).
	Steps io.Writer
}

// Oracle methods.
const (
	OraclePhaseAlone = "phase-alone"
	OracleWholeRun   = "whole-run"
)

// job is one run of the bench.
type job struct {
	spec     string // tuner spec
	from, to int    // phases
}

// Run runs every controller and the sweep on the scenario and returns the
// report. It stops early, with ctx's error, when ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Scenario == nil {
		return nil, errors.New("bench: no scenario")
	}
	sc := cfg.Scenario
	if len(cfg.Controllers) == 0 {
		cfg.Controllers = DefaultControllers
	}
	names := make([]string, len(cfg.Controllers))
	for i, spec := range cfg.Controllers {
		c, err := tuner.New(spec, sc.Node.initial(), 0)
		if err != nil {
			return nil, err
		}
		names[i] = c.Name()
	}
	if dup := duplicate(names); dup != "" {
		return nil, fmt.Errorf("bench: controller %s named twice", dup)
	}
	cfg.Controllers = names
	switch cfg.Oracle {
	case "":
		cfg.Oracle = OraclePhaseAlone
		if cfg.Quick {
			cfg.Oracle = OracleWholeRun
		}
	case OraclePhaseAlone, OracleWholeRun:
	default:
		return nil, fmt.Errorf("bench: oracle %q: want %s or %s", cfg.Oracle, OraclePhaseAlone, OracleWholeRun)
	}
	if cfg.CPULimit < 0 || cfg.CPULimit > 100 {
		return nil, fmt.Errorf("bench: CPU limit %v%% out of [0, 100]", cfg.CPULimit)
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 10 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	started := time.Now()
	all := len(sc.Phases)
	var jobs []job
	for _, spec := range cfg.Controllers {
		jobs = append(jobs, job{spec: spec, from: 0, to: all})
	}
	sweep := sc.Sweep
	if cfg.NoSweep {
		sweep = nil
	}
	for _, size := range sweep {
		spec := "static:" + strconv.Itoa(size)
		if !slices.ContainsFunc(jobs, func(j job) bool { return j.spec == spec }) {
			jobs = append(jobs, job{spec: spec, from: 0, to: all})
		}
	}
	if cfg.Oracle == OraclePhaseAlone && all > 1 && !cfg.NoSweep {
		for i := range sc.Phases {
			for _, size := range sc.Sweep {
				jobs = append(jobs, job{spec: "static:" + strconv.Itoa(size), from: i, to: i + 1})
			}
		}
	}
	var est time.Duration
	for _, j := range jobs {
		est += sc.length(j.from, j.to) + time.Second
	}
	if cfg.NoSweep {
		cfg.Oracle = "none"
	}
	fmt.Fprintf(cfg.Progress, "bench: scenario %s (%d phases, %s), %d controllers, sweep %v, oracle %s: %d runs, about %s\n",
		sc.Name, all, sc.Duration(), len(cfg.Controllers), sweep, cfg.Oracle, len(jobs), est.Round(time.Minute))

	p := &pipeline{sc: sc, cpuLimit: cfg.CPULimit, progress: cfg.Progress, every: cfg.ProgressEvery, quick: cfg.Quick, steps: cfg.Steps}
	results := map[job]Result{}
	for i, j := range jobs {
		label := j.spec
		if j.to-j.from < all {
			label += " on " + sc.Phases[j.from].Name + " alone"
		}
		p.tag = fmt.Sprintf("[%d/%d] %s", i+1, len(jobs), label)
		p.runName = fmt.Sprintf("%s/seed=%d/%s", sc.Name, sc.Seed, label)
		// Start every run with the heap the last one left handed back, so
		// that peak RSS is each run's own as far as the runtime allows.
		debug.FreeOSMemory()
		res, err := p.run(ctx, j.spec, j.from, j.to, i)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", label, err)
		}
		results[j] = res
		fmt.Fprintf(cfg.Progress, "%s: goodput %.0f/s of %.0f offered, p99 %.0fms, slo_ok %.2f, mean size %.0f, breaker %.0fs\n",
			p.tag, res.GoodputRPS, res.OfferedRPS, res.P99ms, res.SLOOKRatio, res.MeanBatchSize, res.BreakerS)
	}

	rep := &Report{
		Scenario: sc.Name, Seed: sc.Seed, SLOms: ms(sc.SLO.D()), Quick: cfg.Quick,
		DurationS: sc.Duration().Seconds(), ControlIntervalMS: ms(sc.ControlInterval()),
		CPULimitPercent: cfg.CPULimit,
	}
	if rep.CPULimitPercent == 0 {
		rep.CPULimitPercent = 90
	}
	var spans []span
	var start time.Duration
	for _, ph := range sc.Phases {
		rep.PhaseNames = append(rep.PhaseNames, ph.Name)
		rep.PhaseLengthsS = append(rep.PhaseLengthsS, ph.Duration.D().Seconds())
		spans = append(spans, span{name: ph.Name, start: start, length: ph.Duration.D()})
		start += ph.Duration.D()
	}
	for _, spec := range cfg.Controllers {
		rep.Results = append(rep.Results, results[job{spec: spec, from: 0, to: all}])
	}
	rep.ElapsedS = time.Since(started).Seconds()
	if cfg.NoSweep {
		rep.Oracle.Method = "none"
		return rep, nil
	}
	for _, size := range sc.Sweep {
		rep.Sweep = append(rep.Sweep, results[job{spec: "static:" + strconv.Itoa(size), from: 0, to: all}])
	}
	rep.BestStatic = bestStatic(rep.Sweep)
	cands := make([][]Result, all)
	for i := range sc.Phases {
		for _, size := range sc.Sweep {
			spec := "static:" + strconv.Itoa(size)
			if r, ok := results[job{spec: spec, from: i, to: i + 1}]; ok {
				cands[i] = append(cands[i], r)
			} else {
				cands[i] = append(cands[i], results[job{spec: spec, from: 0, to: all}])
			}
		}
	}
	method := cfg.Oracle
	if all == 1 {
		method = OraclePhaseAlone // one phase: the whole run is the phase alone
	}
	rep.Oracle = oracleOf(spans, cands, method)
	rep.ElapsedS = time.Since(started).Seconds()
	return rep, nil
}

func duplicate(names []string) string {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return n
		}
		seen[n] = true
	}
	return ""
}

// length is the length of phases [from, to).
func (sc *Scenario) length(from, to int) time.Duration {
	var d time.Duration
	for _, p := range sc.Phases[from:to] {
		d += p.Duration.D()
	}
	return d
}
