package consensus

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
)

func testLimits() Limits {
	l := DefaultLimits()
	l.ClusterBudgetBytes = 100 * mib
	l.NodeFloorBytes = 10 * mib
	l.LeaseTTLms = 3000
	l.MaxGrowthPercent = 1000
	return l
}

// learned returns a table past its learning mode.
func learned(now time.Time, l Limits) (*LeaseTable, time.Time) {
	t := NewLeaseTable(now, 7, l.LeaseTTL())
	return t, now.Add(l.LeaseTTL() + SkewMargin(l.LeaseTTL()))
}

func TestLeaseTableAnswersWithTheRulesOfDoorman(t *testing.T) {
	l := testLimits()
	ttl := l.LeaseTTL()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	t.Run("a new leader learns for one TTL: it gives no more than a node has", func(t *testing.T) {
		tab := NewLeaseTable(start, 7, ttl)
		ans := tab.Request(start, LeaseRequest{ID: "a", Want: 90 * mib, Has: 30 * mib}, l, []string{"a", "b"})
		if !ans.Learning || ans.Grant != 30*mib || ans.Epoch != 7 {
			t.Fatalf("learning answer %+v, want the 30 MiB it has, epoch 7", ans)
		}
		ans = tab.Request(start.Add(time.Second), LeaseRequest{ID: "b", Want: 90 * mib, Has: 0}, l, []string{"a", "b"})
		if ans.Grant != ans.Baseline {
			t.Fatalf("a node with nothing got %d in learning mode, want its baseline %d", ans.Grant, ans.Baseline)
		}
		after := start.Add(ttl + SkewMargin(ttl))
		if ans := tab.Request(after, LeaseRequest{ID: "b", Want: 40 * mib}, l, []string{"a", "b"}); ans.Learning {
			t.Fatal("still learning after TTL plus the skew margin")
		}
	})

	t.Run("capacity under an unexpired lease is not handed out again", func(t *testing.T) {
		tab, now := learned(start, l)
		a := tab.Request(now, LeaseRequest{ID: "a", Want: 90 * mib}, l, []string{"a", "b"})
		if a.Grant != 90*mib-joinHeadroom {
			t.Fatalf("a alone wanting 90 MiB got %d; want 90 MiB (b's 10 MiB baseline and the join headroom reserved)", a.Grant)
		}
		// b wants as much: its fair share is half, but a holds its grant
		// until its lease expires, so b gets only what is free.
		b := tab.Request(now.Add(time.Second), LeaseRequest{ID: "b", Want: 90 * mib}, l, []string{"a", "b"})
		if b.Grant != 10*mib {
			t.Fatalf("b got %d while a holds 90 MiB; want what is free", b.Grant)
		}
		// a's next refresh brings it down to its fair share; until a says
		// it obeys the lower grant, b still gets no more.
		a = tab.Request(now.Add(2*time.Second), LeaseRequest{ID: "a", Want: 90 * mib, Has: a.Grant}, l, []string{"a", "b"})
		if a.Grant != 50*mib {
			t.Fatalf("a's refresh: %d, want its 50 MiB share", a.Grant)
		}
		if b2 := tab.Request(now.Add(2500*time.Millisecond), LeaseRequest{ID: "b", Want: 90 * mib, Has: b.Grant}, l, []string{"a", "b"}); b2.Grant > b.Grant {
			t.Fatalf("b got %d before a confirmed its lower grant", b2.Grant)
		}
		tab.Request(now.Add(3*time.Second), LeaseRequest{ID: "a", Want: 90 * mib, Has: a.Grant}, l, []string{"a", "b"})
		b = tab.Request(now.Add(3500*time.Millisecond), LeaseRequest{ID: "b", Want: 90 * mib, Has: b.Grant}, l, []string{"a", "b"})
		if b.Grant != 50*mib-joinHeadroom {
			t.Fatalf("after a confirmed, b got %d, want the other half", b.Grant)
		}
	})

	t.Run("a silent node's grant is reused only after its lease expires with the margin", func(t *testing.T) {
		tab, now := learned(start, l)
		tab.Request(now, LeaseRequest{ID: "a", Want: 90 * mib}, l, []string{"a", "b"})
		// a goes silent. Within TTL+margin b gets no more than the rest.
		b := tab.Request(now.Add(ttl), LeaseRequest{ID: "b", Want: 90 * mib}, l, []string{"a", "b"})
		if b.Grant > 100*mib-90*mib {
			t.Fatalf("b got %d while a's lease is unexpired", b.Grant)
		}
		b = tab.Request(now.Add(ttl+SkewMargin(ttl)+time.Millisecond), LeaseRequest{ID: "b", Want: 90 * mib, Has: b.Grant}, l, []string{"a", "b"})
		if b.Grant != 90*mib-joinHeadroom {
			t.Fatalf("after a's lease expired b got %d, want 90 MiB (a's baseline stays reserved)", b.Grant)
		}
	})

	t.Run("members not heard from are reserved their initial baseline", func(t *testing.T) {
		tab, now := learned(start, l)
		alive := []string{"a"}
		for i := range 9 {
			alive = append(alive, fmt.Sprint("w", i))
		}
		a := tab.Request(now, LeaseRequest{ID: "a", Want: 100 * mib}, l, alive)
		// Ten nodes: baselines of 5 MiB (half the budget shared), nine
		// of them reserved for the members a has not heard from.
		if a.Grant != 100*mib-9*5*mib-joinHeadroom {
			t.Fatalf("a got %d, want the budget less 9 baselines of 5 MiB", a.Grant)
		}
	})

	t.Run("answers carry the lease terms", func(t *testing.T) {
		tab, now := learned(start, l)
		a := tab.Request(now, LeaseRequest{ID: "a", Want: mib}, l, nil)
		if a.TTLms != 3000 || a.RefreshMS != 1000 || a.Budget != 100*mib || a.Limits != l {
			t.Fatalf("answer %+v", a)
		}
	})
}

