package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/consensus"
	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/node/syslog"
	"github.com/batchpilot/batchpilot/tuner"
	"github.com/batchpilot/batchpilot/web"
)

func init() {
	register("agent", "run one node: ingest, batching, tuner, sink, gossip, Raft, API, dashboard", runAgent)
}

// agentConfig is everything `batchpilot agent` takes; `dev` fills several.
type agentConfig struct {
	NodeName   string
	DataDir    string
	HTTPAddr   string
	SyslogAddr string

	GossipAddr      string
	RaftAddr        string
	AdvertiseAddr   string
	Join            string
	BootstrapExpect int
	Encrypt         string

	Sink    string
	SinkURL string
	SinkDSN string

	Controller       string
	BatchSize        int
	MaxBatchSize     int
	MaxLinger        time.Duration
	LatencySLO       time.Duration
	FlushConcurrency int
	QueueRecords     int
	QueueBytes       int64
	MaxBodyBytes     int64
	MaxLineBytes     int

	APIToken        string
	ShutdownTimeout time.Duration
	LogLevel        string
}

func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	return h
}

func (c *agentConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.NodeName, "node-name", defaultNodeName(), "this node's name, unique in the cluster")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "where the node keeps its sink files, node id and Raft state")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:8480", "address for ingest (POST /v1/logs), the API, the dashboard and /metrics")
	fs.StringVar(&c.SyslogAddr, "syslog-addr", "127.0.0.1:5514", "address for syslog over TCP and UDP (RFC 5424 and 3164); empty disables")
	fs.StringVar(&c.GossipAddr, "gossip-addr", "127.0.0.1:7946", "gossip (memberlist) bind address, TCP and UDP")
	fs.StringVar(&c.RaftAddr, "raft-addr", "127.0.0.1:8300", "Raft bind address (TCP)")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", "", "address other nodes reach this one at, when binding 0.0.0.0")
	fs.StringVar(&c.Join, "join", "", "gossip address of any member to join, HOST:PORT[,HOST:PORT]")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", 0, "servers to wait for before the first election (1 for a single node)")
	fs.StringVar(&c.Encrypt, "encrypt", "", "base64 gossip encryption key (16, 24 or 32 bytes)")
	fs.StringVar(&c.Sink, "sink", "file", "where batches are written: file, http or postgres")
	fs.StringVar(&c.SinkURL, "sink-url", "", "URL the http sink POSTs each batch to as NDJSON")
	fs.StringVar(&c.SinkDSN, "sink-dsn", "", "PostgreSQL connection string for the postgres sink")
	fs.StringVar(&c.Controller, "controller", "gradient", "batch size controller: gradient, aimd, gradient2, target or static")
	fs.IntVar(&c.BatchSize, "batch-size", 100, "initial batch size in records, or the fixed size for --controller static")
	fs.IntVar(&c.MaxBatchSize, "max-batch-size", 20000, "largest batch size the tuner may choose")
	fs.DurationVar(&c.MaxLinger, "max-linger", 200*time.Millisecond, "longest a record waits for its batch to fill")
	fs.DurationVar(&c.LatencySLO, "latency-slo", 500*time.Millisecond, "p99 end-to-end latency objective")
	fs.IntVar(&c.FlushConcurrency, "flush-concurrency", 4, "batches written to the sink at once")
	fs.IntVar(&c.QueueRecords, "queue-records", 200000, "records the ingest queue holds before it pushes back")
	fs.Int64Var(&c.QueueBytes, "queue-bytes", 128<<20, "bytes the ingest queue holds before it pushes back")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 16<<20, "largest HTTP request body, after decompression (413 above)")
	fs.IntVar(&c.MaxLineBytes, "max-line-bytes", 1<<20, "largest single record or syslog message")
	fs.StringVar(&c.APIToken, "api-token", "", "bearer token required for mutating API calls when set")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGTERM waits for queued records to be written")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
}

