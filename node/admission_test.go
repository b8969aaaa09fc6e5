package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// busy is an interval in which the node wrote 4,000 records/s in batches of
// 400 taking 100 ms, four at once, with a backlog of depth records.
func busy(depth int) admissionInput {
	return admissionInput{
		slo: 500 * time.Millisecond, written: 4000, batches: 40, meanFill: 400,
		meanBatchTime: 100 * time.Millisecond, concurrency: 1, batchSize: 400, inForce: 400, depth: depth,
		queueBytes: int64(depth) * 100,
	}
}

// grown is busy(0) after which the controller decided size, expecting
// a batch of it to take expected to write.
func grown(size int, expected time.Duration) admissionInput {
	in := busy(0)
	in.batchSize, in.expectedWrite = size, expected
	return in
}

func TestAdmissionBounds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		intervals []admissionInput
		wantBound int64
		wantRate  float64
	}{
		{
			name:      "before any measurement only the hard bounds hold",
			intervals: nil,
			wantBound: 0,
		},
		{
			name:      "the bound is the drain rate times the budget left after a batch's write",
			intervals: []admissionInput{busy(0)},
			// 4,000/s × (0.8 × 500 ms − 100 ms)
			wantBound: 1200, wantRate: 4000,
		},
		{
			name: "idle flushes count at what every flush busy would carry",
			intervals: []admissionInput{func() admissionInput {
				in := busy(0)
				in.written, in.concurrency = 1000, 4 // 4 × 400 / 100 ms = 16,000/s
				return in
			}()},
			wantBound: 4800, wantRate: 16000,
		},
		{
			name: "failed batches drain the queue but are not counted as written",
			intervals: []admissionInput{func() admissionInput {
				in := busy(0)
				in.written, in.concurrency, in.failed = 0, 4, 40
				return in
			}()},
			wantBound: 1, // (and one batch, which is always admitted)
		},
		{
			name: "a stall halves the drain rate",
			intervals: []admissionInput{busy(100), func() admissionInput {
				in := busy(5000)
				in.batches, in.written = 0, 0
				return in
			}()},
			wantBound: 600, wantRate: 2000,
		},
		{
			name: "an interval of light load does not lower the drain rate",
			intervals: []admissionInput{busy(0), func() admissionInput {
				in := busy(0)
				in.written, in.meanFill, in.meanBatchTime = 1000, 100, 50*time.Millisecond
				return in
			}()},
			// 4,000/s × (400 − 50 ms)
			wantBound: 1400, wantRate: 4000,
		},
		{
			name: "a backlogged interval does",
			intervals: []admissionInput{busy(0), func() admissionInput {
				in := busy(500)
				in.written, in.meanBatchTime = 2000, 200*time.Millisecond
				return in
			}()},
			// (4,000 + 2,000) / 2 × (400 − 200 ms)
			wantBound: 600, wantRate: 3000,
		},
		{
			name: "a batch slower than the budget leaves no room beyond one batch",
			intervals: []admissionInput{func() admissionInput {
				in := busy(0)
				in.meanBatchTime = 2 * time.Second
				return in
			}()},
			wantBound: 1, wantRate: 4000,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAdmission(false)
			for _, in := range tc.intervals {
				a.update(in)
			}
			if got := a.bound.Load(); got != tc.wantBound {
				t.Errorf("bound %d records, want %d", got, tc.wantBound)
			}
			if got := a.drainRate(); got != tc.wantRate && tc.wantRate != 0 {
				t.Errorf("drain rate %.0f/s, want %.0f/s", got, tc.wantRate)
			}
		})
	}
}

