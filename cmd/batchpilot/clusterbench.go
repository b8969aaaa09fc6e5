package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/clusterbench"
)

// clusterBenchFlags are the bench flags the --nodes path reads.
type clusterBenchFlags struct {
	nodes                  int
	arms                   string
	scenario, scenarioFile string
	quick                  bool
	seed                   uint64
	out, svg               string
	progressEvery          time.Duration
}

// runClusterBench is `batchpilot bench --nodes N`: this binary's `agent`
// as N processes behind one shared downstream, arm after arm.
func runClusterBench(ctx context.Context, f clusterBenchFlags) error {
	if f.nodes < 2 || f.nodes > 64 {
		return fmt.Errorf("--nodes %d: want 2 to 64 (5 is the documented run)", f.nodes)
	}
	if f.scenario != "" && f.scenarioFile != "" {
		return errors.New("give --scenario or --scenario-file, not both")
	}
	var (
		sc  *clusterbench.Scenario
		err error
	)
	if f.scenarioFile != "" {
		sc, err = clusterbench.LoadScenario(f.scenarioFile)
	} else {
		name := f.scenario
		if name == "" {
			name = clusterbench.DefaultScenario
		}
		sc, err = clusterbench.Named(name)
	}
	if err != nil {
		return err
	}
	sc = sc.WithSeed(f.seed)
	if f.quick {
		sc = sc.QuickVersion()
	}
	var arms []string
	for _, a := range strings.Split(f.arms, ",") {
		if a = strings.TrimSpace(a); a != "" {
			arms = append(arms, a)
		}
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cluster bench: find this binary for its agents: %w", err)
	}
	rep, err := clusterbench.Run(ctx, clusterbench.Config{Binary: bin, Scenario: sc, Nodes: f.nodes, Quick: f.quick, Arms: arms,
		Progress: os.Stderr, ProgressEvery: f.progressEvery})
	if err := emitReport(rep, err, f.out); err != nil {
		return err
	}
	if f.svg != "" {
		files, err := rep.WriteSVGs(f.svg)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cluster bench: charts %s\n", strings.Join(files, ", "))
	}
	return nil
}
