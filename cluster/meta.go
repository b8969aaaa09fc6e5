package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hashicorp/memberlist"
)

// Role is a node's role in the cluster, as in Consul and Nomad: a server
// runs Raft and holds the limits; a worker is a gossip member only.
type Role string

// The roles as the API spells them.
const (
	RoleServer Role = "server"
	RoleWorker Role = "worker"
)

// RaftMeta is the part of a server's gossip meta that the consensus package
// owns and the cluster package only carries: where its Raft listens, the
// bootstrap expectation it was started with, whether it has Raft state, and,
// before the first bootstrap only, the hash of the set of servers it would
// bootstrap with (so the expected servers can check that they agree).
type RaftMeta struct {
	Addr            string // advertised Raft address, host:port
	BootstrapExpect int    // --bootstrap-expect; 0 means "never bootstrap"
	HasState        bool   // the node already has Raft state (a log or a configuration)
	BootstrapView   uint64 // hash of the server set it would bootstrap with; 0: none
}

// meta is everything a node gossips about itself: its identity, small and
// static (it changes on a role's milestones, never with traffic), encoded by
// encodeMeta into at most memberlist.MetaMaxSize (512) bytes. Health is not
// gossiped: it travels to the leader with the node's lease requests.
type meta struct {
	ID        string
	Role      Role
	HTTPAddr  string
	ClusterID string
	Version   string
	Raft      RaftMeta
	// Leaving is set just before a graceful leave. memberlist does not
	// tell a left node from a dead one in its events, so this does.
	Leaving bool
}

// Limits on the variable-length fields. With them, the worst case encoding
// is well under memberlist.MetaMaxSize (see TestMetaWorstCaseFits).
const (
	maxIDLen      = 64
	maxAddrLen    = 120
	maxVersionLen = 32

	metaVersion  = 2
	flagHasState = 1 << 0
	flagLeaving  = 1 << 1
	flagServer   = 1 << 2
)

var errMetaTruncated = errors.New("node meta truncated")

// encodeMeta writes the compact binary form: a version byte, a flags byte,
// then varints and length-prefixed strings.
func encodeMeta(m meta) ([]byte, error) {
	if len(m.ID) > maxIDLen || len(m.ClusterID) > maxIDLen {
		return nil, fmt.Errorf("node and cluster ids must be at most %d bytes to fit in gossip meta", maxIDLen)
	}
	if len(m.HTTPAddr) > maxAddrLen || len(m.Raft.Addr) > maxAddrLen {
		return nil, fmt.Errorf("advertised addresses must be at most %d bytes to fit in gossip meta", maxAddrLen)
	}
	if len(m.Version) > maxVersionLen {
		return nil, fmt.Errorf("version %q is longer than %d bytes", m.Version, maxVersionLen)
	}
	b := make([]byte, 0, 192)
	var flags byte
	if m.Raft.HasState {
		flags |= flagHasState
	}
	if m.Leaving {
		flags |= flagLeaving
	}
	if m.Role == RoleServer {
		flags |= flagServer
	}
	b = append(b, metaVersion, flags)
	b = binary.AppendUvarint(b, uint64(max(m.Raft.BootstrapExpect, 0)))
	b = appendString(b, m.ID)
	b = appendString(b, m.HTTPAddr)
	b = appendString(b, m.Raft.Addr)
	b = appendString(b, m.ClusterID)
	b = appendString(b, m.Version)
	b = binary.AppendUvarint(b, m.Raft.BootstrapView)
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node meta is %d bytes, over memberlist's limit of %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta reads what encodeMeta wrote. It never panics on bad input: meta
// comes from the network.
func decodeMeta(b []byte) (meta, error) {
	var m meta
	if len(b) < 2 {
		return m, errMetaTruncated
	}
	if b[0] != metaVersion {
		return m, fmt.Errorf("node meta version %d is not supported (want %d)", b[0], metaVersion)
	}
	r := metaReader{b: b[2:]}
	m.Raft.HasState = b[1]&flagHasState != 0
	m.Leaving = b[1]&flagLeaving != 0
	m.Role = RoleWorker
	if b[1]&flagServer != 0 {
		m.Role = RoleServer
	}
	expect := r.uvarint()
	if expect > math.MaxInt32 {
		return m, fmt.Errorf("node meta: bootstrap expect %d out of range", expect)
	}
	m.Raft.BootstrapExpect = int(expect)
	m.ID = r.string(maxIDLen)
	m.HTTPAddr = r.string(maxAddrLen)
	m.Raft.Addr = r.string(maxAddrLen)
	m.ClusterID = r.string(maxIDLen)
	m.Version = r.string(maxVersionLen)
	m.Raft.BootstrapView = r.uvarint()
	if r.err != nil {
		return meta{}, r.err
	}
	return m, nil
}

// metaClusterID reads only the cluster id of an encoded meta, as a slice of
// b, without allocating: memberlist asks the cluster guard about every alive
// message it receives, repeated ones included, and in the scale benchmark a
// full decode there (five strings a message) was the costliest part of
// ours. A meta that decodeMeta reads gives the same cluster id here.
func metaClusterID(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, errMetaTruncated
	}
	if b[0] != metaVersion {
		return nil, fmt.Errorf("node meta version %d is not supported (want %d)", b[0], metaVersion)
	}
	r := metaReader{b: b[2:]}
	r.uvarint() // bootstrap expect
	r.bytes(maxIDLen)
	r.bytes(maxAddrLen) // HTTP address
	r.bytes(maxAddrLen) // Raft address
	id := r.bytes(maxIDLen)
	if r.err != nil {
		return nil, r.err
	}
	return id, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// metaReader reads fields in order and remembers the first error, so the
// decoder reads straight through and checks once.
type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *metaReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errMetaTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) string(maxLen int) string {
	return string(r.bytes(maxLen))
}

// bytes reads a length-prefixed string as a slice of the input.
func (r *metaReader) bytes(maxLen int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(maxLen) || n > uint64(len(r.b)) {
		r.fail(fmt.Errorf("node meta: string of %d bytes is too long or truncated", n))
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}