// After a calm interval the first request that only the delay bound
// refuses is admitted on the grace, counted, and the control loop told to
// step early; the next is refused, and the grace comes back only after an
// interval that neither refused nor graced anything. Asking before the body
// is read does not spend it; the sojourn check has none.
func TestAdmissionGraceLetsOneRequestPastTheDelayBoundAfterACalmInterval(t *testing.T) {
	now := time.Now()
	a := newAdmission(false)
	a.update(busy(0)) // bound 1,200 records; a calm interval: the grace is armed
	past := func(take bool) string { return a.admits(1100, 101, now, now, take) }
	if got := past(false); got != "" {
		t.Fatalf("asked before the body: %q, want admitted on the grace", got)
	}
	if got := past(true); got != "" {
		t.Fatalf("first request past the bound: %q, want admitted on the grace", got)
	}
	select {
	case <-a.behind:
	default:
		t.Error("the grace did not tell the control loop to step early")
	}
	if got := past(false); got != whyDelay {
		t.Errorf("asked after the grace was spent: %q, want %q", got, whyDelay)
	}
	if got := past(true); got != whyDelay {
		t.Errorf("second request past the bound: %q, want %q", got, whyDelay)
	}
	if got := a.gracedSince(); got != 101 {
		t.Errorf("graced %d records, want 101", got)
	}
	a.update(busy(0)) // the interval that used the grace: not re-armed
	if h := a.health(0, a.counters()); h.Graced != 101 {
		t.Errorf("health: graced %d, want 101", h.Graced)
	}
	if got := past(true); got != whyDelay {
		t.Errorf("after the interval that used it: %q, want %q", got, whyDelay)
	}
	a.refused(whyDelay, SourceHTTP)
	a.update(busy(0)) // an interval that refused: not re-armed
	if got := past(true); got != whyDelay {
		t.Errorf("after an interval that refused: %q, want %q", got, whyDelay)
	}
	a.update(busy(0)) // calm: armed again
	if got := a.admits(500, 1, now.Add(-time.Second), now, true); got != whySojourn {
		t.Errorf("a head past the budget: %q, want %q (no grace)", got, whySojourn)
	}
	if got := past(true); got != "" {
		t.Errorf("after a calm interval: %q, want admitted on the grace", got)
	}
}

func TestAdmissionCheck(t *testing.T) {
	now := time.Now()
	a := newAdmission(false)
	a.update(busy(0)) // bound 1,200 records; sojourn limit 400 ms
	for _, tc := range []struct {
		name     string
		depth, n int
		waited   time.Duration
		want     string
	}{
		{"an empty queue takes any request", 0, 5000, 0, ""},
		{"a request that fits the delay bound is admitted", 1000, 200, 10 * time.Millisecond, ""},
		{"a request past the delay bound is refused for delay", 1100, 101, 10 * time.Millisecond, whyDelay},
		{"a head that waited past the budget refuses the next request", 500, 1, time.Second, whySojourn},
		{"less than one batch queued is left alone whatever its age", 399, 500, time.Second, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.check(tc.depth, tc.n, now.Add(-tc.waited), now); got != tc.want {
				t.Errorf("check = %q, want %q", got, tc.want)
			}
		})
	}
}

// A request refused by the delay bound is refused whole: nothing of it is
// queued, the client is told ErrOverloaded (a kind of ErrQueueFull), and
// the refusal is counted with its reason.
func TestOverloadRefusesTheWholeRequest(t *testing.T) {
	s := newMemSink()
	s.gate = make(chan struct{})
	defer close(s.gate)
	n := startNode(t, Config{Sink: s, InitialBatchSize: 1, FlushConcurrency: 1, MaxLinger: time.Millisecond, ControlInterval: time.Hour})
	go func() { _ = n.Ingest(context.Background(), recs(1, "first"), SourceHTTP) }()
	<-s.entered
	n.queue.adm.bound.Store(9)
	go func() { _ = n.Ingest(context.Background(), recs(9, "fill"), SourceHTTP) }()
	waitFor(t, func() bool { d, _, _, _ := n.queue.state(); return d == 9 })
	err := n.Ingest(context.Background(), recs(3, "over"), SourceHTTP)
	if !errors.Is(err, ErrOverloaded) || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err = %v, want ErrOverloaded", err)
	}
	if d, _, _, _ := n.queue.state(); d != 9 {
		t.Fatalf("queue depth %d after a refused request, want 9", d)
	}
	if got := counterValue(t, n, "batchpilot_admission_refused_total", "why", whyDelay); got != 1 {
		t.Fatalf("batchpilot_admission_refused_total{why=delay} = %v, want 1", got)
	}
	// A syslog UDP record is dropped and counted; a TCP one waits.
	if err := n.Offer(context.Background(), []byte(`{"m":1}`), SourceSyslog, false); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("UDP offer: err = %v, want ErrOverloaded", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Offer(ctx, []byte(`{"m":1}`), SourceSyslog, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TCP offer: err = %v, want to wait for room until its context ended", err)
	}
	if got := counterValue(t, n, "batchpilot_admission_paused_total", "source", "syslog"); got != 1 {
		t.Fatalf("batchpilot_admission_paused_total{source=syslog} = %v, want 1", got)
	}
}

