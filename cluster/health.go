package cluster

// Health is what a node tells the cluster about itself. It travels in the
// node's gossip meta, refreshed every HealthInterval, so every node sees every
// other node's health within a second or two. The leader reads WantBytes and
// HasBytes to allocate budgets.
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
	// like to use; HasBytes is what it uses now. Both feed the budget epoch.
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

// breakerCode and breakerFromCode map the breaker to one byte of meta.
func breakerCode(b Breaker) byte {
	switch b {
	case BreakerClosed:
		return 1
	case BreakerOpen:
		return 2
	case BreakerHalfOpen:
		return 3
	}
	return 0
}

func breakerFromCode(c byte) Breaker {
	switch c {
	case 1:
		return BreakerClosed
	case 2:
		return BreakerOpen
	case 3:
		return BreakerHalfOpen
	}
	return ""
}
