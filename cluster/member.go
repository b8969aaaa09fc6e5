package cluster

import "time"

// Status is a member's gossip status as the API spells it.
type Status string

// The member statuses. Alive and dead come from memberlist's failure
// detector and left from a graceful leave. Suspect is kept for the API's
// sake; gossip does not report it.
const (
	StatusAlive   Status = "alive"
	StatusSuspect Status = "suspect"
	StatusDead    Status = "dead"
	StatusLeft    Status = "left"
)

// Member is one node as this node sees it through gossip.
type Member struct {
	Name     string
	ID       string // empty when the node's meta could not be read
	Addr     string // gossip address, host:port
	Role     Role
	HTTPAddr string
	// ClusterID is the cluster id the member gossips ("" while it has none).
	ClusterID string
	Version   string
	Raft      RaftMeta
	Status    Status
	// Leaving is set when the member's own meta announced a graceful leave
	// (AnnounceLeave) and it has not rejoined since: it is about to go.
	Leaving bool
	// StatusSince is when this node saw the member's status last change
	// (alive, dead, left), on this node's clock.
	StatusSince time.Time
	// LastHeard is when this node last received the member's meta (it is
	// gossiped on changes only).
	LastHeard time.Time
	// MetaError says why the member's meta could not be decoded, if so.
	MetaError string
}

// EventType says what happened to a member.
type EventType int

// The event types. A member's first appearance and its return after being
// dead or left are joins; a changed meta (a role's milestone) is an update.
const (
	EventJoin EventType = iota
	EventUpdate
	EventLeave // left gracefully
	EventFail  // declared dead by the failure detector
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	}
	return "unknown"
}

// Event is one membership change, with the member as it is after it.
type Event struct {
	Type   EventType
	Member Member
}
