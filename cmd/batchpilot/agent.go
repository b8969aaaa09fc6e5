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
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

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
	Server          bool
	BootstrapExpect int
	Encrypt         string
	// EncryptFile holds the gossip keys, one base64 key a line: the first
	// encrypts, all are accepted (a rotation, see docs/cluster.md).
	EncryptFile string
	// GossipLANTimings uses memberlist's LAN timings on a loopback
	// address too (cluster.Config.LANTimings).
	GossipLANTimings bool
	// InitialLimits are KEY=VALUE pairs, comma-separated, that the first
	// leader of a new cluster commits instead of the defaults.
	InitialLimits string
	// ignoreGrant makes the node run without its budget grant (it still
	// asks for its lease). Only the cluster benchmark sets it, to measure
	// the same cluster with coordination off.
	ignoreGrant bool

	Sink      string
	SinkURL   string
	SinkDSN   string
	SinkTable string
	// MinFreeBytes is the free space the file sink leaves on the data
	// dir's filesystem (see sink.FileConfig.MinFreeBytes).
	MinFreeBytes int64

	Controller       string
	BatchSize        int
	MaxBatchSize     int
	MaxLinger        time.Duration
	LatencySLO       time.Duration
	FlushConcurrency int
	MaxBatchBytes    int64
	QueueRecords     int
	QueueBytes       int64
	Admission        string
	MaxBodyBytes     int64
	MaxLineBytes     int

	APIToken string
	// IngestToken, BulkAddr and the syslog TLS settings are the intakes of
	// ingest.go.
	IngestToken       string
	BulkAddr          string
	SyslogTLSAddr     string
	SyslogTLSClientCA string
	// TLSCert and TLSKey turn HTTPS on; TLSCA verifies the other nodes'
	// certificates; RaftTLS runs Raft over mutual TLS (see tls.go).
	TLSCert string
	TLSKey  string
	TLSCA   string
	RaftTLS bool
	// MaxConns bounds the HTTP connections served at once and the syslog
	// TCP connections (0: defaultMaxConns); MaxHeaderBytes the size of an
	// HTTP request's header (0: defaultMaxHeaderBytes).
	MaxConns       int
	MaxHeaderBytes int
	// BodyReadTimeout bounds the time an HTTP request, its body included,
	// may take to arrive (http.Server.ReadTimeout); 0: none.
	BodyReadTimeout time.Duration

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
	fs.BoolVar(&c.GossipLANTimings, "gossip-lan-timings", false, "gossip failure detection with memberlist's LAN timings even on a loopback address, where\nit otherwise uses faster local ones (200 ms probe timeout): for many agents on one busy host")
	fs.StringVar(&c.Join, "join", "", "gossip address of any member to join, HOST:PORT[,HOST:PORT]")
	fs.BoolVar(&c.Server, "server", false, "run Raft: this node is one of the cluster's 3 or 5 servers, which hold the limits and\nanswer the lease requests; every other node is a worker (gossip and leases only).\nWithout --join a node is a single-node server (--server --bootstrap-expect 1)")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", 0, "servers that must agree before the first election (1 for a single node; servers only;\ngiven without --server it implies --server, as older versions took it)")
	fs.StringVar(&c.Encrypt, "encrypt", "", "base64 gossip encryption key (16, 24 or 32 bytes); also BATCHPILOT_ENCRYPT")
	fs.StringVar(&c.EncryptFile, "encrypt-file", "", "file with the gossip keys, one base64 key a line: the first encrypts, every one is\naccepted (for a rotation); reread on SIGHUP. Instead of --encrypt")
	fs.StringVar(&c.InitialLimits, "initial-limits", "", "limits a new cluster starts with instead of the defaults, KEY=VALUE[,KEY=VALUE]\n(e.g. cluster_budget_bytes=67108864,epoch_ms=1000); used once, by the first leader;\nchange them later with 'batchpilot limits set'")
	fs.StringVar(&c.Sink, "sink", "file", "where batches are written: file, http or postgres")
	fs.StringVar(&c.SinkURL, "sink-url", "", "URL the http sink POSTs each batch to as NDJSON")
	fs.StringVar(&c.SinkDSN, "sink-dsn", "", "PostgreSQL connection string for the postgres sink")
	fs.StringVar(&c.SinkTable, "sink-table", "logs", "table the postgres sink writes to (created if missing)")
	fs.Int64Var(&c.MinFreeBytes, "min-free-bytes", 64<<20, "free space the file sink leaves on the data dir's filesystem, so that Raft's store can\nstill write (at most a tenth of the filesystem); below it ingest answers 503 with\nRetry-After until there is room again; 0: none")
	fs.StringVar(&c.Controller, "controller", "gradient", "batch size controller: gradient, aimd, gradient2, target, arc or static")
	fs.IntVar(&c.BatchSize, "batch-size", 100, "initial batch size in records, or the fixed size for --controller static")
	fs.IntVar(&c.MaxBatchSize, "max-batch-size", 20000, "largest batch size the tuner may choose")
	fs.DurationVar(&c.MaxLinger, "max-linger", 200*time.Millisecond, "longest a record waits for its batch to fill")
	fs.DurationVar(&c.LatencySLO, "latency-slo", 500*time.Millisecond, "p99 end-to-end latency objective")
	fs.IntVar(&c.FlushConcurrency, "flush-concurrency", 4, "batches written to the sink at once")
	fs.Int64Var(&c.MaxBatchBytes, "max-batch-bytes", 0, "largest batch in bytes as the sink writes it, beside its records (a downstream's body limit); 0: no bound")
	fs.IntVar(&c.QueueRecords, "queue-records", 200000, "records the ingest queue holds before it pushes back")
	fs.Int64Var(&c.QueueBytes, "queue-bytes", 128<<20, "bytes the ingest queue holds before it pushes back")
	fs.StringVar(&c.Admission, "admission", node.AdmissionDelay, "delay: refuse (429) a request whose records would wait past the latency budget;\nqueue: refuse only when --queue-records or --queue-bytes is reached (docs/overload.md)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 16<<20, "largest HTTP request body, after decompression (413 above)")
	fs.IntVar(&c.MaxLineBytes, "max-line-bytes", 1<<20, "largest single record or syslog message")
	fs.StringVar(&c.APIToken, "api-token", "", "bearer token required for mutating API calls when set")
	c.registerIngest(fs)
	fs.StringVar(&c.TLSCert, "tls-cert", "", "this node's PEM certificate (chain): serve ingest, the API, the dashboard and /metrics\nover HTTPS (TLS 1.2 or later), and Raft with --raft-tls; needs --tls-key. Every node of a\ncluster serves HTTPS, or none does (nodes ask each other over the same scheme)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM CA bundle the other nodes' certificates are verified against (API requests to\nother nodes, and Raft with --raft-tls); default the system's roots")
	fs.BoolVar(&c.RaftTLS, "raft-tls", false, "run Raft over mutual TLS with --tls-cert and --tls-key; both ends verify the other's\ncertificate chain against --tls-ca (required), not its host name. Every node of a cluster\nsets it, or none does")
	fs.IntVar(&c.MaxConns, "max-conns", defaultMaxConns, "the most HTTP connections served at once (more wait to be accepted), and the most\nsyslog TCP connections (more are closed at once); 0: the default")
	fs.DurationVar(&c.BodyReadTimeout, "body-read-timeout", 30*time.Second, "longest an HTTP request, its body included, may take to arrive (a client sending its\nbody a byte a second is cut off with 400 and the connection closed); 0: no limit")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", defaultMaxHeaderBytes, "largest HTTP request header (request line and header fields); 0: the default")
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
	if c.MaxBatchBytes < 0 {
		errs = append(errs, fmt.Sprintf("--max-batch-bytes %d: want 0 (no bound) or more", c.MaxBatchBytes))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Sprintf("--max-conns %d: want at least 1", c.MaxConns))
	}
	if c.BodyReadTimeout < 0 {
		errs = append(errs, fmt.Sprintf("--body-read-timeout %s: want 0 or more", c.BodyReadTimeout))
	}
	if c.MinFreeBytes < 0 {
		errs = append(errs, fmt.Sprintf("--min-free-bytes %d: want 0 or more", c.MinFreeBytes))
	}
	if c.MaxHeaderBytes < 0 {
		errs = append(errs, fmt.Sprintf("--max-header-bytes %d: want at least 1", c.MaxHeaderBytes))
	}
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validateIngest()...)
	if c.Admission != "" && c.Admission != node.AdmissionDelay && c.Admission != node.AdmissionQueue {
		errs = append(errs, fmt.Sprintf("--admission %q: want delay or queue", c.Admission))
	}
	if c.Encrypt != "" && c.EncryptFile != "" {
		errs = append(errs, "give --encrypt or --encrypt-file, not both")
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Sprintf("--bootstrap-expect %d: want 0 or more", c.BootstrapExpect))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := c.initialLimits(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// initialLimits is --initial-limits applied to the default limits, or nil
// when the flag is not given.
func (c *agentConfig) initialLimits() (*consensus.Limits, error) {
	if strings.TrimSpace(c.InitialLimits) == "" {
		return nil, nil
	}
	var pairs []string
	for _, kv := range strings.Split(c.InitialLimits, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			pairs = append(pairs, kv)
		}
	}
	patch, err := consensus.ParseLimitsPatch(pairs)
	if err != nil {
		return nil, fmt.Errorf("--initial-limits: %w", err)
	}
	l := patch.Apply(consensus.DefaultLimits())
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("--initial-limits: %w", err)
	}
	return &l, nil
}

