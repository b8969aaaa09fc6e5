package consensus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
)

// Status is the cluster as this node sees it: the body of
// GET /api/v1/cluster. The leader has every node's health and lease (they
// come with the lease requests); other nodes have the membership, the
// limits and their own.
type Status struct {
	ClusterID string         `json:"cluster_id"`
	Leader    LeaderInfo     `json:"leader"`
	Term      uint64         `json:"term"`
	Members   []MemberStatus `json:"members"`
	Limits    Limits         `json:"limits"`
	// ServedBy is "leader" when the leader made this status (health and
	// leases of every node), "local" otherwise.
	View string `json:"view"`
	// The lease table on the leader: the epoch (the leader's term), whether
	// it is learning, the budget, and the sum of what the nodes may hold.
	Epoch        uint64 `json:"epoch"`
	Learning     bool   `json:"learning"`
	BudgetBytes  int64  `json:"budget_bytes"` // the budget in force: the learned one, or the limit in fixed mode
	GrantedBytes int64  `json:"granted_bytes"`
	// CeilingBytes is the limit cluster_budget_bytes, the learned budget's
	// ceiling; BudgetMode is "learned" or "fixed".
	CeilingBytes int64  `json:"ceiling_bytes"`
	BudgetMode   string `json:"budget_mode"`
	FloorBytes   int64  `json:"floor_bytes"`
	// Servers and Workers count the members alive in gossip by role.
	Servers int `json:"servers"`
	Workers int `json:"workers"`
}

// LeaderInfo names the leader; empty fields when there is none.
type LeaderInfo struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	HTTPAddr string `json:"http_addr"`
}

// MemberStatus is one member: gossip status, role, Raft role, health and
// budget.
type MemberStatus struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Role       cluster.Role   `json:"role"`
	Status     cluster.Status `json:"status"`
	RaftRole   string         `json:"raft_role"`
	HTTPAddr   string         `json:"http_addr"`
	GossipAddr string         `json:"gossip_addr"`
	RaftAddr   string         `json:"raft_addr"`
	Version    string         `json:"version"`
	Health     cluster.Health `json:"health"`
	Budget     MemberBudget   `json:"budget"`
}

// MemberBudget is a member's share of the cluster budget.
type MemberBudget struct {
	GrantBytes    int64 `json:"grant_bytes"` // its last grant, on the leader (0 if none)
	WantBytes     int64 `json:"want_bytes"`
	HasBytes      int64 `json:"has_bytes"`
	BaselineBytes int64 `json:"baseline_bytes"`
	LeaseFresh    bool  `json:"lease_fresh"`
	// NeedBytes is what the leader reads the node's load as asking for
	// (twice its bytes in writes plus its backlog; 0: not reported): its
	// share is max-min fair over min(want, need).
	NeedBytes int64 `json:"need_bytes"`
	// Lease is set for this node only: its own view of its grant.
	Lease *LeaseInfo `json:"lease,omitempty"`
}

// Status describes the cluster at now (pass time.Now()). Only the leader
// has every node's health and lease, so another node answers with the
// leader's status, fetched at most once a second in the background and at
// most statusStaleAfter old; when it has none that fresh (no leader, or
// the leader does not answer) it answers what it knows itself ("view":
// "local").
func (s *Server) Status(now time.Time) Status {
	if !s.IsLeader() {
		if st, ok := s.leaderView.get(s, now); ok {
			return st
		}
	}
	return s.localStatus(now)
}

// statusStaleAfter is how old a copy of the leader's status may be.
const statusStaleAfter = 3 * time.Second

// leaderStatus is a node's copy of the leader's status.
type leaderStatus struct {
	mu       sync.Mutex
	st       Status
	at       time.Time
	fetching bool
}

// get returns the copy when it is fresh enough, and starts a refresh when
// it is more than a second old.
func (c *leaderStatus) get(s *Server, now time.Time) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.at) > time.Second && !c.fetching {
		if addr := s.LeaderHTTPAddr(); addr != "" {
			c.fetching = true
			go c.fetch(s, addr)
		}
	}
	if now.Sub(c.at) > statusStaleAfter {
		return Status{}, false
	}
	return c.st, true
}

// forwardedHeader marks a request one node makes to another on its own
// behalf (the web layer's header of the same name): the leader answers it
// from what it has and never forwards it.
const forwardedHeader = "X-Batchpilot-Forwarded-By"

