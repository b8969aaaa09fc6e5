package consensus

import (
	"sync"
	"time"
)

// budgetLogSize is how many budget decisions the leader keeps: at one
// decision per epoch (2 s by default) and only changes kept, hours.
const budgetLogSize = 512

// budgetLog keeps the recorded budget decisions (changes of budget or of
// reason), newest last, and counts every decision by reason.
type budgetLog struct {
	mu       sync.Mutex
	recorded []BudgetDecision
	counts   map[string]uint64
}

func (b *budgetLog) add(d BudgetDecision) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.counts == nil {
		b.counts = map[string]uint64{}
	}
	b.counts[d.Reason]++
	if !d.Recorded {
		return
	}
	if len(b.recorded) == budgetLogSize {
		copy(b.recorded, b.recorded[1:])
		b.recorded = b.recorded[:budgetLogSize-1]
	}
	b.recorded = append(b.recorded, d)
}

// list returns up to limit decisions at or after since, newest first.
func (b *budgetLog) list(limit int, since time.Time) []BudgetDecision {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []BudgetDecision{}
	for i := len(b.recorded) - 1; i >= 0 && len(out) < limit; i-- {
		if d := b.recorded[i]; !d.Time.Before(since) {
			out = append(out, d)
		}
	}
	return out
}

func (b *budgetLog) reasons() map[string]uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]uint64, len(b.counts))
	for k, v := range b.counts {
		out[k] = v
	}
	return out
}

// BudgetDecisions lists this server's recent budget decisions (those that
// changed the budget or its reason), newest first, at most limit, none
// before since. Only the leader makes them; ErrNotLeader elsewhere.
func (s *Server) BudgetDecisions(limit int, since time.Time) ([]BudgetDecision, error) {
	if s.table.Load() == nil || !s.IsLeader() {
		return nil, s.notLeader()
	}
	return s.budgetLog.list(limit, since), nil
}

// BudgetDecisionCounts counts this server's budget decisions by reason,
// every one, recorded or not, since it started.
func (s *Server) BudgetDecisionCounts() map[string]uint64 { return s.budgetLog.reasons() }
