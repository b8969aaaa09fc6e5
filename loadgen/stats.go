package loadgen

import (
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, up to an hour.
const (
	histMax      = int64(time.Hour / time.Microsecond)
	lateAfter    = 10 * time.Millisecond
	windowDigits = 2
)

func newHist(digits int) *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, digits) }

func recordLatency(h *hdrhistogram.Histogram, d time.Duration, n int64) {
	us := min(max(int64(d/time.Microsecond), 1), histMax)
	h.RecordValues(us, n)
}

func quantileMS(h *hdrhistogram.Histogram, q float64) float64 {
	if h.TotalCount() == 0 {
		return 0
	}
	return float64(h.ValueAtQuantile(q)) / 1000
}

// agg sums a run or a phase.
type agg struct {
	s    Summary
	hist *hdrhistogram.Histogram
}

func newAgg(digits int) *agg {
	return &agg{s: Summary{Errors: map[string]int64{}}, hist: newHist(digits)}
}

// window is one second of the series while requests due in it are out.
type window struct {
	sec         int64
	phase       int
	offered     int64
	delivered   int64
	failed      int64
	errors      int64
	outstanding int
	hist        *hdrhistogram.Histogram
}

// result is what happened to one claimed batch.
type result struct {
	delivered bool
	acked     bool
	canceled  bool
	requests  int64
	retries   int64
	wireBytes int64
	errors    []string
}

// recorder collects a run's figures. claim is called in schedule order
// (under the plan's lock), complete from any worker; a second of the series
// is closed, and its histogram recycled, once the schedule has moved past
// it and nothing due in it is out.
type recorder struct {
	mu       sync.Mutex
	start    time.Time
	total    *agg
	phases   []*agg
	names    []string
	windows  map[int64]*window
	lastSec  int64
	closed   []Second
	pool     []*hdrhistogram.Histogram
	interval *hdrhistogram.Histogram // by completion, since the last progress line
	// observe, when set, sees every completed batch (tests).
	observe func(c claim, res result, latency time.Duration)
}

func newRecorder(start time.Time, plans []*phasePlan) *recorder {
	r := &recorder{
		start:    start,
		total:    newAgg(3),
		windows:  map[int64]*window{},
		interval: newHist(windowDigits),
	}
	for _, p := range plans {
		r.phases = append(r.phases, newAgg(windowDigits))
		r.names = append(r.names, p.name)
	}
	return r
}

func (r *recorder) second(t time.Time) int64 {
	d := t.Sub(r.start)
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// claim registers a batch the schedule handed out.
func (r *recorder) claim(c *claim) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := int64(c.n)
	r.total.s.Offered += n
	r.phases[c.phase.index].s.Offered += n
	w := r.windows[c.sec]
	if w == nil {
		w = &window{sec: c.sec, phase: c.phase.index}
		if k := len(r.pool); k > 0 {
			w.hist, r.pool = r.pool[k-1], r.pool[:k-1]
		} else {
			w.hist = newHist(windowDigits)
		}
		r.windows[c.sec] = w
	}
	w.offered += n
	w.outstanding++
	if c.sec > r.lastSec {
		r.lastSec = c.sec
		for s, w := range r.windows {
			if s < c.sec && w.outstanding == 0 {
				r.closeWindow(w)
			}
		}
	}
}

// unclaim takes back a batch that was never sent (the run was interrupted
// while it waited for its time).
func (r *recorder) unclaim(c *claim) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := int64(c.n)
	r.total.s.Offered -= n
	r.phases[c.phase.index].s.Offered -= n
	if w := r.windows[c.sec]; w != nil {
		w.offered -= n
		w.outstanding--
		if w.outstanding == 0 && w.offered == 0 && w.delivered == 0 && w.failed == 0 {
			// Every batch of this second was given back: it never happened.
			w.hist.Reset()
			r.pool = append(r.pool, w.hist)
			delete(r.windows, w.sec)
		}
	}
}

