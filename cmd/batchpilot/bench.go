package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/bench"
	"github.com/batchpilot/batchpilot/loadgen/clusterbench"
)

func init() {
	register("bench", "runs the controllers side by side on one seeded scenario and reports the comparison", runBench)
}

func runBench(ctx context.Context, args []string) (retErr error) {
	fs := newFlagSet("bench", "bench [flags]\n\n"+
		"Runs each controller, one after the other, on the same seeded scenario on a real pipeline on\n"+
		"127.0.0.1 (loadgen over HTTP -> a node with the controller and the breaker -> the http sink ->\n"+
		"sinksim paying the scenario's costs), then sweeps fixed sizes for the best static size in\n"+
		"hindsight and the per-phase oracle. Progress goes to stderr, the table to stdout. The full\n"+
		"shifting bench takes about an hour; --quick about 3 minutes. --suite runs every committed\n"+
		"scenario (--suite --quick in under 15 minutes) and prints one table. See docs/bench.md.")
	scenario := fs.String("scenario", "", "a committed scenario: "+strings.Join(bench.Names(), ", ")+" (default shifting)")
	scenarioFile := fs.String("scenario-file", "", "a scenario JSON file instead (see docs/bench.md)")
	controllers := fs.String("controllers", strings.Join(bench.DefaultControllers, ","), "comma-separated controllers: gradient, aimd, gradient2, target, arc, static:N")
	quick := fs.Bool("quick", false, "short phases, a smaller sweep, the oracle from the sweep's whole runs")
	seed := fs.Uint64("seed", 0, "seed of the load and the downstream (0: the scenario's)")
	out := fs.String("out", "", "write the report JSON to `FILE`")
	svg := fs.String("svg", "", "draw batch size, goodput and p99 over time per controller to `FILE` (SVG)")
	cpuLimit := fs.Float64("cpu-limit", 100, "host CPU limit in percent for the breaker and the controllers' objectives; the\ngenerator, the node and the downstream share this host, so the agent's 90 would trip\non the bench's own load (see docs/bench.md)")
	oracle := fs.String("oracle", "", "how the per-phase oracle is found: phase-alone (each phase run alone at every size)\nor whole-run (the phases of the sweep's whole runs); default phase-alone, whole-run with --quick")
	noSweep := fs.Bool("no-sweep", false, "run the controllers only: no fixed-size sweep, no best static size, no oracle")
	suite := fs.Bool("suite", false, "run every committed scenario ("+strings.Join(bench.Names(), ", ")+") and print one table\n(default controllers "+strings.Join(bench.SuiteControllers, ",")+"); --out writes {\"scenarios\": [REPORT, ...]}")
	seeds := fs.Int("seeds", 1, "run everything on `N` seeds (the scenario's or --seed, then the next ones) and report\nthe mean and the range")
	progressEvery := fs.Duration("progress-interval", 10*time.Second, "how often a running run reports")
	nodes := fs.Int("nodes", 0, "run the CLUSTER bench instead: `N` real agent processes (5 is the documented run) behind one\nshared downstream with an aggregate knee, arms uncoordinated, arc, budget:BYTES (a sweep) and\nlearned; --scenario/--scenario-file name a cluster scenario ("+strings.Join(clusterbench.Names(), ", ")+"),\n--svg is a directory or a file prefix (one SVG per arm). See docs/cluster.md")
	steps := fs.String("steps", "", "write every control step of every run (what the controller saw, what it decided) to `FILE`,\none JSON line each, to replay against a changed controller (see docs/bench.md)")
	arms := fs.String("arms", "", "with --nodes: comma-separated arms to run (default all: "+strings.Join(clusterbench.AllArms, ",")+")")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *nodes != 0 || *arms != "" {
		if *suite || *oracle != "" || *noSweep || *seeds != 1 || *steps != "" || *controllers != strings.Join(bench.DefaultControllers, ",") {
			fmt.Fprintln(fs.Output(), "--nodes runs the cluster bench: --suite, --oracle, --no-sweep, --seeds, --steps and --controllers are the single-node bench's")
			return errUsage
		}
		return runClusterBench(ctx, clusterBenchFlags{nodes: *nodes, arms: *arms, scenario: *scenario, scenarioFile: *scenarioFile,
			quick: *quick, seed: *seed, out: *out, svg: *svg, progressEvery: *progressEvery})
	}
	if *scenario != "" && *scenarioFile != "" {
		fmt.Fprintln(fs.Output(), "give --scenario or --scenario-file, not both")
		return errUsage
	}
	if *suite && (*scenario != "" || *scenarioFile != "" || *svg != "") {
		fmt.Fprintln(fs.Output(), "--suite runs every committed scenario: leave out --scenario, --scenario-file and --svg")
		return errUsage
	}
	if *seeds < 1 || *seeds > 100 {
		fmt.Fprintln(fs.Output(), "--seeds must be in [1, 100]")
		return errUsage
	}
	var specs []string
	for _, s := range strings.Split(*controllers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			specs = append(specs, s)
		}
	}
	cfg := bench.Config{
		Quick: *quick, Controllers: specs, CPULimit: *cpuLimit, Oracle: *oracle, NoSweep: *noSweep,
		Progress: os.Stderr, ProgressEvery: *progressEvery,
	}
	if *steps != "" {
		f, err := os.Create(*steps)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		defer func() {
			err := w.Flush()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil && retErr == nil {
				retErr = fmt.Errorf("the control steps %s: %w", *steps, err)
			}
		}()
		cfg.Steps = w
	}
	if *suite {
		if *controllers == strings.Join(bench.DefaultControllers, ",") {
			cfg.Controllers = bench.SuiteControllers
		}
		return runSuite(ctx, cfg, *seed, *seeds, *out)
	}
	var (
		sc  *bench.Scenario
		err error
	)
	if *scenarioFile != "" {
		sc, err = bench.LoadScenario(*scenarioFile)
	} else {
		name := *scenario
		if name == "" {
			name = "shifting"
		}
		sc, err = bench.Named(name)
	}
	if err != nil {
		return err
	}
	sc = sc.WithSeed(*seed)
	if *quick {
		sc = sc.QuickVersion()
	}
	cfg.Scenario = sc
	rep, err := bench.RunSeeds(ctx, cfg, *seeds)
	if err := emitReport(rep, err, *out); err != nil {
		return err
	}
	if *svg != "" {
		if err := rep.WriteSVG(*svg); err != nil {
			return err
		}
	}
	return nil
}

// runSuite runs every committed scenario and prints one table.
func runSuite(ctx context.Context, cfg bench.Config, seed uint64, seeds int, out string) error {
	var scenarios []*bench.Scenario
	for _, name := range bench.Names() {
		sc, err := bench.Named(name)
		if err != nil {
			return err
		}
		sc = sc.WithSeed(seed)
		if cfg.Quick {
			sc = sc.QuickVersion()
		}
		scenarios = append(scenarios, sc)
	}
	s, err := bench.RunSuite(ctx, cfg, scenarios, seeds)
	return emitReport(s, err, out)
}

// emitReport ends a bench: the run's error (an interrupt said as such), or
// the report's table on stdout and, with out, its JSON.
func emitReport(rep interface {
	WriteTable(io.Writer) error
	WriteJSON(path string) error
}, runErr error, out string) error {
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) {
			return errors.New("interrupted")
		}
		return runErr
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	if out != "" {
		return rep.WriteJSON(out)
	}
	return nil
}
