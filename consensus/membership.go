package consensus

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/hashicorp/raft"
)

// changeKind is one kind of Raft configuration change.
type changeKind int

const (
	changeRemove changeKind = iota
	changeAddNonvoter
	changeDemote
	changePromote
)

func (k changeKind) String() string {
	switch k {
	case changeRemove:
		return "remove"
	case changeAddNonvoter:
		return "add-nonvoter"
	case changeDemote:
		return "demote"
	case changePromote:
		return "promote"
	}
	return "unknown"
}

// membershipChange is one step the leader takes on the Raft configuration.
type membershipChange struct {
	Kind   changeKind
	ID     string
	Addr   string
	Reason string
}

// membershipPolicy holds the knobs of the reconcile.
type membershipPolicy struct {
	StableFor time.Duration // alive this long before a promotion
	DeadGrace time.Duration // dead (or unknown to gossip) this long before a removal
	MaxVoters int           // at most this many voters (5)
	MaxLag    uint64        // a promoted server is at most this many entries behind
}

// membershipInput is what the leader knows when it reconciles.
type membershipInput struct {
	Now             time.Time
	LeaderID        string
	LeaderLastIndex uint64
	Servers         []raft.Server
	Members         []cluster.Member
	// MissingSince holds when the leader first found each Raft server
	// missing from gossip.
	MissingSince map[string]time.Time
	Policy       membershipPolicy
}

