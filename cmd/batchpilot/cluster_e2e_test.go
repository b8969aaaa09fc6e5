package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/batchpilot/batchpilot/consensus"
)

// The cluster tests run real agents as separate processes, on 127.0.0.1
// with ports chosen by the kernel (the partition test on addresses of its
// own network namespaces), and watch them through /metrics, which every
// node serves: batchpilot_cluster_* (the cluster as the node sees it),
// batchpilot_lease_*, batchpilot_grant_bytes and batchpilot_inflight_bytes.

// clusterLimits are the limits the test clusters start with: epochs of one
// second and a three-second lease, so that failures show quickly; a budget
// and floor small enough that the grants bind under the test load (a node
// wants about 4 batches of 20-40 records of 100 bytes); and host limits
// that a busy two-core test machine does not trip, so that the tuners (and
// with them the wants) are not held down by the breaker.
const (
	testLeaseTTL  = 3 * time.Second
	testFloor     = 4 << 10
	testBudget    = 40 << 10
	clusterLimits = "epoch_ms=1000,lease_ttl_ms=3000,node_floor_bytes=4096,cluster_budget_bytes=40960,budget_mode=fixed,cpu_limit_percent=100,mem_limit_percent=100"
)

// testRecordBytes is more than any record the test senders make.
const testRecordBytes = 128

// clusterWait bounds every wait: generous, as -race on two busy cores is
// slow, and every wait is a poll that returns as soon as it holds.
const clusterWait = 90 * time.Second

// member is one running agent of a test cluster.
type member struct {
	*proc
	name, dir string
	gossip    string
	exitErr   error
	stopped   bool // its exit was seen
}

// waitExit waits up to clusterWait for m to exit and returns its exit error.
func (m *member) waitExit(t *testing.T) error {
	t.Helper()
	if m.stopped {
		return m.exitErr
	}
	select {
	case m.exitErr = <-m.exited:
		m.stopped = true
		return m.exitErr
	case <-time.After(clusterWait):
		t.Fatalf("%s did not exit within %s", m.name, clusterWait)
		return nil
	}
}

var addrsRE = regexp.MustCompile(`listening http=(\S+) syslog=(\S*) gossip=(\S+) raft=(\S*)`)

// launchMember runs `batchpilot agent` (under the wrap prefix, e.g. `ip
// netns exec NS`, when given) and waits until it says where it listens. The
// process lives until owner's test ends (owner may be a parent of t, so
// that a cluster outlives the subtest that started it).
func launchMember(t, owner *testing.T, wrap []string, name, dir string, args ...string) *member {
	t.Helper()
	full := append(slices.Clone(wrap), binPath, "agent", "--node-name", name, "--data-dir", dir,
		"--syslog-addr", "", "--max-linger", "20ms", "--shutdown-timeout", "20s",
		"--initial-limits", clusterLimits)
	full = append(full, args...)
	p, found := spawnProc(t, full, addrsRE)
	owner.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if owner.Failed() {
			owner.Logf("%s log (last 16000 bytes, without Raft's retries):\n%s", name, tail(quiet(p.logs()), 16000))
		}
	})
	m := &member{proc: p, name: name, dir: dir}
	select {
	case f := <-found:
		m.url, m.syslog, m.gossip = f[1], f[2], f[3]
	case err := <-p.exited:
		t.Fatalf("%s exited before listening: %v\n%s", name, err, p.logs())
	case <-time.After(clusterWait):
		t.Fatalf("%s did not start listening within %s\n%s", name, clusterWait, p.logs())
	}
	return m
}

