package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/tuner"
)

// memSink is an in-memory sink for testing the batcher: it records every
// batch, can be made to fail, and can be held shut by a gate.
type memSink struct {
	mu          sync.Mutex
	batches     [][]string
	fail        error
	gate        chan struct{} // when non-nil, Write waits for it to close
	inflight    int64
	maxInflight int64
	entered     chan struct{}
	// refuse makes Write refuse, as a bad record, every batch with a
	// record containing it; refused has the sizes of those batches.
	refuse  string
	refused []int
	// maxRecords, when set, makes Write refuse every batch of more records
	// as too large (a 413); tooLarge has the sizes of those batches.
	maxRecords int
	tooLarge   []int
}

func newMemSink() *memSink { return &memSink{entered: make(chan struct{}, 1024)} }

func (s *memSink) Write(ctx context.Context, b *sink.Batch) error {
	s.mu.Lock()
	s.inflight += int64(b.Bytes)
	s.maxInflight = max(s.maxInflight, s.inflight)
	gate, fail := s.gate, s.fail
	s.mu.Unlock()
	s.entered <- struct{}{}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight -= int64(b.Bytes)
	if fail != nil {
		return fail
	}
	if s.maxRecords > 0 && len(b.Records) > s.maxRecords {
		s.tooLarge = append(s.tooLarge, len(b.Records))
		return fmt.Errorf("memsink: %w", sink.ErrBatchTooLarge)
	}
	for _, r := range b.Records {
		if s.refuse != "" && strings.Contains(string(r), s.refuse) {
			s.refused = append(s.refused, len(b.Records))
			return fmt.Errorf("memsink: %w", sink.ErrBadRecord)
		}
	}
	recs := make([]string, len(b.Records))
	for i, r := range b.Records {
		recs[i] = string(r)
	}
	s.batches = append(s.batches, recs)
	return nil
}
func (s *memSink) Ready(context.Context) error { return nil }
func (s *memSink) Close() error                { return nil }

func (s *memSink) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, b := range s.batches {
		out = append(out, len(b))
	}
	return out
}

func (s *memSink) records() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, b := range s.batches {
		for _, r := range b {
			var m map[string]any
			if err := json.Unmarshal([]byte(r), &m); err != nil {
				panic(fmt.Sprintf("sink got invalid JSON %q: %v", r, err))
			}
			out = append(out, m)
		}
	}
	return out
}

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "n1"
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

func recs(n int, prefix string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf(`{"id":"%s-%d","msg":"hello"}`, prefix, i))
	}
	return out
}

func TestIngestAcknowledgesOnlyAfterTheSinkWrote(t *testing.T) {
	s := newMemSink()
	s.gate = make(chan struct{})
	n := startNode(t, Config{Sink: s, InitialBatchSize: 5, MaxLinger: time.Millisecond})

	res := make(chan error, 1)
	go func() { res <- n.Ingest(context.Background(), recs(5, "a"), SourceHTTP) }()
	<-s.entered // the batch is at the sink, held by the gate
	select {
	case err := <-res:
		t.Fatalf("acknowledged before the sink finished: %v", err)
	default:
	}
	close(s.gate)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	got := s.records()
	if len(got) != 5 {
		t.Fatalf("sink has %d records, want 5", len(got))
	}
	r := got[0]
	if r["id"] != "a-0" || r["msg"] != "hello" || r["_node"] != "n1" || r["_source"] != "http" {
		t.Errorf("record lost or missed its fields: %v", r)
	}
	if _, err := time.Parse(time.RFC3339Nano, r["_received_at"].(string)); err != nil {
		t.Errorf("_received_at: %v", err)
	}
}

func TestBatchesFlushAtTheBatchSizeAndDrainOnShutdown(t *testing.T) {
	s := newMemSink()
	n, err := New(Config{Name: "n1", Sink: s, InitialBatchSize: 10, MaxLinger: time.Hour, FlushConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs(25, "b") {
		if err := n.Offer(context.Background(), r, SourceSyslog, false); err != nil {
			t.Fatal(err)
		}
	}
	n.Start()
	waitFor(t, func() bool { return len(s.sizes()) >= 2 })
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.sizes()); got != "[10 10 5]" {
		t.Fatalf("batch sizes %s, want [10 10 5] (two full batches, the rest on drain)", got)
	}
}

func TestLingerFlushesAPartialBatch(t *testing.T) {
	s := newMemSink()
	n := startNode(t, Config{Sink: s, InitialBatchSize: 1000, MaxLinger: 10 * time.Millisecond})
	if err := n.Ingest(context.Background(), recs(3, "c"), SourceHTTP); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.sizes()); got != "[3]" {
		t.Fatalf("batch sizes %s, want [3]", got)
	}
}

