// Package sim is a deterministic simulator of one node's pipeline, for
// testing and comparing batch-size controllers without sleeps or sockets.
//
// The model mirrors the node's batcher: records arrive (a Poisson process,
// in 1 ms chunks) into a bounded FIFO queue; a batch is due when the queue
// holds the batch size or its oldest record has waited MaxLinger; at most
// Concurrency batches are written at once. A write costs a fixed time per
// batch plus a time per record (plus, above an optional knee, a cost that
// grows with the square of the excess), times log-normal noise. A
// browned-out downstream admits records through a token bucket and answers
// 429 otherwise; the writer retries with exponential backoff. Each record's
// end-to-end latency is the time from its arrival to its batch's
// acknowledgement, and goodput counts the records acknowledged within the
// SLO.
//
// Time is virtual: a run of minutes takes milliseconds, and the same Config
// (seed included) always gives the same figures.
package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

// Phase is one stretch of a scenario under fixed conditions.
type Phase struct {
	Name     string
	Duration time.Duration
	// Arrival is the mean offered rate in records per second.
	Arrival float64
	// Every BurstEvery, for BurstLength, the rate is Arrival×BurstFactor.
	BurstEvery, BurstLength time.Duration
	BurstFactor             float64

	PerBatch  time.Duration // fixed cost of one write (F)
	PerRecord time.Duration // cost per record (c)
	// Above Knee records a write costs an extra
	// PerRecord×KneeFactor×(n−Knee)²/Knee: the downstream falls off a cliff.
	Knee       int
	KneeFactor float64

	// AdmitRate > 0 browns the downstream out: it admits that many records
	// per second through a token bucket AdmitBurst records deep and answers
	// 429 to a write it cannot admit whole (so a batch larger than
	// AdmitBurst never gets through).
	AdmitRate  float64
	AdmitBurst int
	// FailRate is the probability that a write fails outright (a sink
	// error after retries: the batch's records are answered with an error).
	FailRate float64

	BackgroundCPU float64 // host CPU % used by other processes
	BackgroundMem float64 // host memory % used by other processes
	RecordBytes   int     // mean record size; 0 means 300
}