// The defaults of --max-conns and --max-header-bytes, also what a zero
// agentConfig field stands for.
const (
	defaultMaxConns       = 4096
	defaultMaxHeaderBytes = 64 << 10
)

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// version is the build's version, gossiped for operators: the module's
// version when it was built from one, "devel" otherwise.
var version = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version[:min(len(bi.Main.Version), 32)]
	}
	return "devel"
}()

// agent is one running node with its listeners.
type agent struct {
	cfg    agentConfig
	log    *slog.Logger
	node   *node.Node
	http   *http.Server
	httpLn net.Listener
	tls    agentTLS
	syslog *syslog.Server
	gossip *cluster.Cluster
	raft   *consensus.Server
	served chan error
	stopCl chan struct{}
	clDone chan struct{}

	// intakes are the bulk API and syslog over TLS (ingest.go).
	intakes intakes
	// grant is the budget grant the node was last given (0: none, no cap).
	grant atomic.Int64
	// meter counts the sink's writes and refusals for the lease requests.
	meter *sinkMeter
	// reloads are what SIGHUP rereads (reload.go); add to them with
	// a.reloads.add while the agent starts.
	reloads reloadHooks
}

// startAgent opens the sink, starts the node and its listeners, and returns
// once they accept connections.
func startAgent(ctx context.Context, cfg agentConfig, log *slog.Logger) (*agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	tlsCfg, err := cfg.loadTLS()
	if err != nil {
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
	meter := newSinkMeter(snk) // the downstream figures of the lease requests
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
		Sink:       meter,
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
		MaxBatchBytes:    cfg.MaxBatchBytes,
		QueueRecords:     cfg.QueueRecords,
		QueueBytes:       cfg.QueueBytes,
		Admission:        cfg.Admission,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxLineBytes:     cfg.MaxLineBytes,
		Processors:       []node.Processor{node.TimestampNormalizer{}},
		Logger:           log,
	})
	if err != nil {
		snk.Close()
		return nil, err
	}
	a := &agent{cfg: cfg, log: log, node: n, tls: tlsCfg, meter: meter, served: make(chan error, 4),
		stopCl: make(chan struct{}), clDone: make(chan struct{})}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		snk.Close()
		return nil, fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
	}
	// A connection counts against --max-conns from its accept, TLS
	// handshake included, until it is closed (idle keep-alives too).
	a.httpLn = netutil.LimitListener(ln, cfg.MaxConns)
	if cfg.SyslogAddr != "" {
		a.syslog = syslog.NewServer(syslog.Config{
			Addr:            cfg.SyslogAddr,
			MaxMessageBytes: cfg.MaxLineBytes,
			MaxConnections:  cfg.MaxConns,
			Logger:          log,
			Handler:         syslogHandler(n),
		})
		if err := a.syslog.Listen(); err != nil {
			a.httpLn.Close()
			snk.Close()
			return nil, fmt.Errorf("listen on --syslog-addr %s: %w", cfg.SyslogAddr, err)
		}
	}
	if err := a.listenIntakes(); err != nil {
		if a.syslog != nil {
			a.syslog.Close()
		}
		a.httpLn.Close()
		snk.Close()
		return nil, err
	}
	if err := a.joinCluster(); err != nil {
		a.closeIntakes()
		if a.syslog != nil {
			a.syslog.Close()
		}
		a.httpLn.Close()
		snk.Close()
		return nil, err
	}
	registerSinkMetrics(n.Registry(), snk)
	a.reloads.register(n.Registry())
	if a.tls.certs != nil {
		a.reloads.add("tls certificate", func() error {
			if err := a.tls.certs.Reload(); err != nil {
				return err
			}
			a.log.Info("tls certificate in use", "serial", a.tls.certs.Serial(), "cert", cfg.TLSCert)
			return nil
		})
	}
	if cfg.EncryptFile != "" {
		// One step of a gossip key rotation (docs/cluster.md).
		a.reloads.add("gossip keys", a.reloadGossipKeys)
	}
	registerClusterMetrics(n.Registry(), a.raft)
	a.warnInsecure()
	if a.syslog != nil {
		registerSyslogMetrics(n.Registry(), a.syslog)
	}
	n.Start()
	closing := make(chan struct{}) // ends the event streams when the server shuts down
	a.http = &http.Server{
		Handler: web.New(web.Config{Node: n, Raft: a.raft, Gossip: a.gossip, APIToken: cfg.APIToken,
			Ingest: a.ingestHandler(), PeerTLS: a.tls.peer, Logger: log, Closing: closing}),
		// The read deadline covers a request's header and body; net/http
		// lifts it once the body is read to its end, so neither a handler
		// waiting for its acknowledgement nor a stream is cut off by it.
		ReadTimeout:       cfg.BodyReadTimeout,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         a.tls.server,
	}
	a.http.RegisterOnShutdown(func() { close(closing) })
	if a.tls.server != nil {
		a.http.ErrorLog = newHTTPErrorLog(log)
		go func() { a.served <- a.http.ServeTLS(a.httpLn, "", "") }()
	} else {
		go func() { a.served <- a.http.Serve(a.httpLn) }()
	}
	go a.clusterLoop()
	a.serveIntakes()
	if a.syslog != nil {
		go func() { a.served <- a.syslog.Serve(context.Background()) }()
	}
	log.Info("node started", "http", a.URL(), "syslog", cfg.SyslogAddr, "sink", cfg.Sink,
		"controller", ctl.Name(), "data_dir", cfg.DataDir, "tls", a.tls.server != nil, "raft_tls", a.tls.raft != nil)
	return a, nil
}

