package consensus

import (
	"context"

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
	newCluster := s.fsm.clusterID() == ""
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
	// The lease table starts empty, in learning mode: this leader does not
	// know the grants the last one gave.
	now := time.Now()
	table := NewLeaseTable(now, s.raft.CurrentTerm(), s.fsm.limits().LeaseTTL())
	if newCluster {
		table.endLearning(now) // nothing was granted before the first leader
	} else {
		s.log.Info("lease table in learning mode", "for", s.fsm.limits().LeaseTTL()+SkewMargin(s.fsm.limits().LeaseTTL()))
	}
	s.table.Store(table)
	defer s.table.Store(nil)
	budgetDone := make(chan struct{})
	go func() {
		defer close(budgetDone)
		s.budgetLoop(ctx, table)
	}()
	defer func() { <-budgetDone }()
	s.pilot.Start(ctx)
	defer func() { <-s.pilot.Stop() }()
	s.reconcileLoop(ctx)
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

// forgetAfter is how long the leader keeps reserving the baseline of a node
// it has not heard from and gossip does not show as left.
const forgetAfter = time.Hour

// reconcileLoop adds the servers gossip shows to Raft as non-voters (at
// once on a server's join, and every ReconcileInterval); autopilot promotes
// them once stable and removes dead ones. It also forgets the leases of
// nodes that left.
func (s *Server) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(s.timing.ReconcileInterval)
	defer t.Stop()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.reconcileCh:
		}
	}
}

func (s *Server) reconcile(ctx context.Context) {
	cfg, err := s.configuration()
	if err != nil {
		s.log.Warn("reconcile: cannot read raft configuration", "err", err)
		return
	}
	members := s.gossip.Members()
	var left []string
	for _, m := range members {
		if m.Status == cluster.StatusLeft {
			left = append(left, m.ID)
		}
	}
	if t := s.table.Load(); t != nil {
		t.Forget(time.Now(), left, forgetAfter)
	}
	for _, c := range planAdditions(cfg.Servers, members) {
		if ctx.Err() != nil {
			return
		}
		f := s.raft.AddNonvoter(raft.ServerID(c.ID), raft.ServerAddress(c.Addr), 0, s.timing.ApplyTimeout)
		if err := f.Error(); err != nil {
			s.log.Warn("adding a server to raft failed", "server", c.ID, "err", err)
			return
		}
		s.log.Info("raft membership changed", "change", "add-nonvoter", "server", c.ID, "addr", c.Addr, "reason", c.Reason)
	}
}

// budgetLoop runs the budget controller once per budget epoch (epoch_ms)
// while this server leads. Each leadership starts a new controller: its
// first decision starts from what the nodes hold, once the table's
// learning mode is over (the last leader's grants are known by then).
func (s *Server) budgetLoop(ctx context.Context, table *LeaseTable) {
	ctrl := NewBudgetController(BudgetConfig{})
	for {
		epoch := s.fsm.limits().Epoch()
		if !sleepCtx(ctx, epoch) {
			return
		}
		now := time.Now()
		if table.Learning(now) {
			continue
		}
		l := s.fsm.limits()
		obs := table.Observe(now, l, s.aliveIDs(now), epoch)
		d := ctrl.Next(obs)
		table.SetBudget(d.New)
		s.budgetLog.add(d)
		if d.Recorded {
			s.log.Info("cluster budget decision", "reason", d.Reason, "old_bytes", d.Old, "new_bytes", d.New,
				"ceiling_bytes", d.Ceiling, "floor_bytes", d.Floor, "nodes", obs.Nodes, "goodput_rps", obs.GoodputRPS,
				"pushback_per_s", obs.PushbackPS, "too_large_per_s", obs.TooLargePS, "p99_ms", obs.P99ms)
		}
	}
}