func TestFullQueueRefusesTheWholeRequest(t *testing.T) {
	s := newMemSink()
	s.gate = make(chan struct{})
	defer close(s.gate)
	n := startNode(t, Config{Sink: s, InitialBatchSize: 1, FlushConcurrency: 1, QueueRecords: 10, MaxLinger: time.Millisecond})
	// One record goes to the (stuck) sink, ten fill the queue.
	go func() { _ = n.Ingest(context.Background(), recs(1, "first"), SourceHTTP) }()
	<-s.entered
	go func() { _ = n.Ingest(context.Background(), recs(10, "fill"), SourceHTTP) }()
	waitFor(t, func() bool { d, _, _, _ := n.queue.state(); return d == 10 })
	err := n.Ingest(context.Background(), recs(1, "over"), SourceHTTP)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err = %v, want ErrQueueFull", err)
	}
	if d, _, _, _ := n.queue.state(); d != 10 {
		t.Fatalf("queue depth %d after a refused request, want 10", d)
	}
}

func TestSinkErrorFailsTheRequest(t *testing.T) {
	s := newMemSink()
	s.fail = fmt.Errorf("disk on fire: %w", sink.ErrBackpressure)
	n := startNode(t, Config{Sink: s, InitialBatchSize: 2, MaxLinger: time.Millisecond})
	err := n.Ingest(context.Background(), recs(4, "d"), SourceHTTP)
	if err == nil || !errors.Is(err, sink.ErrBackpressure) {
		t.Fatalf("err = %v, want the sink's error", err)
	}
}

func TestGrantCapsInflightBytes(t *testing.T) {
	s := newMemSink()
	n := startNode(t, Config{Sink: s, InitialBatchSize: 50, FlushConcurrency: 4, MaxLinger: time.Millisecond})
	rec := recs(1, "g")[0]
	// The sink sees enriched records, larger than the raw ones the grant
	// counts; measure the grant in the sink's bytes with a wide margin.
	n.SetGrant(int64(len(rec)) * 20)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := n.Ingest(context.Background(), recs(50, fmt.Sprint("g", i)), SourceHTTP); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	// A flush releases its bytes just after it settles the batch's
	// acknowledgements: poll for it.
	waitFor(t, func() bool { return n.InflightBytes() == 0 })
	for _, size := range s.sizes() {
		if size > 20 {
			t.Fatalf("a batch of %d records ran above a grant of 20 records' bytes", size)
		}
	}
	// The sink's own measure: the batches in flight at once never held
	// more than 20 records (the enriched bytes are about 2.2× the raw).
	s.mu.Lock()
	peak := s.maxInflight
	s.mu.Unlock()
	if enriched := int64(len(appendEnriched(nil, &Record{Data: rec, Source: SourceHTTP, Received: time.Now()}, "n1"))); peak > 20*enriched {
		t.Fatalf("peak in flight at the sink %d bytes, over 20 records (%d bytes)", peak, 20*enriched)
	}
}

