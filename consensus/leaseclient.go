package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
)

// LeasePath is the API path of the lease RPC.
const LeasePath = "/api/v1/lease"

// leaseClient is the client every node runs: it asks a server for its
// lease every refresh interval (TTL/3) and renews the node's Lease with the
// answer, timed from the moment it sent the request on its own clock. When
// no answer comes the lease expires by itself and the node runs on its
// baseline.
type leaseClient struct {
	s    *Server
	http *http.Client
	// scheme is http, or https when the cluster serves TLS.
	scheme string
	token  string

	mu      sync.Mutex
	last    LeaseAnswer
	got     bool
	leader  string // the leader's HTTP address, as the last answer named it
	lastErr string
}

// leaseRequestTimeout bounds one lease RPC.
const leaseRequestTimeout = 2 * time.Second

// run asks for the lease until stop closes.
func (c *leaseClient) run(stop <-chan struct{}) {
	wait := time.Duration(0)
	for {
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		refresh, err := c.refresh(stop)
		switch {
		case err != nil:
			c.mu.Lock()
			if c.lastErr == "" {
				c.s.log.Warn("lease request failed; retrying (the lease runs out by itself if no server answers)", "err", err)
			} else {
				c.s.log.Debug("lease request failed again", "err", err)
			}
			c.lastErr = err.Error()
			c.mu.Unlock()
			// Retry soon, but the lease runs out by itself if no server
			// answers.
			wait = min(c.s.timing.LeaseRetry, max(refresh, 50*time.Millisecond))
		default:
			c.mu.Lock()
			if c.lastErr != "" {
				c.s.log.Info("lease request answered again")
			}
			c.lastErr = ""
			c.mu.Unlock()
			wait = refresh
		}
		// A little jitter keeps a thousand workers from asking in step.
		wait += time.Duration(rand.Int64N(int64(wait/10) + 1))
	}
}

// refresh asks once (following one redirect to the leader) and returns the
// refresh interval to wait.
func (c *leaseClient) refresh(stop <-chan struct{}) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), leaseRequestTimeout)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	now := time.Now()
	has, _ := c.s.lease.Grant(now)
	var h cluster.Health
	var want int64
	if c.s.cfg.Health != nil {
		h = c.s.cfg.Health()
		want = h.WantBytes
	}
	req := LeaseRequest{ID: c.s.id, Name: c.s.gossip.Name(), Want: want, Has: has, Health: h}
	if c.s.cfg.Downstream != nil {
		req.Downstream = c.s.cfg.Downstream()
	}
	var ans LeaseAnswer
	var err error
	if c.s.raft != nil && c.s.IsLeader() {
		ans, err = c.s.RequestLease(now, req)
	} else {
		ans, err = c.remote(ctx, req)
		if obs := c.s.cfg.LeaseObserver; obs != nil {
			obs(time.Since(now), err)
		}
	}
	if err != nil {
		return c.s.timing.LeaseRetry, err
	}
	ttl := time.Duration(ans.TTLms) * time.Millisecond
	if !c.s.lease.Renew(now, ans.Epoch, ans.Grant, ttl, ans.Baseline) {
		return c.s.timing.LeaseRetry, fmt.Errorf("lease answer of epoch %d is older than the lease held", ans.Epoch)
	}
	c.mu.Lock()
	c.last, c.got, c.leader = ans, true, ans.Leader.HTTPAddr
	c.mu.Unlock()
	if c.s.raft == nil && ans.ClusterID != "" {
		if err := c.s.gossip.SetClusterID(ans.ClusterID); err != nil {
			c.s.log.Error("cannot keep the cluster id", "err", err)
		}
	}
	return max(time.Duration(ans.RefreshMS)*time.Millisecond, 10*time.Millisecond), nil
}

// remote sends the request to the leader if known, else to a server picked
// at random; a server that is not the leader answers with the leader's
// address, which is tried next.
func (c *leaseClient) remote(ctx context.Context, req LeaseRequest) (LeaseAnswer, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return LeaseAnswer{}, fmt.Errorf("encode lease request: %w", err)
	}
	c.mu.Lock()
	addr := c.leader
	c.mu.Unlock()
	if addr == "" {
		addr = c.pickServer()
	}
	if addr == "" {
		return LeaseAnswer{}, errors.New("no server is known: join a cluster with servers")
	}
	var lastErr error
	for range 3 {
		ans, next, err := c.post(ctx, addr, body)
		if err == nil {
			return ans, nil
		}
		lastErr = err
		c.mu.Lock()
		c.leader = ""
		c.mu.Unlock()
		if next == "" || next == addr {
			next = c.pickServer()
		}
		if next == "" {
			break
		}
		addr = next
	}
	return LeaseAnswer{}, lastErr
}

// post sends one lease request to addr; on a "not the leader" answer it
// returns the leader's address from it.
func (c *leaseClient) post(ctx context.Context, addr string, body []byte) (LeaseAnswer, string, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+"://"+addr+LeasePath, bytes.NewReader(body))
	if err != nil {
		return LeaseAnswer{}, "", fmt.Errorf("build lease request to %s: %w", addr, err)
	}
	r.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		r.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(r)
	if err != nil {
		return LeaseAnswer{}, "", fmt.Errorf("lease request to %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return LeaseAnswer{}, "", fmt.Errorf("read lease answer of %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error  string     `json:"error"`
			Leader LeaderInfo `json:"leader"`
		}
		_ = json.Unmarshal(b, &e)
		return LeaseAnswer{}, e.Leader.HTTPAddr, fmt.Errorf("lease request to %s: %d %s", addr, resp.StatusCode, e.Error)
	}
	var ans LeaseAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return LeaseAnswer{}, "", fmt.Errorf("decode lease answer of %s: %w", addr, err)
	}
	if ans.TTLms <= 0 || ans.Grant < 0 || ans.Baseline < 0 {
		return LeaseAnswer{}, "", fmt.Errorf("lease answer of %s is not valid: ttl %d ms, grant %d, baseline %d", addr, ans.TTLms, ans.Grant, ans.Baseline)
	}
	return ans, "", nil
}

// pickServer is the HTTP address of an alive server, at random.
func (c *leaseClient) pickServer() string {
	var addrs []string
	for _, m := range c.s.gossip.AliveServers() {
		if m.HTTPAddr != "" {
			addrs = append(addrs, m.HTTPAddr)
		}
	}
	if len(addrs) == 0 {
		return ""
	}
	return addrs[rand.IntN(len(addrs))]
}

// answer is the last lease answer and whether there was one.
func (c *leaseClient) answer() (LeaseAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.got
}
