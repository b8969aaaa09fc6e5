package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/cluster/clustertest"
	"github.com/batchpilot/batchpilot/consensus"
	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/tuner"
)

// waitTimeout is generous because -race on two busy cores is slow; every
// wait is a poll that returns as soon as its condition holds.
const waitTimeout = clustertest.WaitTimeout

// flipper is a controller that changes the batch size every interval, so
// that every interval makes a decision.
type flipper struct{ n atomic.Int64 }

func (f *flipper) Name() string { return "flipper" }

func (f *flipper) Next(obs tuner.Observation) tuner.Decision {
	if f.n.Add(1)%2 == 0 {
		return tuner.Decision{BatchSize: 100, Reason: "test:down"}
	}
	return tuner.Decision{BatchSize: 200, Reason: "test:up"}
}

// testNode is one real node in this process: data plane with a file sink,
// gossip, Raft, and its HTTP API on 127.0.0.1 at a port chosen at run time.
type testNode struct {
	name   string
	url    string
	addr   string
	node   *node.Node
	gossip *cluster.Cluster
	raft   *consensus.Server
	api    *api
	router *gin.Engine
	http   *http.Server

	stopOnce sync.Once
}

type nodeOptions struct {
	expect int      // --bootstrap-expect; 0 joins an existing cluster
	join   []string // gossip addresses
	token  string
	// interval is the node's control interval (default 100 ms).
	interval time.Duration
}

func testTiming() consensus.Timing {
	return consensus.Timing{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		ReconcileInterval:  200 * time.Millisecond,
		StableFor:          time.Second,
		DeadGrace:          2 * time.Second,
		MaxLag:             1000,
	}
}

func startNode(t *testing.T, name string, o nodeOptions) *testNode {
	t.Helper()
	dir := t.TempDir()
	log := clustertest.Logger(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	snk, err := sink.NewFile(sink.FileConfig{Dir: filepath.Join(dir, "sink"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if o.interval == 0 {
		o.interval = 100 * time.Millisecond
	}
	n, err := node.New(node.Config{Name: name, Sink: snk, Controller: &flipper{},
		ControlInterval: o.interval, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	g, err := cluster.New(cluster.Config{
		NodeName: name, DataDir: dir, Role: cluster.RoleServer, BindAddr: "127.0.0.1:0", HTTPAddr: ln.Addr().String(),
		Join: o.join, Logger: log, RetryJoinInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	limits := consensus.DefaultLimits()
	limits.EpochMS, limits.LeaseTTLms = 200, 1500
	srv, err := consensus.New(consensus.Config{DataDir: dir, RaftAddr: "127.0.0.1:0", BootstrapExpect: o.expect,
		Gossip: g, Logger: log, InitialLimits: &limits, Timing: testTiming(), Token: o.token,
		Health: func() cluster.Health {
			h := n.Health()
			return cluster.Health{BatchSize: h.BatchSize, ThroughputRPS: h.ThroughputRPS, Breaker: cluster.Breaker(h.Breaker)}
		}})
	if err != nil {
		g.Shutdown()
		t.Fatal(err)
	}
	srv.Start()
	n.Start()
	a, h := build(Config{Node: n, Raft: srv, Gossip: g, APIToken: o.token, Logger: log,
		EventInterval: 100 * time.Millisecond, PeerTimeout: 3 * time.Second})
	tn := &testNode{name: name, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(),
		node: n, gossip: g, raft: srv, api: a, router: h, http: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = tn.http.Serve(ln) }()
	t.Cleanup(tn.stop)
	return tn
}

// stop stops the node abruptly, without leaving.
func (tn *testNode) stop() {
	tn.stopOnce.Do(func() {
		_ = tn.http.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tn.node.Shutdown(ctx)
		_ = tn.raft.Shutdown()
		_ = tn.gossip.Shutdown()
	})
}

// startSingle starts a one-node cluster and waits for it to lead.
func startSingle(t *testing.T, token string) *testNode {
	t.Helper()
	tn := startNode(t, "solo", nodeOptions{expect: 1, token: token})
	clustertest.WaitFor(t, "the node to lead with its limits applied", func() bool {
		return tn.raft.IsLeader() && tn.raft.ClusterID() != "" && tn.raft.Limits().EpochMS == 200
	})
	return tn
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal(r.body, out); err != nil {
		t.Fatalf("answer %d is not the JSON expected: %v\n%s", r.status, err, r.body)
	}
}

// errorText is the "error" of a JSON error answer; it fails the test when
// the answer is not one.
func (r response) errorText(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("answer %d has no error message: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error answer has Content-Type %q, want JSON", ct)
	}
	return e.Error
}

var client = &http.Client{Timeout: 30 * time.Second}

func do(t *testing.T, method, url string, body string, hdr map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: bytes.TrimSpace(b)}
}

func get(t *testing.T, url string) response { return do(t, http.MethodGet, url, "", nil) }
