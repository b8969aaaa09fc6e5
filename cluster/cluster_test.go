package cluster

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
)

// waitTimeout is generous: -race on two busy cores is slow, and a poll
// returns as soon as the condition holds.
const waitTimeout = clustertest.WaitTimeout

func startNode(t *testing.T, name string, mutate func(*Config), join ...string) (*Cluster, struct{}) {
	t.Helper()
	cfg := Config{
		NodeName: name,
		DataDir:  t.TempDir(),
		BindAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:1" + name,
		Join:     join,
		Logger:   clustertest.Logger(t),
		Version:  "test",
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { c.Shutdown() })
	return c, struct{}{}
}

func statusOf(c *Cluster, name string) Status {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

func TestMembersJoinGossipIdentityAndLeave(t *testing.T) {
	n1, _ := startNode(t, "n1", func(c *Config) { c.Role = RoleServer })
	seen := recordEvents(t, n1)
	n2, _ := startNode(t, "n2", nil, n1.Addr())
	n3, _ := startNode(t, "n3", nil, n1.Addr())
	if !n2.Joined() || !n3.Joined() {
		t.Fatal("nodes did not report joining a running member")
	}

	for _, c := range []*Cluster{n1, n2, n3} {
		clustertest.WaitFor(t, c.Name()+" to see three alive members", func() bool {
			alive := 0
			for _, m := range c.Members() {
				if m.Status == StatusAlive && m.ID != "" {
					alive++
				}
			}
			return alive == 3
		})
	}

	// n2's identity reaches n1 through gossip: role, addresses, version.
	m, _ := n1.MemberByID(n2.ID())
	if m.HTTPAddr != "127.0.0.1:1n2" || m.Addr != n2.Addr() || m.Role != RoleWorker || m.Version != "test" {
		t.Fatalf("n2 as n1 sees it: %+v", m)
	}
	if m, _ := n2.MemberByID(n1.ID()); m.Role != RoleServer {
		t.Fatalf("n1 is a %q on n2, want server", m.Role)
	}
	// AliveServers lists the servers only, the node itself when it is one.
	for _, c := range []*Cluster{n1, n2} {
		if got := c.AliveServers(); len(got) != 1 || got[0].Name != "n1" || got[0].HTTPAddr != "127.0.0.1:1n1" {
			t.Fatalf("AliveServers on %s = %+v, want n1 alone", c.Name(), got)
		}
	}

	// A cluster id set on the server reaches the workers, which adopt it.
	if err := n1.SetClusterID("c1"); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, "n2 and n3 to adopt the server's cluster id", func() bool {
		return n2.ClusterID() == "c1" && n3.ClusterID() == "c1"
	})

	// Raft meta set by the consensus side is gossiped too.
	if err := n3.SetRaft(RaftMeta{Addr: "127.0.0.1:9", BootstrapExpect: 3, HasState: true, BootstrapView: 5}); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, "n3's raft meta on n1", func() bool {
		m, ok := n1.MemberByID(n3.ID())
		return ok && m.Raft.Addr == "127.0.0.1:9" && m.Raft.HasState && m.Raft.BootstrapExpect == 3
	})

	// An announced leave shows in the meta while the member is still
	// alive; the leave itself then shows as left, and subscribers hear it.
	if err := n3.AnnounceLeave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, "n3 alive and leaving on n1", func() bool {
		m, ok := n1.MemberByID(n3.ID())
		return ok && m.Status == StatusAlive && m.Leaving
	})
	if err := n3.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, "n3 left on n1", func() bool { return statusOf(n1, "n3") == StatusLeft })
	clustertest.WaitFor(t, "a leave event for n3", func() bool { return seen(EventLeave, "n3") })
	if !seen(EventJoin, "n2") || seen(EventFail, "n3") {
		t.Fatal("n2 joined without a join event, or n3's leave was reported as a failure")
	}

	// An abrupt stop is found dead by the failure detector.
	n2.Shutdown()
	clustertest.WaitFor(t, "n2 dead on n1", func() bool { return statusOf(n1, "n2") == StatusDead })
	clustertest.WaitFor(t, "a fail event for n2", func() bool { return seen(EventFail, "n2") })
}

