package tuner

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// saturated is an interval in which the node cannot keep up: batches of size
// (full) cost 5 ms + 10 µs a record on 4 writers, rate records a second
// arrive, and queue records wait at the end of it.
func saturated(at, size int, rate float64, queue int) Observation {
	bt := 5*time.Millisecond + time.Duration(size)*10*time.Microsecond
	capacity := 4 * float64(size) / bt.Seconds()
	thr := min(rate, capacity)
	return Observation{
		Now: t0.Add(time.Duration(at) * time.Second), Interval: time.Second,
		BatchSize: size, MaxBatchSize: 20000, SLO: 500 * time.Millisecond,
		ArrivalRate: rate, Throughput: thr, Goodput: 0,
		P50: time.Second, P99: 2 * time.Second,
		Batches: int(thr / float64(size)), MeanBatchFill: float64(size), MeanBatchTime: bt,
		QueueDepth: queue, FlushConcurrency: 4, MaxLinger: 200 * time.Millisecond,
		CPUPercent: 30, MemPercent: 40,
	}
}

// step builds one interval's observation from the size the controller asked
// for last (the size in force) and the interval's number.
type step func(at, size int) Observation

func repeat(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func with(s step, f func(o *Observation)) step {
	return func(at, size int) Observation {
		o := s(at, size)
		f(&o)
		return o
	}
}

// at forces the size in force (a breaker or the grant decided it, or the
// row needs a given size), whatever the controller asked for.
func at(size int, s step) step {
	return func(i, _ int) Observation { return s(i, size) }
}

// capped caps the size at the one in force: the model cannot ask for more.
func capped(s step) step {
	return with(s, func(o *Observation) { o.MaxBatchSize = o.BatchSize })
}

// pushBack answers every write of the interval with back pressure (429).
func pushBack(o *Observation) { o.Backpressure = o.Batches }

// refuseAll fails every batch of the interval outright (413: too large).
func refuseAll(o *Observation) { o.SinkErrors, o.TooLarge = o.Batches, o.Batches }

func steadyAt(rate float64) step {
	return func(at, size int) Observation { return steady(at, size, rate) }
}

func saturatedAt(rate float64, queue int) step {
	return func(at, size int) Observation { return saturated(at, size, rate, queue) }
}

// TestGradientGivesEachDecisionReasonForItsCase drives a fresh Gradient
// through a short sequence of intervals that calls for one decision, and
// checks the reason it gives and the direction of the move. Every reason
// Gradient can return (grep `reason` in gradient.go) has a row, suffixes
// included.
func TestGradientGivesEachDecisionReasonForItsCase(t *testing.T) {
	const (
		smaller = -1
		same    = 0
		larger  = 1
	)
	rows := []struct {
		name    string
		initial int
		steps   []step
		reason  string
		move    int // of the last decision against the size in force
		under   int // if > 0, the last decision stays below the size in force at this step
	}{
		{
			name: "no arrivals, batches or queue holds the size", initial: 300,
			steps:  []step{func(at, size int) Observation { return Observation{Now: t0, Interval: time.Second, BatchSize: size} }},
			reason: "hold:idle", move: same,
		},
		{
			name: "steady load at the model's size holds within the dead band", initial: 1000,
			steps:  repeat(25, steadyAt(10000)),
			reason: "hold:deadband", move: same,
		},
		{
			name: "light load goes down to the model's size at once", initial: 5000,
			steps:  []step{steadyAt(300)},
			reason: "model", move: smaller,
		},
		{
			name: "goodput falling with size moves below the model's size", initial: 1000,
			steps: repeat(8, with(steadyAt(10000), func(o *Observation) {
				// Goodput falls 30 % per doubling of size above 400.
				o.Goodput = o.Throughput * max(0.05, 1-0.43*max(0, math.Log(float64(o.BatchSize)/400)))
			})),
			reason: "model+gradient", move: smaller,
		},
		{
			name: "no batch finished in a whole interval while a full one waits halves", initial: 2000,
			steps: []step{func(at, size int) Observation {
				o := steady(at, size, 10000)
				o.Batches, o.MeanBatchFill, o.MeanBatchTime, o.QueueDepth = 0, 0, 0, 3*size
				return o
			}},
			reason: "shrink:stalled", move: smaller,
		},
		{
			name: "a write longer than the latency budget cuts in proportion", initial: 2000,
			steps: []step{with(steadyAt(10000), func(o *Observation) {
				o.MeanBatchFill, o.MeanBatchTime, o.Batches = float64(o.BatchSize), 400*time.Millisecond, 5
			})},
			reason: "shrink:write-time", move: smaller,
		},
		{
			name: "back pressure on more than 2 % of attempts shrinks ×0.8", initial: 800,
			steps: append(repeat(5, steadyAt(10000)), with(steadyAt(10000), func(o *Observation) {
				o.Backpressure = o.Batches / 5
			})),
			reason: "shrink:backpressure", move: smaller,
		},
		{
			name: "p99 above the SLO without a backlog shrinks ×0.8", initial: 800,
			steps: append(repeat(5, steadyAt(10000)), with(steadyAt(10000), func(o *Observation) {
				o.P99 = 700 * time.Millisecond
			})),
			reason: "shrink:p99", move: smaller,
		},
		{
			name: "growth under saturation that lowered throughput goes back", initial: 1000,
			steps: []step{
				at(1000, saturatedAt(400000, 500000)),
				at(2000, with(saturatedAt(400000, 600000), func(o *Observation) { o.Throughput, o.MeanBatchTime = o.Throughput*0.5, o.MeanBatchTime*2 })),
			},
			reason: "shrink:knee", move: smaller,
		},
		{
			// The interval after a growth step writes a mix of both sizes;
			// the mix's lower rate is not the new size's.
			name: "growth under saturation measured on the old size's batches is no knee", initial: 1000,
			steps: []step{
				at(1000, saturatedAt(400000, 500000)),
				at(2000, with(saturatedAt(400000, 600000), func(o *Observation) {
					o.MeanBatchFill, o.Throughput, o.MeanBatchTime = 1200, o.Throughput*0.5, o.MeanBatchTime*2
				})),
			},
			reason: "hold:deadband", move: same,
		},
		{
			name: "a measured size's writes getting 5x dearer tries smaller first", initial: 800,
			steps: append(repeat(12, at(800, steadyAt(10000))), at(800, with(steadyAt(10000), func(o *Observation) {
				o.MeanBatchTime *= 5
			}))),
			reason: "regime:cost:explore", move: smaller,
		},
		{
			// Writes 20x dearer hold the size below the fill budget's 500
			// (write time); 5x cheaper, the model's size is that 500 again.
			name: "a measured size's writes getting 5x cheaper moves straight to the model's size", initial: 800,
			steps: append(repeat(12, with(steadyAt(10000), func(o *Observation) { o.MeanBatchTime *= 20 })),
				with(steadyAt(10000), func(o *Observation) { o.MeanBatchTime *= 4 })),
			reason: "regime:cost", move: smaller,
		},
		{
			name: "the arrival rate jumping 4x moves to the model's size at once", initial: 800,
			steps:  append(repeat(12, steadyAt(5000)), steadyAt(20000)),
			reason: "regime:arrival", move: larger,
		},
		{
			name: "saturated with the model seeing a larger size goes there", initial: 20,
			steps:  []step{saturatedAt(50000, 35000)},
			reason: "saturated:model", move: larger,
		},
		{
			// (Measured with every flush busy: a size measured at light
			// load vouches for twice the concurrency in use, no more.)
			name: "saturated at the cap with a measured size of clearly more capacity goes there", initial: 2000,
			steps: []step{
				at(2000, saturatedAt(400000, 500000)),
				capped(at(500, saturatedAt(400000, 500000))),
			},
			reason: "saturated:best-measured", move: same, // the cap holds it
		},
		{
			name: "saturated at the cap with no better size grows (the cap holds it)", initial: 1000,
			steps:  []step{capped(at(1000, saturatedAt(400000, 500000)))},
			reason: "grow:saturated", move: same,
		},
		// A hold keeps the size exactly, so it is reported as
		// hold:deadband; hold:draining and hold:saturated show only when a
		// refusal in the same interval moves the size.
		{
			name: "saturated at the cap with the queue draining holds (shown when refusals cut it)", initial: 1000,
			steps: []step{
				capped(at(1000, saturatedAt(400000, 500000))),
				capped(at(1000, with(saturatedAt(400000, 400000), refuseAll))),
			},
			reason: "hold:draining:refused", move: smaller,
		},
		{
			name: "saturated right after growing, batches of the size before still measured, holds (shown when refusals cut it)", initial: 1000,
			steps: []step{
				at(1000, with(saturatedAt(400000, 500000), func(o *Observation) { o.MaxBatchSize = 2000 })),
				capped(at(2000, with(saturatedAt(400000, 500000), func(o *Observation) {
					o.MeanBatchFill = 1500 // half the batches were cut at 1 000
					refuseAll(o)
				}))),
			},
			reason: "hold:measuring:refused", move: smaller,
		},
		{
			name: "saturated under a ceiling with smaller sizes unmeasured explores down", initial: 2000,
			steps: []step{
				at(1000, with(saturatedAt(400000, 500000), pushBack)),
				capped(at(800, saturatedAt(400000, 600000))),
			},
			reason: "explore:down", move: smaller,
		},
		{
			name: "saturated under a ceiling with smaller sizes measured holds (shown when refusals cut it)", initial: 2000,
			steps: []step{
				at(600, saturatedAt(400000, 500000)),
				at(1000, with(saturatedAt(400000, 500000), pushBack)),
				capped(at(800, with(saturatedAt(400000, 600000), refuseAll))),
			},
			reason: "hold:saturated:refused", move: smaller,
		},
		{
			name: "a ceiling from back pressure holds growth below it", initial: 800,
			steps: append(append(repeat(5, steadyAt(20000)), with(steadyAt(20000), func(o *Observation) {
				o.Backpressure = o.Batches / 5
			})), steadyAt(20000)),
			reason: "model:ceiling", move: larger, under: 6,
		},
		{
			name: "a soft ceiling is lifted while a backlog keeps growing under it", initial: 1000,
			steps: []step{
				at(1000, with(saturatedAt(400000, 500000), pushBack)),
				at(800, saturatedAt(400000, 600000)),
			},
			reason: "saturated:model:lift", move: larger,
		},
		{
			name: "most batches refused outright caps the size below them", initial: 1000,
			steps:  append(repeat(5, steadyAt(20000)), with(steadyAt(20000), refuseAll)),
			reason: ":refused", move: smaller,
		},
	}
	t.Run("every reason in gradient.go has a row", func(t *testing.T) {
		src, err := os.ReadFile("gradient.go")
		if err != nil {
			t.Fatal(err)
		}
		lit := regexp.MustCompile(`"((?:hold|shrink|regime|saturated|grow|explore|model)[a-z:+-]*|:[a-z-]+)"`)
		found := 0
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			found++
			covered := false
			for _, tc := range rows {
				covered = covered || strings.Contains(tc.reason, m[1])
			}
			if !covered {
				t.Errorf("reason %q has no row", m[1])
			}
		}
		if found < 20 {
			t.Errorf("found %d reason strings in gradient.go, want 20 or more", found)
		}
	})
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGradient(GradientConfig{Initial: tc.initial})
			size := tc.initial
			var d Decision
			var o Observation
			var trail []string
			var sizes []int
			for i, s := range tc.steps {
				o = s(i+1, size)
				sizes = append(sizes, o.BatchSize)
				d = g.Next(o)
				trail = append(trail, fmt.Sprintf("%d→%d %s", o.BatchSize, d.BatchSize, d.Reason))
				size = d.BatchSize
			}
			path := strings.Join(trail, "; ")
			ok := d.Reason == tc.reason || (strings.HasPrefix(tc.reason, ":") && strings.HasSuffix(d.Reason, tc.reason))
			if !ok {
				t.Fatalf("reason %q (size %d → %d), want %q; decisions: %s", d.Reason, o.BatchSize, d.BatchSize, tc.reason, path)
			}
			// The probe swings the size ±2 % on top of any move.
			r := float64(d.BatchSize) / float64(o.BatchSize)
			got := same
			switch {
			case r > 1.05:
				got = larger
			case r < 0.95:
				got = smaller
			}
			if got != tc.move {
				t.Errorf("size %d → %d (%s), want move %+d; decisions: %s", o.BatchSize, d.BatchSize, d.Reason, tc.move, path)
			}
			if tc.under > 0 && d.BatchSize >= sizes[tc.under-1] {
				t.Errorf("size %d, want below %d (the size at step %d)", d.BatchSize, sizes[tc.under-1], tc.under)
			}
		})
	}
}
