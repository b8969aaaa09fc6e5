package node

import (
	"context"
	"errors"
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
}

func newQueue(maxRecords int, maxBytes int64) *queue {
	return &queue{
		buf:        make([]Record, maxRecords),
		maxRecords: maxRecords,
		maxBytes:   maxBytes,
		ready:      make(chan struct{}, 1),
		room:       make(chan struct{}),
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

// put adds all of recs or none: ErrQueueFull when they do not fit now.
func (q *queue) put(recs []Record) error {
	_, err := q.tryPut(recs)
	return err
}

// tryPut is put that also returns, when the queue is full, a channel that
// is closed once the batcher has made room.
func (q *queue) tryPut(recs []Record) (<-chan struct{}, error) {
	size := recordsBytes(recs)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrDraining
	}
	if len(recs) > q.maxRecords {
		return nil, ErrQueueFull
	}
	// An empty queue always takes one request, however large, so that a
	// request bigger than the byte bound is not refused forever.
	if q.n+len(recs) > q.maxRecords || (q.n > 0 && q.bytes+size > q.maxBytes) {
		return q.room, ErrQueueFull
	}
	q.pushLocked(recs, size)
	return nil, nil
}

// putWait adds recs, waiting for room until ctx is done.
func (q *queue) putWait(ctx context.Context, recs []Record) error {
	for {
		room, err := q.tryPut(recs)
		if err != ErrQueueFull || room == nil {
			return err
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