func TestALeaveIntentMakesAFailureALeaveWhicheverComesFirst(t *testing.T) {
	n1, _ := startNode(t, "n1", nil)
	seen := recordEvents(t, n1)
	n2, _ := startNode(t, "n2", nil, n1.Addr())
	n3, _ := startNode(t, "n3", nil, n1.Addr())
	clustertest.WaitFor(t, "n2 and n3 alive on n1", func() bool {
		return statusOf(n1, "n2") == StatusAlive && statusOf(n1, "n3") == StatusAlive
	})
	// n3's intent reaches n1 before the failure, whose meta had not
	// announced the leave yet; n2's failure is found first.
	delegate{n1}.NotifyMsg(append([]byte{msgLeaveIntent}, "n3"...))
	n2.Shutdown()
	n3.Shutdown()
	clustertest.WaitFor(t, "n2 dead and n3 gone on n1", func() bool {
		s := statusOf(n1, "n3")
		return statusOf(n1, "n2") == StatusDead && (s == StatusLeft || s == StatusDead)
	})
	if s := statusOf(n1, "n3"); s != StatusLeft {
		t.Fatalf("n3 is %q: a failure after its leave intent must count as a leave", s)
	}
	delegate{n1}.NotifyMsg(append([]byte{msgLeaveIntent}, "n2"...))
	if s := statusOf(n1, "n2"); s != StatusLeft {
		t.Fatalf("n2 is %q after its leave intent, want left", s)
	}
	clustertest.WaitFor(t, "leave events for n2 and n3", func() bool { return seen(EventLeave, "n2") && seen(EventLeave, "n3") })
	// Other user messages are not leave intents.
	delegate{n1}.NotifyMsg([]byte{msgLeaveIntent})
	delegate{n1}.NotifyMsg([]byte("\x02n1"))
	if s := statusOf(n1, "n1"); s != StatusAlive {
		t.Fatalf("n1 sees itself as %q after stray messages", s)
	}
}

// recordEvents subscribes to c and records every event; the function it
// returns says whether an event of the type for the member was seen.
func recordEvents(t *testing.T, c *Cluster) func(EventType, string) bool {
	events, cancel := c.Subscribe(1024)
	t.Cleanup(cancel)
	var mu sync.Mutex
	seen := map[string]bool{}
	go func() {
		for ev := range events {
			mu.Lock()
			seen[ev.Type.String()+"/"+ev.Member.Name] = true
			mu.Unlock()
		}
	}()
	return func(typ EventType, name string) bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[typ.String()+"/"+name]
	}
}

func TestAMemberOfAnotherClusterIDIsRefused(t *testing.T) {
	a, _ := startNode(t, "a1", func(c *Config) { c.Role = RoleServer; c.ClusterID = "cluster-a" })
	b, _ := startNode(t, "b1", func(c *Config) {
		c.Role = RoleServer
		c.ClusterID = "cluster-b"
		c.RetryJoinInterval = time.Hour
	}, a.Addr())
	if b.Joined() {
		t.Fatal("a server of another cluster id joined")
	}
	if n := len(a.Members()); n != 1 {
		t.Fatalf("cluster-a has %d members, want 1", n)
	}
	// b1's join returns once b1 refuses a1, which may be before a1 has
	// refused b1 in its own merge.
	clustertest.WaitFor(t, "a1 to record refusing b1 for cluster-b", func() bool { return a.Refused()["b1"] == "cluster-b" })
	// A new node without a cluster id is let in, and the id is kept in its
	// data dir, so that after a restart it refuses other clusters.
	dir := t.TempDir()
	w, _ := startNode(t, "w1", func(c *Config) { c.DataDir = dir }, a.Addr())
	clustertest.WaitFor(t, "w1 to adopt cluster-a", func() bool { return w.ClusterID() == "cluster-a" })
	if id, err := loadClusterID(dir); err != nil || id != "cluster-a" {
		t.Fatalf("stored cluster id = %q, %v", id, err)
	}
}

