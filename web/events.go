package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/batchpilot/batchpilot/consensus"
	"github.com/batchpilot/batchpilot/tuner"
)

// The stream's event names.
const (
	eventSnapshot = "snapshot" // data: a Snapshot, every EventInterval
	eventDecision = "decision" // data: one tuner.DecisionRecord, as it is found
)

// Stream tuning.
const (
	subscriberBuffer = 512              // events a slow client may fall behind before it is dropped
	streamHeartbeat  = 15 * time.Second // comment lines that keep idle proxies from closing the stream
	streamWriteLimit = 10 * time.Second // a client that takes longer to accept one event is dropped
	streamRetryMS    = 2000             // the browser's reconnect delay
)

// Snapshot is the data of a "snapshot" event: the body of GET
// /api/v1/cluster, with the time it was taken and the node that took it.
type Snapshot struct {
	consensus.Status
	Time     time.Time `json:"time"`
	ServedBy string    `json:"served_by"`
}

// event is one Server-Sent Event, its data already encoded.
type event struct {
	name string
	data []byte
}

// hub fans events out to the stream's clients. Its producer runs only while
// at least one client is connected: the first subscriber starts it and the
// last one to leave stops it, so an idle node does no work for the stream
// and a client that goes away leaves nothing behind.
type hub struct {
	produce func(ctx context.Context, publish func(event))

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	stop    context.CancelFunc // stops the running producer
	stopped chan struct{}      // closed when the last producer has returned
}

type subscriber struct {
	ch chan event
}

func newHub(produce func(ctx context.Context, publish func(event))) *hub {
	done := make(chan struct{})
	close(done)
	return &hub{produce: produce, subs: map[*subscriber]struct{}{}, stopped: done}
}

// subscribe adds a client; its channel is closed when it falls too far
// behind. Call unsubscribe when the client leaves.
func (h *hub) subscribe() *subscriber {
	s := &subscriber{ch: make(chan event, subscriberBuffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s] = struct{}{}
	if len(h.subs) == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		prev, done := h.stopped, make(chan struct{})
		h.stop, h.stopped = cancel, done
		go func() {
			defer close(done)
			<-prev // one producer at a time: the last one may still be finishing
			h.produce(ctx, h.publish)
		}()
	}
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *hub) removeLocked(s *subscriber) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	close(s.ch)
	if len(h.subs) == 0 && h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// publish sends ev to every client without waiting: a client whose buffer
// is full is dropped (its stream ends and the browser reconnects).
func (h *hub) publish(ev event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			h.removeLocked(s)
		}
	}
}

// clients is the number of connected clients.
func (h *hub) clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// idle is closed once no producer runs.
func (h *hub) idle() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop != nil {
		return nil
	}
	return h.stopped
}

// streamEvents serves GET /api/v1/events: a snapshot at once and then
// every EventInterval, and each new decision of any member as it is found.
func (a *api) streamEvents(c *gin.Context) {
	w := c.Writer
	if _, ok := w.(http.Flusher); !ok {
		jsonError(c, http.StatusInternalServerError, "streaming is not supported by this connection")
		return
	}
	rc := http.NewResponseController(w)
	sub := a.events.subscribe()
	defer a.events.unsubscribe(sub)
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	send := func(chunk []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteLimit))
		if _, err := w.Write(chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	first, err := a.snapshotEvent()
	if err != nil || !send(append([]byte(fmt.Sprintf("retry: %d\n\n", streamRetryMS)), formatEvent(first)...)) {
		return
	}
	beat := time.NewTicker(streamHeartbeat)
	defer beat.Stop()
	ctx := c.Request.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Closing: // the browser reconnects to another node, or to this one restarted
			return
		case ev, ok := <-sub.ch:
			if !ok || !send(formatEvent(ev)) {
				return
			}
		case <-beat.C:
			if !send([]byte(": keep-alive\n\n")) {
				return
			}
		}
	}
}

// formatEvent encodes ev in the text/event-stream format. The data is one
// line of JSON, so it needs no splitting.
func formatEvent(ev event) []byte {
	b := make([]byte, 0, len(ev.name)+len(ev.data)+16)
	b = append(b, "event: "...)
	b = append(b, ev.name...)
	b = append(b, "\ndata: "...)
	b = append(b, ev.data...)
	return append(b, "\n\n"...)
}

func (a *api) snapshotEvent() (event, error) {
	now := time.Now()
	data, err := json.Marshal(Snapshot{Status: a.raft.Status(now), Time: now, ServedBy: a.node.Name()})
	return event{name: eventSnapshot, data: data}, err
}

// produceEvents runs while the stream has clients: it publishes a snapshot
// every EventInterval and, on its own schedule so that a slow peer never
// delays a snapshot, each member's new decisions.
func (a *api) produceEvents(ctx context.Context, publish func(event)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.pollDecisions(ctx, publish)
	}()
	t := time.NewTicker(a.cfg.EventInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			ev, err := a.snapshotEvent()
			if err != nil {
				a.log.Warn("encode cluster snapshot", "err", err)
				continue
			}
			publish(ev)
		}
	}
}

// pollDecisions publishes every member's new decisions, oldest first, once
// per EventInterval. The first poll of a member only notes where its log
// ends: the dashboard reads the past from GET /api/v1/decisions.
func (a *api) pollDecisions(ctx context.Context, publish func(event)) {
	cursors := map[string]time.Time{} // member name → time of its newest decision seen
	t := time.NewTicker(a.cfg.EventInterval)
	defer t.Stop()
	for {
		a.pollDecisionsOnce(ctx, cursors, publish)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *api) pollDecisionsOnce(ctx context.Context, cursors map[string]time.Time, publish func(event)) {
	type result struct {
		name  string
		first bool
		recs  []tuner.DecisionRecord
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		results []result
		sem     = make(chan struct{}, peerFanout)
	)
	for _, m := range a.gossip.Members() {
		if !reachable(m) && m.Name != a.node.Name() {
			continue
		}
		since, seen := cursors[m.Name]
		limit := maxDecisionLimit
		if !seen {
			limit = 1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			recs, err := a.decisionsOf(ctx, m, since, limit)
			if err != nil {
				return // tried again next time; the snapshot shows the member's state
			}
			mu.Lock()
			results = append(results, result{name: m.Name, first: !seen, recs: recs})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	var fresh []tuner.DecisionRecord
	for _, r := range results {
		if len(r.recs) > 0 {
			cursors[r.name] = r.recs[0].Time // newest first
		} else if r.first {
			cursors[r.name] = time.Time{}
		}
		if !r.first {
			fresh = append(fresh, r.recs...)
		}
	}
	sortNewestFirst(fresh)
	for i := len(fresh) - 1; i >= 0; i-- {
		data, err := json.Marshal(fresh[i])
		if err != nil {
			continue
		}
		publish(event{name: eventDecision, data: data})
	}
}
