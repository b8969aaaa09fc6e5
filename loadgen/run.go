package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Config is one run of the generator. Only Targets and a schedule (a
// Scenario, or a Rate or Concurrency in Defaults) are required.
type Config struct {
	// Targets: http://HOST:PORT (POSTs to /v1/logs), tcp://HOST:PORT and
	// udp://HOST:PORT (syslog). A phase sends to the targets of its
	// protocol in turn, and fails over to the next on errors.
	Targets []string
	// Scenario is the phases; nil runs one phase made of Defaults.
	Scenario *Scenario
	// Defaults fill what a phase leaves out (the command's flags).
	Defaults Phase
	// Duration and Count bound the whole run (0: the scenario's own bounds;
	// a run with none goes on until ctx ends).
	Duration time.Duration
	Count    int64
	// TLS is the client configuration for https:// targets (e.g. the CA the
	// nodes' certificates are verified against); nil: the system's roots.
	TLS *tls.Config
	// Concurrency is the number of senders, each with its own keep-alive
	// connection (default 16): in flight at most for an open-loop phase, and
	// the load itself for a closed-loop one.
	Concurrency int
	// Retries per request after the first attempt (default 3; -1: none).
	// 429, 503, other 5xx, timeouts and connection errors are retried, after
	// Retry-After when the target sent one (at most MaxRetryWait, default
	// 10s), else after an exponential backoff from 50ms.
	Retries      int
	MaxRetryWait time.Duration
	// Timeout per attempt (default 10s).
	Timeout time.Duration
	// RunID prefixes every record id ("RUNID-SEQ"); default: random, so that
	// ids are unique across runs.
	RunID string
	// Acked, when set, receives one acknowledged record id per line:
	// records of HTTP requests answered 2xx and of syslog batches written to
	// a TCP socket (syslog has no acknowledgement); never UDP.
	Acked io.Writer
	// Progress, when set, receives a progress line every ProgressEvery
	// (default 1s on a terminal, 5s otherwise); on a Terminal the line is
	// rewritten in place.
	Progress      io.Writer
	ProgressEvery time.Duration
	Terminal      bool
	// DrainTimeout is how long requests in flight may finish after ctx ends
	// (default 2s); then they are abandoned and counted as canceled.
	DrainTimeout time.Duration
	Logger       *slog.Logger

	// Test seams.
	newSender func(proto string) sender
	loadTrace traceLoader
	observe   func(c claim, res result, latency time.Duration)
}

// ErrNoSchedule is returned when no phase says how fast to send.
var ErrNoSchedule = errors.New("no schedule: give a rate (open loop), a concurrency (closed loop) or a scenario")

// Run sends load until the schedule, Duration or Count is spent, or ctx
// ends (then it stops, lets requests in flight finish for DrainTimeout, and
// still returns the report). The error is for a configuration that cannot
// run; errors of the targets are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	r, err := newRunner(cfg)
	if err != nil {
		return nil, err
	}
	return r.run(ctx), nil
}

type runner struct {
	cfg     Config
	plans   []*phasePlan
	sets    map[string]*targetSet
	client  *http.Client
	acked   *ackWriter
	rec     *recorder
	plan    *plan
	stop    chan struct{} // closed when ctx ends
	reqCtx  context.Context
	started time.Time
}

