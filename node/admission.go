package node

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOverloaded is returned when a request is refused because its records
// would wait in the queue past the latency budget (see admission). It
// matches ErrQueueFull under errors.Is, so every intake answers it as it
// answers a full queue: 429 with Retry-After, or, for syslog TCP, by not
// reading the connection until there is room.
var ErrOverloaded = fmt.Errorf("%w: the node holds more than it can write within the latency budget", ErrQueueFull)

// Why a request was refused at the queue, as the metrics and the health
// spell it.
const (
	whyDelay   = "delay"   // depth / drain rate is over the delay bound
	whySojourn = "sojourn" // the oldest queued record has already waited past the budget
	whyRecords = "records" // the queue's hard bound in records
	whyBytes   = "bytes"   // the queue's hard bound in bytes
	whyCPU     = "cpu"     // the process's CPU is over its limit (pressure)
	whyMemory  = "memory"  // the host's memory or this process's RSS is over its limit (pressure)
)

var admissionWhys = [...]string{whyDelay, whySojourn, whyRecords, whyBytes, whyCPU, whyMemory}

// The admission's constants; where each comes from is said where it is used.
const (
	// admitShare is the share of the SLO a queued record may expect to
	// spend waiting and being written. Below 1 because the bound holds the
	// mean and the SLO is a p99; not much below, because a refused record
	// is late for certain (its client retries after Retry-After, a second
	// or more) while one admitted at the margin is late only perhaps.
	admitShare      = 0.8
	admitRateSmooth = 0.5 // the EWMA weight of a new drain-rate estimate
	headerEstimate  = 0.9 // the share of Content-Length / record size counted before the body is read
	// appLimited bounds the flushes an interval's capacity sample counts to
	// twice those it kept busy (estimateDrain), after Netflix
	// concurrency-limits' Gradient2Limit._update, which does not grow its
	// limit while "app limited" (inflight < estimatedLimit / 2).
	appLimited    = 2
	retryAfterMax = 60 // seconds
	// projectFull: an interval's batches count as full at 80 % of the
	// size in force (the gradient's fullLow).
	projectFull = 0.8
)

