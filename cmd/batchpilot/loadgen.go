package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/batchpilot/batchpilot/loadgen"
)

func init() {
	register("loadgen", "the bundled traffic generator: patterns, HTTP and syslog, a report", runLoadgen)
}

// loadgenFloat is a float flag that knows whether it was given.
type loadgenFloat struct{ v *float64 }

func (f *loadgenFloat) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.FormatFloat(*f.v, 'g', -1, 64)
}

func (f *loadgenFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	f.v = &v
	return nil
}

// loadgenBool is a boolean flag that knows whether it was given.
type loadgenBool struct{ v *bool }

func (f *loadgenBool) String() string {
	if f.v == nil {
		return "false"
	}
	return strconv.FormatBool(*f.v)
}

func (f *loadgenBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	f.v = &v
	return nil
}

func (f *loadgenBool) IsBoolFlag() bool { return true }

func runLoadgen(ctx context.Context, args []string) error {
	fs := newFlagSet("loadgen", "loadgen [flags]\n\n"+
		"Sends log records to nodes, open loop (--rate: records leave on a schedule and latency is\n"+
		"measured from the intended send time) or closed loop (--concurrency without --rate: each\n"+
		"sender sends again when answered). Every record carries a unique \"id\" (RUNID-SEQ).\n"+
		"Progress goes to stderr, the final table to stdout. See docs/loadtesting.md.")
	var (
		from, speed loadgenFloat
		gzip        loadgenBool
	)
	targets := fs.String("target", "http://127.0.0.1:8480", "where to send, comma-separated: http://HOST:PORT (POST /v1/logs; a path replaces it),\ntcp://HOST:PORT or udp://HOST:PORT (syslog, RFC 5424); several targets of a protocol are taken\nin turn, with failover on errors")
	pattern := fs.String("pattern", "constant", "load shape: "+strings.Join(loadgen.Patterns, "|"))
	rate := fs.Float64("rate", 0, "records/s (open loop); the peak for ramp, step, spike, sine and burst")
	fs.Var(&from, "from", "the low `rate`: where ramp starts, step's first level rises from, spike and burst's base\n(default rate/10), sine's trough (default 0)")
	steps := fs.Int("steps", 0, "step: the number of equal steps from --from to --rate (default 4)")
	levels := fs.String("levels", "", "step: explicit comma-separated rates, each held --step-every")
	stepEvery := fs.Duration("step-every", 0, "step: how long each level holds (default duration / levels)")
	period := fs.Duration("period", 0, "sine: the period (default the duration, or 1m)")
	spikeAt := fs.Duration("spike-at", 0, "spike: when the spike starts (default half the duration)")
	spikeFor := fs.Duration("spike-for", 0, "spike: how long it lasts (default a tenth of the duration)")
	burstEvery := fs.Duration("burst-every", 0, "burst: mean quiet time between bursts, which start as a Poisson process (default 10s)")
	burstFor := fs.Duration("burst-for", 0, "burst: how long each burst lasts (default 1s)")
	trace := fs.String("trace", "", "replay: a trace file, one \"SECONDS RECORD\" or \"RFC3339 RECORD\" per line")
	fs.Var(&speed, "speed", "replay: play the trace this many `times` faster (default 1)")
	duration := fs.Duration("duration", 0, "how long to run (also the length a shaped pattern spans); 0: until the count\nor the scenario ends, or Ctrl-C")
	count := fs.Int64("count", 0, "stop after this many records (0: no limit)")
	scenario := fs.String("scenario", "", "a JSON scenario file of phases; the pattern flags then fill only what a phase\nleaves out, and --duration/--count bound the whole run")
	concurrency := fs.Int("concurrency", 0, "senders, each with its own keep-alive connection: the most requests in flight\n(open loop, default 16), or the load itself when given without --rate (closed loop)")
	batch := fs.Int("batch", 100, "records per HTTP request, or per TCP write")
	recordSize := fs.Int("record-size", 256, "record size in bytes (the mean for normal and lognormal)")
	sizeDist := fs.String("size-dist", "fixed", "record size distribution: fixed|uniform|normal|lognormal")
	sizeMin := fs.Int("size-min", 0, "smallest record size (uniform; a floor for normal and lognormal)")
	sizeMax := fs.Int("size-max", 0, "largest record size (uniform; a cap for normal and lognormal)")
	sizeStdDev := fs.Int("size-stddev", 0, "record size standard deviation (normal, lognormal)")
	fields := fs.Int("fields", 4, "extra fields per record besides id, ts, level, service and msg (processing cost)")
	fs.Var(&gzip, "gzip", "compress HTTP bodies (Content-Encoding: gzip)")
	framing := fs.String("framing", "octet", "syslog over TCP: octet (octet counting) or newline")
	retries := fs.Int("retries", 3, "retries per request after 429, 503, 5xx, timeouts and connection errors (0: none)")
	timeout := fs.Duration("timeout", 10*time.Second, "per attempt")
	maxRetryWait := fs.Duration("max-retry-wait", 10*time.Second, "the longest wait before a retry, whatever Retry-After says")
	acked := fs.String("acked", "", "write each acknowledged record id to FILE, one per line, for 'batchpilot verify'.\nHTTP: ids of requests answered 2xx. TCP syslog has no acknowledgement: an id counts once its\nbatch is written to the socket, so a node that dies with it unread loses it. UDP: never")
	report := fs.String("report", "", "write the JSON report (totals, phases, per-second series) to FILE")
	runID := fs.String("run-id", "", "id prefix for this run's records (default random, unique across runs)")
	seed := fs.Uint64("seed", 0, "seed for bursts and generated records (default 1, or the scenario's)")
	progressEvery := fs.Duration("progress-interval", 0, "progress line interval (default 1s on a terminal, 5s otherwise)")
	quiet := fs.Bool("quiet", false, "no progress line")
	drain := fs.Duration("drain-timeout", 2*time.Second, "after Ctrl-C, how long requests in flight may finish")
	tlsCA := fs.String("tls-ca", "", "PEM CA bundle to verify https:// targets' certificates with (the agents' --tls-ca);\ndefault the system's roots")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}

	phase := loadgen.Phase{
		Pattern: *pattern, Rate: *rate, From: from.v, Steps: *steps, StepEvery: loadgen.Duration(*stepEvery),
		Period: loadgen.Duration(*period), SpikeAt: loadgen.Duration(*spikeAt), SpikeFor: loadgen.Duration(*spikeFor),
		BurstEvery: loadgen.Duration(*burstEvery), BurstFor: loadgen.Duration(*burstFor), Trace: *trace,
		Batch: *batch, Fields: fields, Gzip: gzip.v, Framing: *framing,
		RecordSize: loadgen.Size{Dist: *sizeDist, Mean: *recordSize, Min: *sizeMin, Max: *sizeMax, StdDev: *sizeStdDev},
	}
	if speed.v != nil {
		phase.Speed = *speed.v
	}
	for _, l := range strings.Split(*levels, ",") {
		if l = strings.TrimSpace(l); l != "" {
			v, err := strconv.ParseFloat(l, 64)
			if err != nil {
				return fmt.Errorf("--levels: %w", err)
			}
			phase.Levels = append(phase.Levels, v)
		}
	}
	cfg := loadgen.Config{
		Targets: strings.Split(*targets, ","), Duration: *duration, Count: *count,
		Concurrency: *concurrency, Retries: *retries, Timeout: *timeout, MaxRetryWait: *maxRetryWait,
		RunID: *runID, ProgressEvery: *progressEvery, DrainTimeout: *drain,
		Terminal: isatty.IsTerminal(os.Stderr.Fd()),
	}
	if *retries == 0 {
		cfg.Retries = -1
	}
	tlsCfg, err := clientTLS(*tlsCA)
	if err != nil {
		return err
	}
	cfg.TLS = tlsCfg
	if *scenario != "" {
		sc, err := loadgen.LoadScenario(*scenario)
		if err != nil {
			return err
		}
		if sc.Seed == 0 {
			sc.Seed = *seed
		}
		cfg.Scenario = sc
	} else {
		phase.Duration, phase.Count = loadgen.Duration(*duration), *count
		cfg.Scenario = loadgen.SinglePhase(loadgen.Phase{})
		cfg.Scenario.Seed = *seed
		if *rate == 0 && *concurrency == 0 && (*pattern == "constant" || *pattern == "") {
			fmt.Fprintln(fs.Output(), "give --rate (open loop), --concurrency (closed loop) or --scenario")
			return errUsage
		}
	}
	cfg.Defaults = phase
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	if *acked != "" {
		f, err := os.Create(*acked)
		if err != nil {
			return fmt.Errorf("acked file: %w", err)
		}
		defer f.Close()
		cfg.Acked = f
	}

	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	if *report != "" {
		if err := rep.WriteJSON(*report); err != nil {
			return err
		}
	}
	if f, ok := cfg.Acked.(*os.File); ok {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("acked file: %w", err)
		}
	}
	return nil
}
