package consensus

import (
	"time"

	"github.com/batchpilot/batchpilot/cluster"
)

// Status is the cluster as this node sees it: the body of
// GET /api/v1/cluster.
type Status struct {
	ClusterID string         `json:"cluster_id"`
	Leader    LeaderInfo     `json:"leader"`
	Term      uint64         `json:"term"`
	Members   []MemberStatus `json:"members"`
	Limits    Limits         `json:"limits"`
	// The latest applied allocation.
	Epoch        uint64 `json:"epoch"`
	Learning     bool   `json:"learning"`
	BudgetBytes  int64  `json:"budget_bytes"`
	GrantedBytes int64  `json:"granted_bytes"`
	FloorBytes   int64  `json:"floor_bytes"`
}

// LeaderInfo names the leader; empty fields when there is none.
type LeaderInfo struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	HTTPAddr string `json:"http_addr"`
}

// MemberStatus is one member: gossip status, Raft role, health and budget.
type MemberStatus struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Status     cluster.Status `json:"status"`
	RaftRole   string         `json:"raft_role"`
	HTTPAddr   string         `json:"http_addr"`
	GossipAddr string         `json:"gossip_addr"`
	RaftAddr   string         `json:"raft_addr"`
	Health     cluster.Health `json:"health"`
	Budget     MemberBudget   `json:"budget"`
}

// MemberBudget is a member's share of the cluster budget.
type MemberBudget struct {
	GrantBytes int64 `json:"grant_bytes"` // in the latest allocation (0 if none)
	WantBytes  int64 `json:"want_bytes"`
	HasBytes   int64 `json:"has_bytes"`
	// Lease is set for this node only: its own view of its grant.
	Lease *LeaseInfo `json:"lease,omitempty"`
}

// Status describes the cluster at now (pass time.Now()).
func (s *Server) Status(now time.Time) Status {
	a := s.fsm.allocation()
	st := Status{
		ClusterID:    s.fsm.clusterID(),
		Term:         s.raft.CurrentTerm(),
		Limits:       s.fsm.limits(),
		Epoch:        a.Epoch,
		Learning:     a.Learning,
		BudgetBytes:  a.Budget,
		GrantedBytes: a.Grants.Sum(),
		FloorBytes:   a.Floor,
	}
	cfg, _ := s.configuration()
	_, lid := s.raft.LeaderWithID()
	leaderID := string(lid)
	members := s.gossip.Members()
	byID := map[string]bool{}
	for _, m := range members {
		if m.ID != "" {
			byID[m.ID] = true
		}
		ms := MemberStatus{
			ID:         m.ID,
			Name:       m.Name,
			Status:     m.Status,
			RaftRole:   roleIn(cfg, leaderID, m.ID),
			HTTPAddr:   m.HTTPAddr,
			GossipAddr: m.Addr,
			RaftAddr:   m.Raft.Addr,
			Health:     m.Health,
			Budget: MemberBudget{
				GrantBytes: a.Grants[m.ID],
				WantBytes:  m.Health.WantBytes,
				HasBytes:   m.Health.HasBytes,
			},
		}
		if m.ID == s.id {
			info := s.lease.Info(now)
			ms.Budget.Lease = &info
		}
		if m.ID == leaderID {
			st.Leader = LeaderInfo{ID: m.ID, Name: m.Name, HTTPAddr: m.HTTPAddr}
		}
		st.Members = append(st.Members, ms)
	}
	if st.Leader.ID == "" && leaderID != "" {
		st.Leader.ID = leaderID
	}
	// Raft servers gossip does not know (yet, or any more) are shown dead.
	for _, srv := range cfg.Servers {
		if id := string(srv.ID); !byID[id] {
			st.Members = append(st.Members, MemberStatus{
				ID: id, Status: cluster.StatusDead, RaftRole: roleIn(cfg, leaderID, id),
				RaftAddr: string(srv.Address), Budget: MemberBudget{GrantBytes: a.Grants[id]},
			})
		}
	}
	return st
}