func openSink(cfg agentConfig, log *slog.Logger) (sink.Sink, error) {
	switch cfg.Sink {
	case "http":
		return sink.NewHTTP(sink.HTTPConfig{URL: cfg.SinkURL, Logger: log})
	case "postgres":
		return sink.NewPostgres(sink.PostgresConfig{DSN: cfg.SinkDSN, Table: cfg.SinkTable, Logger: log})
	default:
		return sink.NewFile(sink.FileConfig{Dir: filepath.Join(cfg.DataDir, "sink"), MinFreeBytes: cfg.MinFreeBytes, Logger: log})
	}
}

// syslogAddr is where syslog listens, or "" when it is disabled.
func (a *agent) syslogAddr() string {
	if a.syslog == nil {
		return ""
	}
	return a.syslog.Addr()
}

// URL is the node's HTTP base URL: https:// when it serves TLS.
func (a *agent) URL() string {
	if a.tls.server != nil {
		return "https://" + a.httpLn.Addr().String()
	}
	return "http://" + a.httpLn.Addr().String()
}

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
	ierr := a.stopIntakes(ctx)
	herr := errors.Join(a.http.Shutdown(ctx), ierr)
	nerr := <-drained
	close(a.stopCl)
	<-a.clDone
	if leave {
		// Leave gracefully so the leader removes this node from Raft at once.
		start := time.Now()
		if err := a.raft.Leave(5 * time.Second); err != nil {
			a.log.Warn("leave", "err", err)
		} else {
			a.log.Info("left the cluster", "took", time.Since(start).Round(time.Millisecond))
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

// role decides whether this node is a server and what it expects: a
// server with --server or --bootstrap-expect (older command lines gave only
// the latter), a single-node server without --join, a worker otherwise.
func (c *agentConfig) role(log *slog.Logger, join []string) (server bool, expect int) {
	expect = c.BootstrapExpect
	switch {
	case c.Server:
		server = true
		if expect == 0 && len(join) == 0 {
			expect = 1
		}
	case expect > 0:
		server = true
		log.Info("--bootstrap-expect without --server: running as a server, as older versions did; add --server")
	case len(join) == 0:
		server, expect = true, 1
		log.Info("no --join and no --server: starting a single-node cluster (--server --bootstrap-expect 1)")
	}
	return server, expect
}

// gossipKeys is the primary gossip key and the others accepted: --encrypt,
// or the lines of --encrypt-file.
func (c *agentConfig) gossipKeys() (primary string, others []string, err error) {
	if c.EncryptFile == "" {
		return c.Encrypt, nil, nil
	}
	b, err := os.ReadFile(c.EncryptFile)
	if err != nil {
		return "", nil, fmt.Errorf("--encrypt-file: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := cluster.DecodeEncryptKey(line); err != nil {
			return "", nil, fmt.Errorf("--encrypt-file %s: %w", c.EncryptFile, err)
		}
		if primary == "" {
			primary = line
		} else {
			others = append(others, line)
		}
	}
	if primary == "" {
		return "", nil, fmt.Errorf("--encrypt-file %s holds no key", c.EncryptFile)
	}
	return primary, others, nil
}

// reloadGossipKeys rereads --encrypt-file and installs its keys (a step of
// a key rotation); the agent calls it on SIGHUP.
func (a *agent) reloadGossipKeys() error {
	if a.cfg.EncryptFile == "" {
		return nil
	}
	primary, others, err := a.cfg.gossipKeys()
	if err != nil {
		return err
	}
	if err := a.gossip.SetKeys(primary, others); err != nil {
		return err
	}
	a.log.Info("gossip keys reloaded", "file", a.cfg.EncryptFile, "keys", 1+len(others))
	return nil
}

// warnInsecure warns when the node listens beyond loopback with gossip
// unencrypted and the API without TLS: anyone who reaches it can join the
// cluster, and tokens travel in the clear.
func (a *agent) warnInsecure() {
	public := false
	for _, addr := range []string{a.cfg.GossipAddr, a.cfg.HTTPAddr, a.cfg.RaftAddr} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			public = true
		}
	}
	primary, _, _ := a.cfg.gossipKeys()
	if public && primary == "" && a.tls.server == nil {
		a.log.Warn("listening beyond loopback without --encrypt (or --encrypt-file) and without TLS: anyone who reaches these ports can join the cluster and read its traffic; see docs/cluster.md, Security",
			"gossip", a.cfg.GossipAddr, "http", a.cfg.HTTPAddr)
	}
}

