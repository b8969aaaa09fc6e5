package consensus_test

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/consensus"
)

// This is how `batchpilot agent` wires a node into the cluster. It is
// compiled, not run.
func Example_agentWiring() {
	ctx := context.Background()
	logger := slog.Default()
	var nodeHealth func() cluster.Health // from the node's data plane
	var setGrant func(bytes int64)       // caps the node's in-flight batch bytes

	// At start: gossip first (it owns the node id), then Raft on a server
	// (Worker: true on a worker, which runs the lease client only).
	gossip, err := cluster.New(cluster.Config{
		NodeName:   "node-1",
		DataDir:    "./data",
		Role:       cluster.RoleServer,        // --server
		BindAddr:   "127.0.0.1:7946",          // --gossip-addr
		HTTPAddr:   "127.0.0.1:8480",          // advertised --http-addr
		Join:       []string{"10.0.0.1:7946"}, // --join
		EncryptKey: "",                        // --encrypt
		Logger:     logger,
	})
	if err != nil {
		return
	}
	srv, err := consensus.New(consensus.Config{
		DataDir:         "./data",
		RaftAddr:        "127.0.0.1:8300", // --raft-addr
		BootstrapExpect: 3,                // --bootstrap-expect
		Gossip:          gossip,
		Logger:          logger,
		Health:          nodeHealth, // sent with every lease request
	})
	if err != nil {
		gossip.Shutdown()
		return
	}
	srv.Start()

	// Every control interval: cap the node by its grant. The lease client
	// refreshes it every TTL/3; a stale lease answers the safe baseline.
	bytes, _ := srv.Grant(time.Now())
	setGrant(bytes)

	// The API: GET /api/v1/cluster is srv.Status(time.Now()); GET
	// /api/v1/limits is srv.Limits(); PUT /api/v1/limits is SetLimits,
	// forwarded to the leader when this node is not it.
	var patch consensus.LimitsPatch // decoded from the request body
	if _, err := srv.SetLimits(ctx, patch, consensus.NewRequestID()); errors.Is(err, consensus.ErrNotLeader) {
		_ = srv.LeaderHTTPAddr() // forward the PUT there, with the same request id
	}

	// On SIGTERM: leave gracefully, then stop. On a fatal error, skip Leave.
	_ = srv.Leave(5 * time.Second)
	_ = srv.Shutdown()
	_ = gossip.Shutdown()
}
