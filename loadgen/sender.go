package loadgen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
)

// sender delivers encoded batches to targets of one protocol. Each worker
// owns its senders, so a sender is used by one goroutine at a time and may
// keep buffers and connections between calls. send makes one attempt; the
// worker retries. close is called once, when the worker ends.
type sender interface {
	send(ctx context.Context, t *target, wire []byte, pl *payload) attempt
	close()
}

// attempt is the outcome of one try.
type attempt struct {
	// kind is "" on success, else what went wrong: "429", "503", "5xx",
	// "400", "413", "4xx", "timeout", "conn", "bad_ack", "other".
	kind          string
	retryable     bool
	failover      bool          // try another target next
	retryAfter    time.Duration // from Retry-After, when hasRetryAfter
	hasRetryAfter bool
	// acked: the target acknowledged (HTTP 2xx, TCP written); UDP success
	// is delivered but not acknowledged.
	acked bool
}

// Error kinds that callers branch on.
const (
	kindTimeout = "timeout"
	kindConn    = "conn"
)

// classify turns a transport error into an attempt.
func classify(err error) attempt {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return attempt{kind: kindTimeout, retryable: true, failover: true}
	case errors.Is(err, syscall.EMSGSIZE):
		return attempt{kind: "other"}
	default:
		return attempt{kind: kindConn, retryable: true, failover: true}
	}
}

// statusAttempt classifies an HTTP status.
func statusAttempt(resp *http.Response) attempt {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return attempt{acked: true}
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable:
		a := attempt{kind: strconv.Itoa(code), retryable: true, failover: code == http.StatusServiceUnavailable}
		a.retryAfter, a.hasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return a
	case code >= 500:
		return attempt{kind: "5xx", retryable: true, failover: true}
	case code == http.StatusBadRequest, code == http.StatusRequestEntityTooLarge:
		return attempt{kind: strconv.Itoa(code)}
	case code >= 400:
		return attempt{kind: "4xx"}
	default:
		return attempt{kind: "other"}
	}
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 || s != s {
			return 0, true
		}
		return time.Duration(min(s, 86400) * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
