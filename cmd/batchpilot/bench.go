package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/bench"
)

func init() {
	register("bench", "runs the controllers side by side on one seeded scenario and reports the comparison", runBench)
}

func runBench(ctx context.Context, args []string) error {
	fs := newFlagSet("bench", "bench [flags]\n\n"+
		"Runs each controller, one after the other, on the same seeded scenario on a real pipeline on\n"+
		"127.0.0.1 (loadgen over HTTP -> a node with the controller and the breaker -> the http sink ->\n"+
		"sinksim paying the scenario's costs), then sweeps fixed sizes for the best static size in\n"+
		"hindsight and the per-phase oracle. Progress goes to stderr, the table to stdout. The full\n"+
		"shifting bench takes about an hour; --quick about 3 minutes. See docs/bench.md.")
	scenario := fs.String("scenario", "", "a committed scenario: "+strings.Join(bench.Names(), ", ")+" (default shifting)")
	scenarioFile := fs.String("scenario-file", "", "a scenario JSON file instead (see docs/bench.md)")
	controllers := fs.String("controllers", strings.Join(bench.DefaultControllers, ","), "comma-separated controllers: gradient, aimd, gradient2, target, static:N")
	quick := fs.Bool("quick", false, "short phases, a smaller sweep, the oracle from the sweep's whole runs")
	seed := fs.Uint64("seed", 0, "seed of the load and the downstream (0: the scenario's)")
	out := fs.String("out", "", "write the report JSON to `FILE`")
	svg := fs.String("svg", "", "draw batch size, goodput and p99 over time per controller to `FILE` (SVG)")
	cpuLimit := fs.Float64("cpu-limit", 100, "host CPU limit in percent for the breaker and the controllers' objectives; the\ngenerator, the node and the downstream share this host, so the agent's 90 would trip\non the bench's own load (see docs/bench.md)")
	oracle := fs.String("oracle", "", "how the per-phase oracle is found: phase-alone (each phase run alone at every size)\nor whole-run (the phases of the sweep's whole runs); default phase-alone, whole-run with --quick")
	noSweep := fs.Bool("no-sweep", false, "run the controllers only: no fixed-size sweep, no best static size, no oracle")
	progressEvery := fs.Duration("progress-interval", 10*time.Second, "how often a running run reports")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return errUsage
	}
	if *scenario != "" && *scenarioFile != "" {
		fmt.Fprintln(fs.Output(), "give --scenario or --scenario-file, not both")
		return errUsage
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
	var specs []string
	for _, s := range strings.Split(*controllers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			specs = append(specs, s)
		}
	}
	rep, err := bench.Run(ctx, bench.Config{
		Scenario: sc, Quick: *quick, Controllers: specs, CPULimit: *cpuLimit, Oracle: *oracle, NoSweep: *noSweep,
		Progress: os.Stderr, ProgressEvery: *progressEvery,
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted")
		}
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	if *out != "" {
		if err := rep.WriteJSON(*out); err != nil {
			return err
		}
	}
	if *svg != "" {
		if err := rep.WriteSVG(*svg); err != nil {
			return err
		}
	}
	return nil
}