// admission bounds what the node holds by the time it will take to write
// it, not only by a count. A record queued behind depth others waits about
// depth / μ before its batch is taken, μ being the rate the node drains its
// queue (records written per second), and then its batch's write time T:
// so the queue admits a request only while
//
//	depth + len(request) <= μ · (0.8 · SLO − T)      (the delay bound)
//
// and refuses it whole otherwise (ErrOverloaded: 429 and a Retry-After of
// the drain time on HTTP; syslog TCP is not read meanwhile; UDP datagrams
// are dropped and counted). The count and byte bounds of the queue stay as
// the hard ceiling behind it.
//
// What it follows:
//
//   - CoDel (Nichols and Jacobson, RFC 8289; Linux include/net/codel_impl.h,
//     codel_should_drop): judge the queue by the time its items spend in it
//     (the sojourn time), not by its length, and leave a backlog of at most
//     one unit alone ("*backlog <= params->mtu" stays below). Here the
//     expected wait of a new record, depth / μ, is the delay bound's
//     measure; and the sojourn time of the oldest queued record is checked
//     on every request as CoDel checks it on every dequeue, so that a
//     downstream that stalls is seen at once, not at the next control
//     interval: once the head has waited past the whole budget (SLO − T)
//     while a batch or more is queued, nothing more is admitted.
//   - Netflix concurrency-limits' server-side limiters
//     (ConcurrencyLimitServletFilter: when the limiter gives no permit the
//     request is answered 429 before the handler runs): refuse at the door,
//     before any work is spent on the request. The HTTP intake checks the
//     bound from Content-Length before it reads the body (admitHeaders).
//     And Gradient2Limit._update's "Don't grow the limit if we are app
//     limited" (inflight < estimatedLimit / 2): a measurement taken while
//     the load, not the capacity, set the pace says nothing about the
//     capacity. Here, turned around: the drain rate is only lowered by an
//     interval in which the node was backlogged (records refused, or a
//     batch or more queued at its end); an interval of light load, in which
//     fewer records were written because fewer came, can only raise it.
//     Without that, refusals thin the arrivals, the rate measured falls
//     with them, the bound with it, and refusals grow.
//   - Envoy's adaptive concurrency filter (GradientController::
//     calculateNewLimit: gradient = buffered minRTT / sampleRTT clamped to
//     [0.5, 2.0], new limit = limit × gradient + burst headroom, never
//     below min_concurrency): the latency objective is what sets the limit,
//     and a floor keeps the upstream busy. Here the objective is the SLO
//     itself rather than a measured minRTT (a log pipeline's budget is given,
//     not discovered), and the floor is one batch of the size in force
//     (less than a batch queued is always admitted), so that a full batch
//     can always form and the bound never starves the pipeline into ever
//     smaller measured rates. And its clamp of the gradient to [0.5, 2.0]:
//     the delay bound falls at most by half an interval (estimateDrain).
//
// The drain rate μ is an estimate of the node's capacity, not of its
// recent throughput (estimateDrain): only an interval in which the node was
// backlogged may lower it, and the bound falls at most by half an interval.
// After a decision to grow the size, the next interval's bound counts the
// capacity of the larger size from the write time the controller expects
// of it (projected), so that the queue the decision was made for is not
// refused while batches of the new size are yet to be measured.
// A downstream that pushes back (429, 503) or fails lowers it, so the node
// holds less while it is pushed back. The share of the SLO is fixed
// (admitShare): the p99 of the written records is not used to tighten it,
// since a p99 over the SLO with a short queue (a slow batch, a busy host) is
// not the queue's doing, and a tighter bound would only turn late records
// into refused ones.
//
// update is called once per control interval by the control loop; check
// and the figures are read by the intakes at any time.
type admission struct {
	// queueOnly turns the delay and sojourn bounds off (Config.Admission
	// "queue"): only the queue's hard bounds refuse. The bounds are still
	// computed and shown.
	queueOnly bool
	// Read on every request.
	bound   atomic.Int64 // records the queue may hold; 0: no bound yet (no measurement)
	sojourn atomic.Int64 // nanoseconds: the head's sojourn past which nothing is admitted; 0: off
	minHold atomic.Int64 // records always admitted (one batch)
	rate    atomic.Uint64
	avgRec  atomic.Uint64 // float64 bits: mean bytes of a queued record

	refusedBy [len(admissionWhys)]atomic.Int64 // requests (and datagrams) refused, by why, since start
	paused    atomic.Int64                     // blocking puts (syslog TCP) that had to wait for room
	// grace is armed after an interval that neither refused nor graced
	// anything (update): the next request the delay bound alone refuses is
	// admitted, its records counted in graced, and the control loop told
	// to step early (admits).
	grace   atomic.Bool
	graced  atomic.Int64 // records admitted on the grace since start
	retried atomic.Int64 // records of retries since the last interval (admission_arrival.go)
	// pressure is 1 + the index in admissionWhys of the resource the node
	// is over its limit on (whyCPU, whyMemory); 0: none. Set by the
	// control loop from the guard's verdict.
	pressure atomic.Int32

	// onRefuse, when set (by the metrics, before Start), is told of every
	// refusal.
	onRefuse func(why string, src Source)
	onPause  func(src Source)
	// behind is signalled, without blocking, when a request is refused
	// because the node is not keeping up at its batch size (delay or
	// sojourn): the control loop may then decide early (pacer).
	behind chan struct{}

	// The control loop's state.
	mu         sync.Mutex
	est        drainEstimate
	lastBy     [len(admissionWhys)]int64
	lastWhy    string
	lastGraced int64
	gracedIv   int64 // records admitted on the grace in the last interval
}

// The values of Config.Admission.
const (
	AdmissionDelay = "delay"
	AdmissionQueue = "queue"
)

func newAdmission(queueOnly bool) *admission {
	a := &admission{queueOnly: queueOnly, behind: make(chan struct{}, 1)}
	a.avgRec.Store(math.Float64bits(256))
	return a
}

func whyIndex(why string) int {
	for i, w := range admissionWhys {
		if w == why {
			return i
		}
	}
	return 0
}

