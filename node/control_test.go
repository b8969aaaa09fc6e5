package node

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

func TestPacerStepsEarlyOnceWhenTheNodeFallsBehindAfterACalmInterval(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	p := pacer{iv: time.Second, last: t0, calm: true}
	// Refused 30 ms after a calm step: step early, 70 ms later (a tenth
	// of the interval after the step).
	if wait, ok := p.behind(ms(30)); !ok || wait != 70*time.Millisecond {
		t.Fatalf("behind at 30 ms = %v, %v; want 70ms, true", wait, ok)
	}
	// Refused again before it: one early step is enough.
	if _, ok := p.behind(ms(50)); ok {
		t.Fatal("a second refusal asked for a second early step")
	}
	p.stepped(ms(100), true)
	// The early step's interval refused requests: no early step again
	// until an interval refuses nothing.
	if _, ok := p.behind(ms(500)); ok {
		t.Fatal("an early step after an interval that refused requests")
	}
	p.stepped(ms(1100), true)
	if _, ok := p.behind(ms(1500)); ok {
		t.Fatal("an early step while the node stays behind")
	}
	p.stepped(ms(2100), false)
	// Calm again; refused long after the step: at once.
	if wait, ok := p.behind(ms(2600)); !ok || wait != 0 {
		t.Fatalf("behind 500 ms after a calm step = %v, %v; want 0, true", wait, ok)
	}
	// A 250 ms interval waits 25 ms.
	q := pacer{iv: 250 * time.Millisecond, last: t0, calm: true}
	if wait, ok := q.behind(t0); !ok || wait != 25*time.Millisecond {
		t.Fatalf("behind at once with a 250 ms interval = %v, %v; want 25ms, true", wait, ok)
	}
}

// seenCtl keeps the size and every observation it is asked about.
type seenCtl struct {
	mu  sync.Mutex
	obs []tuner.Observation
}

func (c *seenCtl) Name() string { return "seen" }
func (c *seenCtl) Next(obs tuner.Observation) tuner.Decision {
	c.mu.Lock()
	c.obs = append(c.obs, obs)
	c.mu.Unlock()
	return tuner.Decision{BatchSize: obs.BatchSize, Reason: "hold"}
}

func (c *seenCtl) seen() []tuner.Observation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tuner.Observation(nil), c.obs...)
}

// A request refused for delay makes the controller decide at once, not at
// the end of the control interval (an hour here), and the decision sees
// the refusal.
func TestARefusalForDelayBringsTheDecisionForward(t *testing.T) {
	s := newMemSink()
	s.gate = make(chan struct{})
	defer close(s.gate)
	ctl := &seenCtl{}
	n := startNode(t, Config{Sink: s, Controller: ctl, InitialBatchSize: 1, FlushConcurrency: 1,
		MaxLinger: time.Millisecond, ControlInterval: time.Hour})
	// One record goes to the (stuck) sink; the delay bound, as if
	// measured, holds the queue to two records.
	go func() { _ = n.Ingest(context.Background(), recs(1, "first"), SourceHTTP) }()
	<-s.entered
	n.queue.adm.bound.Store(2)
	go func() { _ = n.Ingest(context.Background(), recs(2, "queued"), SourceHTTP) }()
	waitFor(t, func() bool { d, _, _, _ := n.queue.state(); return d == 2 })
	if got := ctl.seen(); len(got) != 0 {
		t.Fatalf("the controller decided %d times before any refusal", len(got))
	}
	if err := n.Ingest(context.Background(), recs(1, "over"), SourceHTTP); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("err = %v, want ErrOverloaded", err)
	}
	waitFor(t, func() bool { return len(ctl.seen()) > 0 })
	if o := ctl.seen()[0]; o.Rejected != 1 || o.Interval >= time.Hour {
		t.Errorf("the early decision saw %d refused records over %v, want 1 over less than the hour", o.Rejected, o.Interval)
	}
}