// quiet drops the lines a leader writes every half second about a peer that
// is gone, and those a server without a quorum writes on every election it
// retries, which would push everything else out of a failed test's log (a
// CI run lost the leader's view of a leave this way); it counts the
// elections it dropped.
func quiet(log string) string {
	var b strings.Builder
	elections := 0
	for _, line := range strings.SplitAfter(log, "\n") {
		switch {
		case strings.Contains(line, "failed to heartbeat to"), strings.Contains(line, "failed to appendEntries to"):
		case strings.Contains(line, "failed to make requestVote RPC"), strings.Contains(line, "pre-vote campaign failed"),
			strings.Contains(line, "Election timeout reached"):
		case strings.Contains(line, "entering candidate state"):
			elections++
		default:
			b.WriteString(line)
		}
	}
	if elections > 0 {
		fmt.Fprintf(&b, "(%d elections started; their retries left out)\n", elections)
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// metrics is one scrape of a node's /metrics: series (with their labels, as
// printed) to values.
type metrics map[string]float64

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

func scrape(url string) (metrics, error) {
	c := scrapeClient
	if strings.HasPrefix(url, "https://") {
		c = httpsClient // see tls_e2e_test.go
	}
	resp, err := c.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

var memberSeriesRE = regexp.MustCompile(`^batchpilot_cluster_member\{name="([^"]*)",raft_role="([^"]*)",role="([^"]*)",status="([^"]*)"\}$`)

// view is a member as one node sees it: gossip status, Raft role, role.
type view struct{ status, role, kind string }

// members is the cluster membership as this scrape's node sees it.
func (m metrics) members() map[string]view {
	out := map[string]view{}
	for k := range m {
		if f := memberSeriesRE.FindStringSubmatch(k); f != nil {
			out[f[1]] = view{status: f[4], role: f[2], kind: f[3]}
		}
	}
	return out
}

func (m metrics) int(name string) int64 { return int64(m[name]) }

// watcher scrapes every live member's /metrics every 200ms for the whole
// test and checks, on every round, the two budget invariants:
//   - the grants the nodes obey (each node's lease: its grant while fresh,
//     its baseline after) sum to no more than the cluster budget; the
//     scrapes of one round are milliseconds apart, inside the leader's skew
//     margin, which keeps a grant reserved past the moment its node stops
//     obeying it;
//   - no node has more bytes in flight than its grant. A grant that was
//     just cut binds the batches that start after it; the ones already in
//     flight finish, so a sample is held to the larger of the node's grant
//     now and at its previous sample (a node's first sample, without a
//     previous one, only sets the bound).
//
// It also records every lease epoch (leader term) it saw.
type watcher struct {
	t    *testing.T
	mu   sync.Mutex
	live map[string]*member

	samples    int
	epochs     map[uint64]epochSeen
	last       map[string]sample // each node's previous sample
	violations []string
	maxAggIn   float64 // Σ in flight over the nodes, per round
	maxAggLive float64 // Σ of the grants in force on the nodes in the budget, per round
	maxNodeIn  map[string]float64
	budget     float64 // the budget in force, as the nodes report it
	budgetAt   time.Time

	stop chan struct{}
	done chan struct{}
}

// sample is what one scrape of a node showed.
type sample struct {
	at                     time.Time
	epoch, leaseEpoch      int64
	inflight, grant, lease float64
	fresh                  bool
}

func (s sample) String() string {
	return fmt.Sprintf("%s epoch %d: in flight %.0f, grant %.0f, lease %.0f (epoch %d, fresh %v)",
		s.at.Format("15:04:05.000"), s.epoch, s.inflight, s.grant, s.lease, s.leaseEpoch, s.fresh)
}

type epochSeen struct {
	granted, budget float64
	by              string
}

func startWatcher(t *testing.T) *watcher {
	w := &watcher{t: t, live: map[string]*member{}, epochs: map[uint64]epochSeen{}, last: map[string]sample{},
		maxNodeIn: map[string]float64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	t.Cleanup(w.close)
	return w
}

func (w *watcher) add(ms ...*member) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range ms {
		w.live[m.name] = m
	}
}

func (w *watcher) remove(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.live, name)
	delete(w.last, name)
}

func (w *watcher) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *watcher) run() {
	defer close(w.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		w.round()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

func (w *watcher) round() {
	w.mu.Lock()
	nodes := make([]*member, 0, len(w.live))
	for _, m := range w.live {
		nodes = append(nodes, m)
	}
	w.mu.Unlock()
	got := make([]metrics, len(nodes))
	var wg sync.WaitGroup
	for i, m := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = scrape(m.url) // a node being killed or stopped answers nothing
		}()
	}
	wg.Wait()

	w.mu.Lock()
	defer w.mu.Unlock()
	var aggIn, aggGrant float64
	for i, m := range got {
		name := nodes[i].name
		if m == nil || w.live[name] == nil {
			continue
		}
		w.samples++
		epoch := uint64(m["batchpilot_cluster_epoch"])
		granted, budget := m["batchpilot_cluster_granted_bytes"], m["batchpilot_cluster_budget_bytes"]
		if epoch > 0 {
			// A budget cut binds each node from its next lease: for a
			// lease TTL (and the margin) the larger budget still holds.
			if budget >= w.budget || time.Since(w.budgetAt) > testLeaseTTL+2*time.Second {
				w.budget = budget
			}
			if budget == w.budget {
				w.budgetAt = time.Now()
			}
			if e, ok := w.epochs[epoch]; !ok || granted > e.granted {
				w.epochs[epoch] = epochSeen{granted: granted, budget: budget, by: name}
			}
		}
		in, grant := m["batchpilot_inflight_bytes"], m["batchpilot_grant_bytes"]
		now := sample{at: time.Now(), epoch: int64(epoch), leaseEpoch: m.int("batchpilot_lease_epoch"), inflight: in, grant: grant,
			lease: m["batchpilot_lease_grant_bytes"], fresh: m["batchpilot_lease_fresh"] == 1}
		last, seen := w.last[name]
		// A node may always start a batch of one record when nothing else is
		// in flight, however small its grant (node.byteBudget): a grant
		// below one record means one record at a time.
		if bound := max(grant, last.grant, testRecordBytes); seen && grant > 0 && in > bound {
			w.violations = append(w.violations, fmt.Sprintf("%s: %.0f bytes in flight, over its grant %.0f: at %s; before at %s", name, in, bound, now, last))
		}
		w.last[name] = now
		w.maxNodeIn[name] = max(w.maxNodeIn[name], in)
		aggIn += in
		aggGrant += m["batchpilot_lease_grant_bytes"] // what the node obeys: its grant, or its baseline
	}
	if w.budget > 0 && aggGrant > w.budget {
		w.violations = append(w.violations, fmt.Sprintf("the nodes obey %.0f bytes together, over the budget %.0f", aggGrant, w.budget))
	}
	w.maxAggIn = max(w.maxAggIn, aggIn)
	w.maxAggLive = max(w.maxAggLive, aggGrant)
}

// check fails the test on any violation and logs what was watched.
func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var eps []uint64
	for e := range w.epochs {
		eps = append(eps, e)
	}
	slices.Sort(eps)
	if len(eps) == 0 {
		t.Fatalf("no lease epoch seen in %d samples", w.samples)
	}
	t.Logf("watched %d samples: lease epochs (leader terms) %d..%d; peak in flight: aggregate %.0f, per node %v; peak sum of the grants obeyed %.0f (budget %d)",
		w.samples, eps[0], eps[len(eps)-1], w.maxAggIn, w.maxNodeIn, w.maxAggLive, testBudget)
	for _, v := range w.violations {
		t.Error(v)
	}
}

