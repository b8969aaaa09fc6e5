package web

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
	"github.com/batchpilot/batchpilot/tuner"
)

// sseClient reads one /api/v1/events stream.
type sseClient struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
}

type sseEvent struct{ name, data string }

func openStream(t *testing.T, url string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	c := &sseClient{resp: resp, cancel: cancel, events: make(chan sseEvent, 1024)}
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					select {
					case c.events <- ev:
					default: // the test reads what it needs; the rest is dropped
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// next returns the next event named name, failing after waitTimeout.
func (c *sseClient) next(t *testing.T, name string) sseEvent {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("the stream ended while waiting for a %s event", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within %s", name, waitTimeout)
		}
	}
}

func TestEventsStreamSnapshotsAndDecisions(t *testing.T) {
	tn := startSingle(t, "")
	c := openStream(t, tn.url)

	first := c.next(t, eventSnapshot)
	var s Snapshot
	if err := json.Unmarshal([]byte(first.data), &s); err != nil {
		t.Fatalf("snapshot is not JSON: %v\n%s", err, first.data)
	}
	if s.ServedBy != "solo" || s.Leader.Name != "solo" || len(s.Members) != 1 || s.Time.IsZero() {
		t.Fatalf("snapshot = %+v", s)
	}
	var second Snapshot
	if err := json.Unmarshal([]byte(c.next(t, eventSnapshot).data), &second); err != nil {
		t.Fatal(err)
	}
	if !second.Time.After(s.Time) {
		t.Fatalf("snapshots do not move on: %v then %v", s.Time, second.Time)
	}

	// Decisions are sent as they are made, oldest first, none twice.
	var last time.Time
	for i := 0; i < 5; i++ {
		var d tuner.DecisionRecord
		if err := json.Unmarshal([]byte(c.next(t, eventDecision).data), &d); err != nil {
			t.Fatal(err)
		}
		if d.Node != "solo" || !d.Time.After(last) {
			t.Fatalf("decision %d = %+v after %v", i, d, last)
		}
		last = d.Time
	}
}

// TestEventsLeaveNothingBehind connects and drops many clients and checks
// that the hub's producer stops and the goroutine count comes back.
func TestEventsLeaveNothingBehind(t *testing.T) {
	tn := startSingle(t, "")
	clustertest.WaitFor(t, "a few decisions", func() bool { return tn.node.Decisions().Len() >= 3 })
	http.DefaultClient.CloseIdleConnections()
	before := eventGoroutines()

	for round := 0; round < 3; round++ {
		var clients []*sseClient
		for i := 0; i < 10; i++ {
			clients = append(clients, openStream(t, tn.url))
		}
		for _, c := range clients {
			c.next(t, eventSnapshot)
		}
		if n := tn.api.events.clients(); n != 10 {
			t.Fatalf("round %d: hub has %d clients, want 10", round, n)
		}
		for _, c := range clients {
			c.close()
		}
		clustertest.WaitFor(t, "the hub to see every client go", func() bool { return tn.api.events.clients() == 0 })
		clustertest.WaitFor(t, "the producer to stop", func() bool {
			select {
			case <-tn.api.events.idle():
				return true
			default:
				return false
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
	clustertest.WaitFor(t, "the events code's goroutines to come back", func() bool {
		return eventGoroutines() <= before
	})
}

// eventGoroutines counts the goroutines running the events code: stream
// handlers, the producer and its pollers. The whole process's count is no
// measure here: the node's own loops and its lease client's connections
// come and go (CI saw a single server's Raft start an election on a
// loaded machine and the count stay up for 30 s).
func eventGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"web.(*api).streamEvents", "web.(*api).produceEvents", "web.(*api).pollDecisions"} {
			if strings.Contains(g, fn) {
				count++
				break
			}
		}
	}
	return count
}

// TestSlowClientIsDropped: a subscriber that never reads is cut off once
// its buffer is full, and publishing never blocks.
func TestSlowClientIsDropped(t *testing.T) {
	h := newHub(func(ctx context.Context, publish func(event)) { <-ctx.Done() })
	slow := h.subscribe()
	fast := h.subscribe()
	ev := event{name: "x", data: []byte("{}")}
	for i := 0; i < subscriberBuffer; i++ {
		h.publish(ev)
	}
	for i := 0; i < subscriberBuffer; i++ {
		<-fast.ch // the fast one keeps up
	}
	h.publish(ev) // no room left for the slow one
	if _, open := <-drain(slow.ch); open {
		t.Fatal("the slow subscriber's channel is still open")
	}
	if h.clients() != 1 {
		t.Fatalf("clients = %d, want the fast one only", h.clients())
	}
	if got := <-fast.ch; got.name != "x" {
		t.Fatalf("the fast subscriber got %+v", got)
	}
	h.unsubscribe(fast)
	h.unsubscribe(slow) // a second unsubscribe is harmless
	select {
	case <-h.idle():
	case <-time.After(waitTimeout):
		t.Fatal("the producer did not stop")
	}
}

// drain reads ch until it is closed and then returns a closed channel.
func drain(ch chan event) chan event {
	for range ch {
	}
	return ch
}