// check reports why a request of n records cannot join a queue of depth
// records whose oldest arrived at head, or "" when it may. The caller holds
// the queue's lock and has checked the hard bounds; an empty queue is never
// refused here.
func (a *admission) check(depth, n int, head, now time.Time) string {
	// Under resource pressure nothing new is admitted, whatever the queue
	// holds and whatever the mode: the node's own CPU or memory is what is
	// short, and a smaller batch would only cost more per record, so the
	// node pushes back on ingest until the guard sees the pressure clear.
	if p := a.pressure.Load(); p > 0 {
		return admissionWhys[p-1]
	}
	// Less than one batch queued is left alone, however long its records
	// wait (they wait for the batch to fill, or for the linger): as CoDel
	// never drops with less than an MTU queued. Otherwise the bound could
	// keep the queue from ever holding a full batch, so that every batch
	// would leave on the linger, the measured rate would fall, and the bound
	// with it.
	if a.queueOnly || int64(depth) < a.minHold.Load() || depth == 0 {
		return ""
	}
	if b := a.bound.Load(); b > 0 && int64(depth+n) > b {
		return whyDelay
	}
	if s := a.sojourn.Load(); s > 0 && now.Sub(head) > time.Duration(s) {
		return whySojourn
	}
	return ""
}

// admits is check with the grace: after a calm interval the first request
// that only the delay bound refuses is admitted. take spends the grace (the
// request is joining the queue); without it admits only asks (before the
// body is read), and the grace is kept for the request itself.
//
// Why: a load that steps up from light meets the bound of the small size in
// force, and its first request past it was refused, though the step it
// brings is what the early decision (pacer) is for. Its client retries after
// a Retry-After of a second or more: late, for one request that the margin
// under the SLO (admitShare) had room for. The quick light bench's step
// from 20 to 200 records/s (sent 10 a request) met a bound of 12 records at
// 1 record a batch: one request refused each seed, its window out of the
// SLO. CoDel, likewise, does not drop on the first packet over its target
// but waits an interval over it ("first_above_time" in codel_should_drop,
// Linux include/net/codel_impl.h); here the grace is one request, not an
// interval, and the node decides at once (fellBehind), as it does on a
// refusal. The sojourn and the hard bounds have no grace.
func (a *admission) admits(depth, n int, head, now time.Time, take bool) string {
	why := a.check(depth, n, head, now)
	if why != whyDelay || !a.grace.Load() {
		return why
	}
	if !take {
		return ""
	}
	if !a.grace.CompareAndSwap(true, false) {
		return why
	}
	a.graced.Add(int64(n))
	a.fellBehind(whyDelay)
	return ""
}

// gracedSince is the records admitted on the grace since the last update.
func (a *admission) gracedSince() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.graced.Load() - a.lastGraced
}

// refused counts one refusal.
func (a *admission) refused(why string, src Source) {
	a.refusedBy[whyIndex(why)].Add(1)
	a.fellBehind(why)
	if a.onRefuse != nil {
		a.onRefuse(why, src)
	}
}

// fellBehind tells the control loop when why says the node is not keeping
// up at its batch size.
func (a *admission) fellBehind(why string) {
	if why == whyDelay || why == whySojourn {
		select {
		case a.behind <- struct{}{}:
		default:
		}
	}
}

// waited counts one syslog TCP connection left unread for why.
func (a *admission) waited(why string, src Source) {
	a.paused.Add(1)
	a.fellBehind(why)
	if a.onPause != nil {
		a.onPause(src)
	}
}

// maxQueue is the depth the queue is held to now: the delay bound, but
// never less than one batch; 0 before the first measurement.
func (a *admission) maxQueue() int64 {
	b := a.bound.Load()
	if b <= 0 {
		return 0
	}
	return max(b, a.minHold.Load())
}

// delayBound is the queue wait admitted now (0.8·SLO − T).
func (a *admission) delayBound() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.est.Budget
}

// drainRate is μ in records per second; 0 before the first measurement.
func (a *admission) drainRate() float64 { return math.Float64frombits(a.rate.Load()) }

// admissionInput is what update needs from one control interval.
type admissionInput struct {
	slo           time.Duration
	interval      time.Duration // the control interval's length (0: unknown, no app-limited bound)
	written       float64       // records written per second
	batches       int
	meanFill      float64
	meanBatchTime time.Duration
	concurrency   int
	batchSize     int // the size decided for the next interval
	inForce       int // the size in force during the interval
	depth         int
	queueBytes    int64
	failed        int   // batches that failed, whatever the cause
	refused       int64 // requests refused at the queue in the interval (set by update)
	// expectedWrite is the write time the controller expects at batchSize
	// (tuner.Decision.WriteTime); 0: none.
	expectedWrite time.Duration
}