// Config is a scenario and the node it runs on. Zero fields take the
// defaults noted, which mirror the node's own defaults.
type Config struct {
	Name string
	Seed uint64

	Interval      time.Duration // control interval, 1s
	SLO           time.Duration // p99 objective, 500ms
	MaxLinger     time.Duration // 200ms
	Concurrency   int           // K flushes at once, 4
	QueueCapacity int           // records, 200000
	MaxBatchSize  int           // 20000

	Noise        float64       // sigma of the log-normal write-time noise, 0.1
	Cores        int           // host cores, 2
	CPUPerRecord time.Duration // CPU per record written (decode, encode) per KB, 4µs
	CPUPerBatch  time.Duration // CPU per write (syscalls, framing), 300µs
	HostMemory   uint64        // bytes, 4 GiB
	BaseRSS      uint64        // bytes, 64 MiB
	RejectTime   time.Duration // how long a 429 answer takes, 2ms
	RetryBackoff time.Duration // first retry backoff, 25ms (doubles)
	MaxRetries   int           // retries after a 429 before the batch fails, 4

	CPULimit float64 // passed to the controllers in each Observation
	MemLimit float64

	Phases []Phase
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.SLO <= 0 {
		c.SLO = 500 * time.Millisecond
	}
	if c.MaxLinger <= 0 {
		c.MaxLinger = 200 * time.Millisecond
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.QueueCapacity <= 0 {
		c.QueueCapacity = 200000
	}
	if c.MaxBatchSize <= 0 {
		c.MaxBatchSize = 20000
	}
	if c.Noise == 0 {
		c.Noise = 0.1
	}
	if c.Cores <= 0 {
		c.Cores = 2
	}
	if c.CPUPerRecord <= 0 {
		c.CPUPerRecord = 4 * time.Microsecond
	}
	if c.CPUPerBatch <= 0 {
		c.CPUPerBatch = 300 * time.Microsecond
	}
	if c.HostMemory == 0 {
		c.HostMemory = 4 << 30
	}
	if c.BaseRSS == 0 {
		c.BaseRSS = 64 << 20
	}
	if c.RejectTime <= 0 {
		c.RejectTime = 2 * time.Millisecond
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 25 * time.Millisecond
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 4
	}
}

// Duration is the scenario's length.
func (c Config) Duration() time.Duration {
	var d time.Duration
	for _, p := range c.Phases {
		d += p.Duration
	}
	return d
}

// Epoch is the virtual time a simulation starts at.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const tick = 0.001 // arrival chunk length, seconds

type chunk struct {
	t float64 // arrival time, seconds since the start
	n int
}

type worker struct {
	busy    bool
	until   float64 // end of the current attempt or backoff
	backoff bool    // waiting to retry rather than writing
	ok      bool    // the current attempt is admitted
	start   float64 // first attempt's start
	began   float64 // the current attempt's start
	full    bool    // the batch was cut at the size, not by the linger
	flying  int     // batches in flight when it started, itself included
	tries   int
	n       int
	recs    []chunk
}

// Sim is one node under one scenario. Drive it with Step (one control
// interval at a given batch size) or with Run.
type Sim struct {
	cfg   Config
	rng   *rand.Rand
	now   float64 // seconds since the start
	phase int
	pEnd  float64 // end of the current phase
	pBeg  float64

	queue  []chunk
	qhead  int
	queued int

	workers  []worker
	limit    int // the flushes allowed at once (SetFlushLimit), at most Concurrency
	inflight int
	tokens   float64
	tokT     float64

	size int

	// interval accumulators
	iv ivStats
}

type ivStats struct {
	offered, rejected int
	acked, good       int
	batches, fill     int
	batchTime         float64
	sinkErrors, bp    int
	cpu               float64 // CPU seconds spent writing
	hist              hist
	attempts          []tuner.Attempt
}

// New returns a simulator at time zero of cfg's first phase.
func New(cfg Config) *Sim {
	cfg.defaults()
	s := &Sim{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		workers: make([]worker, cfg.Concurrency),
		limit:   cfg.Concurrency,
	}
	if len(cfg.Phases) > 0 {
		s.pEnd = cfg.Phases[0].Duration.Seconds()
		s.tokens = float64(cfg.Phases[0].AdmitBurst)
	}
	return s
}

// Config is the simulator's configuration with defaults filled in.
func (s *Sim) Config() Config { return s.cfg }

// SetFlushLimit lets at most n batches be written at once from now on, up
// to Concurrency, as the node does with a Decision's FlushConcurrency;
// n <= 0 leaves the limit as it is.
func (s *Sim) SetFlushLimit(n int) {
	if n > 0 {
		s.limit = min(n, s.cfg.Concurrency)
	}
}

// Phase is the index of the phase the simulator is in.
func (s *Sim) Phase() int { return s.phase }

// Done reports whether the scenario has ended.
func (s *Sim) Done() bool { return s.phase >= len(s.cfg.Phases) }

func (s *Sim) cur() *Phase {
	if s.phase >= len(s.cfg.Phases) {
		return &s.cfg.Phases[len(s.cfg.Phases)-1]
	}
	return &s.cfg.Phases[s.phase]
}

func (s *Sim) rate(t float64) float64 {
	p := s.cur()
	r := p.Arrival
	if p.BurstEvery > 0 && p.BurstFactor > 0 {
		in := math.Mod(t-s.pBeg, p.BurstEvery.Seconds())
		if in < p.BurstLength.Seconds() {
			r *= p.BurstFactor
		}
	}
	return r
}

func (s *Sim) recordBytes() int {
	if b := s.cur().RecordBytes; b > 0 {
		return b
	}
	return 300
}

// Step runs one control interval with the given batch size and returns what
// the node would have measured.
func (s *Sim) Step(size int) tuner.Observation {
	s.size = tuner.Clamp(size, s.cfg.MaxBatchSize)
	s.iv = ivStats{}
	start := s.now
	end := start + s.cfg.Interval.Seconds()
	nextArr := math.Floor(start/tick+1e-9)*tick + tick
	if nextArr <= start {
		nextArr += tick
	}
	s.dispatch()
	for {
		t := nextArr
		for i := range s.workers {
			if w := &s.workers[i]; w.busy && w.until < t {
				t = w.until
			}
		}
		if l := s.lingerDue(); l < t {
			t = l
		}
		if t > end {
			break
		}
		s.now = t
		s.advancePhase()
		for i := range s.workers {
			if w := &s.workers[i]; w.busy && w.until <= t {
				s.finish(w)
			}
		}
		if nextArr <= t {
			s.arrive(nextArr)
			nextArr += tick
		}
		s.dispatch()
	}
	s.now = end
	obs := s.observe(end) // with the phase the interval ran in
	s.advancePhase()
	return obs
}

func (s *Sim) advancePhase() {
	for s.phase < len(s.cfg.Phases) && s.now >= s.pEnd-1e-9 {
		s.phase++
		s.pBeg = s.pEnd
		if s.phase < len(s.cfg.Phases) {
			s.pEnd += s.cfg.Phases[s.phase].Duration.Seconds()
			s.tokens = math.Min(s.tokens, float64(s.cfg.Phases[s.phase].AdmitBurst))
		}
	}
}

// lingerDue is when the oldest queued record's linger expires, if a worker
// is free to take the partial batch then; +Inf otherwise.
func (s *Sim) lingerDue() float64 {
	if s.queued == 0 || s.queued >= s.size || !s.freeWorker() {
		return math.Inf(1)
	}
	d := s.queue[s.qhead].t + s.cfg.MaxLinger.Seconds()
	if d <= s.now {
		return s.now
	}
	return d
}

// freeWorker reports whether another batch may be written now: a worker
// is free and the flush limit allows it.
func (s *Sim) freeWorker() bool {
	busy := 0
	for i := range s.workers {
		if s.workers[i].busy {
			busy++
		}
	}
	return busy < s.limit
}

func (s *Sim) arrive(t float64) {
	n := s.poisson(s.rate(t) * tick)
	if n == 0 {
		return
	}
	s.iv.offered += n
	if room := s.cfg.QueueCapacity - s.queued; n > room {
		s.iv.rejected += n - room
		n = room
	}
	if n <= 0 {
		return
	}
	// Spread the chunk's arrivals over the tick: stamp it at its middle.
	s.queue = append(s.queue, chunk{t: t - tick/2, n: n})
	s.queued += n
}

func (s *Sim) poisson(mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean > 30 {
		v := math.Round(mean + math.Sqrt(mean)*s.rng.NormFloat64())
		return int(math.Max(0, v))
	}
	l := math.Exp(-mean)
	k, p := 0, 1.0
	for {
		p *= s.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// dispatch starts every batch that is due while a worker is free.
func (s *Sim) dispatch() {
	for s.queued > 0 {
		if s.queued < s.size && s.now < s.queue[s.qhead].t+s.cfg.MaxLinger.Seconds()-1e-12 {
			return
		}
		if !s.freeWorker() {
			return
		}
		var w *worker
		for i := range s.workers {
			if !s.workers[i].busy {
				w = &s.workers[i]
				break
			}
		}
		n := min(s.size, s.queued)
		w.recs = w.recs[:0]
		left := n
		for left > 0 {
			c := &s.queue[s.qhead]
			take := min(c.n, left)
			w.recs = append(w.recs, chunk{t: c.t, n: take})
			c.n -= take
			left -= take
			if c.n == 0 {
				s.qhead++
			}
		}
		s.queued -= n
		if s.qhead > 4096 && s.qhead*2 > len(s.queue) {
			s.queue = append(s.queue[:0], s.queue[s.qhead:]...)
			s.qhead = 0
		}
		w.busy, w.n, w.tries, w.start = true, n, 0, s.now
		w.full = n >= s.size
		w.flying = 0
		for i := range s.workers {
			if s.workers[i].busy {
				w.flying++
			}
		}
		s.inflight += n
		s.attempt(w)
	}
}

// attempt starts one write of w's batch.
func (s *Sim) attempt(w *worker) {
	p := s.cur()
	w.backoff = false
	w.tries++
	w.began = s.now
	// A record's CPU cost grows with its size beyond 1 KB.
	perRec := s.cfg.CPUPerRecord.Seconds() * max(1, float64(s.recordBytes())/1024)
	s.iv.cpu += s.cfg.CPUPerBatch.Seconds() + perRec*float64(w.n)
	if p.AdmitRate > 0 {
		s.tokens = math.Min(float64(p.AdmitBurst), s.tokens+(s.now-s.tokT)*p.AdmitRate)
		s.tokT = s.now
		if float64(w.n) > s.tokens {
			w.ok = false
			w.until = s.now + s.cfg.RejectTime.Seconds()
			return
		}
		s.tokens -= float64(w.n)
	}
	w.ok = true
	cost := p.PerBatch.Seconds() + p.PerRecord.Seconds()*float64(w.n)
	if p.Knee > 0 && w.n > p.Knee {
		x := float64(w.n - p.Knee)
		cost += p.PerRecord.Seconds() * p.KneeFactor * x * x / float64(p.Knee)
	}
	sig := s.cfg.Noise
	cost *= math.Exp(sig*s.rng.NormFloat64() - sig*sig/2)
	w.until = s.now + cost
}

// finish handles the end of w's attempt or backoff.
func (s *Sim) finish(w *worker) {
	if w.backoff {
		s.attempt(w)
		return
	}
	// Every attempt reaches the controller, as the node reports them.
	a := tuner.Attempt{End: Epoch.Add(time.Duration(s.now * float64(time.Second))),
		RTT: time.Duration((s.now - w.began) * float64(time.Second)), Records: w.n, Bytes: w.n * s.recordBytes(),
		Outcome: tuner.AttemptOK, RetryAfter: -1, N: w.tries - 1, InFlight: w.flying, Full: w.full}
	if !w.ok {
		a.Outcome = tuner.AttemptBackpressure
	}
	if len(s.iv.attempts) < tuner.MaxAttempts {
		s.iv.attempts = append(s.iv.attempts, a)
	}
	if !w.ok {
		s.iv.bp++
		if w.tries <= s.cfg.MaxRetries {
			w.backoff = true
			w.until = s.now + s.cfg.RetryBackoff.Seconds()*float64(int(1)<<(w.tries-1))
			return
		}
		s.iv.sinkErrors++
		s.done(w, false)
		return
	}
	if fr := s.cur().FailRate; fr > 0 && s.rng.Float64() < fr {
		s.iv.sinkErrors++
		s.done(w, false)
		return
	}
	s.done(w, true)
}

func (s *Sim) done(w *worker, ok bool) {
	s.iv.batches++
	s.iv.fill += w.n
	s.iv.batchTime += s.now - w.start
	if ok {
		slo := s.cfg.SLO.Seconds()
		for _, c := range w.recs {
			lat := s.now - c.t
			s.iv.hist.add(lat, c.n)
			s.iv.acked += c.n
			if lat <= slo {
				s.iv.good += c.n
			}
		}
	}
	s.inflight -= w.n
	w.busy, w.n = false, 0
}

func (s *Sim) observe(end float64) tuner.Observation {
	secs := s.cfg.Interval.Seconds()
	iv := &s.iv
	p := s.cur()
	rb := s.recordBytes()
	rss := s.cfg.BaseRSS + uint64(s.queued+s.inflight)*uint64(rb)*2
	cpu := p.BackgroundCPU + 100*iv.cpu/(secs*float64(s.cfg.Cores))
	obs := tuner.Observation{
		Now:              Epoch.Add(time.Duration(end * float64(time.Second))),
		Interval:         s.cfg.Interval,
		BatchSize:        s.size,
		MaxBatchSize:     s.cfg.MaxBatchSize,
		ArrivalRate:      float64(iv.offered) / secs,
		Throughput:       float64(iv.acked) / secs,
		Goodput:          float64(iv.good) / secs,
		P50:              iv.hist.quantile(0.5),
		P99:              iv.hist.quantile(0.99),
		SLO:              s.cfg.SLO,
		Batches:          iv.batches,
		AvgRecordBytes:   float64(rb),
		QueueDepth:       s.queued,
		QueueBytes:       int64(s.queued) * int64(rb),
		SinkErrors:       iv.sinkErrors,
		Backpressure:     iv.bp,
		CPUPercent:       math.Min(100, cpu),
		MemPercent:       math.Min(100, p.BackgroundMem+100*float64(rss)/float64(s.cfg.HostMemory)),
		RSSBytes:         rss,
		FlushConcurrency: s.cfg.Concurrency,
		MaxLinger:        s.cfg.MaxLinger,
		QueueCapacity:    s.cfg.QueueCapacity,
		Rejected:         iv.rejected,
		CPULimit:         s.cfg.CPULimit,
		MemLimit:         s.cfg.MemLimit,
		Attempts:         iv.attempts,
		FlushLimit:       s.limit,
	}
	if iv.batches > 0 {
		obs.MeanBatchFill = float64(iv.fill) / float64(iv.batches)
		obs.MeanBatchTime = time.Duration(iv.batchTime / float64(iv.batches) * float64(time.Second))
	}
	return obs
}

// hist is a log-bucketed latency histogram (2 % resolution from 0.1 ms up
// to about 17 hours).
type hist struct {
	counts [histBuckets]int
	total  int
}

const (
	histBase    = 1e-4 // seconds
	histStep    = 1.02
	histBuckets = 1024
)

var histLog = math.Log(histStep)

func (h *hist) add(lat float64, n int) {
	b := 0
	if lat > histBase {
		b = min(histBuckets-1, int(math.Log(lat/histBase)/histLog)+1)
	}
	h.counts[b] += n
	h.total += n
}

func (h *hist) merge(o *hist) {
	for b, n := range o.counts {
		h.counts[b] += n
	}
	h.total += o.total
}

// quantile is the upper edge of the bucket holding the q-quantile.
func (h *hist) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(h.total)))
	seen := 0
	b := 0
	for ; b < histBuckets-1; b++ {
		seen += h.counts[b]
		if seen >= rank {
			break
		}
	}
	return time.Duration(histBase * math.Pow(histStep, float64(b)) * float64(time.Second))
}
