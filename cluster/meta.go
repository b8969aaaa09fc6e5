package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hashicorp/memberlist"
)

// RaftMeta is the part of a node's gossip meta that the consensus package
// owns and the cluster package only carries: where the node's Raft listens,
// the bootstrap expectation it was started with, and how far its log is.
type RaftMeta struct {
	Addr            string // advertised Raft address, host:port
	BootstrapExpect int    // --bootstrap-expect; 0 means "never bootstrap"
	HasState        bool   // the node already has Raft state (a log or a configuration)
	AppliedIndex    uint64 // last Raft index applied to the node's FSM
	Term            uint64 // the node's current Raft term
}

// meta is everything a node gossips about itself, encoded by encodeMeta into
// at most memberlist.MetaMaxSize (512) bytes.
type meta struct {
	ID       string
	HTTPAddr string
	Raft     RaftMeta
	Seq      uint64 // bumped on every refresh so receivers see an update
	Health   Health
	// Leaving is set just before a graceful leave. memberlist does not
	// tell a left node from a dead one in its events, so this does.
	Leaving bool
}

// Limits on the variable-length fields. With them, the worst case encoding
// is well under memberlist.MetaMaxSize (see TestMetaWorstCaseFits).
const (
	maxIDLen   = 64
	maxAddrLen = 120

	metaVersion  = 1
	flagHasState = 1 << 0
	flagLeaving  = 1 << 1
)

var errMetaTruncated = errors.New("node meta truncated")

// encodeMeta writes the compact binary form: a version byte, a flags byte,
// then varints, length-prefixed strings and float32s. Non-finite floats are
// sent as 0.
func encodeMeta(m meta) ([]byte, error) {
	if len(m.ID) > maxIDLen {
		return nil, fmt.Errorf("node id is %d bytes, at most %d fit in gossip meta", len(m.ID), maxIDLen)
	}
	if len(m.HTTPAddr) > maxAddrLen || len(m.Raft.Addr) > maxAddrLen {
		return nil, fmt.Errorf("advertised addresses must be at most %d bytes to fit in gossip meta", maxAddrLen)
	}
	b := make([]byte, 0, 256)
	var flags byte
	if m.Raft.HasState {
		flags |= flagHasState
	}
	if m.Leaving {
		flags |= flagLeaving
	}
	b = append(b, metaVersion, flags)
	b = binary.AppendUvarint(b, uint64(max(m.Raft.BootstrapExpect, 0)))
	b = appendString(b, m.ID)
	b = appendString(b, m.HTTPAddr)
	b = appendString(b, m.Raft.Addr)
	b = binary.AppendUvarint(b, m.Raft.AppliedIndex)
	b = binary.AppendUvarint(b, m.Raft.Term)
	b = binary.AppendUvarint(b, m.Seq)
	h := m.Health
	b = binary.AppendVarint(b, int64(h.BatchSize))
	b = appendFloat(b, h.ThroughputRPS)
	b = appendFloat(b, h.P99ms)
	b = appendFloat(b, h.CPUPercent)
	b = appendFloat(b, h.MemPercent)
	b = binary.AppendUvarint(b, h.RSSBytes)
	b = binary.AppendVarint(b, int64(h.QueueDepth))
	b = append(b, breakerCode(h.Breaker))
	b = binary.AppendVarint(b, h.WantBytes)
	b = binary.AppendVarint(b, h.HasBytes)
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
	expect := r.uvarint()
	if expect > math.MaxInt32 {
		return m, fmt.Errorf("node meta: bootstrap expect %d out of range", expect)
	}
	m.Raft.BootstrapExpect = int(expect)
	m.ID = r.string(maxIDLen)
	m.HTTPAddr = r.string(maxAddrLen)
	m.Raft.Addr = r.string(maxAddrLen)
	m.Raft.AppliedIndex = r.uvarint()
	m.Raft.Term = r.uvarint()
	m.Seq = r.uvarint()
	m.Health.BatchSize = int(r.varint())
	m.Health.ThroughputRPS = r.float()
	m.Health.P99ms = r.float()
	m.Health.CPUPercent = r.float()
	m.Health.MemPercent = r.float()
	m.Health.RSSBytes = r.uvarint()
	m.Health.QueueDepth = int(r.varint())
	m.Health.Breaker = breakerFromCode(r.byte())
	m.Health.WantBytes = r.varint()
	m.Health.HasBytes = r.varint()
	if r.err != nil {
		return meta{}, r.err
	}
	return m, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		f = 0
	}
	return binary.BigEndian.AppendUint32(b, math.Float32bits(float32(f)))
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

func (r *metaReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errMetaTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) string(maxLen int) string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(maxLen) || n > uint64(len(r.b)) {
		r.fail(fmt.Errorf("node meta: string of %d bytes is too long or truncated", n))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *metaReader) float() float64 {
	if len(r.b) < 4 {
		r.fail(errMetaTruncated)
		return 0
	}
	v := float64(math.Float32frombits(binary.BigEndian.Uint32(r.b)))
	r.b = r.b[4:]
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0 // the API encodes health as JSON, which has no NaN
	}
	return v
}

func (r *metaReader) byte() byte {
	if len(r.b) < 1 {
		r.fail(errMetaTruncated)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}
