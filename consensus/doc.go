// Package consensus is the Raft side of the cluster: the FSM that holds the
// global limits and budget allocations, its stores (raft-boltdb), and the
// leader's loop that reconciles membership and runs budget epochs.
//
// A node runs one Server beside its cluster.Cluster (see the agent wiring
// example). Every node is a Raft member with the FSM locally: up to five
// voters, the rest non-voters. --bootstrap-expect N bootstraps a new cluster
// once N fresh servers are alive in gossip; any node that sees existing Raft
// state waits to be added instead.
//
// While a node leads it reconciles the Raft configuration with gossip and,
// every epoch_ms, allocates the cluster budget of in-flight batch bytes with
// Allocate (a pure function) and commits the grants. Each node's FSM renews
// the node's Lease when it applies an epoch naming it; Server.Grant answers
// the grant while the lease is fresh and the per-node floor once it is not,
// so a node cut off from the cluster falls back on its own clock.
//
// Limits change through SetLimits on the leader; every command carries a
// request id and a repeated id is a no-op, so a command whose outcome was
// lost with the leadership (ErrOutcomeUnknown) can be sent again.
package consensus
