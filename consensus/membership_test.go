package consensus

import (
	"fmt"
	"slices"
	"testing"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/hashicorp/raft"
)

func server(id string, expect int, view uint64) cluster.Member {
	return cluster.Member{Name: "n-" + id, ID: id, Role: cluster.RoleServer, Status: cluster.StatusAlive,
		Raft: cluster.RaftMeta{Addr: "10.0.0.1:" + id, BootstrapExpect: expect, BootstrapView: view}}
}

func TestPlanAdditions(t *testing.T) {
	cfg := []raft.Server{{ID: "1", Address: "10.0.0.1:1", Suffrage: raft.Voter}}
	worker := cluster.Member{ID: "w", Role: cluster.RoleWorker, Status: cluster.StatusAlive}
	moved := server("1", 0, 0)
	moved.Raft.Addr = "10.9.9.9:1"
	dead := server("3", 0, 0)
	dead.Status = cluster.StatusDead
	squatter := server("4", 0, 0)
	squatter.Raft.Addr = "10.0.0.1:1"
	leaving := server("5", 0, 0)
	leaving.Leaving = true
	got := planAdditions(cfg, []cluster.Member{worker, moved, server("2", 0, 0), dead, squatter, leaving})
	if len(got) != 1 || got[0].ID != "2" {
		t.Fatalf("additions = %+v; want only server 2 (never a worker, a dead server, a re-pointed voter, a taken address or a server leaving)", got)
	}
}

func TestBootstrapConfiguration(t *testing.T) {
	ids := func(c raft.Configuration) []string {
		var out []string
		for _, s := range c.Servers {
			out = append(out, string(s.ID))
		}
		return out
	}
	set3 := serverSetHash([]raft.Server{
		{Suffrage: raft.Voter, ID: "1", Address: "10.0.0.1:1"},
		{Suffrage: raft.Voter, ID: "2", Address: "10.0.0.1:2"},
		{Suffrage: raft.Voter, ID: "3", Address: "10.0.0.1:3"},
	})
	for _, tc := range []struct {
		name    string
		self    string
		members []cluster.Member
		settled bool
		want    []string // nil: no bootstrap
	}{
		{"three agreeing servers bootstrap the three", "1",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), server("3", 3, set3)}, true, []string{"1", "2", "3"}},
		{"not before the view settles", "1",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), server("3", 3, set3)}, false, nil},
		{"not before every expected server agrees on the same set", "1",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), server("3", 3, 99)}, true, nil},
		{"four servers expecting three: the lowest three bootstrap", "2",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), server("3", 3, set3), server("4", 3, 5)}, true, []string{"1", "2", "3"}},
		{"four servers expecting three: the fourth waits to be added", "4",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), server("3", 3, set3), server("4", 3, set3)}, true, nil},
		{"too few servers", "1", []cluster.Member{server("1", 3, set3), server("2", 3, set3)}, true, nil},
		{"workers do not count", "1",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), {ID: "3", Role: cluster.RoleWorker, Status: cluster.StatusAlive}}, true, nil},
		{"a member with raft state means a cluster exists", "1",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), func() cluster.Member { m := server("3", 3, set3); m.Raft.HasState = true; return m }()}, true, nil},
		{"a different expectation stops everyone", "1",
			[]cluster.Member{server("1", 3, set3), server("2", 3, set3), server("3", 5, set3)}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, ok, why := bootstrapConfiguration(tc.self, 3, tc.members, tc.settled)
			if (tc.want != nil) != ok || (ok && !slices.Equal(ids(cfg), tc.want)) {
				t.Fatalf("bootstrap = %v %v (%s), want %v", ids(cfg), ok, why, tc.want)
			}
		})
	}
}

// TestBootstrapNeverFormsTwoClusters plays every order in which four servers
// expecting three can see each other and gossip their agreement, with stale
// views, and checks that no two nodes ever bootstrap different sets.
func TestBootstrapNeverFormsTwoClusters(t *testing.T) {
	all := []string{"1", "2", "3", "4"}
	for mask := 0; mask < 1<<16; mask += 7 {
		views := map[string]uint64{}
		booted := map[string]string{}
		for round := range 6 {
			for i, self := range all {
				if _, done := booted[self]; done {
					continue
				}
				// Which others this node sees in this round (a partial,
				// possibly stale view).
				var members []cluster.Member
				for j, other := range all {
					if other == self || mask>>(uint(i*4+j)+uint(round))&1 == 1 {
						members = append(members, server(other, 3, views[other]))
					}
				}
				cfg, hash, ok, _ := bootstrapConfiguration(self, 3, members, true)
				views[self] = hash
				if ok {
					booted[self] = fmt.Sprint(cfg.Servers)
				}
			}
		}
		var first string
		for _, set := range booted {
			if first == "" {
				first = set
			} else if set != first {
				t.Fatalf("mask %x: two clusters bootstrapped: %v", mask, booted)
			}
		}
	}
}