// joinCluster starts gossip and, on a server, Raft; every node runs the
// lease client.
func (a *agent) joinCluster() error {
	var join []string
	for _, j := range strings.Split(a.cfg.Join, ",") {
		if j = strings.TrimSpace(j); j != "" {
			join = append(join, j)
		}
	}
	initial, err := a.cfg.initialLimits()
	if err != nil {
		return err
	}
	server, expect := a.cfg.role(a.log, join)
	primary, others, err := a.cfg.gossipKeys()
	if err != nil {
		return err
	}
	role := cluster.RoleWorker
	if server {
		role = cluster.RoleServer
	}
	g, err := cluster.New(cluster.Config{
		NodeName:      a.cfg.NodeName,
		DataDir:       a.cfg.DataDir,
		Role:          role,
		Version:       version,
		BindAddr:      a.cfg.GossipAddr,
		AdvertiseAddr: a.cfg.AdvertiseAddr,
		HTTPAddr:      a.advertised(a.httpLn.Addr().String()),
		Join:          join,
		EncryptKey:    primary,
		ExtraKeys:     others,
		Logger:        a.log,
		LANTimings:    a.cfg.GossipLANTimings,
	})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	scheme, hc := "http", &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}}
	if a.tls.peer != nil {
		scheme = "https"
		hc.Transport.(*http.Transport).TLSClientConfig = a.tls.peer.Clone()
	}
	srv, err := consensus.New(consensus.Config{
		Worker:          !server,
		Health:          a.clusterHealth,
		Downstream:      a.downstreamHealth,
		HTTPClient:      hc,
		HTTPScheme:      scheme,
		Token:           a.cfg.APIToken,
		DataDir:         a.cfg.DataDir,
		RaftAddr:        a.cfg.RaftAddr,
		BootstrapExpect: expect,
		Gossip:          g,
		Logger:          a.log,
		InitialLimits:   initial,
		TLS:             a.tls.raft,
	})
	if err != nil {
		g.Shutdown()
		return fmt.Errorf("raft: %w", err)
	}
	srv.Start()
	a.gossip, a.raft = g, srv
	a.log.Info("cluster role", "role", role, "bootstrap_expect", expect, "join", a.cfg.Join)
	return nil
}

