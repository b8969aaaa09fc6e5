package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/cluster/clustertest"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// waitTimeout is generous because -race on two busy cores is slow; every
// wait is a poll that returns as soon as its condition holds.
const waitTimeout = clustertest.WaitTimeout

// testTiming keeps Raft quick but not so quick that -race on two cores
// makes leaders flap.
func testTiming() Timing {
	return Timing{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		ReconcileInterval:  200 * time.Millisecond,
		StableFor:          time.Second,
		DeadGrace:          2 * time.Second,
		MaxLag:             1000,
		LeaseRetry:         100 * time.Millisecond,
	}
}

func serverLimits() *Limits {
	l := DefaultLimits()
	l.LeaseTTLms = 1500
	l.EpochMS = 500
	l.ClusterBudgetBytes = 64 << 20
	return &l
}

type testNode struct {
	t      *testing.T
	name   string
	dir    string
	gossip *cluster.Cluster
	srv    *Server
	httpLn net.Listener
	http   *http.Server
	health atomic.Pointer[cluster.Health]

	stopOnce sync.Once
}

// role of a test node: a server with its bootstrap expectation, or a worker.
type role struct {
	worker bool
	expect int
}

func startTestNode(t *testing.T, name string, expect int, join ...string) *testNode {
	t.Helper()
	return startTestNodeAt(t, nodeAddrs{dir: t.TempDir()}, name, role{expect: expect}, join...)
}

func startWorker(t *testing.T, name string, join ...string) *testNode {
	t.Helper()
	return startTestNodeAt(t, nodeAddrs{dir: t.TempDir()}, name, role{worker: true}, join...)
}

func startTestNodeIn(t *testing.T, dir, name string, expect int, join ...string) *testNode {
	t.Helper()
	return startTestNodeAt(t, nodeAddrs{dir: dir}, name, role{expect: expect}, join...)
}

// nodeAddrs places a node: its data dir and, for a restart on the same
// addresses, its gossip and Raft addresses (port 0 when empty).
type nodeAddrs struct {
	dir, gossip, raft string
}