// planMembership decides how to bring the Raft configuration in line with
// gossip, in the order the changes are to be made. It is pure.
//
//   - A server whose member left is removed at once; one dead, or unknown to
//     gossip, for DeadGrace is removed then; so is one whose address a
//     different alive member now has. Never more than (voters-1)/2 voters
//     are removed in one round, and never the leader.
//   - An alive member with a Raft address that is not in the configuration
//     is added as a non-voter; a server whose address changed is updated.
//   - The configuration aims at min(MaxVoters, servers) voters, rounded
//     down to an odd number. Non-voters alive for StableFor and at most
//     MaxLag entries behind the leader are promoted, longest-alive first,
//     in numbers that leave the voters odd; extra voters are demoted,
//     unhealthy ones first.
func planMembership(in membershipInput) []membershipChange {
	members := map[string]cluster.Member{}
	aliveByAddr := map[string]cluster.Member{}
	for _, m := range in.Members {
		if m.ID == "" {
			continue
		}
		if old, ok := members[m.ID]; ok && old.Status == cluster.StatusAlive && m.Status != cluster.StatusAlive {
			continue // the same id under two names: trust the alive one
		}
		members[m.ID] = m
		if m.Status == cluster.StatusAlive && m.Raft.Addr != "" {
			aliveByAddr[m.Raft.Addr] = m
		}
	}
	servers := slices.Clone(in.Servers)
	slices.SortFunc(servers, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })

	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	maxVoterRemovals := max(0, (voters-1)/2)

	var changes []membershipChange
	removed := map[raft.ServerID]bool{}
	voterRemovals := 0
	for _, s := range servers {
		if string(s.ID) == in.LeaderID {
			continue
		}
		m, known := members[string(s.ID)]
		reason := ""
		switch {
		case !known:
			if since, ok := in.MissingSince[string(s.ID)]; ok && in.Now.Sub(since) >= in.Policy.DeadGrace {
				reason = fmt.Sprintf("unknown to gossip for %s", in.Policy.DeadGrace)
			}
		case m.Status == cluster.StatusLeft:
			reason = "left the cluster"
		case m.Status == cluster.StatusDead && in.Now.Sub(m.StatusSince) >= in.Policy.DeadGrace:
			reason = fmt.Sprintf("dead for %s", in.Policy.DeadGrace)
		}
		if reason == "" && (!known || m.Status == cluster.StatusDead) {
			if other, ok := aliveByAddr[string(s.Address)]; ok && other.ID != string(s.ID) {
				reason = fmt.Sprintf("its address %s now belongs to %s", s.Address, other.Name)
			}
		}
		if reason == "" {
			continue
		}
		if s.Suffrage == raft.Voter {
			if voterRemovals >= maxVoterRemovals {
				continue // keep quorum; the next round takes the next one
			}
			voterRemovals++
		}
		changes = append(changes, membershipChange{Kind: changeRemove, ID: string(s.ID), Addr: string(s.Address), Reason: reason})
		removed[s.ID] = true
	}

	// Additions and address updates.
	inConfig := map[string]raft.Server{}
	addrTaken := map[string]bool{}
	for _, s := range servers {
		if !removed[s.ID] {
			inConfig[string(s.ID)] = s
			addrTaken[string(s.Address)] = true
		}
	}
	var alive []cluster.Member
	for _, m := range members {
		if m.Status == cluster.StatusAlive && m.Raft.Addr != "" {
			alive = append(alive, m)
		}
	}
	slices.SortFunc(alive, func(a, b cluster.Member) int { return cmp.Compare(a.ID, b.ID) })
	added := map[string]bool{}
	for _, m := range alive {
		if s, ok := inConfig[m.ID]; ok {
			if string(s.Address) != m.Raft.Addr && !addrTaken[m.Raft.Addr] {
				changes = append(changes, membershipChange{Kind: changeAddNonvoter, ID: m.ID, Addr: m.Raft.Addr, Reason: "its Raft address changed"})
			}
			continue
		}
		if addrTaken[m.Raft.Addr] {
			continue // wait until the old owner of the address is removed
		}
		changes = append(changes, membershipChange{Kind: changeAddNonvoter, ID: m.ID, Addr: m.Raft.Addr, Reason: "joined the cluster"})
		added[m.ID] = true
		addrTaken[m.Raft.Addr] = true
	}

	// Voters: min(MaxVoters, servers), odd.
	n := len(inConfig) + len(added)
	desired := min(in.Policy.MaxVoters, n)
	if desired%2 == 0 {
		desired--
	}
	desired = max(desired, 1)
	var curVoters, nonvoters []raft.Server
	for _, s := range servers {
		if removed[s.ID] {
			continue
		}
		if s.Suffrage == raft.Voter {
			curVoters = append(curVoters, s)
		} else {
			nonvoters = append(nonvoters, s)
		}
	}
	switch {
	case len(curVoters) < desired:
		var eligible []raft.Server
		for _, s := range nonvoters {
			m, ok := members[string(s.ID)]
			if ok && m.Status == cluster.StatusAlive &&
				in.Now.Sub(m.StatusSince) >= in.Policy.StableFor &&
				m.Raft.AppliedIndex > 0 && m.Raft.AppliedIndex+in.Policy.MaxLag >= in.LeaderLastIndex {
				eligible = append(eligible, s)
			}
		}
		slices.SortFunc(eligible, func(a, b raft.Server) int {
			if c := members[string(a.ID)].StatusSince.Compare(members[string(b.ID)].StatusSince); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		p := min(len(eligible), desired-len(curVoters))
		if (len(curVoters)+p)%2 == 0 {
			p--
		}
		for _, s := range eligible[:max(p, 0)] {
			changes = append(changes, membershipChange{Kind: changePromote, ID: string(s.ID), Addr: string(s.Address), Reason: "alive and caught up"})
		}
	case len(curVoters) > desired:
		var candidates []raft.Server
		for _, s := range curVoters {
			if string(s.ID) != in.LeaderID {
				candidates = append(candidates, s)
			}
		}
		healthy := func(s raft.Server) bool {
			m, ok := members[string(s.ID)]
			return ok && m.Status == cluster.StatusAlive
		}
		slices.SortFunc(candidates, func(a, b raft.Server) int {
			if ha, hb := healthy(a), healthy(b); ha != hb {
				if !ha {
					return -1
				}
				return 1
			}
			// The most recently arrived first.
			if c := members[string(b.ID)].StatusSince.Compare(members[string(a.ID)].StatusSince); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		for _, s := range candidates[:min(len(candidates), len(curVoters)-desired)] {
			changes = append(changes, membershipChange{Kind: changeDemote, ID: string(s.ID), Addr: string(s.Address), Reason: fmt.Sprintf("more than %d voters", desired)})
		}
	}
	return changes
}

// bootstrapConfiguration decides, as Consul's and Nomad's bootstrap-expect
// do, whether this node should bootstrap a new Raft cluster now, and with
// which servers. It returns ok only when no alive member reports Raft state
// (an existing cluster will add this node instead), no member expects a
// different number of servers, and at least expect servers are alive in
// gossip, this node among them. Members started without bootstrap-expect
// are not servers of the first configuration: the leader adds them later.
//
// Every node that bootstraps must bootstrap the same configuration, or two
// clusters form. When exactly expect servers are seen, they are it, as
// voters. When more are seen (nodes beyond the first expect started before
// any of them bootstrapped), the views of different nodes may still differ
// while gossip spreads: the node waits until its view has settled (settled:
// the same servers for a while), then takes the expect servers with the
// lowest ids, and a node not among them waits to be added by the leader.
// (Bootstrapping with every server seen let a node that started later win
// an election with the votes of fresh nodes that had no configuration yet,
// beside the cluster the first expect nodes had formed.)
func bootstrapConfiguration(selfID string, expect int, members []cluster.Member, settled bool) (cfg raft.Configuration, ok bool, why string) {
	if expect <= 0 {
		return cfg, false, "bootstrap-expect is 0"
	}
	self := false
	for _, m := range members {
		if m.Status != cluster.StatusAlive || m.ID == "" || m.Raft.Addr == "" {
			continue
		}
		if m.Raft.HasState {
			return raft.Configuration{}, false, fmt.Sprintf("member %s already has Raft state; waiting to be added to its cluster", m.Name)
		}
		if m.Raft.BootstrapExpect == 0 {
			continue // started to join, not to bootstrap: the leader adds it
		}
		if m.Raft.BootstrapExpect != expect {
			return raft.Configuration{}, false, fmt.Sprintf("member %s expects %d servers and this node %d; all nodes must expect the same number", m.Name, m.Raft.BootstrapExpect, expect)
		}
		self = self || m.ID == selfID
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Raft.Addr)})
	}
	if !self {
		return raft.Configuration{}, false, "this node is not alive in gossip yet"
	}
	if len(cfg.Servers) < expect {
		return raft.Configuration{}, false, fmt.Sprintf("waiting for %d servers, %d seen", expect, len(cfg.Servers))
	}
	slices.SortFunc(cfg.Servers, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
	if seen := len(cfg.Servers); seen > expect {
		if !settled {
			return raft.Configuration{}, false, fmt.Sprintf("%d servers seen, more than the %d expected; waiting for the view to settle", seen, expect)
		}
		cfg.Servers = cfg.Servers[:expect]
		if !slices.ContainsFunc(cfg.Servers, func(s raft.Server) bool { return string(s.ID) == selfID }) {
			return raft.Configuration{}, false, fmt.Sprintf("%d servers seen; the %d with the lowest ids bootstrap and this node waits to be added", seen, expect)
		}
	}
	return cfg, true, ""
}