func newRunner(cfg Config) (*runner, error) {
	closedLoop := cfg.Concurrency > 0
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
		if cfg.Terminal {
			cfg.ProgressEvery = time.Second
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RunID == "" {
		cfg.RunID = NewRunID()
	}
	if cfg.loadTrace == nil {
		cfg.loadTrace = loadTraceFile
	}
	if cfg.Count < 0 || cfg.Duration < 0 {
		return nil, errors.New("count and duration must not be negative")
	}
	sets, firstProto, err := targetSets(cfg.Targets)
	if err != nil && cfg.newSender == nil {
		return nil, err
	}
	sc := cfg.Scenario
	if sc == nil {
		if cfg.Defaults.Rate == 0 && !closedLoop &&
			(cfg.Defaults.Pattern == "" || cfg.Defaults.Pattern == "constant") {
			return nil, ErrNoSchedule
		}
		sc = SinglePhase(Phase{})
	}
	if firstProto == "" {
		firstProto = "http"
	}
	plans, err := sc.plan(cfg.Defaults, firstProto, cfg.loadTrace, cfg.RunID)
	if err != nil {
		return nil, err
	}
	if cfg.newSender == nil {
		for _, p := range plans {
			if sets[p.proto] == nil {
				return nil, fmt.Errorf("phase %s sends %s but no %s:// target was given", p.name, p.proto, p.proto)
			}
		}
	}
	r := &runner{cfg: cfg, plans: plans, sets: sets, stop: make(chan struct{})}
	if cfg.Acked != nil {
		r.acked = &ackWriter{w: bufio.NewWriterSize(cfg.Acked, 64<<10), prefix: []byte(cfg.RunID + "-")}
	}
	if sets["http"] != nil {
		r.client = newHTTPClient(cfg.Concurrency, cfg.TLS)
	}
	return r, nil
}

// NewRunID returns a short random id prefix.
func NewRunID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(36*36*36*36*36*36))
	if err != nil {
		n = big.NewInt(time.Now().UnixNano())
	}
	return "lg" + strconv.FormatInt(time.Now().Unix()%(36*36*36), 36) + n.Text(36)
}

func (r *runner) run(ctx context.Context) *Report {
	r.started = time.Now()
	r.rec = newRecorder(r.started, r.plans)
	r.rec.observe = r.cfg.observe
	r.plan = newPlan(r.plans, r.rec, r.started, r.cfg.Count, r.cfg.Duration)
	reqCtx, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	r.reqCtx = reqCtx

	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Go(r.worker)
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()

	var prog *progressLine
	if r.cfg.Progress != nil {
		prog = &progressLine{w: r.cfg.Progress, terminal: r.cfg.Terminal, rec: r.rec, plan: r.plan, start: r.started}
	}
	tick := time.NewTicker(r.cfg.ProgressEvery)
	defer tick.Stop()

	interrupted := false
	var backlog int64
	var backlogPhase int
	var drain <-chan time.Time
	cancelled := ctx.Done()
	for done := false; !done; {
		select {
		case <-workersDone:
			done = true
		case <-cancelled:
			cancelled = nil
			interrupted = true
			backlog, backlogPhase = r.plan.interrupt(time.Now())
			close(r.stop)
			drain = time.After(r.cfg.DrainTimeout)
		case <-drain:
			cancelReqs()
			drain = nil
		case <-tick.C:
			if prog != nil {
				prog.print(time.Now())
			}
		}
	}
	end := time.Now()
	if prog != nil {
		prog.print(end)
		prog.finish()
	}
	if r.acked != nil {
		r.acked.flush()
	}
	return r.report(end, interrupted, backlog, backlogPhase)
}

func (r *runner) report(end time.Time, interrupted bool, backlog int64, backlogPhase int) *Report {
	if backlog > 0 {
		r.rec.mu.Lock()
		for _, a := range []*agg{r.rec.total, r.rec.phases[backlogPhase]} {
			a.s.Offered += backlog
			a.s.Canceled += backlog
		}
		r.rec.mu.Unlock()
	}
	spans := r.plan.timeline()
	// A closed-loop phase that ends the run lasts until its last answer.
	for i := len(spans) - 1; i >= 0; i-- {
		if spans[i].started {
			if r.plans[i].pat == nil {
				spans[i].length = max(spans[i].length, end.Sub(r.started)-spans[i].start)
			}
			break
		}
	}
	phases, totals, series := r.rec.finish(end.Sub(r.started), spans)
	for i := range phases {
		for _, p := range r.plans {
			if p.name == phases[i].Name && spans[p.index].started {
				phases[i].Pattern, phases[i].Protocol, phases[i].Batch = p.pattern, p.proto, p.batch
			}
		}
	}
	rep := &Report{
		RunID: r.cfg.RunID, StartedAt: r.started, ElapsedS: end.Sub(r.started).Seconds(),
		Interrupted: interrupted, Targets: r.cfg.Targets, Concurrency: r.cfg.Concurrency,
		Totals: totals, Phases: phases, Series: series,
	}
	if r.acked != nil && r.acked.err != nil {
		r.cfg.Logger.Error("write acked ids", "err", r.acked.err)
	}
	return rep
}

