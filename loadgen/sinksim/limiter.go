package sinksim

import (
	"context"
	"errors"
	"sync"
)

// errQueueFull is returned when the wait queue is at its limit.
var errQueueFull = errors.New("queue full")

// limiter is a concurrency limit with a FIFO wait queue. The limit and the
// queue length are passed on each call, because a cost phase may change
// them while requests wait.
type limiter struct {
	mu      sync.Mutex
	active  int
	waiters []*waiter
}

type waiter struct {
	ch      chan struct{}
	granted bool
}

// acquire takes a slot, waiting in line if limit slots are busy (limit 0:
// no limit). queue is how many may wait (0: any number, -1: none).
func (l *limiter) acquire(ctx context.Context, limit, queue int) error {
	l.mu.Lock()
	if limit <= 0 || (l.active < limit && len(l.waiters) == 0) {
		l.active++
		l.mu.Unlock()
		return nil
	}
	if queue < 0 || (queue > 0 && len(l.waiters) >= queue) {
		l.mu.Unlock()
		return errQueueFull
	}
	w := &waiter{ch: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		if w.granted {
			l.mu.Unlock()
			l.release(limit)
			return ctx.Err()
		}
		for i, x := range l.waiters {
			if x == w {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				break
			}
		}
		l.mu.Unlock()
		return ctx.Err()
	}
}

// release frees a slot and lets waiters in while there is room under limit.
func (l *limiter) release(limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	for len(l.waiters) > 0 && (limit <= 0 || l.active < limit) {
		w := l.waiters[0]
		l.waiters = l.waiters[1:]
		w.granted = true
		l.active++
		close(w.ch)
	}
}

// load returns the slots in use and the requests waiting.
func (l *limiter) load() (active, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active, len(l.waiters)
}
