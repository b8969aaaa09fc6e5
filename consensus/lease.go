package consensus

import (
	"sync"
	"time"
)

// Lease is a node's hold on its budget grant. The node's FSM renews it when
// it applies an allocation that names the node; the lease is timed on the
// node's own monotonic clock from that moment, never on the leader's. When no
// fresh epoch arrives within the TTL, Grant answers the safe baseline (the
// per-node floor), so a node cut off from the cluster cannot keep a large
// grant that the leader may already have given to others.
//
// The time is always passed in, so tests can step it. All methods are safe
// for concurrent use.
type Lease struct {
	mu       sync.Mutex
	held     bool
	bytes    int64
	epoch    uint64
	renewed  time.Time
	ttl      time.Duration
	baseline int64
}

// NewLease returns a lease that holds nothing yet and answers baseline.
func NewLease(baseline int64) *Lease {
	return &Lease{baseline: baseline}
}

// Renew records a grant of bytes from epoch, applied at now and trusted for
// ttl, and the baseline to fall back to. A grant from an epoch older than
// the one held is ignored; Renew reports whether it was taken.
func (l *Lease) Renew(now time.Time, epoch uint64, bytes int64, ttl time.Duration, baseline int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held && epoch < l.epoch {
		return false
	}
	l.held, l.bytes, l.epoch, l.renewed, l.ttl, l.baseline = true, bytes, epoch, now, ttl, baseline
	return true
}

// Cap lowers the held grant to at most bytes (and the baseline to at most
// baseline) without renewing the lease: the budget was cut between epochs.
func (l *Lease) Cap(bytes, baseline int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bytes = min(l.bytes, bytes)
	l.baseline = min(l.baseline, baseline)
}

// SetBaseline changes what a stale lease answers.
func (l *Lease) SetBaseline(baseline int64) {
	l.mu.Lock()
	l.baseline = baseline
	l.mu.Unlock()
}

// Grant returns the granted bytes and true while the lease is fresh (less
// than its TTL since it was renewed), and the baseline and false otherwise.
func (l *Lease) Grant(now time.Time) (bytes int64, fresh bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held && now.Sub(l.renewed) < l.ttl {
		return l.bytes, true
	}
	return l.baseline, false
}

// LeaseInfo describes a lease at one moment, for the API.
type LeaseInfo struct {
	Epoch      uint64 `json:"epoch"`
	GrantBytes int64  `json:"grant_bytes"` // what the node may hold now
	Fresh      bool   `json:"fresh"`
	Baseline   int64  `json:"baseline_bytes"`
	AgeMS      int64  `json:"age_ms"` // since the last renewal; -1 if never renewed
}

// Info describes the lease at now.
func (l *Lease) Info(now time.Time) LeaseInfo {
	bytes, fresh := l.Grant(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	info := LeaseInfo{Epoch: l.epoch, GrantBytes: bytes, Fresh: fresh, Baseline: l.baseline, AgeMS: -1}
	if l.held {
		info.AgeMS = now.Sub(l.renewed).Milliseconds()
	}
	return info
}