func (c *agentConfig) validate() error {
	var errs []string
	if strings.TrimSpace(c.NodeName) == "" {
		errs = append(errs, "--node-name must not be empty")
	}
	if c.DataDir == "" {
		errs = append(errs, "--data-dir must not be empty")
	}
	for flagName, addr := range map[string]string{"--http-addr": c.HTTPAddr, "--syslog-addr": c.SyslogAddr} {
		if addr == "" && flagName == "--syslog-addr" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: want HOST:PORT", flagName, addr))
		}
	}
	switch c.Sink {
	case "file":
	case "http":
		if c.SinkURL == "" {
			errs = append(errs, "--sink http needs --sink-url")
		}
	case "postgres":
		if c.SinkDSN == "" {
			errs = append(errs, "--sink postgres needs --sink-dsn")
		}
	default:
		errs = append(errs, fmt.Sprintf("--sink %q: want file, http or postgres", c.Sink))
	}
	if c.BatchSize < 1 || c.BatchSize > c.MaxBatchSize {
		errs = append(errs, fmt.Sprintf("--batch-size %d: want 1 to --max-batch-size (%d)", c.BatchSize, c.MaxBatchSize))
	}
	if c.FlushConcurrency < 1 {
		errs = append(errs, "--flush-concurrency must be at least 1")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// agent is one running node with its listeners.
type agent struct {
	cfg    agentConfig
	log    *slog.Logger
	node   *node.Node
	http   *http.Server
	httpLn net.Listener
	syslog *syslog.Server
	gossip *cluster.Cluster
	raft   *consensus.Server
	served chan error
	stopCl chan struct{}
	clDone chan struct{}
}

// startAgent opens the sink, starts the node and its listeners, and returns
// once they accept connections.
func startAgent(ctx context.Context, cfg agentConfig, log *slog.Logger) (*agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log = log.With("node", cfg.NodeName)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	snk, err := openSink(cfg, log)
	if err != nil {
		return nil, err
	}
	ctl, err := tuner.New(cfg.Controller, cfg.BatchSize, cfg.MaxBatchSize)
	if err != nil {
		snk.Close()
		return nil, err
	}
	sampler, err := tuner.NewSampler(ctx)
	if err != nil {
		snk.Close()
		return nil, err
	}
	n, err := node.New(node.Config{
		Name:       cfg.NodeName,
		Sink:       snk,
		Controller: ctl,
		Guard:      tuner.NewBreaker(tuner.BreakerConfig{}),
		Resources: func() tuner.Resources {
			r, err := sampler.Sample(context.Background())
			if err != nil {
				log.Debug("resource sample", "err", err)
			}
			return r
		},
		InitialBatchSize: cfg.BatchSize,
		MaxBatchSize:     cfg.MaxBatchSize,
		MaxLinger:        cfg.MaxLinger,
		LatencySLO:       cfg.LatencySLO,
		FlushConcurrency: cfg.FlushConcurrency,
		QueueRecords:     cfg.QueueRecords,
		QueueBytes:       cfg.QueueBytes,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxLineBytes:     cfg.MaxLineBytes,
		Processors:       []node.Processor{node.TimestampNormalizer{}},
		Logger:           log,
	})
	if err != nil {
		snk.Close()
		return nil, err
	}
	a := &agent{cfg: cfg, log: log, node: n, served: make(chan error, 2),
		stopCl: make(chan struct{}), clDone: make(chan struct{})}
	a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		snk.Close()
		return nil, fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.SyslogAddr != "" {
		a.syslog = syslog.NewServer(syslog.Config{
			Addr:            cfg.SyslogAddr,
			MaxMessageBytes: cfg.MaxLineBytes,
			Logger:          log,
			Handler: func(rec []byte, block bool) error {
				return n.Offer(context.Background(), rec, node.SourceSyslog, block)
			},
		})
		if err := a.syslog.Listen(); err != nil {
			a.httpLn.Close()
			snk.Close()
			return nil, fmt.Errorf("listen on --syslog-addr %s: %w", cfg.SyslogAddr, err)
		}
	}
	if err := a.joinCluster(); err != nil {
		if a.syslog != nil {
			a.syslog.Close()
		}
		a.httpLn.Close()
		snk.Close()
		return nil, err
	}
	registerSinkMetrics(n.Registry(), snk)
	if a.syslog != nil {
		registerSyslogMetrics(n.Registry(), a.syslog)
	}
	n.Start()
	a.http = &http.Server{
		Handler:           web.New(web.Config{Node: n, Raft: a.raft, Gossip: a.gossip, APIToken: cfg.APIToken, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
	}
	go func() { a.served <- a.http.Serve(a.httpLn) }()
	go a.clusterLoop()
	if a.syslog != nil {
		go func() { a.served <- a.syslog.Serve(context.Background()) }()
	}
	log.Info("node started", "http", a.URL(), "syslog", cfg.SyslogAddr, "sink", cfg.Sink,
		"controller", ctl.Name(), "data_dir", cfg.DataDir)
	return a, nil
}

func openSink(cfg agentConfig, log *slog.Logger) (sink.Sink, error) {
	switch cfg.Sink {
	case "http":
		return sink.NewHTTP(sink.HTTPConfig{URL: cfg.SinkURL, Logger: log})
	case "postgres":
		return nil, errors.New("--sink postgres: the PostgreSQL sink is not in this build yet; use file or http")
	default:
		return sink.NewFile(sink.FileConfig{Dir: filepath.Join(cfg.DataDir, "sink"), Logger: log})
	}
}

// syslogAddr is where syslog listens, or "" when it is disabled.
func (a *agent) syslogAddr() string {
	if a.syslog == nil {
		return ""
	}
	return a.syslog.Addr()
}

// URL is the node's HTTP base URL.
func (a *agent) URL() string { return "http://" + a.httpLn.Addr().String() }

// stop drains the node: the listeners stop taking new work, queued records
// are written and acknowledged, then the sink closes. With leave the node
// also leaves the cluster (it is removed from Raft at once); without, it
// only stops, as when a whole cluster is shut down to be started again.
func (a *agent) stop(ctx context.Context, leave bool) error {
	a.log.Info("draining: no new records; writing what is queued")
	if a.syslog != nil {
		_ = a.syslog.Close()
	}
	// Shutdown of the HTTP server waits for the ingest requests in flight,
	// which wait for their records' acknowledgement; the node drains at the
	// same time.
	drained := make(chan error, 1)
	go func() { drained <- a.node.Shutdown(ctx) }()
	herr := a.http.Shutdown(ctx)
	nerr := <-drained
	close(a.stopCl)
	<-a.clDone
	if leave {
		// Leave gracefully so the leader removes this node from Raft at once.
		if err := a.raft.Leave(5 * time.Second); err != nil {
			a.log.Warn("leave", "err", err)
		}
	}
	serr := errors.Join(a.raft.Shutdown(), a.gossip.Shutdown())
	if err := errors.Join(nerr, herr, serr); err != nil {
		return err
	}
	a.log.Info("stopped cleanly")
	return nil
}

// advertised is addr with its host replaced by --advertise-addr when one
// is set or when addr binds every interface.
func (a *agent) advertised(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if adv := a.cfg.AdvertiseAddr; adv != "" {
		if h, _, err := net.SplitHostPort(adv); err == nil {
			adv = h
		}
		host = adv
	}
	return net.JoinHostPort(host, port)
}

// joinCluster starts gossip and Raft.
func (a *agent) joinCluster() error {
	var join []string
	for _, j := range strings.Split(a.cfg.Join, ",") {
		if j = strings.TrimSpace(j); j != "" {
			join = append(join, j)
		}
	}
	expect := a.cfg.BootstrapExpect
	if expect == 0 && len(join) == 0 {
		expect = 1
		a.log.Info("no --join and no --bootstrap-expect: starting a single-node cluster (--bootstrap-expect 1)")
	}
	g, err := cluster.New(cluster.Config{
		NodeName:      a.cfg.NodeName,
		DataDir:       a.cfg.DataDir,
		BindAddr:      a.cfg.GossipAddr,
		AdvertiseAddr: a.cfg.AdvertiseAddr,
		HTTPAddr:      a.advertised(a.httpLn.Addr().String()),
		Join:          join,
		EncryptKey:    a.cfg.Encrypt,
		Logger:        a.log,
	}, a.clusterHealth)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	srv, err := consensus.New(consensus.Config{
		DataDir:         a.cfg.DataDir,
		RaftAddr:        a.cfg.RaftAddr,
		BootstrapExpect: expect,
		Gossip:          g,
		Logger:          a.log,
	})
	if err != nil {
		g.Shutdown()
		return fmt.Errorf("raft: %w", err)
	}
	srv.Start()
	a.gossip, a.raft = g, srv
	return nil
}

// clusterHealth is what this node gossips.
func (a *agent) clusterHealth() cluster.Health {
	h := a.node.Health()
	return cluster.Health{
		BatchSize: h.BatchSize, ThroughputRPS: h.ThroughputRPS, P99ms: h.P99ms,
		CPUPercent: h.CPUPercent, MemPercent: h.MemPercent, RSSBytes: h.RSSBytes,
		QueueDepth: h.QueueDepth, Breaker: cluster.Breaker(h.Breaker),
		WantBytes: h.WantBytes, HasBytes: a.node.InflightBytes(),
	}
}

// clusterLoop applies the cluster's limits and this node's grant once a
// second. A stale lease answers the safe baseline, so a node cut off from
// the leader shrinks to it by itself.
func (a *agent) clusterLoop() {
	defer close(a.clDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a.applyCluster()
		select {
		case <-a.stopCl:
			return
		case <-t.C:
		}
	}
}

func (a *agent) applyCluster() {
	l := a.raft.Limits()
	a.node.SetLimits(node.Limits{
		MaxBatchSize: l.MaxBatchSize,
		LatencySLO:   time.Duration(l.SLOms) * time.Millisecond,
		CPULimit:     l.CPULimitPercent,
		MemLimit:     l.MemLimitPercent,
	})
	grant, _ := a.raft.Grant(time.Now())
	a.node.SetGrant(grant)
}

func runAgent(ctx context.Context, args []string) error {
	var cfg agentConfig
	fs := newFlagSet("agent", "agent [flags]")
	cfg.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	a, err := startAgent(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "batchpilot agent %s: ingest, API and dashboard on %s\n", cfg.NodeName, a.URL())
	// A machine-readable line for scripts and tests that bind port 0.
	fmt.Fprintf(os.Stderr, "listening http=%s syslog=%s\n", a.URL(), a.syslogAddr())
	select {
	case <-ctx.Done():
	case err := <-a.served:
		log.Error("listener failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return a.stop(sctx, true)
}

func newLogger(level string) (*slog.Logger, error) {
	l, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
