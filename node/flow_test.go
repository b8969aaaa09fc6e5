package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/tuner"
)

// flowCtl keeps the size it starts with, sets the flow it is given from
// the start, and keeps every observation's attempts.
type flowCtl struct {
	conc, bytes int
	mu          sync.Mutex
	attempts    []tuner.Attempt
}

func (c *flowCtl) Name() string { return "flow" }
func (c *flowCtl) Next(obs tuner.Observation) tuner.Decision {
	c.mu.Lock()
	c.attempts = append(c.attempts, obs.Attempts...)
	c.mu.Unlock()
	return tuner.Decision{BatchSize: obs.BatchSize, Reason: "hold"}
}
func (c *flowCtl) InitialFlow() (int, int) { return c.conc, c.bytes }

func (c *flowCtl) seen() []tuner.Attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tuner.Attempt(nil), c.attempts...)
}

// deferringSink answers each batch's first attempt with back pressure and
// a Retry-After, and takes the second, reporting both as a sink under the
// retry policy does.
type deferringSink struct{ memSink }

func (s *deferringSink) Write(ctx context.Context, b *sink.Batch) error {
	now := time.Now()
	b.OnAttempt(sink.Attempt{Start: now, RTT: time.Millisecond, N: 0, Outcome: sink.OutcomeBackpressure, RetryAfter: time.Second})
	b.OnAttempt(sink.Attempt{Start: now.Add(time.Millisecond), RTT: 2 * time.Millisecond, N: 1, Outcome: sink.OutcomeOK, RetryAfter: -1})
	return s.memSink.Write(ctx, b)
}

func TestEveryAttemptReachesTheController(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink sink.Sink
		want []tuner.AttemptOutcome
	}{
		{"a deferral retried into a success is two attempts, the first back pressure",
			&deferringSink{memSink: *newMemSink()}, []tuner.AttemptOutcome{tuner.AttemptBackpressure, tuner.AttemptOK}},
		{"a sink that reports no attempts gives one per batch", newMemSink(), []tuner.AttemptOutcome{tuner.AttemptOK}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl := &flowCtl{}
			n := startNode(t, Config{Sink: tc.sink, Controller: ctl, InitialBatchSize: 5, MaxLinger: time.Millisecond,
				ControlInterval: 10 * time.Millisecond})
			if err := n.Ingest(context.Background(), recs(5, "a"), SourceHTTP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return len(ctl.seen()) >= len(tc.want) })
			got := ctl.seen()
			if len(got) != len(tc.want) {
				t.Fatalf("%d attempts, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, a := range got {
				if a.Outcome != tc.want[i] || a.Records != 5 || a.Bytes <= 0 || a.N != i || a.InFlight != 1 || !a.Full || a.End.IsZero() {
					t.Errorf("attempt %d: %+v, want %v of the full batch of 5", i, a, tc.want[i])
				}
			}
			if tc.want[0] == tuner.AttemptBackpressure && got[0].RetryAfter != time.Second {
				t.Errorf("Retry-After %v, want 1s", got[0].RetryAfter)
			}
		})
	}
}

// overlapSink holds each write until another one arrives or a while
// passes, and keeps the most writes it saw at once.
type overlapSink struct {
	memSink
	mu      sync.Mutex
	now     int
	most    int
	arrived chan struct{}
}

func (s *overlapSink) Write(ctx context.Context, b *sink.Batch) error {
	s.mu.Lock()
	s.now++
	s.most = max(s.most, s.now)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	select {
	case <-s.arrived:
	case <-time.After(100 * time.Millisecond):
	}
	s.mu.Lock()
	s.now--
	s.mu.Unlock()
	return s.memSink.Write(ctx, b)
}

func TestAControllerCanLowerTheFlushConcurrency(t *testing.T) {
	s := &overlapSink{memSink: *newMemSink(), arrived: make(chan struct{})}
	ctl := &flowCtl{conc: 1}
	n := startNode(t, Config{Sink: s, Controller: ctl, InitialBatchSize: 1, FlushConcurrency: 4, MaxLinger: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if err := n.Ingest(context.Background(), recs(1, fmt.Sprint("c", i)), SourceHTTP); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.most != 1 {
		t.Errorf("%d writes at once under a flush limit of 1", s.most)
	}
}

func TestAByteBoundKeepsEveryBatchWithinIt(t *testing.T) {
	const bound = 2000
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"set by the controller", Config{Controller: &flowCtl{bytes: bound}}},
		{"set in the node's config", Config{MaxBatchBytes: bound}},
		{"the lower of the controller's and the config's", Config{Controller: &flowCtl{bytes: 50_000}, MaxBatchBytes: bound}},
	} {
		t.Run(tc.name, func(t *testing.T) { testByteBound(t, tc.cfg, bound) })
	}
}

func testByteBound(t *testing.T, cfg Config, bound int) {
	s := newMemSink()
	cfg.Sink, cfg.InitialBatchSize, cfg.MaxLinger = s, 1000, 20*time.Millisecond
	n := startNode(t, cfg)
	// Records of two sizes, so that a bound counted in records could not
	// hold both.
	var batch [][]byte
	for i := range 60 {
		pad := strings.Repeat("x", 20+(i%2)*200)
		batch = append(batch, []byte(fmt.Sprintf(`{"id":"b-%d","pad":%q}`, i, pad)))
	}
	if err := n.Ingest(context.Background(), batch, SourceHTTP); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	total, most := 0, 0
	for _, b := range s.batches {
		size := 0
		for _, r := range b {
			size += len(r) + 1 // as NDJSON
		}
		if size > bound {
			t.Errorf("a batch of %d records is %d bytes as written, over the bound of %d", len(b), size, bound)
		}
		total += len(b)
		most = max(most, len(b))
	}
	if total != 60 || most < 2 {
		t.Errorf("%d records in batches of at most %d", total, most)
	}
}

// limitCtl keeps the size in force and asks for two flushes at once.
type limitCtl struct{}

func (limitCtl) Name() string { return "limit" }
func (limitCtl) Next(obs tuner.Observation) tuner.Decision {
	return tuner.Decision{BatchSize: obs.BatchSize, FlushConcurrency: 2, Reason: "flush:fewer"}
}

// TestAChangeOfTheFlushLimitAloneIsADecision: a controller that changes the
// flush concurrency and not the size (arc does, every RTT window) made no
// entry in the decision log, so the dashboard never showed it. It is
// recorded, with the new limit.
func TestAChangeOfTheFlushLimitAloneIsADecision(t *testing.T) {
	n := startNode(t, Config{Sink: newMemSink(), Controller: limitCtl{}, InitialBatchSize: 10,
		FlushConcurrency: 4, ControlInterval: 10 * time.Millisecond})
	waitFor(t, func() bool { return n.Decisions().Len() > 0 })
	got := n.Decisions().Recent("", 10)
	r := got[len(got)-1]
	if r.FlushLimit != 2 || r.OldSize != 10 || r.NewSize != 10 || r.Reason != "flush:fewer" {
		t.Errorf("decision %+v, want the size kept at 10 and flush_limit 2", r)
	}
	if l := n.flushLimit(); l != 2 {
		t.Errorf("flush limit %d in force, want 2", l)
	}
}