// countingBody notes whether anything read it.
type countingBody struct {
	io.Reader
	read bool
}

func (b *countingBody) Read(p []byte) (int, error) { b.read = true; return b.Reader.Read(p) }

func TestIngestHTTPOverloadIsRefusedBeforeTheBodyIsRead(t *testing.T) {
	s := newMemSink()
	s.gate = make(chan struct{})
	defer close(s.gate)
	n := startNode(t, Config{Sink: s, InitialBatchSize: 1, FlushConcurrency: 1, MaxLinger: time.Millisecond, ControlInterval: time.Hour})
	go func() { _ = n.Ingest(context.Background(), recs(1, "first"), SourceHTTP) }()
	<-s.entered
	go func() { _ = n.Ingest(context.Background(), recs(30, "fill"), SourceHTTP) }()
	waitFor(t, func() bool { d, _, _, _ := n.queue.state(); return d == 30 })
	// 30 records queued, drained at 10/s: 3 s to drain.
	n.queue.adm.rate.Store(math.Float64bits(10))
	n.queue.adm.bound.Store(40)

	for _, tc := range []struct {
		name     string
		records  int
		wantCode int
		wantRead bool
	}{
		{"a request whose length says it fits is read and queued", 5, 0, true},
		{"a request whose length says it does not fit is refused unread", 50, http.StatusTooManyRequests, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			for _, r := range recs(tc.records, "h") {
				buf.Write(r)
				buf.WriteByte('\n')
			}
			body := &countingBody{Reader: bytes.NewReader(buf.Bytes())}
			req := httptest.NewRequest("POST", "/v1/logs", body)
			req.ContentLength = int64(buf.Len())
			req.Header.Set("Content-Type", "application/x-ndjson")
			rr := httptest.NewRecorder()
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			n.IngestHandler().ServeHTTP(rr, req.WithContext(ctx))
			if body.read != tc.wantRead {
				t.Fatalf("body read = %v, want %v", body.read, tc.wantRead)
			}
			if tc.wantCode == 0 {
				return // queued behind the stuck sink; its client gave up
			}
			if rr.Code != tc.wantCode || rr.Header().Get("Retry-After") != "4" {
				t.Fatalf("got %d Retry-After=%q, want %d with the drain time of 35 records at 10/s (4)", rr.Code, rr.Header().Get("Retry-After"), tc.wantCode)
			}
			if !strings.Contains(rr.Body.String(), "overloaded") {
				t.Fatalf("body %q does not say why", rr.Body.String())
			}
		})
	}
}

