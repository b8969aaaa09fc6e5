// Package consensus is the Raft side of the cluster: the FSM that holds the
// global limits and budget allocations, its stores (raft-boltdb), and the
// leader's loop that reconciles membership and runs budget epochs.
package consensus
