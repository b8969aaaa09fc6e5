package consensus

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/hashicorp/raft"
)

var planNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

var testPolicy = membershipPolicy{StableFor: 10 * time.Second, DeadGrace: 30 * time.Second, MaxVoters: 5, MaxLag: 100}

func voter(id string) raft.Server {
	return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress("addr-" + id)}
}

func nonvoter(id string) raft.Server {
	return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id), Address: raft.ServerAddress("addr-" + id)}
}

// member is an alive, caught-up member alive for an hour, unless changed.
func member(id string, mut ...func(*cluster.Member)) cluster.Member {
	m := cluster.Member{
		Name: "name-" + id, ID: id, Status: cluster.StatusAlive, StatusSince: planNow.Add(-time.Hour),
		Raft: cluster.RaftMeta{Addr: "addr-" + id, AppliedIndex: 1000},
	}
	for _, f := range mut {
		f(&m)
	}
	return m
}

func status(s cluster.Status, ago time.Duration) func(*cluster.Member) {
	return func(m *cluster.Member) { m.Status = s; m.StatusSince = planNow.Add(-ago) }
}

func members(ids ...string) []cluster.Member {
	var ms []cluster.Member
	for _, id := range ids {
		ms = append(ms, member(id))
	}
	return ms
}

func describe(cs []membershipChange) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind.String()+" "+c.ID)
	}
	return strings.Join(out, ", ")
}

func TestPlanMembership(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers []raft.Server
		members []cluster.Member
		missing map[string]time.Time
		want    string
	}{
		{
			name:    "a cluster in line with gossip needs nothing",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: members("a", "b", "c"),
			want:    "",
		},
		{
			name:    "a joined member is added as a non-voter",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: append(members("a", "b", "c"), member("d", status(cluster.StatusAlive, time.Second))),
			want:    "add-nonvoter d",
		},
		{
			name:    "two stable caught-up non-voters are promoted together to keep the voters odd",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d"), nonvoter("e")},
			members: members("a", "b", "c", "d", "e"),
			want:    "promote d, promote e",
		},
		{
			name:    "one eligible non-voter is not promoted alone to an even number of voters",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d"), nonvoter("e")},
			members: append(members("a", "b", "c", "d"), member("e", status(cluster.StatusAlive, 2*time.Second))),
			want:    "",
		},
		{
			name:    "a non-voter behind the leader's log is not promoted",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: append(members("a", "b"), member("c", func(m *cluster.Member) { m.Raft.AppliedIndex = 10 })),
			want:    "",
		},
		{
			name:    "a single server with two stable followers grows to three voters",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: members("a", "b", "c"),
			want:    "promote b, promote c",
		},
		{
			name:    "no more than five voters",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e"), nonvoter("f"), nonvoter("g")},
			members: members("a", "b", "c", "d", "e", "f", "g"),
			want:    "",
		},
		{
			name:    "a member that left is removed at once, then the even voters are trimmed",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: append(members("a", "b", "c", "d"), member("e", status(cluster.StatusLeft, time.Second))),
			want:    "remove e, demote b",
		},
		{
			name:    "a dead member is kept through the grace period",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: append(members("a", "b"), member("c", status(cluster.StatusDead, 29*time.Second))),
			want:    "",
		},
		{
			name:    "a dead member is removed after the grace period and a non-voter takes its vote",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: append(members("a", "b", "d"), member("c", status(cluster.StatusDead, 31*time.Second))),
			want:    "remove c, promote d",
		},
		{
			name:    "never more than (voters-1)/2 voters are removed at a time",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: append(members("a", "b"),
				member("c", status(cluster.StatusLeft, time.Second)),
				member("d", status(cluster.StatusLeft, time.Second)),
				member("e", status(cluster.StatusLeft, time.Second))),
			want: "remove c, remove d",
		},
		{
			name:    "non-voters are removed without the quorum cap",
			servers: []raft.Server{voter("a"), nonvoter("b"), nonvoter("c")},
			members: append(members("a"),
				member("b", status(cluster.StatusLeft, time.Second)),
				member("c", status(cluster.StatusLeft, time.Second))),
			want: "remove b, remove c",
		},
		{
			name:    "the leader never removes itself",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: append(members("b", "c"), member("a", status(cluster.StatusLeft, time.Hour))),
			want:    "",
		},
		{
			name:    "a server unknown to gossip is removed after the grace period",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("x")},
			members: members("a", "b", "c"),
			missing: map[string]time.Time{"x": planNow.Add(-31 * time.Second)},
			want:    "remove x",
		},
		{
			name:    "a server unknown to gossip for less than the grace period is kept",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("x")},
			members: members("a", "b", "c"),
			missing: map[string]time.Time{"x": planNow.Add(-time.Second)},
			want:    "",
		},
		{
			name:    "a restarted node with a new id takes over its old address",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), nonvoter("old")},
			members: append(members("a", "b", "c"),
				member("old", status(cluster.StatusDead, time.Second)),
				member("new", func(m *cluster.Member) { m.Raft.Addr = "addr-old" })),
			want: "remove old, add-nonvoter new",
		},
		{
			name:    "a server whose Raft address changed is updated",
			servers: []raft.Server{voter("a"), voter("b"), voter("c")},
			members: append(members("a", "b"), member("c", func(m *cluster.Member) { m.Raft.Addr = "addr-c2" })),
			want:    "add-nonvoter c",
		},
		{
			name:    "four voters are trimmed to three, the unhealthy one first",
			servers: []raft.Server{voter("a"), voter("b"), voter("c"), voter("d")},
			members: append(members("a", "b", "d"), member("c", status(cluster.StatusDead, time.Second))),
			want:    "demote c",
		},
		{
			name:    "members without a Raft address or id are ignored",
			servers: []raft.Server{voter("a")},
			members: append(members("a"),
				member("b", func(m *cluster.Member) { m.Raft.Addr = "" }),
				member("", func(m *cluster.Member) { m.Name = "broken" })),
			want: "",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planMembership(membershipInput{
				Now: planNow, LeaderID: "a", LeaderLastIndex: 1050,
				Servers: tc.servers, Members: tc.members, MissingSince: tc.missing, Policy: testPolicy,
			})
			if d := describe(got); d != tc.want {
				t.Fatalf("plan = %q, want %q", d, tc.want)
			}
		})
	}
}

