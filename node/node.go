package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/tuner"
)

// Config is one node's data-plane configuration. Zero values take the
// defaults in the field comments.
type Config struct {
	Name       string           // the node's name, written as "_node"
	Sink       sink.Sink        // required
	Controller tuner.Controller // default: static at InitialBatchSize
	// Guard, when set, checks each decision against the host's limits and
	// may override it (the safety breaker).
	Guard Guard
	// Resources, when set, is called once per control interval for CPU and
	// memory figures (the tuner's sampler).
	Resources func() tuner.Resources
	// Trace, when set, is called after every control step, from the control
	// loop, with what the controller saw and the verdict carried out (the
	// bench's --trace: a run's steps, to replay against a changed
	// controller). It must not block.
	Trace func(tuner.Observation, tuner.Verdict)

	InitialBatchSize int           // 100
	MaxBatchSize     int           // 20000
	MaxLinger        time.Duration // 200ms: the longest a record waits for its batch to fill
	LatencySLO       time.Duration // 500ms: the p99 end-to-end objective
	FlushConcurrency int           // 4: batches written at once
	FlushTimeout     time.Duration // 30s: one batch's write, retries included
	ControlInterval  time.Duration // 1s

	// MaxBatchBytes bounds a batch's bytes as the sink writes them as well
	// as its records (Vector's max_bytes beside max_events), so that a
	// downstream's body limit holds however large the records are; 0: no
	// bound. A controller may set a lower one (Decision.BatchBytes).
	MaxBatchBytes int64

	QueueRecords int   // 200000
	QueueBytes   int64 // 128 MiB
	// Admission is "delay" (default): refuse a request whose records would
	// wait past the latency budget (admission.go); or "queue": refuse only
	// at QueueRecords and QueueBytes.
	Admission    string
	MaxBodyBytes int64 // 16 MiB, after decompression
	MaxLineBytes int   // 1 MiB: one record

	Processors []Processor
	Logger     *slog.Logger
	Registerer prometheus.Registerer // default: a registry of the node's own
}

// Guard is the safety seam between the controller and the batcher: it sees
// every observation and decision and returns the decision to apply, with
// why it stepped in (tuner.Safeguard; tuner.Breaker is the one the agent
// uses). While its breaker is open because the sink fails, ingest is
// refused with 503 so that clients retry elsewhere instead of queueing
// records that cannot be written; while the node's CPU or memory is over
// its limit (Verdict.Pressure), admission refuses new work (429, syslog TCP
// not read) until the pressure clears, and the batch size is left alone.
type Guard = tuner.Safeguard

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.InitialBatchSize, 100)
	def(&c.MaxBatchSize, 20000)
	def(&c.FlushConcurrency, 4)
	def(&c.QueueRecords, 200000)
	def(&c.MaxLineBytes, 1<<20)
	defDur(&c.MaxLinger, 200*time.Millisecond)
	defDur(&c.LatencySLO, 500*time.Millisecond)
	defDur(&c.FlushTimeout, 30*time.Second)
	defDur(&c.ControlInterval, time.Second)
	if c.QueueBytes <= 0 {
		c.QueueBytes = 128 << 20
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Controller == nil {
		c.Controller = &tuner.Static{Size: c.InitialBatchSize}
	}
}

// Node is one node's data plane. Create it with New, start it with Start,
// stop it with Shutdown.
type Node struct {
	cfg      Config
	log      *slog.Logger
	sink     sink.Sink
	queue    *queue
	win      *window
	metrics  *metrics
	registry *prometheus.Registry // nil when cfg.Registerer was given
	decided  *tuner.DecisionLog

	batchSize     atomic.Int64
	inflightBytes atomic.Int64
	grantBytes    atomic.Int64 // 0: no grant in force
	limits        atomic.Pointer[Limits]
	draining      atomic.Bool
	breakerOpen   atomic.Bool
	lastPressure  string // the pressure the control loop last saw (its own)
	flow          flow   // batches in flight, their limit, the byte bound, the attempts (batcher.go)

	slots    chan struct{} // one token per flush in progress
	flushed  chan struct{} // signalled when a flush ends
	flushes  sync.WaitGroup
	stopCtl  chan struct{}
	done     chan struct{} // closed when the batcher has flushed everything
	ctlDone  chan struct{}
	health   atomic.Pointer[Health]
	history  *history
	startOne sync.Once
	stopOne  sync.Once
}

// New checks cfg and builds a node; nothing runs until Start.
func New(cfg Config) (*Node, error) {
	if cfg.Sink == nil {
		return nil, errors.New("node: no sink configured")
	}
	if cfg.Name == "" {
		return nil, errors.New("node: no name configured")
	}
	cfg.setDefaults()
	if cfg.InitialBatchSize > cfg.MaxBatchSize {
		return nil, fmt.Errorf("node: batch size %d is over the maximum %d", cfg.InitialBatchSize, cfg.MaxBatchSize)
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.Name),
		sink:    cfg.Sink,
		queue:   newQueue(cfg.QueueRecords, cfg.QueueBytes, cfg.Admission == AdmissionQueue),
		win:     newWindow(),
		decided: tuner.NewDecisionLog(1000),
		slots:   make(chan struct{}, cfg.FlushConcurrency),
		flushed: make(chan struct{}, 1),
		stopCtl: make(chan struct{}),
		done:    make(chan struct{}),
		ctlDone: make(chan struct{}),
		history: newHistory(300),
	}
	reg := cfg.Registerer
	if reg == nil {
		n.registry = prometheus.NewRegistry()
		reg = n.registry
	}
	n.metrics = newMetrics(reg, n)
	n.setBatchSize(cfg.InitialBatchSize)
	n.health.Store(&Health{BatchSize: cfg.InitialBatchSize, Breaker: "closed"})
	return n, nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Registry is the node's own Prometheus registry, or nil when the caller
