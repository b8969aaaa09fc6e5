package tuner

import (
	"strings"
	"testing"
	"time"
)

// browned is one second of the brown-out bench's node (docs/bench.md): 3,000
// records/s to a downstream whose writes take 80 ms and 20 µs a record, in
// batches of size. With deferred, one of the interval's requests was
// answered 429 with a Retry-After of 2 s: its attempt is reported, and the
// batch's time (not its retry's RTT) holds the wait. With lateRetry, the
// records of a request deferred earlier were acknowledged in this interval,
// 2 s late: p99 is past the SLO, and no attempt of the interval says why.
func browned(at, size int, deferred, lateRetry bool) Observation {
	const rate = 3000.0
	n := float64(size)
	rtt := 80*time.Millisecond + time.Duration(n)*20*time.Microsecond
	batches := int(rate / n)
	o := Observation{
		Now: t0.Add(time.Duration(at) * time.Second), Interval: time.Second,
		BatchSize: size, MaxBatchSize: 20000, SLO: 500 * time.Millisecond,
		ArrivalRate: rate, Throughput: rate, Goodput: rate,
		P50:     time.Duration(n/rate*float64(time.Second))/2 + rtt,
		Batches: batches, MeanBatchFill: n, MeanBatchTime: rtt,
		QueueDepth: size / 2, FlushConcurrency: 4, MaxLinger: 200 * time.Millisecond,
		CPUPercent: 30, MemPercent: 40,
	}
	o.P99 = time.Duration(n/rate*float64(time.Second)) + 2*rtt
	for range batches {
		o.Attempts = append(o.Attempts, Attempt{End: o.Now, RTT: rtt, Records: size, Outcome: AttemptOK, RetryAfter: -1, InFlight: 2, Full: true})
	}
	if deferred {
		// (Observation.Backpressure counts batches that failed for good;
		// this one's retry was written.)
		o.Attempts = append(o.Attempts, Attempt{End: o.Now.Add(-time.Second / 2), RTT: rtt, Records: size, Outcome: AttemptBackpressure, RetryAfter: 2 * time.Second, InFlight: 3, Full: true})
		// The deferred batch's time holds its wait and its retry.
		o.MeanBatchTime = (time.Duration(batches-1)*rtt + 2*time.Second + 2*rtt) / time.Duration(batches)
	}
	if lateRetry {
		o.P99 = 2*time.Second + 2*rtt
	}
	return o
}

// A downstream that defers a share of requests by a Retry-After longer than
// the SLO makes every record of such a request late, whatever its size; the
// p99 of a second holds only if none of its requests was deferred. So once
// it defers, the batch may fill for the whole latency budget (fewer, larger
// requests), and it goes back to a tenth of the SLO half a minute after the
// last deferral. Before (session 13), it stayed at the tenth (150 records
// here) and the full-length brown-out kept 0.46 of its seconds within the SLO.
func TestGradientSendsFewerLargerRequestsWhileTheDownstreamDefers(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 150})
	size, at := 150, 0
	run := func(n int, deferEvery int) {
		for i := 0; i < n; i++ {
			at++
			d := g.Next(browned(at, size, deferEvery > 0 && i%deferEvery == 0, false))
			size = d.BatchSize
		}
	}
	run(20, 0)
	if size > 200 {
		t.Fatalf("without deferrals: %d records a batch, want about 150 (a tenth of the SLO's fill at 3,000/s)", size)
	}
	run(20, 7) // a deferral every seven seconds: 2 % of ~20 requests a second, about
	if size < 300 {
		t.Errorf("while the downstream defers: %d records a batch, want at least 300 (fewer, larger requests)", size)
	}
	if size > 750 {
		t.Errorf("while the downstream defers: %d records a batch, past what fills in the 250 ms latency budget", size)
	}
	run(deferMemory+20, 0)
	if size > 200 {
		t.Errorf("%d s after the last deferral: %d records a batch, want the tenth-of-the-SLO size back (about 150)", deferMemory+20, size)
	}
}

// The records of a deferred request are acknowledged a Retry-After after
// the answer that deferred them: that interval's p99 is the deferral's, and
// a smaller size would not shorten it. A p99 as high with no deferral
// before it still shrinks.
func TestGradientReadsALateRetryAsTheDeferralsTail(t *testing.T) {
	for _, c := range []struct {
		name       string
		deferral   bool
		wantShrink bool
	}{
		{"a request deferred 2 s two intervals before", true, false},
		{"no deferral before", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewGradient(GradientConfig{Initial: 150})
			size := 150
			for at := 1; at <= 10; at++ {
				size = g.Next(browned(at, size, false, false)).BatchSize
			}
			size = g.Next(browned(11, size, c.deferral, false)).BatchSize
			size = g.Next(browned(12, size, false, false)).BatchSize
			d := g.Next(browned(13, size, false, true))
			if got := strings.HasPrefix(d.Reason, "shrink:p99"); got != c.wantShrink {
				t.Errorf("p99 2.2 s at %d records: decided %d (%s), want a p99 shrink: %v", size, d.BatchSize, d.Reason, c.wantShrink)
			}
		})
	}
}

// A batch's time holds the Retry-After it waited out; the cost of a write
// is its attempt's RTT. An interval in which half of the batches waited out
// a Retry-After of 450 ms (shorter than the SLO, so not a deferral that
// widens the fill) before their retry, its mean batch time over four times
// the write's, is not a new cost regime.
func TestGradientCostsAWriteByItsAttemptNotItsRetryAfter(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 150})
	size := 150
	for at := 1; at <= 10; at++ {
		size = g.Next(browned(at, size, false, false)).BatchSize
	}
	o := browned(11, size, false, false)
	rtt := o.MeanBatchTime
	waited := o.Batches / 2
	for range waited {
		o.Attempts = append(o.Attempts, Attempt{End: o.Now, RTT: rtt, Records: size, Outcome: AttemptBackpressure, RetryAfter: 450 * time.Millisecond, InFlight: 3, Full: true})
	}
	o.MeanBatchTime = rtt + time.Duration(waited)*(450*time.Millisecond+rtt)/time.Duration(o.Batches)
	if d := g.Next(o); strings.HasPrefix(d.Reason, "regime:cost") {
		t.Errorf("%d of %d batches retried after 450 ms (mean batch time %v, write %v): decided %d (%s), want no cost regime",
			waited, o.Batches, o.MeanBatchTime, rtt, d.BatchSize, d.Reason)
	}
}
