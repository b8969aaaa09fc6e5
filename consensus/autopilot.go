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
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// RaftStatsPath is the API path where a server answers its RaftStats.
const RaftStatsPath = "/api/v1/raft/stats"

// pilotDelegate connects hashicorp/raft-autopilot to this server, as
// Consul's and Nomad's autopilot delegates do. Autopilot runs on the leader
// only (leaderLoop starts and stops it): it judges each server's health from
// Raft's own figures (the time since its last contact with the leader, its
// term and index, fetched from the server itself), promotes non-voters that
// stayed healthy for the stabilisation time, and removes failed servers,
// never below the minimum quorum.
//
// Gossip alone never removes a server: KnownServers reports a server failed
// only when gossip holds it dead (or does not know it) for DeadGrace AND its
// Raft stats could not be fetched for as long. A server that gossip lost
// but that still answers is alive.
type pilotDelegate struct {
	s *Server

	mu     sync.Mutex
	lastOK map[raft.ServerID]time.Time // the last successful stats fetch
	since  map[raft.ServerID]time.Time // first seen by this delegate
}

// AutopilotConfig implements autopilot.ApplicationIntegration.
func (d *pilotDelegate) AutopilotConfig() *autopilot.Config {
	t := d.s.timing
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    t.LastContactThreshold,
		MaxTrailingLogs:         t.MaxLag,
		MinQuorum:               uint(max(d.s.cfg.BootstrapExpect, 1)),
		ServerStabilizationTime: t.StableFor,
	}
}

// NotifyState implements autopilot.ApplicationIntegration.
func (d *pilotDelegate) NotifyState(st *autopilot.State) {
	if !st.Healthy {
		d.s.log.Debug("autopilot: cluster not healthy", "failure_tolerance", st.FailureTolerance)
	}
}

// KnownServers implements autopilot.ApplicationIntegration: the servers in
// gossip and those in the Raft configuration, with their status.
func (d *pilotDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	now := time.Now()
	cfg, err := d.s.configuration()
	if err != nil {
		return nil
	}
	_, leader := d.s.raft.LeaderWithID()
	members := map[string]cluster.Member{}
	for _, m := range d.s.gossip.Members() {
		if m.Role == cluster.RoleServer && m.ID != "" {
			members[m.ID] = m
		}
	}
	out := map[raft.ServerID]*autopilot.Server{}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.since == nil {
		d.since = map[raft.ServerID]time.Time{}
	}
	for _, srv := range cfg.Servers {
		if _, ok := d.since[srv.ID]; !ok {
			d.since[srv.ID] = now
		}
		m, known := members[string(srv.ID)]
		status := autopilot.NodeAlive
		switch {
		case known && (m.Status == cluster.StatusLeft || m.Leaving):
			// An announced leave counts as left: the server waits,
			// still a voter, to be removed before it goes.
			status = autopilot.NodeLeft
		case !known || m.Status == cluster.StatusDead:
			gone := now.Sub(d.since[srv.ID]) // unknown: since we started watching
			if known {
				gone = now.Sub(m.StatusSince)
			}
			if gone >= d.s.timing.DeadGrace && d.unreachableFor(srv.ID, now) >= d.s.timing.DeadGrace {
				status = autopilot.NodeFailed
			}
		}
		name := m.Name
		if name == "" {
			name = string(srv.ID)
		}
		out[srv.ID] = &autopilot.Server{
			ID: srv.ID, Name: name, Address: srv.Address, NodeStatus: status,
			Version: m.Version, RaftVersion: raft.ProtocolVersionMax, IsLeader: srv.ID == leader,
			NodeType: autopilot.NodeVoter,
		}
	}
	return out
}

// unreachableFor is how long the server's stats could not be fetched.
func (d *pilotDelegate) unreachableFor(id raft.ServerID, now time.Time) time.Duration {
	last, ok := d.lastOK[id]
	if !ok {
		last = d.since[id]
	}
	return now.Sub(last)
}

// FetchServerStats implements autopilot.ApplicationIntegration: it asks
// every server for its Raft figures over the HTTP API, at once.
func (d *pilotDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	addrs := map[string]string{}
	for _, m := range d.s.gossip.Members() {
		if m.ID != "" {
			addrs[m.ID] = m.HTTPAddr
		}
	}
	for id := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st RaftStats
			var err error
			if string(id) == d.s.id {
				st, err = d.s.RaftStats()
			} else {
				st, err = d.fetch(ctx, addrs[string(id)])
			}
			if err != nil {
				d.s.log.Debug("autopilot: no raft stats", "server", id, "err", err)
				return
			}
			lc := time.Duration(st.LastContactMS) * time.Millisecond
			if st.LastContactMS < 0 {
				lc = -1
			}
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: lc, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
			mu.Unlock()
			d.mu.Lock()
			d.lastOK[id] = time.Now()
			d.mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (d *pilotDelegate) fetch(ctx context.Context, httpAddr string) (RaftStats, error) {
	if httpAddr == "" {
		return RaftStats{}, fmt.Errorf("no HTTP address known")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.s.cfg.HTTPScheme+"://"+httpAddr+RaftStatsPath, nil)
	if err != nil {
		return RaftStats{}, err
	}
	resp, err := d.s.cfg.HTTPClient.Do(req)
	if err != nil {
		return RaftStats{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return RaftStats{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return RaftStats{}, fmt.Errorf("raft stats of %s: %d", httpAddr, resp.StatusCode)
	}
	var st RaftStats
	if err := json.Unmarshal(b, &st); err != nil {
		return RaftStats{}, fmt.Errorf("decode raft stats of %s: %w", httpAddr, err)
	}
	return st, nil
}

// RemoveFailedServer implements autopilot.ApplicationIntegration: autopilot
// decided that a failed server goes (within its quorum rules).
func (d *pilotDelegate) RemoveFailedServer(srv *autopilot.Server) {
	go func() {
		d.s.log.Info("autopilot: removing a failed server", "server", srv.Name, "id", srv.ID, "status", srv.NodeStatus)
		if err := d.s.raft.RemoveServer(srv.ID, 0, d.s.timing.ApplyTimeout).Error(); err != nil {
			d.s.log.Warn("autopilot: removing a failed server failed", "server", srv.Name, "err", err)
		}
	}()
}