// gave a Registerer.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Decisions is the node's log of tuner decisions.
func (n *Node) Decisions() *tuner.DecisionLog { return n.decided }

// Config returns the node's configuration with defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// BatchSize is the batch size in force.
func (n *Node) BatchSize() int { return int(n.batchSize.Load()) }

func (n *Node) setBatchSize(s int) {
	n.batchSize.Store(int64(s))
	n.metrics.batchSize.Set(float64(s))
	notify(n.queue.ready)
}

// SetGrant caps the bytes of batches this node may have in flight; 0 lifts
// the cap. The cluster calls it with the node's budget from the leader.
func (n *Node) SetGrant(bytes int64) {
	n.grantBytes.Store(bytes)
	notify(n.queue.ready)
}

// Limits are cluster-wide limits that override the node's own
// configuration while set; a zero field keeps the node's value.
type Limits struct {
	MaxBatchSize int
	LatencySLO   time.Duration
	CPULimit     float64 // percent of the host
	MemLimit     float64 // percent of the host
}

// SetLimits applies the cluster's limits from the next control interval on.
func (n *Node) SetLimits(l Limits) { n.limits.Store(&l) }

// InflightBytes is the bytes of batches being written now.
func (n *Node) InflightBytes() int64 { return n.inflightBytes.Load() }

// Start runs the batcher and the control loop.
func (n *Node) Start() {
	n.startOne.Do(func() {
		go n.batchLoop()
		go n.controlLoop()
	})
}

// Shutdown drains the node: new records are refused with ErrDraining, the
// queued ones are flushed and acknowledged, then the sink is closed. Callers
// stop their listeners first (or at once after) so that nothing new arrives.
// It returns ctx's error if the drain does not finish in time, in which case
// records still queued were not acknowledged and their clients got errors.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.stopOne.Do(func() {
		n.draining.Store(true)
		n.queue.close()
		select {
		case <-n.done:
		case <-ctx.Done():
			err = fmt.Errorf("node %s: drain: %w", n.cfg.Name, ctx.Err())
		}
		close(n.stopCtl)
		<-n.ctlDone
		if err == nil {
			if cerr := n.sink.Close(); cerr != nil {
				err = fmt.Errorf("node %s: close sink: %w", n.cfg.Name, cerr)
			}
		}
	})
	return err
}

// Draining reports whether Shutdown has begun.
func (n *Node) Draining() bool { return n.draining.Load() }

// Ready reports whether the node can take records: not draining, the
// breaker not open, and the sink reachable.
func (n *Node) Ready(ctx context.Context) error {
	if n.draining.Load() {
		return ErrDraining
	}
	if n.breakerOpen.Load() {
		return ErrBreakerOpen
	}
	if err := n.sink.Ready(ctx); err != nil {
		return fmt.Errorf("sink not ready: %w", err)
	}
	return nil
}

// ErrBreakerOpen is returned while the safety breaker refuses records.
var ErrBreakerOpen = errors.New("breaker open: the sink is failing or the host is over its limits")

// Ingest queues recs (each one JSON object) and waits until every one of
// them is durably written, or ctx ends. It returns ErrQueueFull at once when
// they do not fit, ErrDraining while shutting down, and the sink's error
// when a batch holding one of them failed. On a ctx error some records may
// still be written later: the caller must not acknowledge them.
func (n *Node) Ingest(ctx context.Context, recs [][]byte, src Source) error {
	if len(recs) == 0 {
		return nil
	}
	if n.breakerOpen.Load() {
		n.metrics.rejected.WithLabelValues("breaker_open").Add(float64(len(recs)))
		return ErrBreakerOpen
	}
	a := newAck(len(recs))
	now := time.Now()
	batch := make([]Record, len(recs))
	for i, r := range recs {
		batch[i] = Record{Data: r, Source: src, Received: now, ack: a}
	}
	if err := n.queue.put(batch); err != nil {
		reason := "queue_full"
		if errors.Is(err, ErrDraining) {
			reason = "draining"
		} else {
			n.win.addRejected(len(recs))
		}
		n.metrics.rejected.WithLabelValues(reason).Add(float64(len(recs)))
		return err
	}
	n.accepted(len(recs), src)
	select {
	case <-a.done:
		return a.result()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Offer queues one record nobody waits on (syslog). With block it waits
// for room until ctx ends (TCP backpressure); without, it returns
// ErrQueueFull at once and the record is counted as dropped (UDP).
func (n *Node) Offer(ctx context.Context, rec []byte, src Source, block bool) error {
	r := []Record{{Data: rec, Source: src, Received: time.Now()}}
	var err error
	if block {
		err = n.queue.putWait(ctx, r)
	} else {
		err = n.queue.put(r)
	}
	if err != nil {
		reason := "dropped"
		if errors.Is(err, ErrDraining) {
			reason = "draining"
		} else {
			n.win.addRejected(1)
		}
		n.metrics.rejected.WithLabelValues(reason).Inc()
		return err
	}
	n.accepted(1, src)
	return nil
}

func (n *Node) accepted(count int, src Source) {
	n.metrics.received.WithLabelValues(string(src)).Add(float64(count))
	n.win.addArrived(count)
}

// Rejected counts records refused before they reached the queue (by the
// HTTP or syslog front ends), by reason.
func (n *Node) Rejected(reason string, count int) {
	n.metrics.rejected.WithLabelValues(reason).Add(float64(count))
}
