package consensus

import (
	"sort"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
)

// LeaseRequest is the body of POST /api/v1/lease: a node asks for its share
// of the cluster budget and reports its health.
type LeaseRequest struct {
	ID     string         `json:"id"`
	Name   string         `json:"name,omitempty"`
	Want   int64          `json:"want"` // in-flight batch bytes the node would like
	Has    int64          `json:"has"`  // the grant it obeys now
	Health cluster.Health `json:"health"`
}

// LeaseAnswer is the leader's answer to a LeaseRequest.
type LeaseAnswer struct {
	Grant     int64      `json:"grant"`
	TTLms     int64      `json:"ttl_ms"`
	RefreshMS int64      `json:"refresh_ms"`
	Epoch     uint64     `json:"epoch"` // the leader's Raft term: grows with every change of leader
	Leader    LeaderInfo `json:"leader"`
	// Baseline is what the node falls back to when its lease expires.
	Baseline  int64  `json:"baseline"`
	Budget    int64  `json:"budget"`
	Learning  bool   `json:"learning"`
	ClusterID string `json:"cluster_id"`
	Limits    Limits `json:"limits"`
}

// leaseEntry is what the leader knows of one node's lease.
type leaseEntry struct {
	name     string
	want     int64
	has      int64
	grant    int64
	baseline int64     // the baseline it was last given
	expires  time.Time // on the leader's clock, skew margin included
	// lowered is a larger grant the node may still obey: the leader lowered
	// it, and the node has not yet asked again reporting that it obeys
	// the lower one. It counts as held until then, or until its lease
	// (loweredUntil) expires.
	lowered      int64
	loweredUntil time.Time
	seen         time.Time
	health       cluster.Health
}

// held is what the node may be holding at now: its grant while its lease
// is unexpired, its baseline after.
func (e *leaseEntry) held(now time.Time) int64 {
	h := e.baseline
	if now.Before(e.expires) {
		h = max(h, e.grant)
	}
	if now.Before(e.loweredUntil) {
		h = max(h, e.lowered)
	}
	return h
}

// LeaseTable is the leader's table of leases, in memory only (nothing per
// node goes to the Raft log), with Doorman's rules:
//
//   - it never hands out capacity still held under an unexpired lease:
//     a grant is at most the budget less what every other node may hold;
//   - a lease expires on the leader's clock TTL plus a skew margin after
//     the request arrived, while the node stops trusting it TTL after it
//     sent the request, so the node always gives up first;
//   - a new leader knows nothing of the grants in force, so for one TTL
//     (plus the margin) it is in learning mode: it gives a node no more
//     than the node says it has;
//   - every node's safe baseline, which a node without a fresh lease falls
//     back to, stays reserved: the leader counts every member it has not
//     heard from (alive, suspect or dead in gossip: a node cut off runs on
//     its baseline) at the baseline, and never answers a grant, or a
//     baseline, that does not fit beside what the others may hold.
//
// The time is always passed in. All methods are safe for concurrent use.
type LeaseTable struct {
	mu         sync.Mutex
	entries    map[string]*leaseEntry
	epoch      uint64
	learnUntil time.Time
}

// joinHeadroom is what the leader keeps free for nodes that joined so
// recently that its gossip view does not show them yet: each runs on
// InitialBaseline (one byte) until its first lease.
const joinHeadroom = 64 * InitialBaseline

// SkewMargin is how long after a lease's TTL the leader still counts its
// grant as held: room for the node's clock to run slow.
func SkewMargin(ttl time.Duration) time.Duration { return max(ttl/5, 100*time.Millisecond) }

// NewLeaseTable starts a new leader's table at now, for its epoch (term),
// in learning mode for one TTL plus the skew margin.
func NewLeaseTable(now time.Time, epoch uint64, ttl time.Duration) *LeaseTable {
	return &LeaseTable{entries: map[string]*leaseEntry{}, epoch: epoch, learnUntil: now.Add(ttl + SkewMargin(ttl))}
}

// endLearning ends learning mode at once: for the first leader of a new
// cluster, which knows that no grant was handed out before it.
func (t *LeaseTable) endLearning(now time.Time) {
	t.mu.Lock()
	t.learnUntil = now
	t.mu.Unlock()
}

// Learning reports whether the table is in learning mode at now.
func (t *LeaseTable) Learning(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return now.Before(t.learnUntil)
}