func TestShutdownRefusesNewRecords(t *testing.T) {
	s := newMemSink()
	n := startNode(t, Config{Sink: s})
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.Ingest(context.Background(), recs(1, "e"), SourceHTTP); !errors.Is(err, ErrDraining) {
		t.Fatalf("err = %v, want ErrDraining", err)
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before the deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestControlWindowResetsEachInterval(t *testing.T) {
	w := newWindow()
	w.addArrived(5)
	if s := w.snapshot(); s.arrived != 5 {
		t.Fatalf("arrived %d, want 5", s.arrived)
	}
	w.addArrived(2)
	if s := w.snapshot(); s.arrived != 2 {
		t.Fatalf("second interval arrived %d, want 2", s.arrived)
	}
}

func TestFailingSinkOpensTheBreakerAndItRecovers(t *testing.T) {
	s := newMemSink()
	s.fail = errors.New("sink down")
	n := startNode(t, Config{Sink: s, MaxLinger: time.Millisecond, ControlInterval: 10 * time.Millisecond,
		Guard: tuner.NewBreaker(tuner.BreakerConfig{CoolDown: 50 * time.Millisecond, CPULimit: 101, MemLimit: 101})})
	// Failing writes trip the breaker; then ingest is refused outright.
	waitFor(t, func() bool {
		return errors.Is(n.Ingest(context.Background(), recs(1, "f"), SourceHTTP), ErrBreakerOpen)
	})
	// The health shows why (polled: the breaker may be probing half-open).
	waitFor(t, func() bool { return n.Health().Breaker == tuner.BreakerOpen })
	// /metrics shows it too, as one series per state.
	waitFor(t, func() bool {
		return gaugeValue(n.metrics.breaker.WithLabelValues(tuner.BreakerOpen)) == 1 &&
			gaugeValue(n.metrics.breaker.WithLabelValues(tuner.BreakerClosed)) == 0
	})
	// The sink heals: after the cool-down a probe goes through and the
	// breaker closes by itself.
	s.mu.Lock()
	s.fail = nil
	s.mu.Unlock()
	waitFor(t, func() bool { return n.Ingest(context.Background(), recs(1, "ok"), SourceHTTP) == nil })
	waitFor(t, func() bool { return n.Health().Breaker == tuner.BreakerClosed })
	waitFor(t, func() bool { return gaugeValue(n.metrics.breaker.WithLabelValues(tuner.BreakerClosed)) == 1 })
}

// gaugeValue is a gauge's current value.
func gaugeValue(g interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

// A batch the downstream refuses for its size (413) is written in halves,
// each split again while still refused: every record is written once and
// the request is acknowledged, where it used to fail whole.
func TestABatchTooLargeIsWrittenInHalves(t *testing.T) {
	s := newMemSink()
	s.maxRecords = 2
	n := startNode(t, Config{Sink: s, InitialBatchSize: 100, MaxLinger: time.Millisecond, FlushConcurrency: 1,
		Guard: tuner.NewBreaker(tuner.BreakerConfig{CPULimit: 101, MemLimit: 101})})
	if err := n.Ingest(context.Background(), recs(7, "r"), SourceHTTP); err != nil {
		t.Fatalf("ingest: %v; want it written in parts", err)
	}
	var ids []string
	for _, r := range s.records() {
		ids = append(ids, r["id"].(string))
	}
	want := []string{"r-0", "r-1", "r-2", "r-3", "r-4", "r-5", "r-6"}
	if !slices.Equal(ids, want) {
		t.Errorf("sink has %v, want %v in order, each once", ids, want)
	}
	s.mu.Lock()
	tooLarge := slices.Clone(s.tooLarge)
	s.mu.Unlock()
	if !slices.Equal(tooLarge, []int{7, 3, 4}) {
		t.Errorf("refused batches of %v records; want 7, then its halves of 3 and 4", tooLarge)
	}
	if got := counterValue(t, n, "batchpilot_batches_total", "result", "split"); got != 3 {
		t.Errorf("split batches counted %v, want 3", got)
	}
}

// A record the sink can never write fails only the request it came in:
// the requests batched with it are written and acknowledged, and the
// breaker, which would refuse everybody, does not count it as a sink error.
func TestABadRecordFailsOnlyItsOwnRequest(t *testing.T) {
	s := newMemSink()
	s.refuse = "poison"
	s.gate = make(chan struct{})
	n := startNode(t, Config{Sink: s, InitialBatchSize: 100, MaxLinger: time.Millisecond, FlushConcurrency: 1,
		ControlInterval: 10 * time.Millisecond,
		Guard:           tuner.NewBreaker(tuner.BreakerConfig{CPULimit: 101, MemLimit: 101})})
	ingest := func(prefix string) chan error {
		res := make(chan error, 1)
		go func() { res <- n.Ingest(context.Background(), recs(2, prefix), SourceHTTP) }()
		return res
	}
	first := ingest("first")
	<-s.entered // the first batch is at the sink, held by the gate
	a, bad, b := ingest("good-a"), ingest("poison"), ingest("good-b")
	waitFor(t, func() bool { d, _, _, _ := n.queue.state(); return d == 6 })
	close(s.gate) // the three requests go out as one batch
	for name, res := range map[string]chan error{"first": first, "good-a": a, "good-b": b} {
		if err := <-res; err != nil {
			t.Errorf("%s: %v; want it written", name, err)
		}
	}
	if err := <-bad; !errors.Is(err, sink.ErrBadRecord) {
		t.Errorf("poison: %v; want ErrBadRecord", err)
	}
	var ids []string
	for _, r := range s.records() {
		ids = append(ids, r["id"].(string))
	}
	slices.Sort(ids)
	want := []string{"first-0", "first-1", "good-a-0", "good-a-1", "good-b-0", "good-b-1"}
	if !slices.Equal(ids, want) {
		t.Errorf("sink has %v, want %v", ids, want)
	}
	s.mu.Lock()
	refused := slices.Clone(s.refused)
	s.mu.Unlock()
	if !slices.Equal(refused, []int{6, 2}) {
		t.Errorf("refused batches of %v records; want the shared batch of 6, then the poison request's 2 alone", refused)
	}
	// Control intervals pass with the refusal in their window; the breaker
	// stays closed and ingest goes on.
	since := n.Health().Time
	waitFor(t, func() bool { return n.Health().Time.After(since.Add(50 * time.Millisecond)) })
	if st := n.Health().Breaker; st != tuner.BreakerClosed {
		t.Errorf("breaker %s after a bad record; want closed", st)
	}
	if err := <-ingest("after"); err != nil {
		t.Errorf("after: %v", err)
	}
}