// drainEstimate is what admission knows of the queue's drain rate after
// an interval: the state estimateDrain carries from one interval to the
// next.
type drainEstimate struct {
	// Rate is μ, the records per second the queue drains at while it is
	// backlogged (every flush busy with a full batch): the node's
	// capacity, not its recent throughput.
	Rate float64
	// Measured: a batch has finished, so Rate means something.
	Measured bool
	// BatchTime is T, the mean write time of the interval's batches.
	BatchTime time.Duration
	// Budget is the queue wait admitted: admitShare·SLO − T.
	Budget time.Duration
	// Bound is the depth the delay bound holds the queue to (records);
	// 0 while nothing is measured.
	Bound int64
}

// backlogged reports whether the capacity, not the load, set the pace
// of the interval: records were refused, or a batch or more was still
// queued at its end.
func (in admissionInput) backlogged() bool {
	return in.refused > 0 || (in.depth > 0 && in.depth >= in.inForce)
}

// estimateDrain is admission's estimator: the drain rate μ and the delay
// bound after one more interval. It is a pure function of the last
// estimate and the interval's figures (tested with tables in
// admission_test.go). Its rules:
//
//   - What the interval offers as a capacity sample is the larger of the
//     records written per second (what the node carried) and
//     k × mean fill / mean batch time over the batches that were written
//     (what it would carry with k flushes busy), k being the flushes
//     allowed now (FlushConcurrency, or a controller's lower limit) but at
//     most twice the flushes the interval kept busy (batches × mean
//     batch time / interval), as Gradient2Limit grows its limit only up to
//     twice the requests in flight (appLimited). A write measured with one
//     flush busy did not wait for the others: a downstream that serves 2
//     requests at once would otherwise be credited with all 4 flushes, and
//     the step from light load into an overload admitted a queue twice
//     what it could write within the budget.
//   - An interval in which the node was backlogged measured the capacity
//     itself: μ moves to the sample (smoothed) in either direction. One
//     that was not measured only what was offered, a lower bound of the
//     capacity: it may raise μ, never lower it (Gradient2Limit's "don't
//     grow the limit if we are app limited", turned around; see admission).
//     Without that, refusals thin the arrivals, the rate measured falls
//     with them, the bound with it, and refusals grow.
//   - No batch finished while records waited: the writes stall, μ halves.
//   - The bound, μ · (admitShare·SLO − T), falls at most by half from one
//     interval to the next, as Envoy's adaptive concurrency clamps its
//     gradient to [0.5, 2.0] (GradientController::calculateNewLimit): one
//     slow interval (a busy host, a stalled write) would otherwise leave
//     the next one a bound of a few records, and refuse a whole burst that
//     the downstream had room for. A real collapse is not missed
//     meanwhile: the sojourn check (check) refuses as soon as the head of
//     the queue has waited past the budget, on every request.
func estimateDrain(prev drainEstimate, in admissionInput) drainEstimate {
	next := prev
	switch {
	case in.batches > 0:
		sample := in.written
		if in.meanBatchTime > 0 && in.concurrency > 0 {
			// Only the batches that were written count: a failing
			// downstream empties the queue too, but writes nothing.
			ok := float64(in.batches-min(in.failed, in.batches)) / float64(in.batches)
			sample = math.Max(sample, ok*in.flushes()*in.meanFill/in.meanBatchTime.Seconds())
		}
		switch {
		case !prev.Measured:
			next.Measured, next.Rate = true, sample
		case sample > prev.Rate || in.backlogged():
			next.Rate += admitRateSmooth * (sample - prev.Rate)
		}
		next.BatchTime = in.meanBatchTime
	case in.depth > 0:
		next.Rate *= 0.5
	}
	slo := in.slo
	if slo <= 0 {
		slo = 500 * time.Millisecond
	}
	next.Budget = max(0, time.Duration(admitShare*float64(slo))-next.BatchTime)
	if !next.Measured {
		next.Bound = 0 // only the hard bounds and the sojourn check
		return next
	}
	rate := next.Rate
	if p, ok := in.projected(next); ok {
		rate = p
		next.Budget = max(0, time.Duration(admitShare*float64(slo))-max(next.BatchTime, in.expectedWrite))
	}
	next.Bound = max(1, int64(rate*next.Budget.Seconds()))
	if prev.Measured && prev.Bound > 1 {
		next.Bound = max(next.Bound, prev.Bound/2)
	}
	return next
}

