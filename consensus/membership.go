package consensus

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/hashicorp/raft"
)

// addition is one server the leader adds to Raft as a non-voter.
type addition struct {
	ID     string
	Addr   string
	Reason string
}

// planAdditions lists the alive servers gossip shows that are not in the
// Raft configuration, to be added as non-voters; autopilot promotes them
// once they are stable. It is pure. A server already in the configuration
// is never re-pointed on gossip's word (gossip may be unauthenticated, and
// a voter's address is what Raft trusts); nor is a server added at an
// address another configured server has, or one that announced its leave
// (the leader removed it, or is about to). Workers are never added.
func planAdditions(servers []raft.Server, members []cluster.Member) []addition {
	inConfig := map[string]bool{}
	addrTaken := map[string]bool{}
	for _, s := range servers {
		inConfig[string(s.ID)] = true
		addrTaken[string(s.Address)] = true
	}
	var out []addition
	for _, m := range members {
		if m.Role != cluster.RoleServer || m.Status != cluster.StatusAlive || m.Leaving || m.ID == "" || m.Raft.Addr == "" {
			continue
		}
		if inConfig[m.ID] || addrTaken[m.Raft.Addr] {
			continue
		}
		out = append(out, addition{ID: m.ID, Addr: m.Raft.Addr, Reason: "a server joined the cluster"})
		inConfig[m.ID], addrTaken[m.Raft.Addr] = true, true
	}
	slices.SortFunc(out, func(a, b addition) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// bootstrapConfiguration decides, as Consul's and Nomad's bootstrap-expect
// do but with an explicit agreement, whether this node should bootstrap a
// new Raft cluster now, and with which servers. It is pure.
//
// The candidate set is the expect alive servers with the lowest ids among
// those started with the same bootstrap-expect (workers and servers started
// to join are not in it). hash names that set; the node gossips it, so that
// every candidate can see whether the others would bootstrap the same set.
// It returns ok only when:
//   - no alive member reports Raft state (an existing cluster will add this
//     node instead), and no server expects a different number;
//   - this node is in the set and its view has settled (the same servers
//     for a while);
//   - every server of the set gossips the same hash: they all agree.
//
// Two nodes can therefore never bootstrap two different sets: each server
// gossips one hash at a time and bootstraps only with the set whose members
// all gossip it.
func bootstrapConfiguration(selfID string, expect int, members []cluster.Member, settled bool) (cfg raft.Configuration, hash uint64, ok bool, why string) {
	if expect <= 0 {
		return cfg, 0, false, "bootstrap-expect is 0"
	}
	views := map[string]uint64{}
	for _, m := range members {
		if m.Status != cluster.StatusAlive || m.Role != cluster.RoleServer || m.ID == "" || m.Raft.Addr == "" {
			continue
		}
		if m.Raft.HasState {
			return raft.Configuration{}, 0, false, fmt.Sprintf("member %s already has Raft state; waiting to be added to its cluster", m.Name)
		}
		if m.Raft.BootstrapExpect == 0 {
			continue // started to join, not to bootstrap: the leader adds it
		}
		if m.Raft.BootstrapExpect != expect {
			return raft.Configuration{}, 0, false, fmt.Sprintf("member %s expects %d servers and this node %d; all servers must expect the same number", m.Name, m.Raft.BootstrapExpect, expect)
		}
		views[m.ID] = m.Raft.BootstrapView
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Raft.Addr)})
	}
	if _, self := views[selfID]; !self {
		return raft.Configuration{}, 0, false, "this node is not alive in gossip as a server yet"
	}
	if len(cfg.Servers) < expect {
		return raft.Configuration{}, 0, false, fmt.Sprintf("waiting for %d servers, %d seen", expect, len(cfg.Servers))
	}
	slices.SortFunc(cfg.Servers, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
	seen := len(cfg.Servers)
	cfg.Servers = cfg.Servers[:expect]
	hash = serverSetHash(cfg.Servers)
	if !slices.ContainsFunc(cfg.Servers, func(s raft.Server) bool { return string(s.ID) == selfID }) {
		return raft.Configuration{}, 0, false, fmt.Sprintf("%d servers seen; the %d with the lowest ids bootstrap and this node waits to be added", seen, expect)
	}
	if !settled {
		return raft.Configuration{}, hash, false, "waiting for the view of the servers to settle"
	}
	for _, s := range cfg.Servers {
		if views[string(s.ID)] != hash {
			return raft.Configuration{}, hash, false, fmt.Sprintf("waiting for server %s to agree on the same %d servers", s.ID, expect)
		}
	}
	return cfg, hash, true, ""
}

// serverSetHash names a set of servers (ids and addresses, in order); never
// 0, which means "no set".
func serverSetHash(servers []raft.Server) uint64 {
	h := fnv.New64a()
	for _, s := range servers {
		h.Write([]byte(s.ID))
		h.Write([]byte{0})
		h.Write([]byte(s.Address))
		h.Write([]byte{0})
	}
	return max(h.Sum64(), 1)
}