// complete records the outcome of a batch. latency runs from its intended
// send time; lag is how late it left.
func (r *recorder) complete(c *claim, res result, latency, lag time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := int64(c.n)
	for _, a := range []*agg{r.total, r.phases[c.phase.index]} {
		s := &a.s
		if res.requests > 0 {
			s.Sent += n
		}
		switch {
		case res.delivered:
			s.Delivered += n
			if res.acked {
				s.Acked += n
			}
			recordLatency(a.hist, latency, n)
		case res.canceled:
			s.Canceled += n
		default:
			s.Failed += n
		}
		s.Requests += res.requests
		s.Retries += res.retries
		s.Bytes += res.wireBytes
		if lag > lateAfter {
			s.Late++
		}
		for _, k := range res.errors {
			s.Errors[k]++
		}
	}
	if res.delivered {
		recordLatency(r.interval, latency, n)
	}
	if w := r.windows[c.sec]; w != nil {
		switch {
		case res.delivered:
			w.delivered += n
			recordLatency(w.hist, latency, n)
		case !res.canceled:
			w.failed += n
		}
		w.errors += int64(len(res.errors))
		w.outstanding--
		if w.outstanding == 0 && w.sec < r.lastSec {
			r.closeWindow(w)
		}
	}
	if r.observe != nil {
		r.observe(*c, res, latency)
	}
}

func (r *recorder) closeWindow(w *window) {
	r.closed = append(r.closed, Second{
		T: w.sec, Phase: r.names[w.phase],
		Offered: w.offered, Delivered: w.delivered, Failed: w.failed, Errors: w.errors,
		P50: quantileMS(w.hist, 50), P99: quantileMS(w.hist, 99), Max: float64(w.hist.Max()) / 1000,
	})
	w.hist.Reset()
	r.pool = append(r.pool, w.hist)
	delete(r.windows, w.sec)
}

// progress is a snapshot for the progress line.
type progress struct {
	offered, delivered, failed int64
	errors                     map[string]int64
	p50, p99                   float64 // of the batches completed since the last snapshot
}

func (r *recorder) snapshot() progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := progress{
		offered: r.total.s.Offered, delivered: r.total.s.Delivered, failed: r.total.s.Failed,
		errors: make(map[string]int64, len(r.total.s.Errors)),
		p50:    quantileMS(r.interval, 50), p99: quantileMS(r.interval, 99),
	}
	for k, v := range r.total.s.Errors {
		p.errors[k] = v
	}
	r.interval.Reset()
	return p
}

// finish closes the series and fills the summaries. phaseSpans holds each
// phase's start and length on the timeline.
func (r *recorder) finish(elapsed time.Duration, spans []span) ([]PhaseSummary, Summary, []Second) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.windows {
		r.closeWindow(w)
	}
	sort.Slice(r.closed, func(i, j int) bool { return r.closed[i].T < r.closed[j].T })
	// Seconds in which nothing was due still belong in the series.
	var series []Second
	for _, s := range r.closed {
		for next := int64(len(series)); next < s.T; next++ {
			series = append(series, Second{T: next, Phase: r.names[phaseAt(spans, next)]})
		}
		series = append(series, s)
	}
	fill := func(a *agg, secs float64) Summary {
		s := a.s
		if secs > 0 {
			s.OfferedRPS = float64(s.Offered) / secs
			s.AchievedRPS = float64(s.Delivered) / secs
		}
		h := a.hist
		if h.TotalCount() > 0 {
			s.Latency = Latency{
				P50: quantileMS(h, 50), P90: quantileMS(h, 90), P99: quantileMS(h, 99),
				P999: quantileMS(h, 99.9), Max: float64(h.Max()) / 1000, Mean: h.Mean() / 1000,
			}
		}
		return s
	}
	var phases []PhaseSummary
	for i, a := range r.phases {
		sp := spans[i]
		if !sp.started {
			continue
		}
		phases = append(phases, PhaseSummary{
			Name: r.names[i], StartS: sp.start.Seconds(), DurationS: sp.length.Seconds(),
			Summary: fill(a, sp.length.Seconds()),
		})
	}
	return phases, fill(r.total, elapsed.Seconds()), series
}

// span is where a phase sat on the run's timeline.
type span struct {
	started       bool
	start, length time.Duration
}

// phaseAt is the phase running at second sec.
func phaseAt(spans []span, sec int64) int {
	t := time.Duration(sec) * time.Second
	last := 0
	for i, s := range spans {
		if s.started && s.start <= t {
			last = i
		}
	}
	return last
}