// flushes is k, the flushes an interval's capacity sample counts: those
// allowed now, but at most twice those the interval kept busy when its
// length is known (appLimited; see estimateDrain).
func (in admissionInput) flushes() float64 {
	k := float64(in.concurrency)
	if iv := in.interval.Seconds(); iv > 0 && in.batches > 0 {
		k = math.Min(k, appLimited*float64(in.batches)*in.meanBatchTime.Seconds()/iv)
	}
	return k
}

// projected is the drain rate the node will have at the size just decided,
// when the controller grew the size and said how long it expects a batch
// of it to take (expectedWrite, which estimateDrain then counts as T): k ×
// size / expected write, but never more than the measured rate × the
// growth (a larger batch does not write faster). ok is false when there
// is nothing to project, or when the projection is below the measured
// rate.
//
// Without it the bound lags the size by an interval: it is the capacity
// measured at the size before the decision, and it refuses what the
// larger size would write in time. On the quick bytes bench (15,000
// records/s offered to a node that starts at 100 records a batch, 6,300/s
// of capacity measured in the first 250 ms), the decision to grow to 333
// came with 1,800 records queued and a bound of 2,100: the node refused
// 1,080 records in the next 300 ms that the 333-record batches, at 19,000/s,
// would have written within the budget. The projection holds for the
// interval after the decision only; then batches of the new size are
// measured, and the rate follows them (a cost model that promised too
// much is forgotten at once: the sojourn check meanwhile refuses as soon
// as the head of the queue waits past the budget).
func (in admissionInput) projected(est drainEstimate) (rate float64, ok bool) {
	if in.expectedWrite <= 0 || in.inForce <= 0 || in.batchSize <= in.inForce || in.concurrency <= 0 || est.Rate <= 0 {
		return 0, false
	}
	// The interval's batches were full: the size, not the load or a byte
	// bound, made them, so a larger size makes larger ones.
	if in.batches == 0 || in.meanFill < projectFull*float64(in.inForce) {
		return 0, false
	}
	k := in.flushes()
	rate = math.Min(k*float64(in.batchSize)/in.expectedWrite.Seconds(), est.Rate*float64(in.batchSize)/float64(in.inForce))
	if rate <= est.Rate {
		return 0, false
	}
	return rate, true
}

// update recomputes the bounds from one interval's figures.
func (a *admission) update(in admissionInput) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in.depth > 0 && in.queueBytes > 0 {
		a.avgRec.Store(math.Float64bits(float64(in.queueBytes) / float64(in.depth)))
	}
	in.refused = 0
	for i := range a.refusedBy {
		v := a.refusedBy[i].Load()
		if d := v - a.lastBy[i]; d > 0 {
			in.refused += d
			a.lastWhy = admissionWhys[i]
		}
		a.lastBy[i] = v
	}
	a.est = estimateDrain(a.est, in)
	// The grace is armed after an interval that neither refused nor used
	// it (so at most one request a calm interval passes on it); a queue
	// that admits by its hard bounds only has no use for it.
	g := a.graced.Load()
	a.grace.Store(!a.queueOnly && in.refused == 0 && g == a.lastGraced)
	a.gracedIv, a.lastGraced = g-a.lastGraced, g
	slo := in.slo
	if slo <= 0 {
		slo = 500 * time.Millisecond
	}
	a.minHold.Store(int64(max(1, in.batchSize)))
	a.rate.Store(math.Float64bits(a.est.Rate))
	a.bound.Store(a.est.Bound)
	a.sojourn.Store(int64(max(slo-a.est.BatchTime, slo/10)))
}