func TestGossipKeysRotate(t *testing.T) {
	key := func(b byte) string {
		return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune('a'+b)), 32)))
	}
	n1, _ := startNode(t, "n1", func(c *Config) { c.EncryptKey = key(1) })
	n2, _ := startNode(t, "n2", func(c *Config) { c.EncryptKey = key(1) }, n1.Addr())
	clustertest.WaitFor(t, "n1 and n2 to see each other", func() bool { return statusOf(n1, "n2") == StatusAlive })
	// Rotation: install the new key everywhere, switch, then drop the old.
	for _, c := range []*Cluster{n1, n2} {
		if err := c.SetKeys(key(1), []string{key(2)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*Cluster{n1, n2} {
		if err := c.SetKeys(key(2), nil); err != nil {
			t.Fatal(err)
		}
	}
	n3, _ := startNode(t, "n3", func(c *Config) { c.EncryptKey = key(2) }, n2.Addr())
	if !n3.Joined() {
		t.Fatal("a node with the new key could not join after the rotation")
	}
	n4, _ := startNode(t, "n4", func(c *Config) { c.EncryptKey = key(1); c.RetryJoinInterval = time.Hour }, n1.Addr())
	if n4.Joined() {
		t.Fatal("a node with the dropped key joined")
	}
	if err := n1.SetKeys("bad", nil); err == nil {
		t.Fatal("a bad key was taken")
	}
	plain, _ := startNode(t, "plain", nil)
	if err := plain.SetKeys(key(1), nil); err == nil {
		t.Fatal("keys were set on gossip started without encryption")
	}
}

func TestLabelsKeepClustersApart(t *testing.T) {
	a, _ := startNode(t, "a1", func(c *Config) { c.Label = "cluster-a" })
	b, _ := startNode(t, "b1", func(c *Config) {
		c.Label = "cluster-b"
		c.RetryJoinInterval = time.Hour
	}, a.Addr())
	if b.Joined() {
		t.Fatal("a node with another label joined")
	}
	if n := len(a.Members()); n != 1 {
		t.Fatalf("cluster-a has %d members, want 1", n)
	}
}

func TestEncryptedGossip(t *testing.T) {
	key := func(b byte) string {
		k := make([]byte, 32)
		for i := range k {
			k[i] = b
		}
		return base64.StdEncoding.EncodeToString(k)
	}
	withKey := func(k string) func(*Config) {
		return func(c *Config) { c.EncryptKey = k; c.RetryJoinInterval = time.Hour }
	}
	n1, _ := startNode(t, "n1", withKey(key(1)))
	n2, _ := startNode(t, "n2", withKey(key(1)), n1.Addr())
	if !n2.Joined() {
		t.Fatal("a node with the same key could not join")
	}
	n3, _ := startNode(t, "n3", withKey(key(2)), n1.Addr())
	if n3.Joined() {
		t.Fatal("a node with another key joined")
	}
	clustertest.WaitFor(t, "n1 to see n2", func() bool { return statusOf(n1, "n2") == StatusAlive })
	if s := statusOf(n1, "n3"); s != "" {
		t.Fatalf("n1 knows n3 as %q", s)
	}
}

func TestJoinIsRetriedUntilASeedAnswers(t *testing.T) {
	// Reserve a gossip address by starting a node, then stop it so the
	// address is dead when n2 starts.
	seed, _ := startNode(t, "seed", nil)
	addr := seed.Addr()
	seed.Shutdown()

	n2, _ := startNode(t, "n2", func(c *Config) { c.RetryJoinInterval = 50 * time.Millisecond }, addr)
	if n2.Joined() {
		t.Fatal("joined a stopped seed")
	}
	n3, _ := startNode(t, "n3", func(c *Config) {
		c.BindAddr = addr
	})
	clustertest.WaitFor(t, fmt.Sprintf("n2 to join n3 at %s", addr), func() bool {
		return n2.Joined() && statusOf(n3, "n2") == StatusAlive
	})
}
