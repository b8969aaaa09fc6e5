package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
)

// waitTimeout is generous because -race on two busy cores is slow; every
// wait is a poll that returns as soon as its condition holds.
const waitTimeout = 30 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		<-tick.C
	}
}

// testLogger sends warnings and errors to the test log and drops what
// library goroutines write after the test ended.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// testTiming keeps Raft quick but not so quick that -race on two cores
// makes leaders flap.
func testTiming() Timing {
	return Timing{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		ReconcileInterval:  200 * time.Millisecond,
		StableFor:          2 * time.Second,
		DeadGrace:          2 * time.Second,
		MaxLag:             1000,
	}
}

func testLimits() *Limits {
	l := DefaultLimits()
	l.EpochMS = 200
	l.LeaseTTLms = 1000
	return &l
}

type testNode struct {
	t      *testing.T
	name   string
	dir    string
	gossip *cluster.Cluster
	srv    *Server
	health atomic.Pointer[cluster.Health]

	stopOnce sync.Once
}

func startTestNode(t *testing.T, name string, expect int, join ...string) *testNode {
	t.Helper()
	return startTestNodeAt(t, nodeAddrs{dir: t.TempDir()}, name, expect, join...)
}

func startTestNodeIn(t *testing.T, dir, name string, expect int, join ...string) *testNode {
	t.Helper()
	return startTestNodeAt(t, nodeAddrs{dir: dir}, name, expect, join...)
}

// nodeAddrs places a node: its data dir and, for a restart on the same
// addresses, its gossip and Raft addresses (port 0 when empty).
type nodeAddrs struct {
	dir, gossip, raft string
}

func (n *testNode) addrs() nodeAddrs {
	return nodeAddrs{dir: n.dir, gossip: n.gossip.Addr(), raft: n.srv.RaftAddr()}
}

func startTestNodeAt(t *testing.T, at nodeAddrs, name string, expect int, join ...string) *testNode {
	t.Helper()
	if at.gossip == "" {
		at.gossip = "127.0.0.1:0"
	}
	if at.raft == "" {
		at.raft = "127.0.0.1:0"
	}
	dir := at.dir
	n := &testNode{t: t, name: name, dir: dir}
	n.health.Store(&cluster.Health{BatchSize: 100, Breaker: cluster.BreakerClosed, WantBytes: 64 << 20, HasBytes: 2 << 20})
	logger := testLogger(t)
	g, err := cluster.New(cluster.Config{
		NodeName:          name,
		DataDir:           dir,
		BindAddr:          at.gossip,
		HTTPAddr:          "http-" + name,
		Join:              join,
		Logger:            logger,
		HealthInterval:    200 * time.Millisecond,
		RetryJoinInterval: 200 * time.Millisecond,
	}, func() cluster.Health { return *n.health.Load() })
	if err != nil {
		t.Fatalf("%s: gossip: %v", name, err)
	}
	srv, err := New(Config{
		DataDir:         dir,
		RaftAddr:        at.raft,
		BootstrapExpect: expect,
		Gossip:          g,
		Logger:          logger,
		InitialLimits:   testLimits(),
		Timing:          testTiming(),
	})
	if err != nil {
		g.Shutdown()
		t.Fatalf("%s: consensus: %v", name, err)
	}
	srv.Start()
	n.gossip, n.srv = g, srv
	t.Cleanup(n.kill)
	return n
}

// kill stops the node abruptly, as kill -9 would: no leave.
func (n *testNode) kill() {
	n.stopOnce.Do(func() {
		if err := n.srv.Shutdown(); err != nil {
			n.t.Logf("%s: raft shutdown: %v", n.name, err)
		}
		n.gossip.Shutdown()
	})
}

// leave stops the node gracefully, as SIGTERM does in the agent.
func (n *testNode) leave() {
	n.stopOnce.Do(func() {
		if err := n.srv.Leave(10 * time.Second); err != nil {
			n.t.Errorf("%s: leave: %v", n.name, err)
		}
		n.srv.Shutdown()
		n.gossip.Shutdown()
	})
}

func (n *testNode) id() string { return n.srv.ID() }

// leaderOf returns the one node that leads, once every node agrees on it.
func leaderOf(nodes ...*testNode) *testNode {
	var leader *testNode
	for _, n := range nodes {
		if n.srv.IsLeader() {
			if leader != nil {
				return nil
			}
			leader = n
		}
	}
	if leader == nil {
		return nil
	}
	for _, n := range nodes {
		if id, _, _ := n.srv.Leader(); id != leader.id() {
			return nil
		}
	}
	return leader
}

func waitLeader(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, "one leader that every node agrees on", func() bool {
		leader = leaderOf(nodes...)
		return leader != nil
	})
	return leader
}

