// Package cluster is membership and health gossip over hashicorp/memberlist:
// who is in the cluster, how each node is doing, and join and leave events.
// It does not decide budgets; the consensus package does.
//
// New starts a node's gossip: it loads (or creates) the node id in
// <data-dir>/node-id, binds the gossip address (TCP and UDP on the same
// port), joins the given members (retrying in the background), and every
// Config.HealthInterval reads the node's Health and gossips it in the node's
// meta, with the node's HTTP and Raft addresses, in a compact encoding that
// fits memberlist's 512-byte meta limit. A label keeps clusters apart and an
// optional key encrypts gossip.
//
// Members lists every member with its status (alive, suspect, dead, left),
// addresses and health; Subscribe delivers join, update, leave and fail
// events. Leave then Shutdown leaves gracefully.
package cluster
