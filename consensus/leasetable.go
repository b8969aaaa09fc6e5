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
	// Downstream is what the node saw of its sink since its last request:
	// the leader's budget controller learns the budget from it.
	Downstream DownstreamHealth `json:"downstream,omitzero"`
}

// DownstreamHealth is what a node saw of its sink over the interval since
// its last lease request, as rates.
type DownstreamHealth struct {
	IntervalMS int64   `json:"interval_ms"`
	GoodputRPS float64 `json:"goodput_rps"`     // records written within the SLO, per second
	WritesPS   float64 `json:"writes_per_s"`    // batch writes per second
	PushbackPS float64 `json:"pushback_per_s"`  // writes refused with 429 or 503, or timed out
	TooLargePS float64 `json:"too_large_per_s"` // writes refused with 413
	ErrorsPS   float64 `json:"errors_per_s"`    // every failed write
	WriteMS    float64 `json:"write_ms"`        // mean time of one write
	// BytesPS is the batch bytes written per second (refused writes
	// included); InFlightBytes the bytes in writes to the sink on average
	// over the interval (each write's bytes times its duration, over the
	// interval): with the other nodes', the load the downstream carried.
	BytesPS       float64 `json:"bytes_per_s,omitempty"`
	InFlightBytes float64 `json:"in_flight_bytes,omitempty"`
}

// valid reports whether every figure is a rate a sink can have.
func (d DownstreamHealth) valid() bool {
	for _, v := range []float64{d.GoodputRPS, d.WritesPS, d.PushbackPS, d.TooLargePS, d.ErrorsPS, d.WriteMS, d.BytesPS, d.InFlightBytes} {
		if !(v >= 0 && v <= 1e12) {
			return false
		}
	}
	return d.IntervalMS >= 0
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
	downstream   DownstreamHealth
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
	// budget is the learned budget in force (0: none yet, the ceiling
	// applies); it only binds in budget_mode=learned.
	budget int64
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

// need is the in-flight bytes the node's load asks for, from what it
// reported with its last request: twice the bytes it had in writes on
// average (room to grow: a node its grant holds back can double it at
// every refresh), plus its backlog (the records queued, at the bytes per
// record it wrote). 0 when it did not say (an older node, or one that
// wrote nothing): then what it wants stands.
//
// The shares are max-min fair over min(want, need). What a node wants is
// its tuner's batch size at full flush concurrency, and a tuner wants
// bigger batches at any load, so on wants alone every busy node weighs
// the same: the cluster bench's hot spot had the node offered five times
// the others' load refusing a third of it at admission, 750 records
// queued, granted 35-42 KiB, while the five together held 227 KiB of a
// 232 KiB budget with 68 KiB of it in writes. Doorman's clients ask for
// what their load needs; need is that, read from the node's figures.
func (e *leaseEntry) need() int64 {
	d := e.downstream
	if d.InFlightBytes <= 0 {
		return 0
	}
	return int64(2*d.InFlightBytes + queuedBytes(int64(e.health.QueueDepth), d.BytesPS, e.health.ThroughputRPS))
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
	e.name, e.want, e.has, e.health, e.downstream, e.seen = req.Name, max(req.Want, 0), max(req.Has, 0), req.Health, req.Downstream, now
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
	// The baseline comes from the ceiling (the learned budget's floor keeps
	// room for it); the grants share the budget in force.
	base := Baseline(l, n)
	budget := t.budgetLocked(l)
	var others int64
	demands := make([]Demand, 0, len(t.entries)+unknown)
	for id, o := range t.entries {
		if id != req.ID {
			others += o.held(now)
		}
		want := o.want
		if n := o.need(); n > 0 {
			want = min(want, n)
		}
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
		grant = max(min(e.has, budget-others), min(base, e.has))
	} else {
		shares := FairShares(budget, demands)
		grant = Grant(GrantInput{
			Budget: budget, Share: shares[req.ID], Baseline: base,
			Prev: e.held(now), OthersHeld: others, MaxGrowthPercent: l.MaxGrowthPercent, Has: e.has,
		})
	}
	// Nothing answered may exceed what is free beside the others' holdings:
	// not the grant, nor the baseline the node falls back to (which is
	// then what stays reserved for it). One byte is the least: the node
	// reads it as one record at a time. When the budget was lowered below
	// what the nodes hold, nothing is free: a node then keeps at most what
	// it holds (never more than its share of the lowered budget), so the
	// sum of holdings never grows, and falls to the lowered budget as
	// every node asks again within a refresh interval.
	free := budget - others
	if grant > free {
		grant = max(free, min(grant, e.held(now)))
	}
	grant = max(grant, 1)
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
		Epoch: t.epoch, Baseline: base, Budget: budget, Learning: learning, Limits: l,
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
	Need      int64          `json:"need"` // what its load asks for (0: not reported); its share is over min(want, need)
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
			ID: id, Name: e.name, Want: e.want, Need: e.need(), Has: e.has, Grant: e.grant, Baseline: e.baseline,
			Held: h, Fresh: now.Before(e.expires), ExpiresMS: e.expires.Sub(now).Milliseconds(), Health: e.health,
		})
	}
	sort.Slice(leases, func(i, j int) bool { return leases[i].ID < leases[j].ID })
	return leases, held
}