// startTestNodeAt starts gossip, the consensus Server and a real HTTP
// listener that serves the two endpoints the cluster itself uses (the lease
// RPC and the Raft stats), as the web layer does in the agent.
func startTestNodeAt(t *testing.T, at nodeAddrs, name string, r role, join ...string) *testNode {
	t.Helper()
	if at.gossip == "" {
		at.gossip = "127.0.0.1:0"
	}
	if at.raft == "" {
		at.raft = "127.0.0.1:0"
	}
	dir := at.dir
	n := &testNode{t: t, name: name, dir: dir}
	n.health.Store(&cluster.Health{BatchSize: 100, Breaker: cluster.BreakerClosed, WantBytes: 64 << 20})
	logger := clustertest.Logger(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.httpLn = ln
	gr := cluster.RoleServer
	if r.worker {
		gr = cluster.RoleWorker
	}
	g, err := cluster.New(cluster.Config{
		NodeName:          name,
		DataDir:           dir,
		Role:              gr,
		BindAddr:          at.gossip,
		HTTPAddr:          ln.Addr().String(),
		Join:              join,
		Logger:            logger,
		RetryJoinInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("%s: gossip: %v", name, err)
	}
	srv, err := New(Config{
		Worker:          r.worker,
		DataDir:         dir,
		RaftAddr:        at.raft,
		BootstrapExpect: r.expect,
		Gossip:          g,
		Logger:          logger,
		InitialLimits:   serverLimits(),
		Timing:          testTiming(),
		Health:          func() cluster.Health { return *n.health.Load() },
	})
	if err != nil {
		g.Shutdown()
		t.Fatalf("%s: consensus: %v", name, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+LeasePath, func(w http.ResponseWriter, r *http.Request) {
		var req LeaseRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ans, err := srv.RequestLease(time.Now(), req)
		if err != nil {
			lid, lname, laddr := srv.Leader()
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "leader": LeaderInfo{ID: lid, Name: lname, HTTPAddr: laddr}})
			return
		}
		_ = json.NewEncoder(w).Encode(ans)
	})
	mux.HandleFunc("GET "+RaftStatsPath, func(w http.ResponseWriter, r *http.Request) {
		st, err := srv.RaftStats()
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	n.http = &http.Server{Handler: mux}
	go n.http.Serve(ln)
	srv.Start()
	n.gossip, n.srv = g, srv
	t.Cleanup(n.kill)
	return n
}

// kill stops the node abruptly, as kill -9 would: no leave.
func (n *testNode) kill() {
	n.stopOnce.Do(func() {
		n.http.Close() // its keep-alive connections too, as a dead process
		if err := n.srv.Shutdown(); err != nil {
			n.t.Logf("%s: raft shutdown: %v", n.name, err)
		}
		n.gossip.Shutdown()
	})
}

func (n *testNode) id() string { return n.srv.ID() }

// leaderOf returns the one node that leads, once every server agrees on it.
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
	clustertest.WaitFor(t, "one leader that every server agrees on", func() bool {
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

// budgetWatch checks, every few milliseconds until the test ends, the
// invariant the nodes rely on: the grants the running nodes obey (fresh
// leases, and baselines of stale ones) sum to at most the budget.
func budgetWatch(t *testing.T, budget int64, nodes func() []*testNode) {
	var (
		mu     sync.Mutex
		failed string
		done   = make(chan struct{})
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var sum int64
			var parts []string
			now := time.Now()
			for _, n := range nodes() {
				g, fresh := n.srv.Grant(now)
				sum += g
				parts = append(parts, fmt.Sprintf("%s=%d(%v)", n.name, g, fresh))
			}
			if sum > budget {
				mu.Lock()
				failed = fmt.Sprintf("the nodes obey %d bytes, over the budget %d: %s", sum, budget, strings.Join(parts, " "))
				mu.Unlock()
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

func allFresh(nodes ...*testNode) bool {
	for _, n := range nodes {
		if _, fresh := n.srv.Grant(time.Now()); !fresh {
			return false
		}
	}
	return true
}

func TestServersAndWorkersShareTheBudgetByLeaseAcrossAFailover(t *testing.T) {
	var mu sync.Mutex
	var running []*testNode
	budgetWatch(t, serverLimits().ClusterBudgetBytes, func() []*testNode { mu.Lock(); defer mu.Unlock(); return append([]*testNode(nil), running...) })
	set := func(ns ...*testNode) { mu.Lock(); running = ns; mu.Unlock() }

	n1 := startTestNode(t, "n1", 3)
	n2 := startTestNode(t, "n2", 3, n1.gossip.Addr())
	n3 := startTestNode(t, "n3", 3, n1.gossip.Addr())
	w1 := startWorker(t, "w1", n2.gossip.Addr())
	w2 := startWorker(t, "w2", n3.gossip.Addr())
	set(n1, n2, n3, w1, w2)
	servers := []*testNode{n1, n2, n3}
	leader := waitLeader(t, servers...)
	clustertest.WaitFor(t, "three voters and no worker in raft", func() bool {
		r := roles(leader, n1, n2, n3, w1, w2)
		return r["leader"] == 1 && r["voter"] == 2 && r["none"] == 2
	})
	clustertest.WaitFor(t, "every node to hold a fresh lease", func() bool { return allFresh(n1, n2, n3, w1, w2) })
	clustertest.WaitFor(t, "the workers to learn the cluster id and the leader", func() bool {
		id, _, _ := w1.srv.Leader()
		return w1.srv.ClusterID() == leader.srv.ClusterID() && w2.srv.ClusterID() == leader.srv.ClusterID() && id == leader.id()
	})
	// The leader has everyone's health and lease; nothing of it went to
	// the Raft log.
	clustertest.WaitFor(t, "the leader's table to list all five nodes", func() bool {
		ls, _ := leader.srv.Leases(time.Now())
		return len(ls) == 5
	})
	if st := leader.srv.Status(time.Now()); st.View != "leader" || st.Servers != 3 || st.Workers != 2 {
		t.Fatalf("leader status: view %q, %d servers, %d workers", st.View, st.Servers, st.Workers)
	}

	// A limits change reaches the workers with their next lease.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := leader.srv.SetLimits(ctx, LimitsPatch{MaxBatchSize: ptr(1234)}, ""); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, "the workers to apply the new limits", func() bool {
		return w1.srv.Limits().MaxBatchSize == 1234 && w2.srv.Limits().MaxBatchSize == 1234
	})
	if _, err := w1.srv.SetLimits(ctx, LimitsPatch{MaxBatchSize: ptr(1)}, ""); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a worker took a limits change: %v", err)
	}

	// The leader dies: a new one learns for one TTL and nobody obeys more
	// than the budget at any instant (budgetWatch).
	oldTerm := leader.srv.Term()
	var rest []*testNode
	for _, n := range servers {
		if n != leader {
			rest = append(rest, n)
		}
	}
	leader.kill()
	set(append(rest, w1, w2)...)
	next := waitLeader(t, rest...)
	if next.srv.Term() <= oldTerm {
		t.Fatal("the new leader has no newer term")
	}
	clustertest.WaitFor(t, "every surviving node to renew its lease with the new leader", func() bool {
		for _, n := range append(rest, w1, w2) {
			ans, ok := n.srv.LeaseAnswer()
			if !ok || ans.Epoch != next.srv.Term() {
				return false
			}
		}
		return allFresh(append(rest, w1, w2)...)
	})
	clustertest.WaitFor(t, "the new leader to leave learning mode", func() bool { return !next.srv.Learning(time.Now()) })
	// Its budget controller starts afresh, after learning mode, from what
	// the nodes hold.
	var first BudgetDecision
	clustertest.WaitFor(t, "the new leader's first budget decision", func() bool {
		ds, err := next.srv.BudgetDecisions(budgetLogSize, time.Time{})
		if err != nil || len(ds) == 0 {
			return false
		}
		first = ds[len(ds)-1]
		return true
	})
	if first.Reason != BudgetReasonStart || first.Old != 0 || first.New < first.Floor || first.New > serverLimits().ClusterBudgetBytes {
		t.Fatalf("the new leader's first budget decision %+v: want a start within the floor and the ceiling", first)
	}
	if _, err := rest[0].srv.BudgetDecisions(1, time.Time{}); rest[0] != next && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a follower answered budget decisions: %v", err)
	}
}

func TestAWorkerCutOffFallsBackToItsBaseline(t *testing.T) {
	n1 := startTestNode(t, "n1", 1)
	w := startWorker(t, "w", n1.gossip.Addr())
	waitLeader(t, n1)
	clustertest.WaitFor(t, "the worker's lease", func() bool { return allFresh(w) })
	ans, _ := w.srv.LeaseAnswer()
	n1.kill()
	clustertest.WaitFor(t, "the worker's lease to expire to its baseline", func() bool {
		g, fresh := w.srv.Grant(time.Now())
		return !fresh && g == ans.Baseline
	})
}

// fourVoters starts three servers that bootstrap and a fourth that joins
// later, added as a non-voter and promoted once stable, and waits for the
// promotion: four voters with a minimum quorum of three, so that autopilot
// may remove one. It returns the leader and a follower, and whether the
// fourth was seen as a non-voter before its promotion.
func fourVoters(t *testing.T) (leader, follower *testNode, sawNonvoter bool) {
	t.Helper()
	n1 := startTestNode(t, "n1", 3)
	n2 := startTestNode(t, "n2", 3, n1.gossip.Addr())
	n3 := startTestNode(t, "n3", 3, n1.gossip.Addr())
	leader = waitLeader(t, n1, n2, n3)
	n4 := startTestNode(t, "n4", 0, n2.gossip.Addr())
	clustertest.WaitFor(t, "n4 promoted to voter", func() bool {
		r := leader.srv.Role(n4.id())
		sawNonvoter = sawNonvoter || r == "nonvoter"
		return r == "voter"
	})
	for _, n := range []*testNode{n1, n2, n3, n4} {
		if n != leader {
			return leader, n, sawNonvoter
		}
	}
	panic("unreachable: four nodes, one leader")
}

func TestAutopilotPromotesAServerAndNeverRemovesOneOnGossipAlone(t *testing.T) {
	leader, victim, sawNonvoter := fourVoters(t)
	if !sawNonvoter {
		t.Log("n4 was promoted before a non-voter role was seen (a fast machine)")
	}
	// Gossip of one voter stops while its Raft goes on: for gossip it is
	// dead, but its Raft stats still answer, so autopilot counts it alive.
	victim.gossip.Shutdown()
	pilot := leader.srv.pilot
	clustertest.WaitFor(t, "the victim dead in the leader's gossip for longer than the dead grace", func() bool {
		for _, m := range leader.gossip.Members() {
			if m.ID == victim.id() {
				return m.Status == cluster.StatusDead && time.Since(m.StatusSince) > 2*testTiming().DeadGrace
			}
		}
		return false
	})
	if st := pilot.GetState(); st == nil || st.Servers[raft.ServerID(victim.id())] == nil {
		t.Fatal("autopilot does not track the victim")
	}
	d := &pilotDelegate{s: leader.srv, lastOK: map[raft.ServerID]time.Time{}}
	d.FetchServerStats(context.Background(), d.KnownServers())
	if srv := d.KnownServers()[raft.ServerID(victim.id())]; srv == nil || srv.NodeStatus != autopilot.NodeAlive {
		t.Fatalf("a server lost to gossip only is judged %+v, want alive", srv)
	}
	if r := leader.srv.Role(victim.id()); r != "voter" {
		t.Fatalf("the victim is %q after gossip alone lost it, want still a voter", r)
	}
	// Once its Raft is gone too, autopilot removes it (four voters, min
	// quorum three).
	victim.kill()
	clustertest.WaitFor(t, "the dead server removed by autopilot", func() bool { return leader.srv.Role(victim.id()) == "none" })
}

// A server leaving gracefully is removed from Raft while it still answers
// gossip and Raft: on its announced leave, not once gossip has spread its
// departure. A server gone while still a voter would count against the
// quorum of those that stay.
func TestALeavingServerIsRemovedFromRaftBeforeItGoes(t *testing.T) {
	leader, leaver, _ := fourVoters(t)
	if err := leaver.gossip.AnnounceLeave(waitTimeout); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, "the announced leaver out of Raft", func() bool { return leader.srv.Role(leaver.id()) == "none" })
	if m, ok := leader.gossip.MemberByID(leaver.id()); !ok || m.Status != cluster.StatusAlive {
		t.Fatalf("the leaver is %+v in the leader's gossip, want still alive: removed before it went", m)
	}
	// The rest of the leave finds itself removed and leaves gossip.
	if err := leaver.srv.Leave(waitTimeout); err != nil {
		t.Fatalf("leave after the removal: %v", err)
	}
	clustertest.WaitFor(t, "the leaver left in the leader's gossip", func() bool {
		m, ok := leader.gossip.MemberByID(leaver.id())
		return ok && m.Status == cluster.StatusLeft
	})
	if r := leader.srv.Role(leaver.id()); r != "none" {
		t.Fatalf("the leaver is back in Raft as %q", r)
	}
}

func TestFourServersExpectingThreeFormOneCluster(t *testing.T) {
	n1 := startTestNode(t, "n1", 3)
	addr := n1.gossip.Addr()
	n2 := startTestNode(t, "n2", 3, addr)
	n3 := startTestNode(t, "n3", 3, addr)
	n4 := startTestNode(t, "n4", 3, addr)
	all := []*testNode{n1, n2, n3, n4}
	leader := waitLeader(t, all...)
	clustertest.WaitFor(t, "all four in the one cluster", func() bool {
		r := roles(leader, all...)
		return r["none"] == 0
	})
	booted := 0
	for _, n := range all {
		if n.srv.bootstrapped.Load() {
			booted++
		}
		if n.srv.ClusterID() != "" && n.srv.ClusterID() != leader.srv.ClusterID() {
			t.Fatalf("%s is in cluster %s, the leader in %s", n.name, n.srv.ClusterID(), leader.srv.ClusterID())
		}
	}
	// The three with the lowest ids bootstrap the same configuration; one
	// that was replicated to before its own turn came never bootstraps.
	if booted < 1 || booted > 3 {
		t.Fatalf("%d nodes bootstrapped", booted)
	}
}

func TestJoinerNeverBootstrapsItsOwnCluster(t *testing.T) {
	n1 := startTestNode(t, "n1", 1)
	waitLeader(t, n1)
	clustertest.WaitFor(t, "the cluster id", func() bool { return n1.srv.ClusterID() != "" })

	// n2 is started with --bootstrap-expect 1 too, but it joins a member
	// that already has a cluster: it must wait to be added.
	n2 := startTestNode(t, "n2", 1, n1.gossip.Addr())
	clustertest.WaitFor(t, "n2 added to n1's cluster", func() bool {
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
	clustertest.WaitFor(t, "the cluster id", func() bool { return n.srv.ClusterID() != "" })
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
	clustertest.WaitFor(t, "the limits to come back from the log", func() bool { return again.srv.Limits().MaxBatchSize == 4321 })
	if got := again.srv.ClusterID(); got != clusterID {
		t.Fatalf("cluster id %q after restart, want %q", got, clusterID)
	}
}

func TestSecondServerOnTheSameDataDirFailsClearly(t *testing.T) {
	n := startTestNode(t, "n1", 1)
	timing := testTiming()
	timing.BoltOpenTimeout = 100 * time.Millisecond
	_, err := New(Config{DataDir: n.dir, RaftAddr: "127.0.0.1:0", Gossip: n.gossip, Logger: clustertest.Logger(t), Timing: timing})
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
			tc.cfg.Logger = clustertest.Logger(t)
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