// roles counts the roles the leader gives to the nodes.
func roles(leader *testNode, nodes ...*testNode) map[string]int {
	out := map[string]int{}
	for _, n := range nodes {
		out[leader.srv.Role(n.id())]++
	}
	return out
}

// budgetWatch checks the budget invariant on every allocation any node
// applies, from a goroutine, until the test ends.
func budgetWatch(t *testing.T, nodes func() []*testNode) {
	var (
		mu     sync.Mutex
		failed string
		done   = make(chan struct{})
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for _, n := range nodes() {
				a := n.srv.Allocation()
				if a.Grants.Sum() > a.Budget || a.Grants.Sum() > n.srv.Limits().ClusterBudgetBytes {
					mu.Lock()
					failed = fmt.Sprintf("%s: epoch %d grants %d bytes, budget %d", n.name, a.Epoch, a.Grants.Sum(), a.Budget)
					mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		wg.Wait()
		if failed != "" {
			t.Errorf("budget invariant broken: %s", failed)
		}
	})
}

func TestClusterFormsGrowsChangesLimitsLosesMembersAndFailsOver(t *testing.T) {
	var mu sync.Mutex
	var running []*testNode
	budgetWatch(t, func() []*testNode { mu.Lock(); defer mu.Unlock(); return append([]*testNode(nil), running...) })
	set := func(ns ...*testNode) { mu.Lock(); running = ns; mu.Unlock() }

	// Three servers expecting three bootstrap one cluster.
	n1 := startTestNode(t, "n1", 3)
	n2 := startTestNode(t, "n2", 3, n1.gossip.Addr())
	n3 := startTestNode(t, "n3", 3, n1.gossip.Addr())
	set(n1, n2, n3)
	leader := waitLeader(t, n1, n2, n3)
	waitFor(t, "three voters", func() bool {
		r := roles(leader, n1, n2, n3)
		return r["leader"] == 1 && r["voter"] == 2
	})
	clusterID := leader.srv.ClusterID()
	if clusterID == "" {
		waitFor(t, "the cluster id", func() bool { clusterID = leader.srv.ClusterID(); return clusterID != "" })
	}
	// Budget epochs name every node on every node.
	for _, n := range []*testNode{n1, n2, n3} {
		waitFor(t, n.name+" to apply an epoch granting all three nodes", func() bool {
			a := n.srv.Allocation()
			return a.Epoch >= 3 && len(a.Grants) == 3
		})
	}

	// Two more join later, with the same flags: they never bootstrap,
	// they become non-voters and then voters, up to five.
	n4 := startTestNode(t, "n4", 3, n2.gossip.Addr())
	n5 := startTestNode(t, "n5", 3, n3.gossip.Addr())
	set(n1, n2, n3, n4, n5)
	all := []*testNode{n1, n2, n3, n4, n5}
	sawNonvoter := map[string]bool{}
	waitFor(t, "five voters", func() bool {
		for _, n := range []*testNode{n4, n5} {
			if leader.srv.Role(n.id()) == "nonvoter" {
				sawNonvoter[n.name] = true
			}
		}
		r := roles(leader, all...)
		return r["leader"] == 1 && r["voter"] == 4
	})
	if !sawNonvoter["n4"] || !sawNonvoter["n5"] {
		t.Errorf("joiners were not non-voters first: %v", sawNonvoter)
	}
	for _, n := range []*testNode{n4, n5} {
		if got := n.srv.ClusterID(); got != clusterID {
			t.Fatalf("%s is in cluster %q, want %q: it bootstrapped its own", n.name, got, clusterID)
		}
	}
	if l := leaderOf(all...); l != leader {
		t.Fatalf("the leader changed while nodes joined")
	}

	// Limits set through a follower: the follower refuses with
	// ErrNotLeader and names the leader's HTTP address; the caller
	// forwards there, and every node sees the change once committed.
	follower := n1
	if follower == leader {
		follower = n2
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	patch := LimitsPatch{MaxGrowingNodes: ptr(3), SLOms: ptr(250)}
	_, err := follower.srv.SetLimits(ctx, patch, "req-1")
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("SetLimits on a follower: err = %v, want ErrNotLeader", err)
	}
	if got := follower.srv.LeaderHTTPAddr(); got != "http-"+leader.name {
		t.Fatalf("follower says the leader's HTTP address is %q, want %q", got, "http-"+leader.name)
	}
	if _, err := follower.srv.SetLimits(ctx, LimitsPatch{EpochMS: ptr(5)}, "bad"); !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("bad limits on a follower: err = %v, want ErrInvalidLimits before any forwarding", err)
	}
	got, err := leader.srv.SetLimits(ctx, patch, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxGrowingNodes != 3 || got.SLOms != 250 {
		t.Fatalf("SetLimits returned %+v", got)
	}
	for _, n := range all {
		waitFor(t, n.name+" to see the new limits", func() bool {
			l := n.srv.Limits()
			return l.MaxGrowingNodes == 3 && l.SLOms == 250
		})
	}
	// A retry with the same request id changes nothing, even after
	// another change.
	if _, err := leader.srv.SetLimits(ctx, LimitsPatch{SLOms: ptr(300)}, "req-2"); err != nil {
		t.Fatal(err)
	}
	if l, err := leader.srv.SetLimits(ctx, patch, "req-1"); err != nil || l.SLOms != 300 {
		t.Fatalf("retry of req-1: %+v, %v; want slo_ms still 300", l, err)
	}

	// A member that leaves is removed from Raft at once, and the voters
	// are trimmed back to an odd number.
	leaver := n5
	if leaver == leader {
		leaver = n4
	}
	leaver.leave()
	rest := make([]*testNode, 0, 4)
	for _, n := range all {
		if n != leaver {
			rest = append(rest, n)
		}
	}
	set(rest...)
	waitFor(t, "the leaver removed from raft and three voters left", func() bool {
		r := roles(leader, rest...)
		return leader.srv.Role(leaver.id()) == "none" && r["leader"] == 1 && r["voter"] == 2 && r["nonvoter"] == 1
	})

	// The leader dies abruptly: a new one takes over and epochs go on.
	before := leader.srv.Allocation().Epoch
	oldLeader := leader
	oldLeader.kill()
	survivors := make([]*testNode, 0, 3)
	for _, n := range rest {
		if n != oldLeader {
			survivors = append(survivors, n)
		}
	}
	set(survivors...)
	leader = waitLeader(t, survivors...)
	// The new leader first hands back the grants in force for one lease
	// TTL (learning mode), then allocates.
	waitFor(t, "a learning-mode epoch from the new leader", func() bool {
		a := leader.srv.Allocation()
		return a.LeaderID == leader.id() && a.Learning
	})
	waitFor(t, "an allocating epoch from the new leader", func() bool {
		a := leader.srv.Allocation()
		return a.LeaderID == leader.id() && !a.Learning
	})
	for _, n := range survivors {
		waitFor(t, n.name+" to apply epochs from the new leader", func() bool {
			a := n.srv.Allocation()
			return a.Epoch > before+2 && a.LeaderID == leader.id()
		})
	}
	// After the grace period the dead leader is removed and its vote
	// given to the non-voter.
	waitFor(t, "the dead leader removed and three voters again", func() bool {
		r := roles(leader, survivors...)
		return leader.srv.Role(oldLeader.id()) == "none" && r["leader"] == 1 && r["voter"] == 2
	})
	st := leader.srv.Status(time.Now())
	if st.ClusterID != clusterID || st.Leader.ID != leader.id() || st.Leader.HTTPAddr != "http-"+leader.name || st.Term == 0 {
		t.Fatalf("status: %+v", st)
	}
}

func TestLeaseFallsBackToBaselineWhenCutOff(t *testing.T) {
	n1 := startTestNode(t, "n1", 3)
	n2 := startTestNode(t, "n2", 3, n1.gossip.Addr())
	n3 := startTestNode(t, "n3", 3, n1.gossip.Addr())
	waitLeader(t, n1, n2, n3)

	var grant int64
	waitFor(t, "n3 to hold a fresh grant", func() bool {
		b, fresh := n3.srv.Grant(time.Now())
		grant = b
		return fresh && n3.srv.Allocation().Grants[n3.id()] == b
	})
	floor := n3.srv.Allocation().Floor
	if grant < floor {
		t.Fatalf("grant %d below the floor %d", grant, floor)
	}

	// Cut n3 off: the rest of the cluster goes away, no epoch reaches it.
	at1, at2 := n1.addrs(), n2.addrs()
	n1.kill()
	n2.kill()
	waitFor(t, "n3's lease to go stale and fall back to the floor", func() bool {
		b, fresh := n3.srv.Grant(time.Now())
		return !fresh && b == floor
	})

	// When the others come back (same data and addresses), a leader is
	// elected again and n3's lease is fresh again.
	epoch := n3.srv.Allocation().Epoch
	r1 := startTestNodeAt(t, at1, "n1", 3, n3.gossip.Addr())
	r2 := startTestNodeAt(t, at2, "n2", 3, n3.gossip.Addr())
	waitLeader(t, r1, r2, n3)
	waitFor(t, "n3 to hold a fresh grant again", func() bool {
		_, fresh := n3.srv.Grant(time.Now())
		return fresh && n3.srv.Allocation().Epoch > epoch
	})
}

func TestLeaderLeavesGracefully(t *testing.T) {
	n1 := startTestNode(t, "n1", 3)
	n2 := startTestNode(t, "n2", 3, n1.gossip.Addr())
	n3 := startTestNode(t, "n3", 3, n1.gossip.Addr())
	all := []*testNode{n1, n2, n3}
	leader := waitLeader(t, all...)
	waitFor(t, "an epoch", func() bool { return leader.srv.Allocation().Epoch > 0 })

	leader.leave()
	var rest []*testNode
	for _, n := range all {
		if n != leader {
			rest = append(rest, n)
		}
	}
	next := waitLeader(t, rest...)
	waitFor(t, "the old leader removed from raft", func() bool { return next.srv.Role(leader.id()) == "none" })
	for _, n := range rest {
		waitFor(t, n.name+" to apply an epoch without the old leader", func() bool {
			a := n.srv.Allocation()
			_, has := a.Grants[leader.id()]
			return a.LeaderID == next.id() && !has && len(a.Grants) == 2
		})
	}
}

func TestJoinerNeverBootstrapsItsOwnCluster(t *testing.T) {
	n1 := startTestNode(t, "n1", 1)
	waitLeader(t, n1)
	waitFor(t, "the cluster id", func() bool { return n1.srv.ClusterID() != "" })

	// n2 is started with --bootstrap-expect 1 too, but it joins a member
	// that already has a cluster: it must wait to be added.
	n2 := startTestNode(t, "n2", 1, n1.gossip.Addr())
	waitFor(t, "n2 added to n1's cluster", func() bool {
		return n2.srv.ClusterID() == n1.srv.ClusterID() && n1.srv.Role(n2.id()) == "nonvoter"
	})
	if n2.srv.IsLeader() || n2.srv.bootstrapped.Load() {
		t.Fatal("the joiner bootstrapped a cluster of its own")
	}
	if !n1.srv.bootstrapped.Load() {
		t.Fatal("n1 did not bootstrap")
	}
	if id, _, _ := n2.srv.Leader(); id != n1.id() {
		t.Fatalf("n2 follows %q, want n1 %q", id, n1.id())
	}
}

func TestRestartKeepsRaftState(t *testing.T) {
	dir := t.TempDir()
	n := startTestNodeIn(t, dir, "solo", 1)
	waitLeader(t, n)
	waitFor(t, "the cluster id", func() bool { return n.srv.ClusterID() != "" })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := n.srv.SetLimits(ctx, LimitsPatch{MaxBatchSize: ptr(4321)}, ""); err != nil {
		t.Fatal(err)
	}
	id, clusterID := n.id(), n.srv.ClusterID()
	n.kill()

	again := startTestNodeIn(t, dir, "solo", 1)
	if again.id() != id {
		t.Fatalf("node id changed across a restart: %q then %q", id, again.id())
	}
	waitLeader(t, again)
	waitFor(t, "the limits to come back from the log", func() bool { return again.srv.Limits().MaxBatchSize == 4321 })
	if got := again.srv.ClusterID(); got != clusterID {
		t.Fatalf("cluster id %q after restart, want %q", got, clusterID)
	}
}

func TestSecondServerOnTheSameDataDirFailsClearly(t *testing.T) {
	n := startTestNode(t, "n1", 1)
	timing := testTiming()
	timing.BoltOpenTimeout = 100 * time.Millisecond
	_, err := New(Config{DataDir: n.dir, RaftAddr: "127.0.0.1:0", Gossip: n.gossip, Logger: testLogger(t), Timing: timing})
	if err == nil || !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), n.dir) {
		t.Fatalf("second server on %s: err = %v, want a clear 'locked' error", n.dir, err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	n := startTestNode(t, "n1", 1)
	bad := DefaultLimits()
	bad.MaxGrowthPercent = 0
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no gossip", Config{DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0"}, "no gossip"},
		{"no data dir", Config{RaftAddr: "127.0.0.1:0", Gossip: n.gossip}, "no data dir"},
		{"negative bootstrap expect", Config{DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Gossip: n.gossip, BootstrapExpect: -1}, "bootstrap-expect"},
		{"invalid initial limits", Config{DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Gossip: n.gossip, InitialLimits: &bad}, "max_growth_percent"},
		{"all interfaces on a random port", Config{DataDir: t.TempDir(), RaftAddr: "0.0.0.0:0", Gossip: n.gossip}, "advertise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = testLogger(t)
			s, err := New(tc.cfg)
			if err == nil {
				s.Shutdown()
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