// leader polls until exactly one of ms says it leads, and returns it.
func waitLeader(t *testing.T, ms ...*member) *member {
	t.Helper()
	var leader *member
	pollFor(t, "one leader among "+names(ms), func() bool {
		leader = nil
		n := 0
		for _, m := range ms {
			if s, err := scrape(m.url); err == nil && s["batchpilot_raft_leader"] == 1 {
				leader = m
				n++
			}
		}
		return n == 1
	})
	return leader
}

func names(ms []*member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.name)
	}
	return strings.Join(s, ",")
}

// pollFor calls cond every 100ms until it holds, or fails the test after
// clusterWait.
func pollFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > clusterWait {
			t.Fatalf("timed out after %s waiting for %s", clusterWait, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// waitSeen polls until every observer sees every wanted member with the
// given status and a Raft role that role accepts, and returns how long that
// took. On a timeout it says who saw what.
func waitSeen(t *testing.T, observers []*member, want []string, status string, role func(string) bool) time.Duration {
	t.Helper()
	var last []string
	start := time.Now()
	for {
		last = last[:0]
		for _, o := range observers {
			s, err := scrape(o.url)
			if err != nil {
				last = append(last, fmt.Sprintf("%s: %v", o.name, err))
				continue
			}
			ms := s.members()
			for _, name := range want {
				if v, ok := ms[name]; !ok || v.status != status || !role(v.role) {
					last = append(last, fmt.Sprintf("%s sees %s as %s/%s", o.name, name, v.status, v.role))
				}
			}
		}
		if len(last) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > clusterWait {
			t.Fatalf("timed out after %s waiting for %s to be %s on %s: %s", clusterWait, want, status, names(observers), strings.Join(last, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func inRaft(role string) bool { return role == "leader" || role == "voter" || role == "nonvoter" }

// sigterm stops m gracefully and returns its exit error.
func sigterm(t *testing.T, m *member) error {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	return m.waitExit(t)
}

// TestClusterLifecycle runs one cluster through its life: four servers
// started with --bootstrap-expect 3 form one cluster (never two), five
// workers join under load and never enter Raft, a node of another cluster
// id is refused, the leader is killed (kill -9) and a new one learns the
// leases before it hands out more, a server leaves, and the CLI reads and
// changes the cluster. The subtests share the cluster and run in order; the
// watcher checks the budget invariants on every sample of all of them, and
// at the end every acknowledged record is found in a sink and no Raft log
// holds anything per node.
func TestClusterLifecycle(t *testing.T) {
	top := t
	w := startWatcher(t)
	base := t.TempDir()
	var all []*member
	live := func() []*member {
		var out []*member
		for _, m := range all {
			if !m.stopped {
				out = append(out, m)
			}
		}
		return out
	}
	var servers []*member
	liveServers := func() []*member {
		var out []*member
		for _, m := range servers {
			if !m.stopped {
				out = append(out, m)
			}
		}
		return out
	}
	var senders []*sender
	stopped := false
	stopSenders := func() (acked []string) {
		if !stopped {
			stopped = true
			for _, s := range senders {
				acked = append(acked, s.stop()...)
			}
		}
		return acked
	}
	defer stopSenders()
	loopback := []string{"--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}
	serverArgs := append(slices.Clone(loopback), "--server", "--bootstrap-expect", "3")

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"four servers with --bootstrap-expect 3 form one cluster", func(t *testing.T) {
			s1 := launchMember(t, top, nil, "s1", filepath.Join(base, "s1"), serverArgs...)
			s2 := launchMember(t, top, nil, "s2", filepath.Join(base, "s2"), append(slices.Clone(serverArgs), "--join", s1.gossip)...)
			s3 := launchMember(t, top, nil, "s3", filepath.Join(base, "s3"), append(slices.Clone(serverArgs), "--join", s1.gossip)...)
			s4 := launchMember(t, top, nil, "s4", filepath.Join(base, "s4"), append(slices.Clone(serverArgs), "--join", s2.gossip)...)
			servers = []*member{s1, s2, s3, s4}
			all = append(all, servers...)
			w.add(servers...)
			took := waitSeen(t, all, []string{"s1", "s2", "s3", "s4"}, "alive", func(r string) bool { return r == "leader" || r == "voter" })
			leader := waitLeader(t, all...)
			ids := map[string]bool{}
			for _, m := range all {
				var st consensus.Status
				if err := getJSON(m.url+"/api/v1/cluster", &st); err != nil {
					t.Fatal(err)
				}
				ids[st.ClusterID] = true
			}
			if len(ids) != 1 {
				t.Fatalf("four servers expecting three formed clusters %v, want one", ids)
			}
			booted := 0
			for _, m := range servers {
				if strings.Contains(m.logs(), "bootstrapping raft cluster") {
					booted++
				}
			}
			if booted > 3 {
				t.Fatalf("%d servers bootstrapped; at most the three agreed ones may", booted)
			}
			pollFor(t, "fresh leases on every server", func() bool {
				for _, m := range all {
					if s, err := scrape(m.url); err != nil || s["batchpilot_lease_fresh"] != 1 {
						return false
					}
				}
				return true
			})
			t.Logf("four voters in one cluster in %s (%d bootstrapped); leader %s", took.Round(time.Millisecond), booted, leader.name)
		}},
		{"five workers join under load and never enter Raft", func(t *testing.T) {
			for i, m := range all {
				senders = append(senders, startSender(m.url, fmt.Sprintf("load%d", i), 50, 1))
			}
			var workers []*member
			for i := range 5 {
				name := fmt.Sprintf("w%d", i+1)
				wk := launchMember(t, top, nil, name, filepath.Join(base, name), append(slices.Clone(loopback), "--join", all[i%len(all)].gossip)...)
				workers = append(workers, wk)
				senders = append(senders, startSender(wk.url, "wload"+name, 50, 1))
			}
			all = append(all, workers...)
			w.add(workers...)
			var names []string
			for _, wk := range workers {
				names = append(names, wk.name)
			}
			took := waitSeen(t, servers, names, "alive", func(r string) bool { return r == "none" })
			pollFor(t, "the workers to hold fresh grants", func() bool {
				for _, m := range workers {
					if s, err := scrape(m.url); err != nil || s["batchpilot_lease_fresh"] != 1 || s["batchpilot_grant_bytes"] <= 0 {
						return false
					}
				}
				return true
			})
			for _, m := range workers {
				if strings.Contains(m.logs(), "bootstrapping raft cluster") {
					t.Errorf("%s (a worker) bootstrapped a cluster", m.name)
				}
			}
			// The leader has every node's health, from the lease requests.
			leader := waitLeader(t, liveServers()...)
			var st consensus.Status
			pollFor(t, "the leader's status to show the workers' health", func() bool {
				if err := getJSON(leader.url+"/api/v1/cluster", &st); err != nil {
					return false
				}
				n := 0
				for _, m := range st.Members {
					if m.Role == "worker" && m.Budget.LeaseFresh && m.Health.BatchSize > 0 {
						n++
					}
				}
				return st.View == "leader" && n == 5
			})
			pollFor(t, "records acknowledged by every node", func() bool {
				for _, s := range senders {
					if s.count() < 200 {
						return false
					}
				}
				return true
			})
			t.Logf("five workers alive on every server in %s; %d servers and %d workers", took.Round(time.Millisecond), st.Servers, st.Workers)
		}},
		{"a node of another cluster id is refused", func(t *testing.T) {
			dir := filepath.Join(base, "x1")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "cluster-id"), []byte("another-cluster\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			x := launchMember(t, top, nil, "x1", dir, append(slices.Clone(loopback), "--join", all[0].gossip)...)
			pollFor(t, "the other cluster's node to be refused and logged", func() bool {
				return strings.Contains(x.logs(), "refusing a member of another cluster") ||
					strings.Contains(all[0].logs(), "refusing a member of another cluster")
			})
			for _, m := range live() {
				if s, err := scrape(m.url); err == nil {
					if v, ok := s.members()["x1"]; ok && v.status == "alive" {
						t.Fatalf("%s has the other cluster's node as a member: %+v", m.name, v)
					}
				}
			}
			_ = x.cmd.Process.Kill()
			_ = x.waitExit(t)
		}},
		{"kill -9 of the leader under load: a new leader learns, then leases go on", func(t *testing.T) {
			old := waitLeader(t, liveServers()...)
			s, err := scrape(old.url)
			if err != nil {
				t.Fatal(err)
			}
			term := s.int("batchpilot_raft_term")
			w.remove(old.name)
			if err := old.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = old.waitExit(t)
			killed := time.Now()
			leader := waitLeader(t, liveServers()...)
			elected := time.Since(killed)
			pollFor(t, "every survivor on a fresh lease from the new leader", func() bool {
				for _, m := range live() {
					s, err := scrape(m.url)
					if err != nil || s["batchpilot_lease_fresh"] != 1 || s.int("batchpilot_lease_epoch") <= term {
						return false
					}
				}
				return true
			})
			if leader == old {
				t.Fatalf("the killed node is still the leader")
			}
			if !strings.Contains(leader.logs(), "lease table in learning mode") {
				t.Fatalf("the new leader %s did not start in learning mode", leader.name)
			}
			t.Logf("killed leader %s at term %d; %s leads after %s; every node renewed its lease with it after %s",
				old.name, term, leader.name, elected.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
		}},
		{"a server that leaves is removed from Raft", func(t *testing.T) {
			leader := waitLeader(t, liveServers()...)
			var leaver *member
			for _, m := range liveServers() {
				if m != leader {
					leaver = m
				}
			}
			w.remove(leaver.name)
			start := time.Now()
			if err := sigterm(t, leaver); err != nil {
				t.Fatalf("%s exit after SIGTERM: %v\n%s", leaver.name, err, leaver.logs())
			}
			took := waitSeen(t, liveServers(), []string{leaver.name}, "left", func(r string) bool { return r == "none" })
			t.Logf("%s left; out of Raft %s after SIGTERM (%s after it exited)", leaver.name,
				time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		}},
		{"members and limits set through the CLI", func(t *testing.T) {
			m := live()[len(live())-1] // a worker: it asks the leader
			// The leader's view settles after the leave and the failover
			// before it (a deadline-bounded poll; what it last showed is
			// reported on a timeout).
			var wrong []string
			settled := func() bool {
				out, errOut, code := runCLI(t, nil, "members", "--addr", m.url, "--json")
				if code != 0 {
					wrong = []string{fmt.Sprintf("members: exit %d: %s", code, errOut)}
					return false
				}
				var st consensus.Status
				if err := json.Unmarshal([]byte(out), &st); err != nil {
					wrong = []string{err.Error()}
					return false
				}
				roles := map[string]string{}
				for _, mem := range st.Members {
					roles[mem.Name] = string(mem.Status) + "/" + mem.RaftRole + "/" + string(mem.Role)
				}
				wrong = wrong[:0]
				for _, l := range live() {
					r := roles[l.name]
					if r != "alive/leader/server" && r != "alive/voter/server" && r != "alive/none/worker" {
						wrong = append(wrong, fmt.Sprintf("%s as %q", l.name, r))
					}
				}
				return len(wrong) == 0
			}
			deadline := time.Now().Add(clusterWait)
			for !settled() && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
			if len(wrong) > 0 {
				t.Errorf("members shows %s", strings.Join(wrong, ", "))
			}
			table, _, _ := runCLI(t, nil, "members", "--addr", m.url)
			t.Logf("batchpilot members:\n%s", table)

			// Cut the budget from a worker: the CLI's PUT is forwarded to
			// the leader, and every node obeys the new budget after its
			// next lease.
			const cut = 32 << 10
			out, errOut, code := runCLI(t, nil, "limits", "set", "--addr", m.url, fmt.Sprintf("cluster_budget_bytes=%d", cut))
			if code != 0 || !strings.Contains(out, fmt.Sprintf("cluster_budget_bytes  %d", cut)) {
				t.Fatalf("limits set: exit %d\n%s%s", code, out, errOut)
			}
			pollFor(t, "every node to have the cut budget", func() bool {
				for _, l := range live() {
					s, err := scrape(l.url)
					if err != nil || s["batchpilot_cluster_budget_bytes"] != cut {
						return false
					}
				}
				return true
			})
		}},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			break
		}
	}
	w.close()
	w.check(t)

	// Stop the rest: every acknowledged record is in a sink (the killed
	// leader's too), and no Raft log holds anything per node.
	acked := stopSenders()
	var dirs []string
	for _, m := range all {
		if !m.stopped {
			_ = sigterm(t, m)
		}
		if m.name != "x1" {
			dirs = append(dirs, m.dir)
		}
	}
	out, err := runVerifyCmd(t, writeIDs(t, acked), dirs...)
	t.Logf("verify after the leader's kill -9: %s (%d acknowledged)", out, len(acked))
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
	auditRaftLogs(t, servers)
}

// getJSON GETs url into out.
func getJSON(url string, out any) error {
	resp, err := scrapeClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// auditRaftLogs reads the servers' Raft logs (the processes have exited, so
// the stores are free) and checks that they hold only what does not grow
// with the nodes: the cluster's start and limit changes, no budget epochs.
func auditRaftLogs(t *testing.T, ms []*member) {
	t.Helper()
	counts := map[string]int{}
	for _, m := range ms {
		path := filepath.Join(m.dir, "raft", "raft.db")
		store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second}})
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		first, _ := store.FirstIndex()
		last, _ := store.LastIndex()
		for i := first; i <= last && i > 0; i++ {
			var l raft.Log
			if err := store.GetLog(i, &l); err != nil || l.Type != raft.LogCommand {
				continue
			}
			var c struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(l.Data, &c); err != nil {
				t.Errorf("%s: log %d is not a command: %v", m.name, i, err)
				continue
			}
			counts[c.Type]++
			if c.Type != "init" && c.Type != "set_limits" {
				t.Errorf("%s: log %d is a %q command; the Raft log holds only the cluster's start and its limits", m.name, i, c.Type)
			}
		}
		store.Close()
	}
	t.Logf("audited the Raft logs of %d servers: commands %v", len(ms), counts)
}

// TestClusterPartition cuts nodes off with real network partitions
// (netLab: the router between the nodes' network namespaces drops their
// packets silently, and the test still reaches every node). Three servers
// and one worker, under load:
//   - the worker is cut off: its lease expires and it falls back to its
//     baseline on its own clock, while the leader keeps counting its grant
//     until the lease expired there too (the watcher's sum); after the heal
//     it takes grants again;
//   - a server's gossip is dropped while its Raft traffic flows: gossip
//     finds it dead, but autopilot sees Raft's own contact and removes no
//     voter, however long it lasts;
//   - a server (a minority) is cut off entirely: the two others go on
//     with leases; the minority falls back to its baseline; it never falls
//     below the minimum quorum of three voters, and comes back on the heal.
//
// Every record acknowledged through all of it is in a sink.
func TestClusterPartition(t *testing.T) {
	// Mostly waits out a fault of fixed length (30-40 s): it runs beside
	// the other such tests, after the package's sequential ones.
	t.Parallel()
	lab := newNetLab(t, 4)
	w := startWatcher(t)
	base := t.TempDir()
	var ms []*member
	for k := 0; k < 4; k++ {
		ip := lab.IP(k)
		args := []string{"--http-addr", ip + ":0", "--gossip-addr", ip + ":" + strconv.Itoa(partitionGossipPort), "--raft-addr", ip + ":0"}
		if k < 3 {
			args = append(args, "--server", "--bootstrap-expect", "3")
		}
		if k > 0 {
			args = append(args, "--join", ms[0].gossip)
		}
		ms = append(ms, launchMember(t, t, lab.Wrap(k), fmt.Sprintf("p%d", k+1), filepath.Join(base, fmt.Sprintf("p%d", k+1)), args...))
	}
	w.add(ms...)
	servers := ms[:3]
	worker := ms[3]
	waitSeen(t, ms, []string{"p1", "p2", "p3"}, "alive", func(r string) bool { return r == "leader" || r == "voter" })
	waitSeen(t, ms, []string{"p4"}, "alive", func(r string) bool { return r == "none" })
	leader := waitLeader(t, servers...)
	var senders []*sender
	for i, m := range ms {
		workers := 1
		if m == worker {
			workers = 4 // so that it wants, and holds, more than its baseline
		}
		senders = append(senders, startSender(m.url, fmt.Sprintf("part%d", i), 50, workers))
	}
	stopped := false
	stopSenders := func() (acked []string) {
		if !stopped {
			stopped = true
			for _, s := range senders {
				acked = append(acked, s.stop()...)
			}
		}
		return acked
	}
	defer stopSenders()

	// 1. The worker is cut off.
	var before metrics
	pollFor(t, "the worker to hold a fresh grant above its baseline", func() bool {
		s, err := scrape(worker.url)
		before = s
		return err == nil && s["batchpilot_lease_fresh"] == 1 && s["batchpilot_grant_bytes"] > s["batchpilot_cluster_floor_bytes"]
	})
	lab.Cut(3)
	var floor float64
	fellBack := pollFor(t, "the worker to fall back to its baseline", func() bool {
		s, err := scrape(worker.url)
		floor = s["batchpilot_cluster_floor_bytes"]
		return err == nil && s["batchpilot_lease_fresh"] == 0 && s["batchpilot_grant_bytes"] == floor
	})
	age := leaseAgeAtFallback(t, worker)
	if age > testLeaseTTL+300*time.Millisecond {
		t.Errorf("the worker's lease was %s old when it fell back, want the TTL %s (+ its 100ms apply loop)", age, testLeaseTTL)
	}
	lab.Heal(3)
	epochAtHeal := int64(0)
	if s, err := scrape(leader.url); err == nil {
		epochAtHeal = s.int("batchpilot_raft_term")
	}
	pollFor(t, "the worker to take fresh grants again", func() bool {
		s, err := scrape(worker.url)
		return err == nil && s["batchpilot_lease_fresh"] == 1 && s.int("batchpilot_lease_epoch") >= epochAtHeal
	})
	t.Logf("worker (grant %.0f, baseline %.0f) cut off: on its baseline after %s (lease age %s); fresh again after the heal",
		before["batchpilot_grant_bytes"], floor, fellBack.Round(time.Millisecond), age)

	// 2. Gossip of a follower is dropped, Raft flows: no voter is removed.
	// On a loaded machine an election may move the leadership meanwhile
	// (to the victim too: its Raft is intact), so "still in Raft" is a
	// voter or the leader, and the view is asked of a server not cut.
	inRaft := func(r string) bool { return r == "voter" || r == "leader" }
	leader = waitLeader(t, servers...)
	var victim, observer *member
	var k int
	for i, m := range servers {
		if m != leader {
			victim, k = m, i
		}
	}
	for _, m := range servers {
		if m != victim {
			observer = m
		}
	}
	lab.CutPort(k, partitionGossipPort)
	waitSeen(t, []*member{leader}, []string{victim.name}, "dead", inRaft)
	deadSince := time.Now()
	// The dead grace (30 s) and then some autopilot rounds: it is still a
	// voter, since its Raft stats answer.
	pollFor(t, "twice the dead grace with the victim's gossip cut", func() bool { return time.Since(deadSince) > 40*time.Second })
	if s, err := scrape(observer.url); err != nil || !inRaft(s.members()[victim.name].role) {
		t.Fatalf("%s is %+v on %s after its gossip alone was cut for 40 s, want still a voter", victim.name, s.members()[victim.name], observer.name)
	}
	lab.HealPort(k, partitionGossipPort)
	waitSeen(t, ms, []string{victim.name}, "alive", inRaft)
	t.Logf("%s's gossip cut for 40 s with Raft intact: still a voter", victim.name)

	// 3. The same follower cut off entirely: a minority of one.
	lab.Cut(k)
	rest := []*member{}
	for _, m := range ms {
		if m != victim {
			rest = append(rest, m)
		}
	}
	pollFor(t, "the rest to go on with fresh leases and the victim to fall back", func() bool {
		for _, m := range rest {
			if s, err := scrape(m.url); err != nil || s["batchpilot_lease_fresh"] != 1 {
				return false
			}
		}
		s, err := scrape(victim.url)
		return err == nil && s["batchpilot_lease_fresh"] == 0
	})
	if s, err := scrape(waitLeader(t, servers...).url); err != nil || s.members()[victim.name].role != "voter" {
		t.Fatalf("the cut-off server was removed below the minimum quorum: %+v", s.members()[victim.name])
	}
	lab.Heal(k)
	waitSeen(t, ms, []string{"p1", "p2", "p3"}, "alive", func(r string) bool { return r == "leader" || r == "voter" })
	pollFor(t, victim.name+" to take fresh grants after the heal", func() bool {
		s, err := scrape(victim.url)
		return err == nil && s["batchpilot_lease_fresh"] == 1
	})
	w.close()
	w.check(t)

	// Every record acknowledged through the cuts is in a sink.
	acked := stopSenders()
	var dirs []string
	for _, m := range ms {
		if err := sigterm(t, m); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", m.name, err)
		}
		dirs = append(dirs, m.dir)
	}
	out, err := runVerifyCmd(t, writeIDs(t, acked), dirs...)
	t.Logf("verify after the cuts and heals: %s (%d acknowledged)", out, len(acked))
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
}

// partitionGossipPort is the gossip port of every node in the partition
// test: each has an address of its own, and a fixed port lets the lab drop
// gossip alone.
const partitionGossipPort = 7946

var staleRE = regexp.MustCompile(`budget lease stale.* age_ms=(\d+)`)

// leaseAgeAtFallback is the lease's age when the node noticed it was stale,
// from the node's own log.
func leaseAgeAtFallback(t *testing.T, m *member) time.Duration {
	t.Helper()
	f := staleRE.FindAllStringSubmatch(m.logs(), -1)
	if len(f) == 0 {
		t.Fatalf("%s did not log its fallback to the baseline", m.name)
	}
	ms, _ := strconv.Atoi(f[len(f)-1][1])
	return time.Duration(ms) * time.Millisecond
}