// clusterHealth is what this node reports with its lease requests.
func (a *agent) clusterHealth() cluster.Health {
	h := a.node.Health()
	return cluster.Health{
		BatchSize: h.BatchSize, ThroughputRPS: h.ThroughputRPS, P99ms: h.P99ms,
		CPUPercent: h.CPUPercent, MemPercent: h.MemPercent, RSSBytes: h.RSSBytes,
		QueueDepth: h.QueueDepth, Breaker: cluster.Breaker(h.Breaker),
		WantBytes: h.WantBytes, HasBytes: a.node.InflightBytes(),
	}
}

// downstreamHealth is what this node saw of its sink since its last lease
// request.
func (a *agent) downstreamHealth() consensus.DownstreamHealth {
	return a.meter.downstream(time.Now(), a.node.Health().GoodputRPS)
}

// clusterApplyInterval is how often the agent reads its grant (its lease)
// and the limits (its FSM, or its last lease answer on a worker). It is short so that a new epoch's grant is in force
// soon after it is applied, and a stale lease falls back within the TTL,
// not a second after it: both are cheap in-memory reads, and the node is
// only told about a change.
const clusterApplyInterval = 100 * time.Millisecond

// clusterLoop applies the cluster's limits and this node's grant. A stale
// lease answers the safe baseline, so a node cut off from the leader
// shrinks to it by itself, on its own clock.
func (a *agent) clusterLoop() {
	defer close(a.clDone)
	t := time.NewTicker(clusterApplyInterval)
	defer t.Stop()
	var st clusterApplied
	for {
		a.applyCluster(&st)
		select {
		case <-a.stopCl:
			return
		case <-t.C:
		}
	}
}

