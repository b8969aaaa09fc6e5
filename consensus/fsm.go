package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// The commands the FSM applies. Each carries a request id; applying an id
// that was already applied is a no-op, so a client that lost track of a
// command (raft.ErrLeadershipLost) can send it again with the same id.
const (
	cmdInit      = "init"       // the first leader names the cluster and sets the initial limits
	cmdSetLimits = "set_limits" // a LimitsPatch
	// cmdAllocate was one budget epoch with every node's grant. Budgets
	// now go by lease, in the leader's memory; a log written by an older
	// version may still hold such entries, and they are skipped.
	cmdAllocate = "allocate"
)

type command struct {
	Type      string       `json:"type"`
	RequestID string       `json:"request_id"`
	ClusterID string       `json:"cluster_id,omitempty"`
	Limits    *Limits      `json:"limits,omitempty"`
	Patch     *LimitsPatch `json:"patch,omitempty"`
}

// fsmResponse is what Apply returns to the node that proposed the command.
type fsmResponse struct {
	err       error
	duplicate bool
}

// maxRequestIDs is how many recent request ids the FSM remembers.
const maxRequestIDs = 4096

// fsmState is everything the FSM holds; it is also the snapshot format.
type fsmState struct {
	ClusterID string   `json:"cluster_id"`
	Limits    Limits   `json:"limits"`
	LimitsSet bool     `json:"limits_set"`
	Requests  []string `json:"requests"` // recent request ids, oldest first
}

// fsm is the replicated state machine: the cluster id, the global limits
// and the recent request ids. Nothing in it grows with the number of nodes.
//
// Raft calls Apply, Snapshot and Restore from one goroutine, and Persist of a
// snapshot concurrently with Apply; the accessors (limits, clusterID) may be
// called from any goroutine. Apply does no I/O: it only changes memory.
type fsm struct {
	mu    sync.RWMutex
	state fsmState
	seen  map[string]struct{} // the ids in state.Requests
}

func newFSM() *fsm {
	return &fsm{seen: map[string]struct{}{}}
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
	defer f.mu.Unlock()
	return f.applyLocked(c)
}

// applyLocked applies one command and returns the response.
func (f *fsm) applyLocked(c command) *fsmResponse {
	if _, ok := f.seen[c.RequestID]; ok && c.RequestID != "" {
		return &fsmResponse{duplicate: true}
	}
	switch c.Type {
	case cmdInit:
		if f.state.ClusterID != "" {
			return &fsmResponse{duplicate: true}
		}
		if c.Limits != nil && !f.state.LimitsSet {
			if err := c.Limits.Validate(); err != nil {
				return &fsmResponse{err: err}
			}
			f.state.Limits, f.state.LimitsSet = *c.Limits, true
		}
		f.state.ClusterID = c.ClusterID
	case cmdSetLimits:
		if c.Patch == nil {
			return &fsmResponse{err: errors.New("set_limits without a patch")}
		}
		next := c.Patch.Apply(f.limitsLocked())
		if err := next.Validate(); err != nil {
			return &fsmResponse{err: err}
		}
		f.state.Limits, f.state.LimitsSet = next, true
	case cmdAllocate:
		return &fsmResponse{duplicate: true}
	default:
		return &fsmResponse{err: fmt.Errorf("unknown command %q", c.Type)}
	}
	f.remember(c.RequestID)
	return &fsmResponse{}
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
	s.Requests = append([]string(nil), s.Requests...)
	return &fsmSnapshot{state: s}, nil
}

// Restore implements raft.FSM: it replaces the whole state. A snapshot of
// an older version may hold an allocation; it is ignored.
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
