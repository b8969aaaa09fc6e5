package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Allocation is one committed budget epoch: every node's grant.
type Allocation struct {
	Epoch    uint64 `json:"epoch"`
	Grants   Grants `json:"grants"`
	Floor    int64  `json:"floor_bytes"`  // the per-node floor, and the stale-lease baseline
	Budget   int64  `json:"budget_bytes"` // the cluster budget it was made for
	Learning bool   `json:"learning"`     // re-committed by a new leader in learning mode
	LeaderID string `json:"leader_id"`
	Index    uint64 `json:"index"` // the Raft index it was committed at
}

func (a Allocation) clone() Allocation {
	a.Grants = a.Grants.Clone()
	return a
}

// The commands the FSM applies. Each carries a request id; applying an id
// that was already applied is a no-op, so a client that lost track of a
// command (raft.ErrLeadershipLost) can send it again with the same id.
const (
	cmdInit      = "init"       // the first leader names the cluster and sets the initial limits
	cmdSetLimits = "set_limits" // a LimitsPatch
	cmdAllocate  = "allocate"   // one budget epoch
)

type command struct {
	Type       string       `json:"type"`
	RequestID  string       `json:"request_id"`
	ClusterID  string       `json:"cluster_id,omitempty"`
	Limits     *Limits      `json:"limits,omitempty"`
	Patch      *LimitsPatch `json:"patch,omitempty"`
	Allocation *Allocation  `json:"allocation,omitempty"`
}

// fsmResponse is what Apply returns to the node that proposed the command.
type fsmResponse struct {
	err       error
	duplicate bool
}

// errStaleEpoch answers an allocation whose epoch is not newer than the one
// in force: a deposed leader's late proposal.
var errStaleEpoch = errors.New("allocation epoch is not newer than the current one")

// maxRequestIDs is how many recent request ids the FSM remembers.
const maxRequestIDs = 4096

// fsmState is everything the FSM holds; it is also the snapshot format.
type fsmState struct {
	ClusterID  string     `json:"cluster_id"`
	Limits     Limits     `json:"limits"`
	LimitsSet  bool       `json:"limits_set"`
	Allocation Allocation `json:"allocation"`
	Requests   []string   `json:"requests"` // recent request ids, oldest first
}

// fsm is the replicated state machine: the cluster id, the global limits,
// the current allocation and the recent request ids.
//
// Raft calls Apply, Snapshot and Restore from one goroutine, and Persist of a
// snapshot concurrently with Apply; the accessors (limits, allocation,
// clusterID) may be called from any goroutine. Apply does no I/O: it only
// changes memory and renews the local lease, whose clock reading is not I/O.
type fsm struct {
	mu    sync.RWMutex
	state fsmState
	seen  map[string]struct{} // the ids in state.Requests

	localID string
	lease   *Lease
	now     func() time.Time
}

func newFSM(localID string, lease *Lease, now func() time.Time) *fsm {
	if now == nil {
		now = time.Now
	}
	return &fsm{seen: map[string]struct{}{}, localID: localID, lease: lease, now: now}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return &fsmResponse{err: fmt.Errorf("decode command at index %d: %w", l.Index, err)}
	}
	f.mu.Lock()
	resp, applied, shrunk := f.applyLocked(c, l.Index)
	limits := f.limitsLocked()
	floor := Floor(limits, len(f.state.Allocation.Grants))
	f.mu.Unlock()

	if f.lease != nil {
		if applied != nil {
			f.renewLease(*applied, limits, l.AppendedAt)
		}
		if shrunk != nil {
			f.lease.Cap(shrunk.Grants[f.localID], shrunk.Floor)
		}
		if (c.Type == cmdInit || c.Type == cmdSetLimits) && resp.err == nil && !resp.duplicate {
			// A node that has no grant yet (it just joined, or the cluster
			// is new) runs on the baseline: it must not be the default
			// floor when the cluster's floor, or its whole budget, is
			// smaller. A higher floor waits for the next epoch, which
			// reserves it.
			f.lease.Cap(math.MaxInt64, floor)
		}
	}
	return resp
}

// renewLease renews the local lease from an allocation just applied, unless
// the entry is older than the lease TTL by the leader's stamp: that is a log
// replayed after a restart, not a fresh epoch.
func (f *fsm) renewLease(a Allocation, limits Limits, appendedAt time.Time) {
	f.lease.SetBaseline(a.Floor)
	bytes, ok := a.Grants[f.localID]
	if !ok {
		return
	}
	now := f.now()
	ttl := limits.LeaseTTL()
	if !appendedAt.IsZero() && now.Sub(appendedAt) >= ttl {
		return
	}
	f.lease.Renew(now, a.Epoch, bytes, ttl, a.Floor)
}