// worker claims batches and delivers them until the plan has no more.
func (r *runner) worker() {
	senders := map[string]sender{}
	defer func() {
		for _, s := range senders {
			s.close()
		}
	}()
	var (
		pl   payload
		zbuf bytes.Buffer
		gz   *gzip.Writer
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		c, ok := r.plan.next(time.Now())
		if !ok {
			return
		}
		if d := time.Until(c.due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-r.stop:
				timer.Stop()
				r.rec.unclaim(&c)
				return
			}
		}
		sent := time.Now()
		pl.reset()
		c.phase.enc.encode(&pl, c.seq, c.local, c.n, sent)
		wire := pl.buf
		if c.phase.gzip && c.phase.proto == "http" {
			zbuf.Reset()
			if gz == nil {
				gz, _ = gzip.NewWriterLevel(&zbuf, gzip.BestSpeed)
			} else {
				gz.Reset(&zbuf)
			}
			gz.Write(pl.buf)
			gz.Close()
			wire, pl.gzip = zbuf.Bytes(), true
		}
		s := senders[c.phase.proto]
		if s == nil {
			s = r.newSender(c.phase.proto)
			senders[c.phase.proto] = s
		}
		res := r.deliver(s, &c, wire, &pl)
		latency := time.Since(c.due)
		if res.acked && r.acked != nil {
			r.acked.write(c.seq, c.n)
		}
		r.rec.complete(&c, res, latency, sent.Sub(c.due))
	}
}

func (r *runner) newSender(proto string) sender {
	if r.cfg.newSender != nil {
		return r.cfg.newSender(proto)
	}
	switch proto {
	case "http":
		return &httpSender{client: r.client, timeout: r.cfg.Timeout}
	case "tcp":
		return &tcpSender{timeout: r.cfg.Timeout}
	default:
		return &udpSender{}
	}
}

// deliver tries a batch until it is delivered, fails for good, or the
// retries are spent.
func (r *runner) deliver(s sender, c *claim, wire []byte, pl *payload) result {
	var res result
	set := r.sets[c.phase.proto]
	for try := 0; ; try++ {
		var t *target
		if set != nil {
			t = set.pick(time.Now())
		}
		pl.attempt = try + 1
		a := s.send(r.reqCtx, t, wire, pl)
		res.requests++
		res.wireBytes += int64(len(wire))
		if a.kind == "" {
			res.delivered, res.acked = true, a.acked
			return res
		}
		if r.reqCtx.Err() != nil || a.kind == "canceled" {
			res.canceled = true
			return res
		}
		res.errors = append(res.errors, a.kind)
		if a.failover && set != nil {
			set.markDown(t, time.Now().Add(time.Second))
		}
		if !a.retryable || try >= r.cfg.Retries {
			return res
		}
		wait := r.backoff(try, a)
		if wait > 0 {
			tm := time.NewTimer(wait)
			select {
			case <-tm.C:
			case <-r.stop:
				tm.Stop()
				res.canceled = true
				return res
			}
		} else {
			select {
			case <-r.stop:
				res.canceled = true
				return res
			default:
			}
		}
		res.retries++
	}
}

// backoff is the wait before retry try+1: the target's Retry-After if it
// sent one, else 50ms doubling per try up to 2s, with ±25% jitter; never
// above MaxRetryWait.
func (r *runner) backoff(try int, a attempt) time.Duration {
	if a.hasRetryAfter {
		return min(a.retryAfter, r.cfg.MaxRetryWait)
	}
	d := min(50*time.Millisecond<<min(try, 6), 2*time.Second)
	d = time.Duration(float64(d) * (0.75 + mrand.Float64()/2))
	return min(d, r.cfg.MaxRetryWait)
}

// ackWriter writes acknowledged ids, one per line.
type ackWriter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	prefix []byte
	buf    []byte
	err    error
}

func (a *ackWriter) write(seq int64, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buf[:0]
	for k := range int64(n) {
		b = append(b, a.prefix...)
		b = strconv.AppendInt(b, seq+k, 10)
		b = append(b, '\n')
	}
	a.buf = b
	if _, err := a.w.Write(b); err != nil && a.err == nil {
		a.err = err
	}
}

func (a *ackWriter) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.w.Flush(); err != nil && a.err == nil {
		a.err = err
	}
}
