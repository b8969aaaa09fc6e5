package node

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// The controllers read Observation.ArrivalRate as the demand on the node:
// tuner.Gradient takes it as λ, the rate its queueing model sizes batches
// for (fill time n/λ, ρ = λ·B(n)/(K·n)), the scale of a backlog (a quarter
// of the SLO's worth of arrivals) and, when it jumps by RegimeFactor, a
// regime change; the other controllers do not read it, nor does admission
// (estimateDrain measures what was written). Refused records were offered
// too, so they count; but a client refused with 429 and Retry-After sends
// the same records again, and a retry is not new demand. Counted on every
// attempt, as before, a refused record was offered up to 1 + retries
// times: on the overload scenario the controllers saw 24,000-28,000
// records/s against 10,000 offered, and sized batches for a load that
// never existed.
//
// The node cannot tell a retry by its body (it refuses before reading it,
// and neither the HTTP ingest nor the Elasticsearch bulk API carries an
// idempotency key), so it takes the client's word: a request whose
// attempt header (AttemptHeader, or Envoy's x-envoy-attempt-count, which
// Envoy sets on the requests it retries upstream) says 2 or more is a
// retry, and its records are left out of the arrivals, whatever becomes of
// it. loadgen sets it on every attempt. A client that does not is counted
// on every attempt, as before: an upper bound of its demand.
//
// Counting the retries the node asked for (every refusal expected back one
// Retry-After later) was tried first and measured worse: a shipper that
// gives up after a few retries never comes back, the fresh records that
// arrive instead were taken for its returns, and under a long overload the
// estimate fell to what the node itself admitted, moving with the node's
// own admission from one second to the next (970 to 15,900 records/s on
// overload) and setting off the gradient's regime changes.
const AttemptHeader = "X-Attempt-Count"

const envoyAttemptHeader = "X-Envoy-Attempt-Count"

// maxAttemptHeader bounds what is read of an attempt header.
const maxAttemptHeader = 9

// ParseAttempt reads an attempt header's value: a decimal count, 1 for
// the first attempt. ok is false for anything else (then the request is
// taken for a first attempt).
func ParseAttempt(v string) (attempt int, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > maxAttemptHeader {
		return 0, false
	}
	a, err := strconv.Atoi(v)
	if err != nil || a < 1 {
		return 0, false
	}
	return a, true
}

// isRetry reports whether the request says it is a retry.
func isRetry(h http.Header) bool {
	for _, k := range [...]string{AttemptHeader, envoyAttemptHeader} {
		if a, ok := ParseAttempt(h.Get(k)); ok {
			return a > 1
		}
	}
	return false
}

// noteRetry leaves out of the interval's arrivals the records of a request
// that says it is a retry, once Ingest (or the door: admitHeaders) has
// counted them as arrived or refused; err is what Ingest returned. A
// request refused while draining or while the breaker is open was counted
// in neither, and is not left out of them.
func (n *Node) noteRetry(r *http.Request, records int, err error) {
	if records <= 0 || !isRetry(r.Header) || errors.Is(err, ErrDraining) || errors.Is(err, ErrBreakerOpen) {
		return
	}
	n.queue.adm.retried.Add(int64(records))
}

// offered is the interval's new demand in records: what arrived or was
// refused, less the retries among them.
func (a *admission) offered(arrived, refused int64) int64 {
	return max(0, arrived+refused-a.retried.Swap(0))
}
