package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
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
	clusterLimits = "epoch_ms=1000,lease_ttl_ms=3000,node_floor_bytes=4096,cluster_budget_bytes=40960,cpu_limit_percent=100,mem_limit_percent=100"
)

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

var addrsRE = regexp.MustCompile(`listening http=(\S+) syslog=(\S*) gossip=(\S+) raft=(\S+)`)

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
	p := &proc{cmd: exec.Command(full[0], full[1:]...), exited: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := addrsRE.FindStringSubmatch(line); m != nil {
				found <- m
			}
		}
		p.exited <- p.cmd.Wait()
	}()
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
// is gone, which would push everything else out of a failed test's log.
func quiet(log string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(log, "\n") {
		if !strings.Contains(line, "failed to heartbeat to") && !strings.Contains(line, "failed to appendEntries to") {
			b.WriteString(line)
		}
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

var memberSeriesRE = regexp.MustCompile(`^batchpilot_cluster_member\{name="([^"]*)",raft_role="([^"]*)",status="([^"]*)"\}$`)

// view is a member as one node sees it.
type view struct{ status, role string }

// members is the cluster membership as this scrape's node sees it.
func (m metrics) members() map[string]view {
	out := map[string]view{}
	for k := range m {
		if f := memberSeriesRE.FindStringSubmatch(k); f != nil {
			out[f[1]] = view{status: f[3], role: f[2]}
		}
	}
	return out
}

func (m metrics) int(name string) int64 { return int64(m[name]) }

// watcher scrapes every live member's /metrics every 200ms for the whole
// test and checks, on every sample, the two budget invariants:
//   - the latest epoch's grants sum to no more than the cluster budget;
//   - no node has more bytes in flight than its grant. A grant that was
//     just cut binds the batches that start after it; the ones already in
//     flight finish, so a sample is held to the larger of the node's grant
//     now and at its previous sample (a node's first sample, without a
//     previous one, only sets the bound).
//
// It also records every epoch it saw, and the aggregate in flight.
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
			if granted > budget {
				w.violations = append(w.violations, fmt.Sprintf("%s: epoch %d grants %.0f bytes, over the budget %.0f", name, epoch, granted, budget))
			}
			if e, ok := w.epochs[epoch]; !ok || granted > e.granted {
				w.epochs[epoch] = epochSeen{granted: granted, budget: budget, by: name}
			}
		}
		in, grant := m["batchpilot_inflight_bytes"], m["batchpilot_grant_bytes"]
		now := sample{at: time.Now(), epoch: int64(epoch), leaseEpoch: m.int("batchpilot_lease_epoch"), inflight: in, grant: grant,
			lease: m["batchpilot_lease_grant_bytes"], fresh: m["batchpilot_lease_fresh"] == 1}
		last, seen := w.last[name]
		if bound := max(grant, last.grant); seen && grant > 0 && in > bound {
			w.violations = append(w.violations, fmt.Sprintf("%s: %.0f bytes in flight, over its grant %.0f: at %s; before at %s", name, in, bound, now, last))
		}
		w.last[name] = now
		w.maxNodeIn[name] = max(w.maxNodeIn[name], in)
		aggIn += in
		if m["batchpilot_lease_fresh"] == 1 {
			aggGrant += m["batchpilot_lease_grant_bytes"] // a grant of some epoch, in force on its node
		}
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
		t.Fatalf("no budget epoch seen in %d samples", w.samples)
	}
	gaps := 0
	for i := 1; i < len(eps); i++ {
		gaps += int(eps[i] - eps[i-1] - 1)
	}
	t.Logf("watched %d samples: epochs %d..%d, %d seen (%d missed between samples); peak in flight: aggregate %.0f, per node %v; peak sum of the grants in force %.0f (budget %d)",
		w.samples, eps[0], eps[len(eps)-1], len(eps), gaps, w.maxAggIn, w.maxNodeIn, w.maxAggLive, testBudget)
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

