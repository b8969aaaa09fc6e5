package node

import (
	"sync"
	"sync/atomic"
	"time"
)

// Source names where a record came in; the sink writes it as "_source".
type Source string

const (
	SourceHTTP   Source = "http"
	SourceSyslog Source = "syslog"
	SourceOTLP   Source = "otlp" // OTLP/HTTP logs on POST /v1/logs
	SourceBulk   Source = "bulk" // the Elasticsearch bulk API
)

// Record is one log record on its way through the node.
type Record struct {
	// Data is the record as one JSON object, without a trailing newline.
	Data []byte
	// Source is where the record came in.
	Source Source
	// Received is when the node accepted it (with a monotonic reading, used
	// for end-to-end latency).
	Received time.Time

	ack *ack // nil for records nobody waits on (syslog)
}

// ack is the acknowledgement of one ingest request: it completes once every
// record of the request has been written, or with the first error.
type ack struct {
	remaining atomic.Int64
	once      sync.Once
	errMu     sync.Mutex
	err       error
	done      chan struct{}
}

func newAck(n int) *ack {
	a := &ack{done: make(chan struct{})}
	a.remaining.Store(int64(n))
	return a
}

// settle records that n of the request's records are finished, successfully
// when err is nil.
func (a *ack) settle(n int, err error) {
	if err != nil {
		a.errMu.Lock()
		if a.err == nil {
			a.err = err
		}
		a.errMu.Unlock()
	}
	if a.remaining.Add(-int64(n)) <= 0 {
		a.once.Do(func() { close(a.done) })
	}
}

// result is the request's outcome; call after done is closed.
func (a *ack) result() error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return a.err
}
