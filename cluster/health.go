package cluster

// Health is what a node tells the cluster about itself. It travels to the
// Raft leader with the node's lease requests (not in gossip), and the leader
// serves it in the API and the dashboard.
type Health struct {
	BatchSize     int     `json:"batch_size"`
	ThroughputRPS float64 `json:"throughput_rps"`
	P99ms         float64 `json:"p99_ms"`
	CPUPercent    float64 `json:"cpu_percent"`
	MemPercent    float64 `json:"mem_percent"`
	RSSBytes      uint64  `json:"rss_bytes"`
	QueueDepth    int     `json:"queue_depth"`
	Breaker       Breaker `json:"breaker"`
	// WantBytes is the in-flight batch bytes the node's controller would
	// like to use; HasBytes is what it uses now.
	WantBytes int64 `json:"want_bytes"`
	HasBytes  int64 `json:"has_bytes"`
}

// Breaker is the state of a node's safety breaker.
type Breaker string

// The breaker states as the API spells them. The zero value means unknown.
const (
	BreakerClosed   Breaker = "closed"
	BreakerOpen     Breaker = "open"
	BreakerHalfOpen Breaker = "half-open"
)
