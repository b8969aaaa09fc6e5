package node

import (
	"errors"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/tuner"
)

// Health is the node's state over the last control interval: what it gossips
// and what the API shows.
type Health struct {
	Time          time.Time `json:"time"`
	BatchSize     int       `json:"batch_size"`
	ThroughputRPS float64   `json:"throughput_rps"`
	ArrivalRPS    float64   `json:"arrival_rps"`
	// RefusedRPS is the records refused at the queue per second, every
	// retry counted: ArrivalRPS leaves out the retries that say so
	// (AttemptHeader).
	RefusedRPS    float64 `json:"refused_rps"`
	GoodputRPS    float64 `json:"goodput_rps"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	CPUPercent    float64 `json:"cpu_percent"`
	MemPercent    float64 `json:"mem_percent"`
	RSSBytes      uint64  `json:"rss_bytes"`
	QueueDepth    int     `json:"queue_depth"`
	QueueBytes    int64   `json:"queue_bytes"`
	InflightBytes int64   `json:"inflight_bytes"`
	// WantBytes is the in-flight bytes the controller would use without a
	// grant: its batch size times the flush concurrency times the mean
	// record size. The leader allocates budgets from it.
	WantBytes  int64  `json:"want_bytes"`
	GrantBytes int64  `json:"grant_bytes"`
	Breaker    string `json:"breaker"`
	SinkErrors int64  `json:"sink_errors"`
	// CPUAllowance is the CPU CPUPercent is a share of and which limit
	// sets it: the host's CPUs or a cgroup quota (absent without a
	// sampler).
	CPUAllowance *tuner.CPUAllowance `json:"cpu_allowance,omitempty"`
	// Admission is the queue's delay bound and what it refused.
	Admission AdmissionHealth `json:"admission"`
}

// Health returns the figures of the last control interval.
func (n *Node) Health() Health { return *n.health.Load() }

// History returns up to the last five minutes of Health, oldest first.
func (n *Node) History() []Health { return n.history.list() }

// controlLoop runs the tuner once per control interval, and once early
// when the node falls behind after a calm interval (pacer): measure, ask
// the controller, let the guard override it, cap by the grant, apply,
// record.
func (n *Node) controlLoop() {
	defer close(n.ctlDone)
	iv := n.cfg.ControlInterval
	t := time.NewTicker(iv)
	defer t.Stop()
	p := pacer{iv: iv, last: time.Now(), calm: true}
	var early <-chan time.Time
	var avgRecord float64 = 256
	run := func(now time.Time) {
		obs := n.observe(now, now.Sub(p.last), &avgRecord)
		n.step(obs, avgRecord)
		a := n.Health().Admission
		p.stepped(now, a.Refused > 0 || a.Graced > 0)
		early = nil
	}
	for {
		select {
		case <-n.stopCtl:
			return
		case <-n.queue.adm.behind:
			if wait, ok := p.behind(time.Now()); ok {
				early = time.After(wait)
			}
		case now := <-early:
			run(now)
			t.Reset(iv) // a whole interval from the early step
		case now := <-t.C:
			run(now)
		}
	}
}

// pacer decides when the control loop steps: once per control interval,
// and once early when admission refuses a request because the node is not
// keeping up at its batch size (delay or sojourn), or lets one past its
// delay bound on its grace (admits), after an interval that did neither.
// A load that steps up from light would otherwise be refused at the small
// size in force until the next decision, up to a whole interval (1 s)
// later; its clients retry after a Retry-After of a second or more, late. TCP answers a loss when it sees it, not on a
// clock, in the same spirit. The early step waits until a tenth of the
// interval (at most 100 ms) has passed since the last step, so that it
// has writes to measure, and a node that stays behind gets one early step,
// not one per refusal: the next must wait for an interval that refused
// nothing and used no grace.
type pacer struct {
	iv      time.Duration
	last    time.Time // the last step
	calm    bool      // the last step's interval refused nothing
	pending bool      // an early step is due
}

// earlyAfter is the least time between a step and an early one.
func (p *pacer) earlyAfter() time.Duration { return min(p.iv/10, 100*time.Millisecond) }

// behind is told that a request was refused for delay at now; it reports
// whether to step early, and after how long.
func (p *pacer) behind(now time.Time) (time.Duration, bool) {
	if !p.calm || p.pending {
		return 0, false
	}
	p.pending = true
	return max(0, p.last.Add(p.earlyAfter()).Sub(now)), true
}

// stepped records a step at now, and whether its interval refused requests.
func (p *pacer) stepped(now time.Time, refused bool) {
	p.last, p.calm, p.pending = now, !refused, false
}

// observe turns the interval's window into an Observation.
func (n *Node) observe(now time.Time, interval time.Duration, avgRecord *float64) tuner.Observation {
	s := n.win.snapshot()
	secs := interval.Seconds()
	if secs <= 0 {
		secs = 1
	}
	depth, qbytes, _, _ := n.queue.state()
	obs := tuner.Observation{
		Now:          now,
		Interval:     interval,
		BatchSize:    n.BatchSize(),
		MaxBatchSize: n.cfg.MaxBatchSize,
		// Offered, as the field says: the records refused at the queue
		// were offered too (with admission bounding the queue by delay,
		// the queue no longer grows to show the demand; this does), but
		// a retry that says so only once (AttemptHeader,
		// admission_arrival.go).
		ArrivalRate:  float64(n.queue.adm.offered(s.arrived, s.rejected)) / secs,
		Throughput:   float64(s.written) / secs,
		Goodput:      float64(s.good) / secs,
		P50:          s.p50,
		P99:          s.p99,
		SLO:          n.cfg.LatencySLO,
		Batches:      int(s.batches),
		QueueDepth:   depth,
		QueueBytes:   qbytes,
		SinkErrors:   int(s.sinkErrors),
		Backpressure: int(s.backpressure),
		TooLarge:     int(s.tooLarge),
		Rejected:     int(s.rejected),
		Graced:       int(n.queue.adm.gracedSince()),

		FlushConcurrency: n.cfg.FlushConcurrency,
		MaxLinger:        n.cfg.MaxLinger,
		QueueCapacity:    n.cfg.QueueRecords,
	}
	if s.batches > 0 {
		obs.MeanBatchFill = float64(s.fill) / float64(s.batches)
		obs.MeanBatchTime = s.batchTime / time.Duration(s.batches)
	}
	if s.written > 0 {
		*avgRecord = float64(s.bytes) / float64(s.written)
	}
	obs.AvgRecordBytes = *avgRecord
	if n.cfg.Resources != nil {
		n.cfg.Resources().ApplyTo(&obs)
	}
	if l := n.limits.Load(); l != nil {
		if l.MaxBatchSize > 0 && l.MaxBatchSize < obs.MaxBatchSize {
			obs.MaxBatchSize = l.MaxBatchSize
		}
		if l.LatencySLO > 0 {
			obs.SLO = l.LatencySLO
		}
		obs.CPULimit, obs.MemLimit = l.CPULimit, l.MemLimit
	}
	if max := n.grantBatchCap(*avgRecord); max > 0 && max < obs.MaxBatchSize {
		obs.MaxBatchSize = max
	}
	n.observeFlow(&obs) // the sink's attempts (batcher.go)
	return obs
}

// grantBatchCap is the largest batch size that keeps the batches the node
// may have in flight at once (flushLimit) of avgRecord-byte records within
// the grant; 0 without a grant.
func (n *Node) grantBatchCap(avgRecord float64) int {
	g := n.grantBytes.Load()
	if g <= 0 || avgRecord <= 0 {
		return 0
	}
	return max(1, int(float64(g)/(avgRecord*float64(n.flushLimit()))))
}

// step makes one decision from obs (tuner.Step: controller, guard, grant)
// and applies it.
func (n *Node) step(obs tuner.Observation, avgRecord float64) {
	old := obs.BatchSize
	v := tuner.Step(n.cfg.Controller, n.cfg.Guard, obs)
	if n.cfg.Trace != nil {
		n.cfg.Trace(obs, v)
	}
	d := v.Decision
	oldLimit := n.flushLimit()
	n.applyFlow(d) // flush concurrency and byte bound, when the controller sets them (batcher.go)
	if limit := n.flushLimit(); d.BatchSize != old || limit != oldLimit {
		if d.BatchSize != old {
			n.setBatchSize(d.BatchSize)
		}
		n.metrics.decisions.WithLabelValues(d.Reason).Inc()
		d.Breaker = v.Breaker
		r := tuner.NewDecisionRecord(n.cfg.Name, n.cfg.Controller.Name(), obs, d)
		if limit != oldLimit {
			r.FlushLimit = limit
		}
		n.decided.Add(r)
		n.log.Debug("tuner decision", "old", old, "new", d.BatchSize, "flush_limit", limit, "reason", d.Reason)
	}
	h := &Health{
		Time: obs.Now, BatchSize: d.BatchSize,
		ThroughputRPS: obs.Throughput, ArrivalRPS: obs.ArrivalRate, GoodputRPS: obs.Goodput,
		RefusedRPS: float64(obs.Rejected) / max(obs.Interval.Seconds(), 1e-9),
		P50ms:      ms(obs.P50), P99ms: ms(obs.P99),
		CPUPercent: obs.CPUPercent, MemPercent: obs.MemPercent, RSSBytes: obs.RSSBytes,
		QueueDepth: obs.QueueDepth, QueueBytes: obs.QueueBytes, InflightBytes: n.inflightBytes.Load(),
		WantBytes:  n.want(d, obs, avgRecord),
		GrantBytes: n.grantBytes.Load(), Breaker: v.Breaker, SinkErrors: int64(obs.SinkErrors),
	}
	if obs.CPUAllowance.Source != "" {
		a := obs.CPUAllowance
		h.CPUAllowance = &a
	}
	h.Admission = n.admit(obs, d.WriteTime)
	why := pressureWhy(v.Pressure)
	h.Admission.Pressure, h.Admission.PressureDetail = why, v.PressureDetail
	n.health.Store(h)
	n.history.add(*h)
	n.metrics.setBreaker(v.Breaker)
	n.metrics.setPressure(why)
	if why != n.lastPressure {
		n.log.Info("resource pressure", "node", n.cfg.Name, "why", orNone(why), "detail", v.PressureDetail)
		n.lastPressure = why
	}
	// After the health, so that whoever is refused sees the reason there.
	n.queue.setPressure(why)
	n.breakerOpen.Store(v.Breaker == tuner.BreakerOpen && v.Trip == tuner.TripSinkErrors)
}

// pressureWhy is how admission names a pressure cause: "cpu", "memory"
// (the host's memory or this process's RSS), or "" for none.
func pressureWhy(c tuner.TripCause) string {
	switch c {
	case tuner.TripCPU:
		return whyCPU
	case tuner.TripMemory, tuner.TripRSS:
		return whyMemory
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// want is the in-flight bytes the node asks the leader for: what its
// decision needs, or, when the grant is what holds the controller back,
// twice that, so that the leader knows it would grow (the leader's growth
// limit decides by how much).
func (n *Node) want(d tuner.Decision, obs tuner.Observation, avgRecord float64) int64 {
	w := float64(d.BatchSize) * avgRecord * float64(n.flushLimit())
	if n.grantBytes.Load() > 0 && d.BatchSize >= obs.MaxBatchSize && obs.MaxBatchSize < n.cfg.MaxBatchSize {
		w *= 2
	}
	return int64(w)
}

// admit updates the admission's bounds from the interval's figures and
// returns its state.
func (n *Node) admit(obs tuner.Observation, expectedWrite time.Duration) AdmissionHealth {
	a := n.queue.adm
	before := a.counters()
	a.update(admissionInput{
		slo:           obs.SLO,
		interval:      obs.Interval,
		written:       obs.Throughput,
		batches:       obs.Batches,
		meanFill:      obs.MeanBatchFill,
		meanBatchTime: obs.MeanBatchTime,
		concurrency:   n.flushLimit(),
		batchSize:     n.BatchSize(),
		inForce:       obs.BatchSize,
		depth:         obs.QueueDepth,
		queueBytes:    obs.QueueBytes,
		failed:        obs.SinkErrors,
		expectedWrite: expectedWrite,
	})
	return a.health(obs.QueueDepth, before)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func isBackpressure(err error) bool { return errors.Is(err, sink.ErrBackpressure) }

// history is a ring of the last Health values.
type history struct {
	mu   sync.Mutex
	buf  []Health
	next int
	full bool
}

func newHistory(n int) *history { return &history{buf: make([]Health, n)} }

func (h *history) add(v Health) {
	h.mu.Lock()
	h.buf[h.next] = v
	h.next = (h.next + 1) % len(h.buf)
	if h.next == 0 {
		h.full = true
	}
	h.mu.Unlock()
}

func (h *history) list() []Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]Health(nil), h.buf[:h.next]...)
	}
	return append(append([]Health(nil), h.buf[h.next:]...), h.buf[:h.next]...)
}
