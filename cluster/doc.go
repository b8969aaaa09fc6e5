// Package cluster is membership and health gossip over hashicorp/memberlist:
// who is in the cluster, how each node is doing, and join and leave events.
// It does not decide budgets; the consensus package does.
package cluster