// TestClusterLifecycle runs one cluster through its life: three nodes
// bootstrap, two join under load, the leader is killed, a node leaves, and
// the CLI reads and changes it. The subtests share the cluster and run in
// order; the watcher checks the budget invariants on every sample of all
// of them, and at the end every epoch in every node's Raft log is audited.
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
	var senders []*sender
	defer func() {
		for _, s := range senders {
			s.stop()
		}
	}()
	loopback := []string{"--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"three nodes bootstrap with --bootstrap-expect 3", func(t *testing.T) {
			n1 := launchMember(t, top, nil, "n1", filepath.Join(base, "n1"), append(loopback, "--bootstrap-expect", "3")...)
			n2 := launchMember(t, top, nil, "n2", filepath.Join(base, "n2"), append(loopback, "--bootstrap-expect", "3", "--join", n1.gossip)...)
			n3 := launchMember(t, top, nil, "n3", filepath.Join(base, "n3"), append(loopback, "--bootstrap-expect", "3", "--join", n1.gossip)...)
			all = append(all, n1, n2, n3)
			w.add(n1, n2, n3)
			took := waitSeen(t, all, []string{"n1", "n2", "n3"}, "alive", func(r string) bool { return r == "leader" || r == "voter" })
			leader := waitLeader(t, all...)
			pollFor(t, "budget epochs on every node", func() bool {
				for _, m := range all {
					if s, err := scrape(m.url); err != nil || s["batchpilot_cluster_epoch"] < 2 || s["batchpilot_lease_fresh"] != 1 {
						return false
					}
				}
				return true
			})
			t.Logf("three voters in %s; leader %s", took.Round(time.Millisecond), leader.name)
		}},
		{"two more join under load and become Raft members", func(t *testing.T) {
			for i, m := range all {
				senders = append(senders, startSender(m.url, fmt.Sprintf("load%d", i), 50, 2))
			}
			// A joiner is given --bootstrap-expect too: it sees a cluster
			// with Raft state and waits to be added instead of starting one.
			n4 := launchMember(t, top, nil, "n4", filepath.Join(base, "n4"), append(loopback, "--bootstrap-expect", "3", "--join", all[1].gossip)...)
			n5 := launchMember(t, top, nil, "n5", filepath.Join(base, "n5"), append(loopback, "--join", all[2].gossip)...)
			all = append(all, n4, n5)
			w.add(n4, n5)
			senders = append(senders, startSender(n4.url, "load3", 50, 2), startSender(n5.url, "load4", 50, 2))
			took := waitSeen(t, all, []string{"n1", "n2", "n3", "n4", "n5"}, "alive", inRaft)
			pollFor(t, "n4 and n5 to hold fresh grants", func() bool {
				for _, m := range []*member{n4, n5} {
					if s, err := scrape(m.url); err != nil || s["batchpilot_lease_fresh"] != 1 || s["batchpilot_grant_bytes"] < testFloor {
						return false
					}
				}
				return true
			})
			for _, m := range []*member{n4, n5} {
				if strings.Contains(m.logs(), "bootstrapping raft cluster") {
					t.Errorf("%s bootstrapped a cluster of its own", m.name)
				}
			}
			pollFor(t, "records acknowledged by every node", func() bool {
				for _, s := range senders {
					if s.count() < 500 {
						return false
					}
				}
				return true
			})
			s, _ := scrape(all[0].url)
			t.Logf("joined in %s; roles %v", took.Round(time.Millisecond), s.members())
		}},
		{"kill -9 of the leader gives a new leader and budgets continue", func(t *testing.T) {
			old := waitLeader(t, live()...)
			s, err := scrape(old.url)
			if err != nil {
				t.Fatal(err)
			}
			term, epoch := s.int("batchpilot_raft_term"), s.int("batchpilot_cluster_epoch")
			w.remove(old.name)
			if err := old.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = old.waitExit(t)
			killed := time.Now()
			rest := live()
			leader := waitLeader(t, rest...)
			elected := time.Since(killed)
			var newEpoch int64
			pollFor(t, "allocating epochs of the new leader on every survivor", func() bool {
				for _, m := range rest {
					s, err := scrape(m.url)
					if err != nil || s.int("batchpilot_raft_term") <= term || s["batchpilot_lease_fresh"] != 1 ||
						s["batchpilot_cluster_learning"] != 0 || s.int("batchpilot_cluster_epoch") < epoch+3 {
						return false
					}
					newEpoch = s.int("batchpilot_cluster_epoch")
				}
				return true
			})
			if leader == old {
				t.Fatalf("the killed node is still the leader")
			}
			t.Logf("killed leader %s at term %d epoch %d; %s leads after %s; epoch %d after %s",
				old.name, term, epoch, leader.name, elected.Round(time.Millisecond), newEpoch, time.Since(killed).Round(time.Millisecond))
		}},
		{"a node that leaves is removed from Raft", func(t *testing.T) {
			leader := waitLeader(t, live()...)
			var leaver *member
			for _, m := range live() {
				if m != leader {
					leaver = m
				}
			}
			w.remove(leaver.name)
			start := time.Now()
			if err := sigterm(t, leaver); err != nil {
				t.Fatalf("%s exit after SIGTERM: %v\n%s", leaver.name, err, leaver.logs())
			}
			rest := live()
			took := waitSeen(t, rest, []string{leaver.name}, "left", func(r string) bool { return r == "none" })
			t.Logf("%s left; out of Raft %s after SIGTERM (%s after it exited)", leaver.name,
				time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		}},
		{"members and limits set through the CLI", func(t *testing.T) {
			m := live()[0]
			if resp, err := http.Get(m.url + "/api/v1/cluster"); err != nil || resp.StatusCode != 200 {
				if resp != nil {
					resp.Body.Close()
				}
				t.Skip("GET /api/v1/cluster is not served by this build yet")
			}
			out, errOut, code := runCLI(t, nil, "members", "--addr", m.url, "--json")
			if code != 0 {
				t.Fatalf("members: exit %d: %s", code, errOut)
			}
			var st consensus.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatal(err)
			}
			roles := map[string]string{}
			for _, mem := range st.Members {
				roles[mem.Name] = string(mem.Status) + "/" + mem.RaftRole
			}
			for _, l := range live() {
				if r := roles[l.name]; r != "alive/leader" && r != "alive/voter" && r != "alive/nonvoter" {
					t.Errorf("members shows %s as %q", l.name, r)
				}
			}
			table, _, _ := runCLI(t, nil, "members", "--addr", m.url)
			t.Logf("batchpilot members:\n%s", table)

			// Cut the budget from any node: the CLI's PUT is forwarded to
			// the leader, and every node's FSM has the new budget after.
			const cut = 32 << 10
			out, errOut, code = runCLI(t, nil, "limits", "set", "--addr", m.url, fmt.Sprintf("cluster_budget_bytes=%d", cut))
			if code != 0 || !strings.Contains(out, fmt.Sprintf("cluster_budget_bytes  %d", cut)) {
				t.Fatalf("limits set: exit %d\n%s%s", code, out, errOut)
			}
			pollFor(t, "every node to allocate within the cut budget", func() bool {
				for _, l := range live() {
					s, err := scrape(l.url)
					if err != nil || s["batchpilot_cluster_budget_bytes"] != cut || s["batchpilot_cluster_granted_bytes"] > cut {
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

	// Stop the rest and audit every epoch each node's Raft log holds.
	for _, m := range live() {
		_ = sigterm(t, m)
	}
	auditRaftLogs(t, all)
}

// auditRaftLogs reads every budget epoch proposed in the nodes' Raft logs
// (the processes have exited, so the stores are free) and checks that no
// epoch granted more than its cluster budget, and that every epoch that
// took effect was within the budget in force when it was applied.
func auditRaftLogs(t *testing.T, ms []*member) {
	t.Helper()
	type command struct {
		Type   string                 `json:"type"`
		Limits *consensus.Limits      `json:"limits"`
		Patch  *consensus.LimitsPatch `json:"patch"`
		Alloc  *consensus.Allocation  `json:"allocation"`
	}
	epochs := map[uint64]int64{}
	for _, m := range ms {
		path := filepath.Join(m.dir, "raft", "raft.db")
		store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second}})
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		first, _ := store.FirstIndex()
		last, _ := store.LastIndex()
		var limits consensus.Limits
		var current uint64
		for i := first; i <= last && i > 0; i++ {
			var l raft.Log
			if err := store.GetLog(i, &l); err != nil || l.Type != raft.LogCommand {
				continue
			}
			var c command
			if err := json.Unmarshal(l.Data, &c); err != nil {
				t.Errorf("%s: log %d is not a command: %v", m.name, i, err)
				continue
			}
			switch {
			case c.Type == "init" && c.Limits != nil && limits == (consensus.Limits{}):
				limits = *c.Limits
			case c.Type == "set_limits" && c.Patch != nil:
				if next := c.Patch.Apply(limits); next.Validate() == nil {
					limits = next
				}
			case c.Type == "allocate" && c.Alloc != nil:
				a := c.Alloc
				if sum := a.Grants.Sum(); sum > a.Budget {
					t.Errorf("%s: epoch %d (log %d) grants %d bytes, over the budget %d it was made for", m.name, a.Epoch, i, sum, a.Budget)
				}
				if a.Epoch > current && a.Grants.Sum() <= limits.ClusterBudgetBytes {
					current = a.Epoch // the FSM takes it
					epochs[a.Epoch] = a.Grants.Sum()
				}
			}
		}
		store.Close()
	}
	if len(epochs) == 0 {
		t.Fatal("no budget epoch in any Raft log")
	}
	keys := make([]uint64, 0, len(epochs))
	for e := range epochs {
		keys = append(keys, e)
	}
	slices.Sort(keys)
	t.Logf("audited the Raft logs of %d nodes: epochs %d..%d (%d applied), every one within its budget", len(ms), keys[0], keys[len(keys)-1], len(keys))
}

// TestClusterPartition cuts one node off from the others with a real
// network partition (netLab: the router between the nodes' network
// namespaces drops their packets silently, and the test still reaches every
// node). The cut-off node must fall back to the safe baseline on its own
// clock within the lease TTL, while the rest goes on with the node's floor
// reserved; after the cut heals it rejoins and takes grants again.
func TestClusterPartition(t *testing.T) {
	lab := newNetLab(t, 3)
	w := startWatcher(t)
	base := t.TempDir()
	var ms []*member
	for k := 0; k < 3; k++ {
		ip := lab.IP(k)
		args := []string{"--http-addr", ip + ":0", "--gossip-addr", ip + ":0", "--raft-addr", ip + ":0", "--bootstrap-expect", "3"}
		if k > 0 {
			args = append(args, "--join", ms[0].gossip)
		}
		ms = append(ms, launchMember(t, t, lab.Wrap(k), fmt.Sprintf("p%d", k+1), filepath.Join(base, fmt.Sprintf("p%d", k+1)), args...))
	}
	w.add(ms...)
	waitSeen(t, ms, []string{"p1", "p2", "p3"}, "alive", func(r string) bool { return r == "leader" || r == "voter" })
	leader := waitLeader(t, ms...)
	var victim *member
	var k int
	for i, m := range ms {
		if m != leader {
			victim, k = m, i
		}
	}
	var rest []*member
	for _, m := range ms {
		if m != victim {
			rest = append(rest, m)
		}
	}
	var senders []*sender
	for i, m := range ms {
		workers := 2
		if m == victim {
			workers = 4 // so that it wants, and holds, more than the floor
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
	var before metrics
	pollFor(t, victim.name+" to hold a fresh grant above the floor", func() bool {
		s, err := scrape(victim.url)
		before = s
		return err == nil && s["batchpilot_lease_fresh"] == 1 && s["batchpilot_grant_bytes"] > s["batchpilot_cluster_floor_bytes"]
	})

	lab.Cut(k)
	cut := time.Now()
	var floor float64
	fellBack := pollFor(t, victim.name+" to fall back to the safe baseline", func() bool {
		s, err := scrape(victim.url)
		floor = s["batchpilot_cluster_floor_bytes"]
		return err == nil && s["batchpilot_lease_fresh"] == 0 && s["batchpilot_grant_bytes"] == floor
	})
	if limit := testLeaseTTL + time.Second; fellBack > limit {
		t.Errorf("%s fell back %s after the cut, want within the lease TTL %s (+1s to observe it)", victim.name, fellBack, testLeaseTTL)
	}
	age := leaseAgeAtFallback(t, victim)
	if age > testLeaseTTL+300*time.Millisecond {
		t.Errorf("%s's lease was %s old when it fell back, want the TTL %s (+ its 100ms apply loop)", victim.name, age, testLeaseTTL)
	}

	// The other side goes on: epochs continue, and the leader keeps the
	// cut-off node's floor in every allocation, so its baseline plus the
	// others' grants stay within the budget.
	epochAtCut := int64(0)
	for _, m := range rest {
		if s, err := scrape(m.url); err == nil {
			epochAtCut = max(epochAtCut, s.int("batchpilot_cluster_epoch"))
		}
	}
	reserved := 0
	pollFor(t, "the others to find "+victim.name+" dead and go on with epochs", func() bool {
		ok := true
		for _, m := range rest {
			s, err := scrape(m.url)
			if err != nil {
				return false
			}
			if g := s[`batchpilot_cluster_member_grant_bytes{name="`+victim.name+`"}`]; g < floor {
				t.Errorf("%s's epoch %d grants the cut-off %s %.0f bytes, below its baseline %.0f", m.name, s.int("batchpilot_cluster_epoch"), victim.name, g, floor)
			} else {
				reserved++
			}
			if s.members()[victim.name].status != "dead" || s.int("batchpilot_cluster_epoch") < epochAtCut+3 || s["batchpilot_lease_fresh"] != 1 {
				ok = false
			}
		}
		return ok
	})
	held := time.Since(cut)

	lab.Heal(k)
	healed := time.Now()
	var epochAtHeal int64
	if s, err := scrape(rest[0].url); err == nil {
		epochAtHeal = s.int("batchpilot_cluster_epoch")
	}
	waitSeen(t, ms, []string{"p1", "p2", "p3"}, "alive", inRaft)
	pollFor(t, victim.name+" to take fresh grants again", func() bool {
		s, err := scrape(victim.url)
		return err == nil && s["batchpilot_lease_fresh"] == 1 && s.int("batchpilot_lease_epoch") > epochAtHeal
	})
	t.Logf("%s (grant %.0f, floor %.0f) cut off for %s: on the baseline %s after the cut (lease age %s); the others reserved its floor in %d samples; rejoined and granted %s after the heal",
		victim.name, before["batchpilot_grant_bytes"], floor, held.Round(time.Millisecond), fellBack.Round(time.Millisecond),
		age, reserved, time.Since(healed).Round(time.Millisecond))

	// A cut that outlasts the dead grace: the leader removes the node from
	// Raft (30s after gossip found it dead, when gossip has also stopped
	// telling the dead anything). After the heal the two sides must still
	// find each other, and the node comes back as a new Raft member.
	lab.Cut(k)
	cut = time.Now()
	waitSeen(t, rest, []string{victim.name}, "dead", func(r string) bool { return r == "none" })
	removed := time.Since(cut)
	// Hold the cut five epochs longer: each node stops gossiping to a dead
	// member 30s after it found it dead, and the nodes found it at slightly
	// different times; after this, only a deliberate reconnect brings the
	// sides together.
	s, err := scrape(rest[0].url)
	if err != nil {
		t.Fatal(err)
	}
	until := s.int("batchpilot_cluster_epoch") + 5
	pollFor(t, "five more epochs with the node cut off", func() bool {
		s, err := scrape(rest[0].url)
		return err == nil && s.int("batchpilot_cluster_epoch") >= until
	})
	lab.Heal(k)
	healed = time.Now()
	if s, err := scrape(rest[0].url); err == nil {
		epochAtHeal = s.int("batchpilot_cluster_epoch")
	}
	waitSeen(t, ms, []string{"p1", "p2", "p3"}, "alive", inRaft)
	pollFor(t, victim.name+" to take fresh grants after a long cut", func() bool {
		s, err := scrape(victim.url)
		return err == nil && s["batchpilot_lease_fresh"] == 1 && s.int("batchpilot_lease_epoch") > epochAtHeal
	})
	t.Logf("cut off again for %s: out of Raft %s after the cut; back in gossip and Raft, and granted, %s after the heal",
		healed.Sub(cut).Round(time.Millisecond), removed.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
	w.close()
	w.check(t)

	// Every record acknowledged through both cuts is in a sink.
	acked := stopSenders()
	var dirs []string
	for _, m := range ms {
		if err := sigterm(t, m); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", m.name, err)
		}
		dirs = append(dirs, m.dir)
	}
	out, err := runVerifyCmd(t, writeIDs(t, acked), dirs...)
	t.Logf("verify after two cuts and heals: %s (%d acknowledged)", out, len(acked))
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
}

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
