package tuner

import (
	"sync"
	"time"
)

// DecisionRecord is one tuner decision as GET /api/v1/decisions shows it:
// when, where, what changed, why, and the figures behind it.
type DecisionRecord struct {
	Time       time.Time `json:"time"`
	Node       string    `json:"node"`
	Controller string    `json:"controller"`
	OldSize    int       `json:"old_size"`
	NewSize    int       `json:"new_size"`
	Reason     string    `json:"reason"`

	ArrivalRPS    float64 `json:"arrival_rps"`
	ThroughputRPS float64 `json:"throughput_rps"`
	GoodputRPS    float64 `json:"goodput_rps"`
	P99ms         float64 `json:"p99_ms"`
	CPUPercent    float64 `json:"cpu_percent"`
	MemPercent    float64 `json:"mem_percent"`
	QueueDepth    int     `json:"queue_depth"`
	Breaker       string  `json:"breaker"`
	// FlushLimit is the batches the node may write at once after this
	// decision, when the decision changed it (Decision.FlushConcurrency);
	// 0: unchanged.
	FlushLimit int `json:"flush_limit,omitempty"`
	// WriteMs is what a write took in the interval decided on (the mean of
	// its successful attempts, else of its batches), at the old size;
	// ExpectedWriteMs what the controller expects one to take at the new
	// size (Decision.WriteTime: gradient's cost model). 0: no write
	// finished, or the controller did not say.
	WriteMs         float64 `json:"write_ms,omitempty"`
	ExpectedWriteMs float64 `json:"expected_write_ms,omitempty"`
}

// NewDecisionRecord describes decision d taken on obs: the size goes from
// obs.BatchSize to d.BatchSize.
func NewDecisionRecord(node, controller string, obs Observation, d Decision) DecisionRecord {
	breaker := d.Breaker
	if breaker == "" {
		breaker = BreakerClosed
	}
	r := DecisionRecord{
		Time: obs.Now, Node: node, Controller: controller,
		OldSize: obs.BatchSize, NewSize: d.BatchSize, Reason: d.Reason,
		ArrivalRPS: obs.ArrivalRate, ThroughputRPS: obs.Throughput, GoodputRPS: obs.Goodput,
		P99ms:      float64(obs.P99) / float64(time.Millisecond),
		CPUPercent: obs.CPUPercent, MemPercent: obs.MemPercent,
		QueueDepth: obs.QueueDepth, Breaker: breaker,
		ExpectedWriteMs: float64(d.WriteTime) / float64(time.Millisecond),
	}
	if obs.Batches > 0 {
		r.WriteMs = 1000 * writeTime(obs)
	}
	return r
}

// DecisionLog keeps the most recent decisions in a bounded ring. It is safe
// for concurrent use: the control loop adds while the API reads.
type DecisionLog struct {
	mu   sync.Mutex
	buf  []DecisionRecord
	next int // where the next record goes
	full bool
}

// NewDecisionLog returns a log that keeps the last n decisions (at least 1).
func NewDecisionLog(n int) *DecisionLog {
	return &DecisionLog{buf: make([]DecisionRecord, max(1, n))}
}

// Add records r, dropping the oldest record when the log is full.
func (l *DecisionLog) Add(r DecisionRecord) {
	l.mu.Lock()
	l.buf[l.next] = r
	l.next++
	if l.next == len(l.buf) {
		l.next, l.full = 0, true
	}
	l.mu.Unlock()
}

// Len is the number of records held.
func (l *DecisionLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.full {
		return len(l.buf)
	}
	return l.next
}

// Recent returns up to limit records, newest first, of node (every node when
// node is ""); limit <= 0 means all that are held.
func (l *DecisionLog) Recent(node string, limit int) []DecisionRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.next
	if l.full {
		n = len(l.buf)
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	out := make([]DecisionRecord, 0, limit)
	for i := 1; i <= n && len(out) < limit; i++ {
		r := l.buf[(l.next-i+len(l.buf))%len(l.buf)]
		if node == "" || r.Node == node {
			out = append(out, r)
		}
	}
	return out
}