// TestPlanMembershipConverges applies plans round after round to a
// simulated configuration and checks where it ends: min(5, n) voters, odd.
func TestPlanMembershipConverges(t *testing.T) {
	for n := 1; n <= 9; n++ {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			servers := []raft.Server{voter("n0")}
			var ms []cluster.Member
			for i := range n {
				ms = append(ms, member(fmt.Sprintf("n%d", i)))
			}
			for round := 0; round < 10; round++ {
				changes := planMembership(membershipInput{Now: planNow, LeaderID: "n0", LeaderLastIndex: 1000, Servers: servers, Members: ms, Policy: testPolicy})
				if len(changes) == 0 {
					break
				}
				for _, c := range changes {
					i := slices.IndexFunc(servers, func(s raft.Server) bool { return string(s.ID) == c.ID })
					switch c.Kind {
					case changeAddNonvoter:
						if i < 0 {
							servers = append(servers, nonvoter(c.ID))
						}
					case changePromote:
						servers[i].Suffrage = raft.Voter
					case changeDemote:
						servers[i].Suffrage = raft.Nonvoter
					case changeRemove:
						servers = slices.Delete(servers, i, i+1)
					}
				}
			}
			voters := 0
			for _, s := range servers {
				if s.Suffrage == raft.Voter {
					voters++
				}
			}
			want := min(5, n)
			if want%2 == 0 {
				want--
			}
			if len(servers) != n || voters != want {
				t.Fatalf("ended with %d servers and %d voters, want %d and %d", len(servers), voters, n, want)
			}
		})
	}
}

func TestBootstrapConfiguration(t *testing.T) {
	fresh := func(id string, expect int) cluster.Member {
		return member(id, func(m *cluster.Member) { m.Raft.BootstrapExpect = expect; m.Raft.AppliedIndex = 0 })
	}
	for _, tc := range []struct {
		name    string
		expect  int
		members []cluster.Member
		wantOK  bool
		wantWhy string
	}{
		{"three fresh servers expecting three bootstrap", 3, []cluster.Member{fresh("me", 3), fresh("b", 3), fresh("c", 3)}, true, ""},
		{"two of three wait", 3, []cluster.Member{fresh("me", 3), fresh("b", 3)}, false, "waiting for 3 servers, 2 seen"},
		{"a single node expecting one bootstraps", 1, []cluster.Member{fresh("me", 1)}, true, ""},
		{"a member with Raft state means an existing cluster", 1, []cluster.Member{fresh("me", 1), member("b", func(m *cluster.Member) { m.Raft.HasState = true })}, false, "already has Raft state"},
		{"a conflicting expectation stops bootstrap", 3, []cluster.Member{fresh("me", 3), fresh("b", 5), fresh("c", 3)}, false, "expects 5 servers"},
		{"dead members do not count", 2, []cluster.Member{fresh("me", 2), member("b", status(cluster.StatusDead, time.Second))}, false, "waiting for 2"},
		{"expect 0 never bootstraps", 0, []cluster.Member{fresh("me", 0)}, false, "bootstrap-expect is 0"},
		{"this node must be among the servers", 2, []cluster.Member{fresh("b", 2), fresh("c", 2)}, false, "not alive in gossip"},
		{"more servers than expected wait for the view to settle", 3, []cluster.Member{fresh("me", 3), fresh("b", 3), fresh("c", 3), fresh("d", 3)}, false, "waiting for the view to settle"},
		{"then the expected number with the lowest ids bootstrap", 3, []cluster.Member{fresh("x", 3), fresh("b", 3), fresh("me", 3), fresh("c", 3)}, true, ""},
		{"members without bootstrap-expect are left to the leader", 2, []cluster.Member{fresh("me", 2), fresh("a", 0), fresh("b", 2)}, true, ""},
		{"and the others wait to be added", 2, []cluster.Member{fresh("me", 2), fresh("b", 2), fresh("c", 2)}, false, "the 2 with the lowest ids bootstrap and this node waits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settled := !strings.Contains(tc.wantWhy, "settle")
			cfg, ok, why := bootstrapConfiguration("me", tc.expect, tc.members, settled)
			if ok != tc.wantOK || !strings.Contains(why, tc.wantWhy) {
				t.Fatalf("ok=%v why=%q, want ok=%v why containing %q", ok, why, tc.wantOK, tc.wantWhy)
			}
			if ok {
				if want := tc.expect; len(cfg.Servers) != want {
					t.Fatalf("bootstrap configuration has %d servers, want %d", len(cfg.Servers), want)
				}
				for _, s := range cfg.Servers {
					if s.Suffrage != raft.Voter {
						t.Fatalf("server %s bootstraps as %v", s.ID, s.Suffrage)
					}
				}
			}
		})
	}
}