// TestLeaseTableNeverOvercommits drives a table with random requests,
// silences and clock steps, and checks at every step the invariant the
// nodes rely on: what the nodes may obey (each one's last grant until its
// own expiry, TTL after it sent the request; its baseline after) sums to
// at most the budget.
func TestLeaseTableNeverOvercommits(t *testing.T) {
	l := testLimits()
	ttl := l.LeaseTTL()
	r := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nodes, alive := startObeying(12)
	// The old leader's grants, which the new one learns.
	for i, id := range alive[:4] {
		nodes[id].grant, nodes[id].until = int64(i+1)*5*mib, now.Add(ttl/2)
	}
	tab := NewLeaseTable(now, 2, ttl)
	for step := range 5000 {
		now = now.Add(time.Duration(r.IntN(400)) * time.Millisecond)
		id := alive[r.IntN(len(alive))]
		n := nodes[id]
		if r.IntN(10) == 0 && id != "n0" {
			continue // this node is cut off: it asks nothing
		}
		has := n.baseline
		if now.Before(n.until) {
			has = n.grant
		}
		ans := tab.Request(now, LeaseRequest{ID: id, Want: r.Int64N(80 * mib), Has: has}, l, alive)
		n.grant, n.baseline, n.until = ans.Grant, ans.Baseline, now.Add(ttl)
		var sum int64
		for _, o := range nodes {
			if now.Before(o.until) {
				sum += max(o.grant, o.baseline)
			} else {
				sum += o.baseline
			}
		}
		if sum > l.ClusterBudgetBytes {
			t.Fatalf("step %d: the nodes may obey %d bytes, over the budget %d", step, sum, l.ClusterBudgetBytes)
		}
	}
}

