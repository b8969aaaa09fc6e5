package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/loadgen"
	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

func init() {
	register("dev", "a local cluster in one process on 127.0.0.1, with a demo load and the dashboard", runDev)
}

type devConfig struct {
	Nodes      int
	Load       string
	DataDir    string
	HTTPPort   int
	Controller string
	LogLevel   string
	// sinkURL, when set, is the shared downstream every node writes to
	// (the demo's sinksim) instead of its own file sink; limits are the
	// cluster's initial limits.
	sinkURL string
	limits  string
}

// The demo's shared downstream: a database that costs 20 ms a request and
// 4 µs a byte, 16 requests at a time (16 more wait, then 429), and slows
// for everyone past 32 KiB in flight across all nodes, (load/knee)² past
// it. Three nodes at the demo's peaks (4,000 and 8,000 records/s) push it
// past the knee unless the learned budget holds them near it; the sine's
// first rise reaches it about half a minute in (with a knee of 64 KiB its
// peak stayed near 54 KiB in flight, and the budget grew once and idled).
var demoSink = sinksim.Config{
	Cost:           sinksim.Cost{PerRequest: 20 * time.Millisecond, PerByte: 4 * time.Microsecond, KneeBytes: 32 << 10, KneeExponent: 2},
	MaxConcurrency: 16, Queue: 16, RetryAfter: time.Second,
}

// demoLimits make the budget bind on the demo's downstream: the learned
// budget under a 16 MiB ceiling, per-node floors of 8 KiB, one-second
// epochs.
const demoLimits = "budget_mode=learned,cluster_budget_bytes=16777216,node_floor_bytes=8192,epoch_ms=1000,lease_ttl_ms=3000"

func runDev(ctx context.Context, args []string) error {
	var c devConfig
	fs := newFlagSet("dev", "dev [--nodes 3] [--load demo|none] [--data-dir D]")
	fs.IntVar(&c.Nodes, "nodes", 3, "nodes to run (1 to 200): the first 3 are servers, the rest workers")
	fs.StringVar(&c.Load, "load", "demo", "demo (a shifting load over HTTP and syslog, every node writing to one shared\ndownstream, an in-process sinksim that slows past 32 KiB in flight, so the learned cluster budget\nbinds) or none (each node writes to its own file sink)")
	fs.StringVar(&c.DataDir, "data-dir", "./data/dev", "parent of the nodes' data dirs (node-1, node-2, ...)")
	fs.IntVar(&c.HTTPPort, "http-port", 8480, "HTTP port of the first node; the others take the next ones (0: any free port)")
	fs.StringVar(&c.Controller, "controller", "gradient", "batch size controller of every node")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if c.Nodes < 1 || c.Nodes > 200 {
		return fmt.Errorf("--nodes %d: want 1 to 200", c.Nodes)
	}
	if c.Load != "demo" && c.Load != "none" {
		return fmt.Errorf("--load %q: want demo or none", c.Load)
	}
	log, err := newLogger(c.LogLevel)
	if err != nil {
		return err
	}
	var sim *sinksim.Server
	if c.Load == "demo" {
		// The demo's nodes share one downstream that can collapse, so the
		// cluster budget binds and the dashboard shows it at work.
		if sim, err = sinksim.Start(demoSink); err != nil {
			return fmt.Errorf("start the demo's downstream: %w", err)
		}
		defer sim.Close()
		c.sinkURL, c.limits = sim.URL(), demoLimits
	}
	started := time.Now()
	agents, err := startDevNodes(ctx, c, log)
	if err != nil {
		return err
	}
	fmt.Printf("batchpilot dev: %d node(s) on 127.0.0.1\n", len(agents))
	for _, a := range agents {
		fmt.Printf("  %-8s %s  syslog %s  data %s\n", a.cfg.NodeName, a.URL(), a.syslogAddr(), a.cfg.DataDir)
	}
	if sim != nil {
		fmt.Printf("shared downstream: %s (sinksim; GET /stats): 20ms a request + 4us a byte, slower for every node past\n"+
			"  32 KiB in flight in total; the budget is learned under a 16 MiB ceiling (GET /api/v1/budget/decisions)\n", sim.URL())
	}
	fmt.Printf("dashboard: %s/\n", agents[0].URL())
	fmt.Println("Ctrl-C stops the cluster cleanly.")
	go reportConvergence(ctx, agents, started)

	var loadDone chan struct{}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	if c.Load == "demo" {
		loadDone = make(chan struct{})
		go func() {
			defer close(loadDone)
			runDemoLoad(loadCtx, agents, log)
		}()
	}
	<-ctx.Done()
	fmt.Println("\nstopping: draining every node")
	stopLoad()
	if loadDone != nil {
		<-loadDone
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(agents))
	for i, a := range agents {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = a.stop(sctx, false) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if sim != nil {
		st := sim.Stats()
		fmt.Printf("shared downstream: %d records in %d requests, %d started past the knee, %d answered 429\n",
			st.Records, st.Accepted, st.PastKnee, st.Rejected["queue_full"])
	}
	fmt.Println("stopped cleanly")
	return nil
}

// freePort returns want when it is free on 127.0.0.1 (for TCP, and for UDP
// too when udp is set), else 0 so the kernel picks one.
func freePort(want int, udp bool) int {
	if want == 0 {
		return 0
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(want))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0
	}
	l.Close()
	if udp {
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return 0
		}
		u.Close()
	}
	return want
}

func devAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// devServers is how many of dev's nodes are servers (all of them when
// there are fewer); the rest are workers.
const devServers = 3

func startDevNodes(ctx context.Context, c devConfig, log *slog.Logger) ([]*agent, error) {
	var agents []*agent
	for i := 0; i < c.Nodes; i++ {
		httpPort := 0
		if c.HTTPPort > 0 {
			httpPort = c.HTTPPort + i
		}
		cfg := agentConfig{
			NodeName:         fmt.Sprintf("node-%d", i+1),
			DataDir:          filepath.Join(c.DataDir, fmt.Sprintf("node-%d", i+1)),
			HTTPAddr:         devAddr(freePort(httpPort, false)),
			SyslogAddr:       devAddr(freePort(5514+i, true)),
			GossipAddr:       devAddr(freePort(7946+i, true)),
			RaftAddr:         devAddr(freePort(8300+i, false)),
			Server:           i < devServers,
			BootstrapExpect:  min(c.Nodes, devServers),
			Sink:             "file",
			InitialLimits:    c.limits,
			Controller:       c.Controller,
			BatchSize:        100,
			MaxBatchSize:     20000,
			MaxLinger:        200 * time.Millisecond,
			LatencySLO:       500 * time.Millisecond,
			FlushConcurrency: 4,
			QueueRecords:     200000,
			QueueBytes:       128 << 20,
			MaxBodyBytes:     16 << 20,
			MaxLineBytes:     1 << 20,
			LogLevel:         c.LogLevel,
		}
		if c.sinkURL != "" {
			cfg.Sink, cfg.SinkURL = "http", c.sinkURL+"/"+cfg.NodeName
		}
		if len(agents) > 0 {
			cfg.Join = agents[0].gossip.Addr()
		}
		if i >= devServers {
			cfg.BootstrapExpect = 0 // a worker: gossip and leases only
		}
		a, err := startAgent(ctx, cfg, log)
		if err != nil {
			for _, b := range agents {
				_ = b.stop(context.Background(), false)
			}
			return nil, fmt.Errorf("start %s: %w", cfg.NodeName, err)
		}
		agents = append(agents, a)
	}
	return agents, nil
}

// reportConvergence prints, once, how long the cluster took from the first
// node's start until every node saw every other alive, every server was a
// voter, and every node held a fresh lease from the leader.
func reportConvergence(ctx context.Context, agents []*agent, started time.Time) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if msg, ok := converged(agents); ok {
			fmt.Printf("converged in %s: %s\n", time.Since(started).Round(time.Millisecond), msg)
			return
		}
	}
}

func converged(agents []*agent) (string, bool) {
	n := len(agents)
	var leader *agent
	for _, a := range agents {
		alive := 0
		for _, m := range a.gossip.Members() {
			if m.Status == cluster.StatusAlive {
				alive++
			}
		}
		if alive != n {
			return "", false
		}
		if a.raft.IsLeader() {
			leader = a
		}
	}
	if leader == nil {
		return "", false
	}
	voters, workers := 0, 0
	for _, a := range agents {
		switch leader.raft.Role(a.raft.ID()) {
		case "leader", "voter":
			voters++
		case "none":
			if a.raft.IsServer() {
				return "", false
			}
			workers++
		}
		if _, fresh := a.raft.Grant(time.Now()); !fresh {
			return "", false
		}
	}
	return fmt.Sprintf("%d members alive on every node, %d voters and %d workers, leader %s, every node on a fresh lease",
		n, voters, workers, leader.cfg.NodeName), true
}

// runDemoLoad sends a load that keeps changing, so the tuners have
// something to do: a slow sine over HTTP with bursts on top, and a steady
// trickle of syslog, spread over every node, until ctx ends.
func runDemoLoad(ctx context.Context, agents []*agent, log *slog.Logger) {
	var httpTargets, tcpTargets []string
	for _, a := range agents {
		httpTargets = append(httpTargets, a.URL())
		if s := a.syslogAddr(); s != "" {
			tcpTargets = append(tcpTargets, "tcp://"+s)
		}
	}
	from := 200.0
	scenario := &loadgen.Scenario{Name: "demo", Phases: []loadgen.Phase{
		{Name: "diurnal", Pattern: "sine", Rate: 4000, From: &from, Period: loadgen.Duration(2 * time.Minute), Duration: loadgen.Duration(4 * time.Minute), Protocol: "http", Batch: 50},
		{Name: "bursts", Pattern: "burst", Rate: 8000, From: &from, BurstEvery: loadgen.Duration(15 * time.Second), BurstFor: loadgen.Duration(3 * time.Second), Duration: loadgen.Duration(2 * time.Minute), Protocol: "http", Batch: 50},
	}}
	var wg sync.WaitGroup
	defer wg.Wait()
	if len(tcpTargets) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = loadgen.Run(ctx, loadgen.Config{Targets: tcpTargets,
				Scenario: loadgen.SinglePhase(loadgen.Phase{Pattern: "constant", Rate: 100, Protocol: "tcp", Batch: 10}),
				Logger:   log})
		}()
	}
	for ctx.Err() == nil {
		if _, err := loadgen.Run(ctx, loadgen.Config{Targets: httpTargets, Scenario: scenario, Logger: log}); err != nil {
			log.Error("demo load", "err", err)
			return
		}
	}
}