// AdmissionHealth is the admission's state at the end of a control
// interval, as the API and the dashboard show it.
type AdmissionHealth struct {
	// DelayBoundMS is the queue wait a newly admitted record may expect:
	// the share of the SLO admission allows, less one batch's write time.
	DelayBoundMS float64 `json:"delay_bound_ms"`
	// ExpectedDelayMS is the wait of a record queued now: depth / drain rate.
	ExpectedDelayMS float64 `json:"expected_delay_ms"`
	// DrainRPS is the measured rate the queue drains at (records/s).
	DrainRPS float64 `json:"drain_rps"`
	// MaxQueue is the depth admission holds the queue to now (records);
	// 0 before the first measurement (then only the hard bounds hold).
	MaxQueue int64 `json:"max_queue"`
	// Refused counts the requests (and syslog datagrams) refused at the
	// queue in the interval, by why: "delay", "sojourn", "records",
	// "bytes".
	Refused   int64            `json:"refused"`
	RefusedBy map[string]int64 `json:"refused_by,omitempty"`
	// Graced counts the records admitted in the interval past the delay
	// bound on its grace: the one request after a calm interval that the
	// bound alone would have refused (the node steps early on it).
	Graced int64 `json:"graced,omitempty"`
	// Why is the reason of the interval's last refusal ("" if none).
	Why string `json:"why,omitempty"`
	// Pressure is "cpu" or "memory" while that resource of the node is
	// over its limit: every new request is refused (429 with Retry-After;
	// syslog TCP is not read) until it clears; "" otherwise.
	// PressureDetail names the limit that acts ("cpu 95% of cgroup-v2:
	// 1.50 cores (/sys/fs/cgroup/cpu.max) > 90%").
	Pressure       string `json:"pressure,omitempty"`
	PressureDetail string `json:"pressure_detail,omitempty"`
}

// health is the AdmissionHealth after update; refusedBefore are the
// counters at the start of the interval.
func (a *admission) health(depth int, refusedBefore [len(admissionWhys)]int64) AdmissionHealth {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := AdmissionHealth{
		DelayBoundMS: ms(a.est.Budget),
		DrainRPS:     a.est.Rate,
		MaxQueue:     a.maxQueue(),
		Graced:       a.gracedIv,
	}
	if a.est.Rate > 0 {
		h.ExpectedDelayMS = 1000 * float64(depth) / a.est.Rate
	}
	for i, w := range admissionWhys {
		if d := a.lastBy[i] - refusedBefore[i]; d > 0 {
			if h.RefusedBy == nil {
				h.RefusedBy = map[string]int64{}
			}
			h.RefusedBy[w] = d
			h.Refused += d
		}
	}
	if h.Refused > 0 {
		h.Why = a.lastWhy
	}
	return h
}

// counters are the refusal counters as update last saw them.
func (a *admission) counters() [len(admissionWhys)]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastBy
}

// RetryAfter is the Retry-After, in whole seconds, for a client refused
// because the node is full or over its delay bound: the time the queue
// takes to drain at the measured rate, at least 1 s and at most 60 s.
func (n *Node) RetryAfter() int {
	depth, _, _, _ := n.queue.state()
	rate := n.queue.adm.drainRate()
	if rate <= 0 {
		return 1
	}
	return int(min(retryAfterMax, max(1, math.Ceil(float64(depth)/rate))))
}

// setPressure has admission refuse every new request while why ("cpu",
// "memory") is not "", and wakes the writers waiting for room (syslog TCP)
// when it clears, since an empty queue makes no room of its own.
func (q *queue) setPressure(why string) {
	var p int32
	if why != "" {
		p = int32(whyIndex(why)) + 1
	}
	if old := q.adm.pressure.Swap(p); old != 0 && p == 0 {
		q.mu.Lock()
		close(q.room)
		q.room = make(chan struct{})
		q.mu.Unlock()
	}
}

// admitHeaders refuses, before its body is read, a request that the queue
// would refuse anyway: when the queue is over its bounds now, or when
// Content-Length says the request holds more records than fit. The record
// count is estimated from the length (uncompressed bodies only) and the mean
// size of the queued records, counting only headerEstimate of it, so that
// the estimate does not refuse what would fit. It counts the refusal.
func (n *Node) admitHeaders(r *http.Request) error {
	length := r.ContentLength
	if r.Header.Get("Content-Encoding") != "" {
		length = 0 // compressed: the length says little about the records
	}
	why, est, err := n.queue.admitsBody(length)
	if err == nil || errors.Is(err, ErrDraining) {
		return nil // (draining is answered where the body is)
	}
	n.queue.adm.refused(why, SourceHTTP)
	n.win.addRejected(est)
	n.noteRetry(r, est, err)
	n.metrics.rejected.WithLabelValues("queue_full").Add(float64(est))
	return err
}

const msgOverloaded = "overloaded: the node holds what it can write within its latency budget; retry later"

// writeOverloaded answers a request refused for room: 429 with the drain
// time as Retry-After and what bound refused it.
func (n *Node) writeOverloaded(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", strconv.Itoa(n.RetryAfter()))
	_, msg := IngestStatus(err)
	writeError(w, http.StatusTooManyRequests, msg, 0)
}