func TestLeaseTableForgetsNodesThatLeft(t *testing.T) {
	l := testLimits()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tab, now := learned(now, l)
	tab.Request(now, LeaseRequest{ID: "a", Want: mib}, l, nil)
	tab.Forget(now, []string{"a"}, time.Hour)
	if ls, _ := tab.Snapshot(now); len(ls) != 1 {
		t.Fatal("a node that left was forgotten while its lease runs")
	}
	later := now.Add(l.LeaseTTL() + SkewMargin(l.LeaseTTL()))
	tab.Forget(later, []string{"a"}, time.Hour)
	if ls, _ := tab.Snapshot(later); len(ls) != 0 {
		t.Fatal("a node that left is still reserved after its lease expired")
	}
}

func TestLeaseRequestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  LeaseRequest
		ok   bool
	}{
		{"a request with an id is valid", LeaseRequest{ID: "x", Want: 1}, true},
		{"an empty id is refused", LeaseRequest{}, false},
		{"a negative want is refused", LeaseRequest{ID: "x", Want: -1}, false},
		{"a long name is refused", LeaseRequest{ID: "x", Name: string(make([]byte, 129))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.req.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
}

func TestLeaseTableKeepsGrantsWithinALearnedBudgetThatFalls(t *testing.T) {
	l := testLimits()
	ttl := l.LeaseTTL()
	r := rand.New(rand.NewPCG(5, 6))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nodes, alive := startObeying(8)
	obeyedSum := func(now time.Time) int64 {
		var sum int64
		for _, o := range nodes {
			if now.Before(o.until) {
				sum += max(o.grant, o.baseline)
			} else {
				sum += o.baseline
			}
		}
		return sum
	}
	tab, now := learned(now, l)
	floor := LearnedFloor(l, len(alive))
	lowered := 0
	for step := range 5000 {
		if step%40 == 0 {
			b := floor + r.Int64N(l.ClusterBudgetBytes-floor+1)
			if b < tab.Budget(l) {
				lowered++
			}
			tab.SetBudget(b)
		}
		now = now.Add(time.Duration(r.IntN(400)) * time.Millisecond)
		id := alive[r.IntN(len(alive))]
		n := nodes[id]
		if r.IntN(10) == 0 {
			continue // cut off: it asks nothing and keeps what it obeys
		}
		has := n.baseline
		if now.Before(n.until) {
			has = n.grant
		}
		before, budget := obeyedSum(now), tab.Budget(l)
		ans := tab.Request(now, LeaseRequest{ID: id, Want: r.Int64N(80 * mib), Has: has}, l, alive)
		if ans.Budget != budget {
			t.Fatalf("step %d: answer names budget %d, the table's is %d", step, ans.Budget, budget)
		}
		n.grant, n.baseline, n.until = ans.Grant, ans.Baseline, now.Add(ttl)
		sum := obeyedSum(now)
		if sum > l.ClusterBudgetBytes {
			t.Fatalf("step %d: the nodes may obey %d bytes, over the ceiling %d", step, sum, l.ClusterBudgetBytes)
		}
		if sum > max(budget, before) {
			t.Fatalf("step %d: a grant raised what the nodes may obey from %d to %d, over the budget %d in force", step, before, sum, budget)
		}
	}
	if lowered < 20 {
		t.Fatalf("the budget was lowered only %d times: the test did not exercise falling budgets", lowered)
	}

	t.Run("a lowered budget is in force once every node asked again", func(t *testing.T) {
		tab, now := learned(now, l)
		ids := []string{"a", "b", "c"}
		grants := map[string]int64{}
		for range 4 { // grow to the full shares
			for _, id := range ids {
				grants[id] = tab.Request(now, LeaseRequest{ID: id, Want: 90 * mib, Has: grants[id]}, l, ids).Grant
				now = now.Add(100 * time.Millisecond)
			}
		}
		if _, held := tab.Snapshot(now); held < 80*mib {
			t.Fatalf("the nodes hold %d before the budget falls; want most of the 100 MiB", held)
		}
		tab.SetBudget(40 * mib)
		for round := range 2 { // each asks, then reports it obeys the lower grant
			for _, id := range ids {
				ans := tab.Request(now, LeaseRequest{ID: id, Want: 90 * mib, Has: grants[id]}, l, ids)
				if round == 0 && ans.Grant > grants[id] {
					t.Fatalf("%s's grant rose from %d to %d while the budget fell below what is held", id, grants[id], ans.Grant)
				}
				grants[id] = ans.Grant
				now = now.Add(100 * time.Millisecond)
			}
		}
		if _, held := tab.Snapshot(now); held > 40*mib {
			t.Fatalf("the nodes still hold %d after every node asked twice; want at most the lowered budget of 40 MiB", held)
		}
	})

	// Doorman's rule alone (a grant is at most the budget less what the
	// others hold) gives the first nodes to ask after a cut their
	// baselines: the others still hold their grants under the old
	// budget. In the cluster bench a learned cut from 232 to 142 KiB put
	// four of five nodes on their 8 KiB baselines for a second or two and
	// goodput fell from 5,800 to 800 records/s. A node may keep its share
	// of the lowered budget out of what it holds: the sum of the holdings
	// does not grow, and reaches the lowered budget as each node asks.
	t.Run("a lowered budget is shared at once, not squeezed to the baselines", func(t *testing.T) {
		l := testLimits()
		l.NodeFloorBytes = mib
		tab, now := learned(now, l)
		ids := []string{"a", "b", "c", "d"}
		grants := map[string]int64{}
		for range 4 { // grow to the full shares: 25 MiB each
			for _, id := range ids {
				grants[id] = tab.Request(now, LeaseRequest{ID: id, Want: 90 * mib, Has: grants[id]}, l, ids).Grant
				now = now.Add(100 * time.Millisecond)
			}
		}
		tab.SetBudget(60 * mib)
		_, before := tab.Snapshot(now)
		for i, id := range ids {
			ans := tab.Request(now, LeaseRequest{ID: id, Want: 90 * mib, Has: grants[id]}, l, ids)
			if ans.Grant < 14*mib || ans.Grant > 15*mib {
				t.Errorf("%s, asking %d of 4 after the budget fell from 100 to 60 MiB: granted %d, want its share, 15 MiB", id, i+1, ans.Grant)
			}
			grants[id] = ans.Grant
			if _, held := tab.Snapshot(now); held > before {
				t.Fatalf("after %s asked the nodes hold %d, more than the %d before", id, held, before)
			}
			now = now.Add(100 * time.Millisecond)
		}
		for _, id := range ids { // each reports it obeys its lowered grant
			grants[id] = tab.Request(now, LeaseRequest{ID: id, Want: 90 * mib, Has: grants[id]}, l, ids).Grant
			now = now.Add(100 * time.Millisecond)
		}
		if _, held := tab.Snapshot(now); held > 60*mib {
			t.Fatalf("the nodes hold %d after each asked twice; want at most the lowered budget", held)
		}
	})
}

// obeyed is what one node may obey: its last grant until its own expiry,
// its baseline after.
type obeyed struct {
	grant, baseline int64
	until           time.Time
}

// startObeying returns n nodes, n0 to n(n-1), each on its baseline.
func startObeying(n int) (map[string]*obeyed, []string) {
	nodes := map[string]*obeyed{}
	var alive []string
	for i := range n {
		id := fmt.Sprint("n", i)
		alive = append(alive, id)
		nodes[id] = &obeyed{baseline: InitialBaseline}
	}
	return nodes, alive
}

// The budget controller's observation sums what the nodes heard from
// within a lease reported, the records waiting in their queues among it
// (the demand the budget holds back), and leaves out a node not heard
// from since.
func TestLeaseTableObserveSumsTheNodesQueues(t *testing.T) {
	l := testLimits()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tab, now := learned(start, l)
	alive := []string{"a", "b", "c"}
	tab.Request(now, LeaseRequest{ID: "c", Want: mib, Health: cluster.Health{QueueDepth: 1000}}, l, alive)
	now = now.Add(2 * l.LeaseTTL())
	tab.Request(now, LeaseRequest{ID: "a", Want: 2 * mib, Has: mib, Health: cluster.Health{QueueDepth: 300, ThroughputRPS: 100},
		Downstream: DownstreamHealth{WritesPS: 10, WriteMS: 20, BytesPS: 20000, InFlightBytes: 400}}, l, alive)
	tab.Request(now, LeaseRequest{ID: "b", Want: 3 * mib, Has: mib, Health: cluster.Health{QueueDepth: 50, ThroughputRPS: 200},
		Downstream: DownstreamHealth{WritesPS: 30, WriteMS: 40, BytesPS: 40000, InFlightBytes: 1600}}, l, alive)
	o := tab.Observe(now, l, alive, time.Second)
	if o.Nodes != 2 || o.QueuedRecords != 350 || o.WantBytes != 5*mib || o.HasBytes != 2*mib ||
		o.InFlightBytes != 2000 || o.BytesPS != 60000 || o.ThroughputRPS != 300 || o.WriteMS != 35 {
		t.Fatalf("observation %+v: want the two nodes heard from within a lease, 350 records queued, 5 MiB wanted, 2 MiB held, 2000 bytes in writes, 60000 B/s, 300 records/s, writes of 35 ms", o)
	}
}

// TestLeaseTableSharesByNeedNotByWish: five nodes whose tuners all want
// 40 MiB, four of them using 5 MiB with nothing queued, one using 15 MiB
// with a deep backlog. The shares follow need: the hot node gets what
// the cold ones do not use, and they keep their baselines. On wants alone
// all five would get the same.
func TestLeaseTableSharesByNeedNotByWish(t *testing.T) {
	l := testLimits()
	l.BudgetMode = BudgetFixed
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tab, now := learned(start, l)
	alive := []string{"cold1", "cold2", "cold3", "cold4", "hot"}
	req := func(id string, inFlight float64, queued int) LeaseRequest {
		return LeaseRequest{ID: id, Want: 40 * mib,
			Health:     cluster.Health{QueueDepth: queued, ThroughputRPS: 10000},
			Downstream: DownstreamHealth{WritesPS: 100, WriteMS: 50, BytesPS: 10 * mib, InFlightBytes: inFlight}}
	}
	grants := map[string]int64{}
	for range 6 {
		for _, id := range alive {
			r := req(id, 5*mib, 0)
			if id == "hot" {
				r = req(id, 15*mib, 10000) // 10,000 records of 1,048 bytes queued
			}
			r.Has = grants[id]
			grants[id] = tab.Request(now, r, l, alive).Grant
		}
		now = now.Add(l.LeaseTTL() / 3)
	}
	base := Baseline(l, len(alive))
	t.Logf("baseline %d; grants %v", base, grants)
	if grants["hot"] < 39*mib {
		t.Fatalf("the hot node got %d; want its need, about 40 MiB (twice its 15 MiB in writes and its 10 MiB backlog)", grants["hot"])
	}
	for _, id := range alive[:4] {
		if g := grants[id]; g > max(base, 10*mib) {
			t.Fatalf("cold node %s got %d; want at most its need of 10 MiB or its baseline %d", id, g, base)
		}
	}
	// The API shows each node's need beside its want.
	leases, _ := tab.Snapshot(now)
	for _, ls := range leases {
		want := int64(10 * mib)
		if ls.ID == "hot" {
			want = 30*mib + 10000*(10*mib)/10000
		}
		if ls.Need != want {
			t.Fatalf("lease %s shows need %d; want %d", ls.ID, ls.Need, want)
		}
	}
}
