package node

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// ErrQueueFull is returned when a request does not fit in the queue; HTTP
// answers it with 429 and Retry-After.
var ErrQueueFull = errors.New("queue full")

// ErrDraining is returned once the node has begun shutting down.
var ErrDraining = errors.New("node is draining")

// queue is the bounded buffer between ingest and the batcher, bounded both
// in records and in bytes. Producers either get all of their records in or
// none (put), or wait for room (putWait); the batcher is the only consumer.
type queue struct {
	mu         sync.Mutex
	buf        []Record // ring
	head, n    int
	bytes      int64
	maxRecords int
	maxBytes   int64
	closed     bool

	// ready is signalled (without blocking) when records arrive or the
	// queue closes. room is closed, and replaced, whenever the batcher takes
	// records, which wakes every producer waiting in putWait.
	ready chan struct{}
	room  chan struct{}

	// adm bounds the queue by the time its records will wait (admission.go);
	// maxRecords and maxBytes stay the hard ceiling behind it.
	adm *admission
}

func newQueue(maxRecords int, maxBytes int64, queueOnly bool) *queue {
	return &queue{
		buf:        make([]Record, maxRecords),
		maxRecords: maxRecords,
		maxBytes:   maxBytes,
		ready:      make(chan struct{}, 1),
		room:       make(chan struct{}),
		adm:        newAdmission(queueOnly),
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func recordsBytes(recs []Record) int64 {
	var b int64
	for i := range recs {
		b += int64(len(recs[i].Data))
	}
	return b
}

// put adds all of recs or none: ErrQueueFull when they do not fit now
// (ErrOverloaded when the delay bound refused them), counted as a refusal.
func (q *queue) put(recs []Record) error {
	_, why, err := q.tryPut(recs)
	if why != "" {
		q.adm.refused(why, recs[0].Source)
	}
	return err
}

// tryPut is put without the count: when the records do not fit it returns
// why, and a channel that is closed once the batcher has made room.
func (q *queue) tryPut(recs []Record) (<-chan struct{}, string, error) {
	size := recordsBytes(recs)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, "", ErrDraining
	}
	if len(recs) > q.maxRecords {
		return nil, whyRecords, ErrQueueFull
	}
	if why, err := q.admitsLocked(len(recs), size, true); err != nil {
		return q.room, why, err
	}
	q.pushLocked(recs, size)
	return nil, "", nil
}

// admitsLocked reports whether n records of size bytes fit now: the hard
// bounds, then the admission's delay bound (and its grace, which take
// spends: the records are joining the queue). An empty queue always takes
// one request, however large, so that a request bigger than the byte bound
// is not refused forever.
func (q *queue) admitsLocked(n int, size int64, take bool) (string, error) {
	switch {
	case q.n+n > q.maxRecords:
		return whyRecords, ErrQueueFull
	case q.n > 0 && q.bytes+size > q.maxBytes:
		return whyBytes, ErrQueueFull
	}
	var head time.Time
	if q.n > 0 {
		head = q.buf[q.head].Received
	}
	if why := q.adm.admits(q.n, n, head, time.Now(), take); why != "" {
		return why, ErrOverloaded
	}
	return "", nil
}

// admitsBody reports whether a request whose body is length bytes (0:
// unknown) would be admitted now, estimating its records from the mean
// size of the queued ones (or of the last interval's when the queue is
// empty), of which only headerEstimate is counted so that the estimate does
// not refuse what would fit. It returns the estimate.
func (q *queue) admitsBody(length int64) (string, int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return "", 0, ErrDraining
	}
	est := 1
	if length > 0 {
		avg := math.Float64frombits(q.adm.avgRec.Load())
		if q.n > 0 {
			avg = float64(q.bytes) / float64(q.n)
		}
		est = max(1, int(headerEstimate*float64(length)/(avg+1)))
	}
	why, err := q.admitsLocked(est, 0, false)
	return why, est, err
}

// putWait adds recs, waiting for room until ctx is done. A wait is counted
// once (syslog TCP: the connection is not read meanwhile).
func (q *queue) putWait(ctx context.Context, recs []Record) error {
	waited := false
	for {
		room, why, err := q.tryPut(recs)
		if !errors.Is(err, ErrQueueFull) || room == nil {
			return err
		}
		if !waited {
			waited = true
			q.adm.waited(why, recs[0].Source)
		}
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (q *queue) pushLocked(recs []Record, size int64) {
	for i := range recs {
		q.buf[(q.head+q.n)%len(q.buf)] = recs[i]
		q.n++
	}
	q.bytes += size
	notify(q.ready)
}

// state returns the number of queued records, their bytes, when the oldest
// arrived, and whether the queue is closed.
func (q *queue) state() (n int, bytes int64, oldest time.Time, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n > 0 {
		oldest = q.buf[q.head].Received
	}
	return q.n, q.bytes, oldest, q.closed
}

// take moves up to max records, and at most maxBytes of them, into dst.
// With oversize it takes the first record even when that alone is larger
// than maxBytes.
func (q *queue) take(dst []Record, max int, maxBytes int64, oversize bool) []Record {
	q.mu.Lock()
	var size int64
	for q.n > 0 && max > 0 {
		r := &q.buf[q.head]
		if size+int64(len(r.Data)) > maxBytes && !(oversize && len(dst) == 0) {
			break
		}
		size += int64(len(r.Data))
		dst = append(dst, *r)
		*r = Record{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		max--
	}
	q.bytes -= size
	if size > 0 {
		close(q.room)
		q.room = make(chan struct{})
	}
	q.mu.Unlock()
	return dst
}

// close stops further puts; records already queued stay for the batcher.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	close(q.room)
	q.room = make(chan struct{})
	q.mu.Unlock()
	notify(q.ready)
}