// budgetLocked is the budget in force under l: the learned one (at most
// the ceiling) in budget_mode=learned once the leader has learned one, the
// ceiling otherwise. t.mu is held.
func (t *LeaseTable) budgetLocked(l Limits) int64 {
	if l.LearnedBudget() && t.budget > 0 {
		return min(t.budget, l.ClusterBudgetBytes)
	}
	return l.ClusterBudgetBytes
}

// Budget is the budget in force under l.
func (t *LeaseTable) Budget(l Limits) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.budgetLocked(l)
}

// SetBudget puts a learned budget in force. Lowering it takes nothing from
// a node at once: each keeps what it holds until it asks again (Request).
func (t *LeaseTable) SetBudget(b int64) {
	t.mu.Lock()
	t.budget = max(b, 0)
	t.mu.Unlock()
}

// Observe aggregates the health the nodes reported within one lease (TTL
// plus the skew margin) before now into the budget controller's
// observation; alive are the member ids gossip knows (for the floor).
func (t *LeaseTable) Observe(now time.Time, l Limits, alive []string, interval time.Duration) BudgetObservation {
	ttl := l.LeaseTTL()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.entries)
	for _, id := range alive {
		if _, ok := t.entries[id]; !ok {
			n++
		}
	}
	o := BudgetObservation{
		Now: now, Interval: interval, Ceiling: l.ClusterBudgetBytes, Floor: LearnedFloor(l, n),
		SLOms: l.SLOms, Fixed: !l.LearnedBudget(),
	}
	var writeTime float64
	for _, e := range t.entries {
		if now.Sub(e.seen) > ttl+SkewMargin(ttl) {
			continue
		}
		d := e.downstream
		o.Nodes++
		o.WantBytes += e.want
		o.HasBytes += e.has
		o.GoodputRPS += d.GoodputRPS
		o.ThroughputRPS += e.health.ThroughputRPS
		o.WritesPS += d.WritesPS
		o.PushbackPS += d.PushbackPS
		o.TooLargePS += d.TooLargePS
		o.ErrorsPS += d.ErrorsPS
		o.P99ms = max(o.P99ms, e.health.P99ms)
		o.BytesPS += d.BytesPS
		o.InFlightBytes += d.InFlightBytes
		o.QueuedRecords += int64(max(e.health.QueueDepth, 0))
		writeTime += d.WriteMS * d.WritesPS
	}
	if o.WritesPS > 0 {
		o.WriteMS = writeTime / o.WritesPS
	}
	return o
}
