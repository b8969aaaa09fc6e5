package syslog

import (
	"sync/atomic"
	"time"
)

// reason names why the server logs a problem. Each reason is rate-limited on
// its own, so a flood of one kind does not hide another.
type reason uint8

const (
	reasonMalformed reason = iota
	reasonTooLong
	reasonBadFrame
	reasonTruncated
	reasonDropped
	reasonRefused
	reasonAccept
	reasonRead
	numReasons
)

var reasonNames = [numReasons]string{
	reasonMalformed: "malformed",
	reasonTooLong:   "too_long",
	reasonBadFrame:  "bad_frame",
	reasonTruncated: "truncated",
	reasonDropped:   "dropped",
	reasonRefused:   "refused",
	reasonAccept:    "accept_error",
	reasonRead:      "read_error",
}

func (r reason) String() string { return reasonNames[r] }

// logLimiter lets through at most one log line per reason per interval and
// counts the lines it holds back. It is safe for concurrent use.
type logLimiter struct {
	interval   time.Duration
	last       [numReasons]atomic.Int64 // UnixNano of the last line let through; 0 for none
	suppressed [numReasons]atomic.Uint64
}

// allow reports whether a line for r may be written at now and, if so, how
// many lines were held back since the previous one.
func (l *logLimiter) allow(r reason, now time.Time) (ok bool, suppressed uint64) {
	t := now.UnixNano()
	last := l.last[r].Load()
	if (last != 0 && t-last < int64(l.interval)) || !l.last[r].CompareAndSwap(last, t) {
		l.suppressed[r].Add(1)
		return false, 0
	}
	return true, l.suppressed[r].Swap(0)
}