// Request answers one lease request at now (the moment it arrived), given
// the limits in force and the ids of the members gossip knows and that did
// not leave (the nodes that may be running without having asked this
// leader). The caller fills in Leader and ClusterID.
func (t *LeaseTable) Request(now time.Time, req LeaseRequest, l Limits, alive []string) LeaseAnswer {
	ttl := l.LeaseTTL()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[req.ID]
	if !ok {
		e = &leaseEntry{baseline: InitialBaseline}
		t.entries[req.ID] = e
	}
	e.name, e.want, e.has, e.health, e.seen = req.Name, max(req.Want, 0), max(req.Has, 0), req.Health, now
	if e.lowered > 0 && e.has <= e.grant {
		e.lowered = 0 // it obeys the lowered grant now
	}

	n := len(t.entries)
	unknown := 0
	for _, id := range alive {
		if _, ok := t.entries[id]; !ok {
			n++
			unknown++
		}
	}
	base := Baseline(l, n)
	var others int64
	demands := make([]Demand, 0, len(t.entries)+unknown)
	for id, o := range t.entries {
		if id != req.ID {
			others += o.held(now)
		}
		want := o.want
		if now.Sub(o.seen) > ttl+SkewMargin(ttl) {
			want = 0 // not heard from within a lease: wants its baseline
		}
		demands = append(demands, Demand{ID: id, Want: want, Baseline: base})
	}
	others += int64(unknown)*base + joinHeadroom
	for _, id := range alive {
		if _, ok := t.entries[id]; !ok {
			demands = append(demands, Demand{ID: id, Baseline: base})
		}
	}
	learning := now.Before(t.learnUntil)
	var grant int64
	if learning {
		// Only what the node already had from the old leader (their sum
		// was within the budget), within what is free.
		grant = max(min(e.has, l.ClusterBudgetBytes-others), min(base, e.has))
	} else {
		shares := FairShares(l.ClusterBudgetBytes, demands)
		grant = Grant(GrantInput{
			Budget: l.ClusterBudgetBytes, Share: shares[req.ID], Baseline: base,
			Prev: e.held(now), OthersHeld: others, MaxGrowthPercent: l.MaxGrowthPercent,
		})
	}
	// Nothing answered may exceed what is free beside the others' holdings:
	// not the grant, nor the baseline the node falls back to (which is
	// then what stays reserved for it). One byte is the least: the node
	// reads it as one record at a time.
	free := l.ClusterBudgetBytes - others
	grant = max(min(grant, free), 1)
	base = min(base, grant)
	// A grant below what the node holds under its unexpired lease binds
	// the node once the answer reaches it; until it says so, the larger
	// one stays counted (Doorman: never hand out what may still be held).
	if old := e.held(now); grant < old && now.Before(e.expires) {
		e.lowered, e.loweredUntil = old, e.expires
	}
	e.grant, e.baseline, e.expires = grant, base, now.Add(ttl+SkewMargin(ttl))
	return LeaseAnswer{
		Grant: grant, TTLms: ttl.Milliseconds(), RefreshMS: (ttl / 3).Milliseconds(),
		Epoch: t.epoch, Baseline: base, Budget: l.ClusterBudgetBytes, Learning: learning, Limits: l,
	}
}

// Forget drops the entries of nodes that left the cluster and whose lease
// has expired, and of nodes not heard from for forgetAfter (gone, or cut
// off so long that their baseline stops being reserved): ids lists the
// members gossip shows as left.
func (t *LeaseTable) Forget(now time.Time, left []string, forgetAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range left {
		if e, ok := t.entries[id]; ok && !now.Before(e.expires) {
			delete(t.entries, id)
		}
	}
	for id, e := range t.entries {
		if now.Sub(e.seen) > forgetAfter && !now.Before(e.expires) {
			delete(t.entries, id)
		}
	}
}

// LeaseState is one node's lease as the leader has it, for the API.
type LeaseState struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Want      int64          `json:"want"`
	Has       int64          `json:"has"`
	Grant     int64          `json:"grant"`
	Baseline  int64          `json:"baseline"`
	Held      int64          `json:"held"` // what the leader counts it as holding now
	Fresh     bool           `json:"fresh"`
	ExpiresMS int64          `json:"expires_in_ms"`
	Health    cluster.Health `json:"health"`
}

// Snapshot lists the leases at now, by id, and the sum of what the nodes
// may be holding (the figure the budget bounds).
func (t *LeaseTable) Snapshot(now time.Time) (leases []LeaseState, held int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, e := range t.entries {
		h := e.held(now)
		held += h
		leases = append(leases, LeaseState{
			ID: id, Name: e.name, Want: e.want, Has: e.has, Grant: e.grant, Baseline: e.baseline,
			Held: h, Fresh: now.Before(e.expires), ExpiresMS: e.expires.Sub(now).Milliseconds(), Health: e.health,
		})
	}
	sort.Slice(leases, func(i, j int) bool { return leases[i].ID < leases[j].ID })
	return leases, held
}