// clusterApplied is what the agent last handed the node.
type clusterApplied struct {
	limits consensus.Limits
	grant  int64
	fresh  bool
	set    bool
}

func (a *agent) applyCluster(st *clusterApplied) {
	if l := a.raft.Limits(); !st.set || l != st.limits {
		a.node.SetLimits(node.Limits{
			MaxBatchSize: l.MaxBatchSize,
			LatencySLO:   time.Duration(l.SLOms) * time.Millisecond,
			CPULimit:     l.CPULimitPercent,
			MemLimit:     l.MemLimitPercent,
		})
		st.limits = l
	}
	grant, fresh := a.raft.Grant(time.Now())
	if a.cfg.ignoreGrant {
		grant = 0
	}
	if !st.set || grant != st.grant {
		a.node.SetGrant(grant)
		a.grant.Store(grant)
	}
	if st.set && fresh != st.fresh {
		info := a.raft.Lease().Info(time.Now())
		if fresh {
			a.log.Info("budget lease fresh: running on the granted budget", "epoch", info.Epoch, "grant_bytes", grant)
		} else {
			a.log.Warn("budget lease stale: no lease answer within the TTL; running on the safe baseline",
				"epoch", info.Epoch, "age_ms", info.AgeMS, "baseline_bytes", grant)
		}
	}
	st.grant, st.fresh, st.set = grant, fresh, true
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
	stopReload := a.reloadOnSIGHUP()
	defer stopReload()
	fmt.Fprintf(os.Stderr, "batchpilot agent %s: ingest, API and dashboard on %s\n", cfg.NodeName, a.URL())
	// A machine-readable line for scripts and tests that bind port 0.
	fmt.Fprintf(os.Stderr, "listening http=%s syslog=%s gossip=%s raft=%s role=%s %s\n",
		a.URL(), a.syslogAddr(), a.gossip.Addr(), a.raft.RaftAddr(), a.gossip.Role(), a.intakeAddrs())
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

// clusterCollector exports the cluster as this node sees it: the Raft role
// and term, the latest budget epoch, this node's lease, and one series per
// member with its gossip status and Raft role. Everything comes from one
// consensus Status per scrape.
type clusterCollector struct {
	raft *consensus.Server

	leader, term, epoch, budget, granted, floor, learning   *prometheus.Desc
	leaseReqs, leaseFresh, leaseEpoch, leaseAge, leaseGrant *prometheus.Desc
	member, memberGrant                                     *prometheus.Desc
	ceiling, budgetDec                                      *prometheus.Desc
}

func registerClusterMetrics(reg prometheus.Registerer, srv *consensus.Server) {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	reg.MustRegister(&clusterCollector{
		raft:        srv,
		leader:      d("batchpilot_raft_leader", "1 while this node is the Raft leader."),
		term:        d("batchpilot_raft_term", "This node's current Raft term."),
		epoch:       d("batchpilot_cluster_epoch", "The lease epoch: the term of the leader that answered this node's last lease (on the leader, its term)."),
		budget:      d("batchpilot_cluster_budget_bytes", "The cluster budget of in-flight batch bytes in force: the learned one (budget_mode=learned, on the leader and in the last lease answer elsewhere), or the limit cluster_budget_bytes (budget_mode=fixed)."),
		ceiling:     d("batchpilot_cluster_budget_ceiling_bytes", "The limit cluster_budget_bytes: the learned budget's ceiling."),
		budgetDec:   d("batchpilot_cluster_budget_decisions_total", "Decisions of the leader's budget controller made on this server, by reason (grow, probe, wait, knee, settled, idle, pushback, slo, too_large, no_data, ceiling, floor, start, fixed).", "reason"),
		granted:     d("batchpilot_cluster_granted_bytes", "On the leader: the sum of what the nodes may hold now under their leases (baselines included)."),
		floor:       d("batchpilot_cluster_floor_bytes", "The safe baseline a node falls back to when its lease expires."),
		learning:    d("batchpilot_cluster_learning", "1 while the leader's lease table is in learning mode (one TTL after a change of leader)."),
		leaseReqs:   d("batchpilot_lease_requests_total", "Lease requests this node answered as leader."),
		leaseFresh:  d("batchpilot_lease_fresh", "1 while this node's budget lease is fresh; 0 when it runs on the safe baseline."),
		leaseEpoch:  d("batchpilot_lease_epoch", "The epoch of this node's budget lease."),
		leaseAge:    d("batchpilot_lease_age_seconds", "Time since this node's lease was renewed (-1: never)."),
		leaseGrant:  d("batchpilot_lease_grant_bytes", "What this node's lease allows now: its grant while fresh, the baseline when stale (batchpilot_grant_bytes is what the node applied, at most 100ms later)."),
		member:      d("batchpilot_cluster_member", "One series per member this node knows: its gossip status, Raft role and role.", "name", "status", "raft_role", "role"),
		memberGrant: d("batchpilot_cluster_member_grant_bytes", "Each member's last grant (every member on the leader; this node's own elsewhere).", "name"),
	})
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leader, c.term, c.epoch, c.budget, c.granted, c.floor, c.learning,
		c.leaseReqs, c.leaseFresh, c.leaseEpoch, c.leaseAge, c.leaseGrant, c.member, c.memberGrant, c.ceiling, c.budgetDec} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	st := c.raft.Status(now)
	lease := c.raft.Lease().Info(now)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.leader, b2f(c.raft.IsLeader()))
	gauge(c.term, float64(st.Term))
	gauge(c.epoch, float64(st.Epoch))
	gauge(c.budget, float64(st.BudgetBytes))
	gauge(c.ceiling, float64(st.CeilingBytes))
	for reason, n := range c.raft.BudgetDecisionCounts() {
		ch <- prometheus.MustNewConstMetric(c.budgetDec, prometheus.CounterValue, float64(n), reason)
	}
	gauge(c.granted, float64(st.GrantedBytes))
	gauge(c.floor, float64(st.FloorBytes))
	gauge(c.learning, b2f(st.Learning))
	ch <- prometheus.MustNewConstMetric(c.leaseReqs, prometheus.CounterValue, float64(c.raft.LeaseRequests()))
	gauge(c.leaseFresh, b2f(lease.Fresh))
	gauge(c.leaseEpoch, float64(lease.Epoch))
	age := -1.0
	if lease.AgeMS >= 0 {
		age = float64(lease.AgeMS) / 1000
	}
	gauge(c.leaseAge, age)
	gauge(c.leaseGrant, float64(lease.GrantBytes))
	seen := map[string]bool{}
	for _, m := range st.Members {
		name := m.Name
		if name == "" {
			name = "id:" + m.ID // a Raft server gossip does not know
		}
		if seen[name] {
			continue // a const metric's labels must be unique per scrape
		}
		seen[name] = true
		gauge(c.member, 1, name, string(m.Status), m.RaftRole, string(m.Role))
		gauge(c.memberGrant, float64(m.Budget.GrantBytes), name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