// counterValue reads one labelled counter of the node's registry.
func counterValue(t *testing.T, n *Node, name, label, value string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabel(m, label, value) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestAdmissionQueueModeRefusesOnlyAtTheHardBounds(t *testing.T) {
	now := time.Now()
	a := newAdmission(true)
	a.update(busy(0)) // the same bound as TestAdmissionCheck: computed, not enforced
	if got := a.bound.Load(); got != 1200 {
		t.Fatalf("bound %d records, want it still computed (1200)", got)
	}
	for _, tc := range []struct {
		name     string
		depth, n int
		waited   time.Duration
	}{
		{"past the delay bound", 1100, 101, 10 * time.Millisecond},
		{"a head that waited past the budget", 500, 1, time.Second},
	} {
		if got := a.check(tc.depth, tc.n, now.Add(-tc.waited), now); got != "" {
			t.Errorf("%s: check = %q, want admitted", tc.name, got)
		}
	}
	q := newQueue(10, 1<<20, true)
	if err := q.put(make([]Record, 10)); err != nil {
		t.Fatalf("10 records into a queue of 10: %v", err)
	}
	if err := q.put(make([]Record, 1)); !errors.Is(err, ErrQueueFull) || errors.Is(err, ErrOverloaded) {
		t.Errorf("the 11th record: %v, want the hard bound's ErrQueueFull", err)
	}
}

// The estimator as a pure function: a sequence of intervals in, the drain
// rate and the bound after the last one out. The downstream of these
// intervals carries 4,000 records/s at batches of 400 (100 ms a batch,
// one flush), 300 ms of queue wait admitted (0.8 × 500 ms − 100 ms).
func TestEstimateDrain(t *testing.T) {
	light := func(written float64) admissionInput {
		in := busy(0)
		in.written, in.meanFill, in.meanBatchTime = written, written/10, 25*time.Millisecond
		return in
	}
	overloaded := func(written float64) admissionInput {
		in := busy(800)
		in.written = written
		in.refused = 20
		return in
	}
	for _, tc := range []struct {
		name      string
		intervals []admissionInput
		wantRate  float64
		wantBound int64
	}{
		{
			name: "step up with room: light intervals keep the capacity measured before",
			// A backlogged interval measured 4,000/s; then 1,000/s arrive
			// and are written in batches of 100 at 25 ms: 4,000/s again
			// as headroom, never lower. A step back up is admitted up to
			// 4,000/s × 375 ms.
			intervals: []admissionInput{busy(500), light(1000), light(1000), light(1000)},
			wantRate:  4000, wantBound: 1500,
		},
		{
			name: "step up with room: light load alone counts what every flush would carry",
			// Never backlogged: 1 flush × 100 records / 25 ms = 4,000/s,
			// four times what was written.
			intervals: []admissionInput{light(1000), light(1000)},
			wantRate:  4000, wantBound: 1500,
		},
		{
			name: "light load with the interval known counts at most twice the flushes in use",
			// 10 batches of 100 at 25 ms in a second keep a quarter of a
			// flush busy: the sample counts half a flush, 2,000/s (twice
			// what was written), not the 4,000/s of a whole one.
			intervals: []admissionInput{func() admissionInput {
				in := light(1000)
				in.batches, in.interval = 10, time.Second
				return in
			}()},
			wantRate: 2000, wantBound: 750, // 2,000/s × 375 ms
		},
		{
			name: "a backlogged interval with the interval known counts every flush",
			// 4 flushes, 160 batches of 100 at 25 ms in a second: every
			// flush busy, 16,000/s.
			intervals: []admissionInput{func() admissionInput {
				in := busy(800)
				in.concurrency, in.batches, in.written, in.meanFill = 4, 160, 16000, 100
				in.meanBatchTime, in.interval = 25*time.Millisecond, time.Second
				return in
			}()},
			wantRate: 16000, wantBound: 6000, // 16,000/s × 375 ms
		},
		{
			name: "true overload: backlogged intervals bring the rate down to what is written",
			// The downstream slows to 2,000/s (200 ms a batch of 400)
			// while records are refused: 4,000 → 3,000 → 2,500 → 2,250.
			intervals: []admissionInput{busy(0), func() admissionInput {
				in := overloaded(2000)
				in.meanBatchTime = 200 * time.Millisecond
				return in
			}(), func() admissionInput {
				in := overloaded(2000)
				in.meanBatchTime = 200 * time.Millisecond
				return in
			}(), func() admissionInput {
				in := overloaded(2000)
				in.meanBatchTime = 200 * time.Millisecond
				return in
			}()},
			wantRate: 2250, wantBound: 450, // 2,250/s × (400 − 200 ms)
		},
		{
			name:      "true overload at capacity: the bound is what is written within the budget",
			intervals: []admissionInput{overloaded(4000), overloaded(4000), overloaded(4000)},
			wantRate:  4000, wantBound: 1200,
		},
		{
			name: "recovery: once the load falls the rate measured in the overload stays",
			// After the overload (2,000/s) the load falls to 1,000/s,
			// written at 25 ms a batch of 100: the headroom (4,000/s)
			// raises the rate half way an interval; nothing lowers it.
			intervals: []admissionInput{func() admissionInput {
				in := overloaded(2000)
				in.meanBatchTime = 200 * time.Millisecond
				return in
			}(), light(1000), light(1000)},
			wantRate: 3500, wantBound: 1312, // 3,500/s × 375 ms
		},
		{
			name: "one slow interval halves the bound at most",
			// 4,000/s and 1,200 records, then an interval in which the
			// host stalled: 500 written, 350 ms a batch. The sample says
			// 400 / 350 ms = 1,143/s, the rate (4,000 + 1,143) / 2, and
			// 2,571/s × 50 ms = 128 records; the bound keeps 600.
			intervals: []admissionInput{busy(0), func() admissionInput {
				in := busy(3000)
				in.written, in.batches, in.meanBatchTime = 500, 5, 350*time.Millisecond
				return in
			}()},
			wantRate: 2571.4, wantBound: 600,
		},
		{
			name: "a stall halves the rate, and the bound with it",
			intervals: []admissionInput{busy(0), func() admissionInput {
				in := busy(3000)
				in.batches, in.written = 0, 0
				return in
			}()},
			wantRate: 2000, wantBound: 600,
		},
		{
			name: "a larger size with its expected write: the bound counts the capacity it will have",
			// 4,000/s measured at 400 a batch (100 ms); the controller
			// grows to 800 and expects 120 ms a batch: one flush carries
			// 800 / 120 ms = 6,667/s, and a record may wait 400 − 120 ms.
			// The measured rate stays what was measured.
			intervals: []admissionInput{busy(0), grown(800, 120*time.Millisecond)},
			wantRate:  4000, wantBound: 1866, // 6,667/s × 280 ms
		},
		{
			name: "a larger size writes no faster than the growth: the projection is capped",
			// 800 at an expected 50 ms would be 16,000/s; twice the size
			// carries at most twice the 4,000/s measured, and the write
			// counted is the 100 ms measured (the longer of the two).
			intervals: []admissionInput{busy(0), grown(800, 50*time.Millisecond)},
			wantRate:  4000, wantBound: 2400, // 8,000/s × 300 ms
		},
		{
			name:      "a larger size without an expected write: the bound is the measured rate's",
			intervals: []admissionInput{busy(0), grown(800, 0)},
			wantRate:  4000, wantBound: 1200,
		},
		{
			name: "batches the size did not fill: nothing to project",
			// Batches of 200 at a size of 400 (the load, or a byte bound,
			// made them): a larger size would not make larger ones.
			intervals: []admissionInput{busy(0), func() admissionInput {
				in := grown(800, 120*time.Millisecond)
				in.meanFill = 200
				return in
			}()},
			wantRate: 4000, wantBound: 1200,
		},
		{
			name: "a smaller size: nothing to project",
			intervals: []admissionInput{busy(0), func() admissionInput {
				in := grown(200, 60*time.Millisecond)
				return in
			}()},
			wantRate: 4000, wantBound: 1200,
		},
		{
			name: "the projection holds for one interval: then the batches of the new size are measured",
			// The 800-record batches took 200 ms, not the 120 expected:
			// 4,000/s again, and 4,000/s × 200 ms.
			intervals: []admissionInput{busy(0), grown(800, 120*time.Millisecond), func() admissionInput {
				in := busy(0)
				in.batchSize, in.inForce, in.meanFill, in.batches = 800, 800, 800, 20
				in.meanBatchTime = 200 * time.Millisecond
				return in
			}()},
			wantRate: 4000, wantBound: 933, // max(4,000/s × 200 ms, half of 1,866)
		},
		{
			name:      "nothing measured: no bound",
			intervals: []admissionInput{{slo: 500 * time.Millisecond, depth: 0}},
			wantRate:  0, wantBound: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var est drainEstimate
			for _, in := range tc.intervals {
				est = estimateDrain(est, in)
			}
			if math.Abs(est.Rate-tc.wantRate) > 0.5 {
				t.Errorf("drain rate %.1f/s, want %.0f/s", est.Rate, tc.wantRate)
			}
			if est.Bound != tc.wantBound {
				t.Errorf("bound %d records, want %d", est.Bound, tc.wantBound)
			}
		})
	}
}
