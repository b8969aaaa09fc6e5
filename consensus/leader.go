package consensus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/hashicorp/raft"
)

// monitorLeadership runs the leader duties while this node leads, as
// Consul's and Nomad's monitorLeadership do: raft signals each change of
// leadership on LeaderCh (it may coalesce signals, so both directions are
// handled idempotently).
func (s *Server) monitorLeadership() {
	defer s.wg.Done()
	var run *leaderRun
	stop := func() {
		if run != nil {
			run.cancel()
			<-run.done
			run = nil
		}
	}
	defer stop()
	for {
		select {
		case <-s.shutdownCh:
			return
		case isLeader := <-s.raft.LeaderCh():
			switch {
			case !isLeader && run != nil:
				s.log.Info("lost leadership")
				stop()
			case isLeader && run == nil:
				run = s.startLeader()
			}
		}
	}
}

// leaderRun is one spell of leadership: the leader loop and how to end it.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Server) startLeader() *leaderRun {
	ctx, cancel := context.WithCancel(context.Background())
	run := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		s.leaderLoop(ctx)
	}()
	return run
}

// leaderLoop is the leader's work: make the FSM current, name the cluster
// on first leadership, then reconcile membership and run budget epochs until
// ctx ends with the leadership.
func (s *Server) leaderLoop(ctx context.Context) {
	s.log.Info("became leader", "term", s.raft.CurrentTerm())
	// A barrier makes the FSM reflect every entry of earlier terms before
	// this leader reads it.
	for {
		err := s.raft.Barrier(s.timing.ApplyTimeout).Error()
		if err == nil {
			break
		}
		s.log.Warn("leader barrier failed; retrying", "err", err)
		if !sleepCtx(ctx, s.timing.ReconcileInterval) {
			return
		}
	}
	for s.fsm.clusterID() == "" {
		limits := DefaultLimits()
		if s.cfg.InitialLimits != nil {
			limits = *s.cfg.InitialLimits
		}
		err := s.apply(ctx, command{Type: cmdInit, RequestID: "init/" + s.id, ClusterID: NewRequestID(), Limits: &limits}, s.timing.ApplyTimeout)
		if err == nil {
			break
		}
		s.log.Warn("initialising the cluster failed; retrying", "err", err)
		if !sleepCtx(ctx, s.timing.ReconcileInterval) {
			return
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.reconcileLoop(ctx) }()
	go func() { defer wg.Done(); s.epochLoop(ctx) }()
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reconcileLoop brings the Raft configuration in line with gossip: at once,
// on every join, leave or failure, and every ReconcileInterval.
func (s *Server) reconcileLoop(ctx context.Context) {
	missing := map[string]time.Time{}
	t := time.NewTicker(s.timing.ReconcileInterval)
	defer t.Stop()
	for {
		s.reconcile(ctx, missing)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.reconcileCh:
		}
	}
}

func (s *Server) reconcile(ctx context.Context, missing map[string]time.Time) {
	cfg, err := s.configuration()
	if err != nil {
		s.log.Warn("reconcile: cannot read raft configuration", "err", err)
		return
	}
	now := time.Now()
	members := s.gossip.Members()
	known := map[string]bool{}
	for _, m := range members {
		known[m.ID] = true
	}
	inConfig := map[string]bool{}
	for _, srv := range cfg.Servers {
		id := string(srv.ID)
		inConfig[id] = true
		if known[id] {
			delete(missing, id)
		} else if _, ok := missing[id]; !ok {
			missing[id] = now
		}
	}
	for id := range missing {
		if !inConfig[id] {
			delete(missing, id)
		}
	}
	changes := planMembership(membershipInput{
		Now:             now,
		LeaderID:        s.id,
		LeaderLastIndex: s.raft.LastIndex(),
		Servers:         cfg.Servers,
		Members:         members,
		MissingSince:    missing,
		Policy: membershipPolicy{
			StableFor: s.timing.StableFor,
			DeadGrace: s.timing.DeadGrace,
			MaxVoters: s.timing.MaxVoters,
			MaxLag:    s.timing.MaxLag,
		},
	})
	for _, c := range changes {
		if ctx.Err() != nil {
			return
		}
		var f raft.IndexFuture
		id, addr := raft.ServerID(c.ID), raft.ServerAddress(c.Addr)
		switch c.Kind {
		case changeRemove:
			f = s.raft.RemoveServer(id, 0, s.timing.ApplyTimeout)
		case changeAddNonvoter:
			f = s.raft.AddNonvoter(id, addr, 0, s.timing.ApplyTimeout)
		case changeDemote:
			f = s.raft.DemoteVoter(id, 0, s.timing.ApplyTimeout)
		case changePromote:
			f = s.raft.AddVoter(id, addr, 0, s.timing.ApplyTimeout)
		}
		if err := f.Error(); err != nil {
			s.log.Warn("raft membership change failed", "change", c.Kind.String(), "server", c.ID, "err", err)
			return // replan from the new configuration next round
		}
		s.log.Info("raft membership changed", "change", c.Kind.String(), "server", c.ID, "addr", c.Addr, "reason", c.Reason)
	}
}

// epochLoop commits a budget allocation every epoch_ms. For the first lease
// TTL of its leadership it is in learning mode: it re-commits the grants in
// force (Relearn) so the nodes' leases stay fresh while it watches; after
// that it allocates.
func (s *Server) epochLoop(ctx context.Context) {
	learnUntil := time.Now().Add(s.fsm.limits().LeaseTTL())
	for {
		s.runEpoch(ctx, time.Now().Before(learnUntil))
		if !sleepCtx(ctx, s.fsm.limits().Epoch()) {
			return
		}
	}
}

func (s *Server) runEpoch(ctx context.Context, learning bool) {
	limits := s.fsm.limits()
	prev := s.fsm.allocation()
	demands := s.demands()
	var grants Grants
	if learning {
		grants = Relearn(limits, demands, prev.Grants)
	} else {
		grants = Allocate(limits, demands, prev.Grants)
	}
	a := Allocation{
		Epoch:    prev.Epoch + 1,
		Grants:   grants,
		Floor:    Floor(limits, len(grants)),
		Budget:   limits.ClusterBudgetBytes,
		Learning: learning,
		LeaderID: s.id,
	}
	start := time.Now()
	err := s.apply(ctx, command{Type: cmdAllocate, RequestID: formatEpochID(s.id, a.Epoch), Allocation: &a}, limits.Epoch())
	switch {
	case err == nil:
		s.epochCommit.Store(int64(time.Since(start)))
	case errors.Is(err, ErrNotLeader), ctx.Err() != nil:
	default:
		s.log.Warn("budget epoch not committed", "epoch", a.Epoch, "err", err)
	}
}

// demands are the budget inputs: every member that is alive or suspect, by
// its gossiped wants and haves, and every dead member still in the Raft
// configuration with a want of nothing, so its floor stays reserved until it
// is removed (a cut-off node runs on that floor).
func (s *Server) demands() []NodeDemand {
	inRaft := map[string]bool{}
	if cfg, err := s.configuration(); err == nil {
		for _, srv := range cfg.Servers {
			inRaft[string(srv.ID)] = true
		}
	}
	var out []NodeDemand
	for _, m := range s.gossip.Members() {
		if m.ID == "" {
			continue
		}
		switch m.Status {
		case cluster.StatusAlive, cluster.StatusSuspect:
			out = append(out, NodeDemand{ID: m.ID, Want: m.Health.WantBytes, Has: m.Health.HasBytes})
		case cluster.StatusDead:
			if inRaft[m.ID] {
				out = append(out, NodeDemand{ID: m.ID, Has: m.Health.HasBytes})
			}
		}
	}
	return out
}