func (c *leaderStatus) fetch(s *Server, addr string) {
	st, err := func() (Status, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.HTTPScheme+"://"+addr+"/api/v1/cluster", nil)
		if err != nil {
			return Status{}, err
		}
		req.Header.Set(forwardedHeader, s.gossip.Name())
		resp, err := s.cfg.HTTPClient.Do(req)
		if err != nil {
			return Status{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return Status{}, fmt.Errorf("GET /api/v1/cluster of %s: %s", addr, resp.Status)
		}
		var st Status
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&st)
		return st, err
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetching = false
	if err != nil {
		s.log.Debug("cannot read the leader's status", "leader", addr, "err", err)
		return
	}
	if st.View != "leader" {
		return
	}
	c.st, c.at = st, time.Now()
}

// localStatus is the status from this node's own knowledge (the whole
// picture on the leader).
func (s *Server) localStatus(now time.Time) Status {
	limits := s.Limits()
	st := Status{
		ClusterID:    s.ClusterID(),
		Term:         s.Term(),
		Limits:       limits,
		View:         "local",
		BudgetBytes:  limits.ClusterBudgetBytes,
		CeilingBytes: limits.ClusterBudgetBytes,
		BudgetMode:   BudgetLearned,
	}
	if !limits.LearnedBudget() {
		st.BudgetMode = BudgetFixed
	}
	lid, lname, laddr := s.Leader()
	st.Leader = LeaderInfo{ID: lid, Name: lname, HTTPAddr: laddr}
	leases := map[string]LeaseState{}
	if t := s.table.Load(); t != nil {
		ls, held := t.Snapshot(now)
		for _, l := range ls {
			leases[l.ID] = l
		}
		st.View, st.Epoch, st.Learning, st.GrantedBytes = "leader", t.epoch, t.Learning(now), held
		st.BudgetBytes = t.Budget(limits)
	} else if ans, ok := s.client.answer(); ok {
		st.Epoch, st.Learning, st.FloorBytes = ans.Epoch, ans.Learning, ans.Baseline
		if ans.Budget > 0 {
			st.BudgetBytes = ans.Budget
		}
	}
	var cfgServers map[string]string
	if cfg, err := s.configuration(); err == nil {
		cfgServers = map[string]string{}
		for _, srv := range cfg.Servers {
			cfgServers[string(srv.ID)] = roleIn(cfg, lid, string(srv.ID))
		}
	}
	byID := map[string]bool{}
	for _, m := range s.gossip.Members() {
		if m.ID != "" {
			byID[m.ID] = true
		}
		if m.Status == cluster.StatusAlive || m.Status == cluster.StatusSuspect {
			if m.Role == cluster.RoleServer {
				st.Servers++
			} else {
				st.Workers++
			}
		}
		ms := MemberStatus{
			ID: m.ID, Name: m.Name, Role: m.Role, Status: m.Status, RaftRole: "none",
			HTTPAddr: m.HTTPAddr, GossipAddr: m.Addr, RaftAddr: m.Raft.Addr, Version: m.Version,
		}
		if r, ok := cfgServers[m.ID]; ok {
			ms.RaftRole = r
		}
		if l, ok := leases[m.ID]; ok {
			ms.Health = l.Health
			ms.Budget = MemberBudget{GrantBytes: l.Grant, WantBytes: l.Want, NeedBytes: l.Need, HasBytes: l.Has, BaselineBytes: l.Baseline, LeaseFresh: l.Fresh}
		}
		if m.ID == s.id {
			if s.cfg.Health != nil {
				ms.Health = s.cfg.Health()
				ms.Budget.WantBytes = ms.Health.WantBytes
				ms.Budget.HasBytes = ms.Health.HasBytes
			}
			info := s.lease.Info(now)
			ms.Budget.Lease = &info
			ms.Budget.LeaseFresh = info.Fresh
			ms.Budget.BaselineBytes = info.Baseline
			if _, onLeader := leases[m.ID]; !onLeader {
				ms.Budget.GrantBytes = info.GrantBytes
			}
		}
		st.Members = append(st.Members, ms)
	}
	if st.FloorBytes == 0 {
		st.FloorBytes = Baseline(limits, st.Servers+st.Workers)
	}
	// Raft servers gossip does not know (yet, or any more) are shown dead.
	for id, role := range cfgServers {
		if !byID[id] {
			st.Members = append(st.Members, MemberStatus{ID: id, Role: cluster.RoleServer, Status: cluster.StatusDead, RaftRole: role})
		}
	}
	return st
}