// applyLocked applies one command and returns the response, a new
// allocation, and an allocation shrunk to fit a smaller budget.
func (f *fsm) applyLocked(c command, index uint64) (resp *fsmResponse, applied, shrunk *Allocation) {
	if _, ok := f.seen[c.RequestID]; ok && c.RequestID != "" {
		return &fsmResponse{duplicate: true}, nil, nil
	}
	switch c.Type {
	case cmdInit:
		if f.state.ClusterID != "" {
			return &fsmResponse{duplicate: true}, nil, nil
		}
		if c.Limits != nil && !f.state.LimitsSet {
			if err := c.Limits.Validate(); err != nil {
				return &fsmResponse{err: err}, nil, nil
			}
			f.state.Limits, f.state.LimitsSet = *c.Limits, true
		}
		f.state.ClusterID = c.ClusterID
	case cmdSetLimits:
		if c.Patch == nil {
			return &fsmResponse{err: errors.New("set_limits without a patch")}, nil, nil
		}
		next := c.Patch.Apply(f.limitsLocked())
		if err := next.Validate(); err != nil {
			return &fsmResponse{err: err}, nil, nil
		}
		f.state.Limits, f.state.LimitsSet = next, true
		if a, ok := shrinkToBudget(f.state.Allocation, next); ok {
			f.state.Allocation = a
			shrunk = &a
		}
	case cmdAllocate:
		if c.Allocation == nil {
			return &fsmResponse{err: errors.New("allocate without an allocation")}, nil, nil
		}
		a := c.Allocation.clone()
		if a.Epoch <= f.state.Allocation.Epoch {
			return &fsmResponse{err: errStaleEpoch}, nil, nil
		}
		if budget := f.limitsLocked().ClusterBudgetBytes; a.Grants.Sum() > budget {
			return &fsmResponse{err: fmt.Errorf("allocation of epoch %d grants %d bytes, over the cluster budget %d", a.Epoch, a.Grants.Sum(), budget)}, nil, nil
		}
		a.Index = index
		f.state.Allocation = a
		applied = &a
	default:
		return &fsmResponse{err: fmt.Errorf("unknown command %q", c.Type)}, nil, nil
	}
	f.remember(c.RequestID)
	return &fsmResponse{}, applied, shrunk
}

// shrinkToBudget scales the grants in force down in proportion when a
// smaller budget no longer holds them, so the sum of the grants stays within
// the budget from the moment the limits change, not from the next epoch.
func shrinkToBudget(a Allocation, l Limits) (Allocation, bool) {
	sum := a.Grants.Sum()
	if sum <= l.ClusterBudgetBytes {
		return a, false
	}
	a = a.clone()
	for id, g := range a.Grants {
		a.Grants[id] = mulDiv(g, l.ClusterBudgetBytes, sum)
	}
	a.Budget = l.ClusterBudgetBytes
	a.Floor = min(a.Floor, Floor(l, len(a.Grants)))
	return a, true
}

func (f *fsm) remember(id string) {
	if id == "" {
		return
	}
	f.state.Requests = append(f.state.Requests, id)
	f.seen[id] = struct{}{}
	if over := len(f.state.Requests) - maxRequestIDs; over > 0 {
		for _, old := range f.state.Requests[:over] {
			delete(f.seen, old)
		}
		f.state.Requests = append([]string(nil), f.state.Requests[over:]...)
	}
}

func (f *fsm) limitsLocked() Limits {
	if !f.state.LimitsSet {
		return DefaultLimits()
	}
	return f.state.Limits
}

// limits are the limits in force (the defaults until some are committed).
func (f *fsm) limits() Limits {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.limitsLocked()
}

// limitsSet reports whether limits were ever committed.
func (f *fsm) limitsSet() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.LimitsSet
}

func (f *fsm) allocation() Allocation {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Allocation.clone()
}

func (f *fsm) clusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.ClusterID
}

// Snapshot implements raft.FSM: it copies the state, and Persist writes the
// copy while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.state
	s.Allocation = s.Allocation.clone()
	s.Requests = append([]string(nil), s.Requests...)
	return &fsmSnapshot{state: s}, nil
}

// Restore implements raft.FSM: it replaces the whole state. It does not renew
// the lease: a snapshot is history, not a fresh epoch.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s fsmState
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if s.LimitsSet {
		if err := s.Limits.Validate(); err != nil {
			return fmt.Errorf("restore snapshot: %w", err)
		}
	}
	seen := make(map[string]struct{}, len(s.Requests))
	for _, id := range s.Requests {
		seen[id] = struct{}{}
	}
	f.mu.Lock()
	f.state, f.seen = s, seen
	f.mu.Unlock()
	if f.lease != nil && s.Allocation.Epoch > 0 {
		f.lease.SetBaseline(s.Allocation.Floor)
	} else if f.lease != nil && s.LimitsSet {
		f.lease.Cap(math.MaxInt64, Floor(s.Limits, 0))
	}
	return nil
}

type fsmSnapshot struct{ state fsmState }

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.state); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}
