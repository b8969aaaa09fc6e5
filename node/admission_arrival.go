package node

import "time"

// The controllers read Observation.ArrivalRate as the demand on the node:
// tuner.Gradient takes it as λ, the rate batches fill at (fill time n/λ),
// the load its queueing model sizes batches for (ρ = λ·B(n)/(K·n)), the
// scale of a backlog (a quarter of the SLO's worth of arrivals) and, when
// it jumps by RegimeFactor, a regime change; the other controllers do not
// read it, nor does admission (estimateDrain measures what was written).
// Refused records were offered too, so they count; but a client refused
// with 429 and Retry-After sends the same records again once that time
// has passed, and a retry is not new demand. Counted every time, as
// before, a refused record was offered up to 1 + retries times: on the
// overload scenario the controllers saw 24,000-28,000 records/s against
// 10,000 offered, and sized batches for a load that never existed.
//
// retryLedger discounts the retries the node itself asked for. Each
// interval's refused records are expected back one Retry-After (the one
// the node hands out, its drain time) after the middle of the interval
// they were refused in; the records that arrive or are refused in an
// interval are new demand only beyond the returns due by its end. That
// assumes the shipper honours Retry-After (loadgen, Vector, Fluent Bit and
// Beats do): one that retries sooner is counted again, as before, and one
// that gives up makes the estimate low by what it gave up, so that under
// a long overload with shippers that give up the estimate tends to what
// the node admitted. It is a lower bound where the old count was an upper
// one; the node cannot tell a retry from a fresh request (no idempotency
// key in the HTTP ingest or the Elasticsearch bulk API), so the bound is
// as near as the node can see. A node that refuses nothing has no returns
// due and counts every arrival, as before.
type retryLedger struct {
	due []expectedReturn
}

// expectedReturn is n refused records expected back at at.
type expectedReturn struct {
	at time.Time
	n  int64
}

// retryLedgerMax bounds the ledger: returns due more than a minute out
// (Retry-After is at most retryAfterMax s) cannot pile up further.
const retryLedgerMax = 4 * retryAfterMax

// offered is the interval (last, now]'s new demand in records: the
// records that arrived (were admitted) or were refused in it, less the
// returns of earlier refusals due by now. It then books the interval's
// refusals as due back retryAfter after the interval's middle. Returns due
// by now that did not come are forgotten (their senders gave up or went
// elsewhere).
func (l *retryLedger) offered(last, now time.Time, arrived, refused int64, retryAfter time.Duration) int64 {
	var back int64
	keep := l.due[:0]
	for _, r := range l.due {
		if r.at.After(now) {
			keep = append(keep, r)
			continue
		}
		back += r.n
	}
	l.due = keep
	attempts := arrived + refused
	fresh := attempts - min(back, attempts)
	if refused > 0 && retryAfter > 0 && len(l.due) < retryLedgerMax {
		mid := last.Add(now.Sub(last) / 2)
		l.due = append(l.due, expectedReturn{at: mid.Add(retryAfter), n: refused})
	}
	return fresh
}
