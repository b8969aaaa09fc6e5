package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/tuner"
)

// Decision query bounds.
const (
	defaultDecisionLimit = 100
	maxDecisionLimit     = 1000
	// peerFanout is how many other nodes are asked at once.
	peerFanout = 16
)

// DecisionsView is the body of GET /api/v1/decisions.
type DecisionsView struct {
	// Decisions, newest first.
	Decisions []tuner.DecisionRecord `json:"decisions"`
	// Unreachable lists the members whose decisions are missing: they are
	// down or did not answer in time.
	Unreachable []PeerFailure `json:"unreachable"`
}

// PeerFailure says why a member's part of an answer is missing.
type PeerFailure struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

// decisionWindow reads the limit= and since= of a decisions query (the
// defaults when absent); on bad input it answers 400 and ok is false.
func decisionWindow(c *gin.Context, q url.Values) (limit int, since time.Time, ok bool) {
	limit = defaultDecisionLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxDecisionLimit {
			jsonError(c, http.StatusBadRequest, "limit must be a whole number from 1 to "+strconv.Itoa(maxDecisionLimit)+", got "+quote(s))
			return 0, time.Time{}, false
		}
		limit = n
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			jsonError(c, http.StatusBadRequest, "since must be an RFC 3339 time such as 2026-01-02T15:04:05.999Z, got "+quote(s))
			return 0, time.Time{}, false
		}
		since = t
	}
	return limit, since, true
}

// getDecisions serves GET /api/v1/decisions?node=&limit=&since=: the tuner
// decisions of one node (asked over HTTP when it is another one) or, with
// no node, of every member, merged newest first.
func (a *api) getDecisions(c *gin.Context) {
	q := c.Request.URL.Query()
	limit, since, ok := decisionWindow(c, q)
	if !ok {
		return
	}
	name := q.Get("node")
	if len(name) > 256 {
		jsonError(c, http.StatusBadRequest, "node: a node name is at most 256 bytes")
		return
	}
	view := DecisionsView{Decisions: []tuner.DecisionRecord{}, Unreachable: []PeerFailure{}}
	switch {
	case name == a.node.Name() || (name == "" && isForwarded(c)):
		view.Decisions = a.localDecisions(since, limit)
	case name != "":
		m, ok := a.peerToAsk(c, name, "its decisions are kept only on that node")
		if !ok {
			return
		}
		recs, err := a.remoteDecisions(c.Request.Context(), m, since, limit)
		if err != nil {
			a.peerFailed(c, name, err)
			return
		}
		view.Decisions = recs
	default:
		view = a.clusterDecisions(c.Request.Context(), since, limit)
	}
	c.JSON(http.StatusOK, view)
}

// localDecisions are this node's decisions after since, newest first.
func (a *api) localDecisions(since time.Time, limit int) []tuner.DecisionRecord {
	recs := a.node.Decisions().Recent(a.node.Name(), 0)
	out := make([]tuner.DecisionRecord, 0, min(limit, len(recs)))
	for _, r := range recs {
		if len(out) == limit || (!since.IsZero() && !r.Time.After(since)) {
			break
		}
		out = append(out, r)
	}
	return out
}

// remoteDecisions asks member m for its decisions after since.
func (a *api) remoteDecisions(ctx context.Context, m cluster.Member, since time.Time, limit int) ([]tuner.DecisionRecord, error) {
	q := url.Values{"node": {m.Name}, "limit": {strconv.Itoa(limit)}}
	if !since.IsZero() {
		q.Set("since", since.Format(time.RFC3339Nano))
	}
	var v DecisionsView
	if err := a.peers.getJSON(ctx, m.HTTPAddr, "/api/v1/decisions", q, &v); err != nil {
		return nil, err
	}
	return v.Decisions, nil
}

// decisionsOf fetches one member's decisions after since, here or over
// HTTP.
func (a *api) decisionsOf(ctx context.Context, m cluster.Member, since time.Time, limit int) ([]tuner.DecisionRecord, error) {
	if m.Name == a.node.Name() {
		return a.localDecisions(since, limit), nil
	}
	return a.remoteDecisions(ctx, m, since, limit)
}

// clusterDecisions gathers every member's decisions, asking the others at
// once, each within the peer timeout, and merges them newest first.
func (a *api) clusterDecisions(ctx context.Context, since time.Time, limit int) DecisionsView {
	view := DecisionsView{Decisions: a.localDecisions(since, limit), Unreachable: []PeerFailure{}}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, peerFanout)
	)
	for _, m := range a.gossip.Members() {
		if m.Name == a.node.Name() {
			continue
		}
		if !reachable(m) {
			view.Unreachable = append(view.Unreachable, PeerFailure{Node: m.Name, Error: "node is " + string(m.Status)})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			recs, err := a.remoteDecisions(ctx, m, since, limit)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				view.Unreachable = append(view.Unreachable, PeerFailure{Node: m.Name, Error: err.Error()})
				return
			}
			view.Decisions = append(view.Decisions, recs...)
		}()
	}
	wg.Wait()
	sortNewestFirst(view.Decisions)
	if len(view.Decisions) > limit {
		view.Decisions = view.Decisions[:limit]
	}
	slices.SortFunc(view.Unreachable, func(x, y PeerFailure) int { return strings.Compare(x.Node, y.Node) })
	return view
}

func sortNewestFirst(recs []tuner.DecisionRecord) {
	slices.SortStableFunc(recs, func(x, y tuner.DecisionRecord) int {
		if c := y.Time.Compare(x.Time); c != 0 {
			return c
		}
		return strings.Compare(x.Node, y.Node)
	})
}
