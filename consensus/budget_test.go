package consensus

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

const (
	tCeiling = 256 << 20
	tFloor   = 8 << 20
)

// hot is an interval in which the budget binds, the downstream is well and
// goodput is g.
func hot(budget int64, g float64) BudgetObservation {
	return BudgetObservation{
		Interval: 2 * time.Second, Ceiling: tCeiling, Floor: tFloor, Nodes: 3,
		WantBytes: 2 * budget, HasBytes: budget, GoodputRPS: g, ThroughputRPS: g,
		WritesPS: 100, P99ms: 100, WriteMS: 20, SLOms: 500,
	}
}

// slow is o with writes that took writeMS (the base in hot is 20 ms) and
// inFlight bytes in writes on average (0: not reported).
func slow(o BudgetObservation, writeMS float64, inFlight int64) BudgetObservation {
	o.WriteMS, o.InFlightBytes = writeMS, float64(inFlight)
	return o
}

// overSLO is an interval in which the budget binds and the p99 is over
// the SLO, with throughput thr.
func overSLO(budget int64, thr float64) BudgetObservation {
	o := hot(budget, thr)
	o.P99ms = 900
	return o
}

func TestBudgetControllerDecidesOneReasonPerRow(t *testing.T) {
	start := int64(32 << 20)
	step := start * 12 / 100
	probe := int64(float64(start) * 1.15)
	with := func(o BudgetObservation, f func(*BudgetObservation)) BudgetObservation { f(&o); return o }
	tests := []struct {
		name       string
		prime      []BudgetObservation // decisions made before the one tested
		obs        BudgetObservation
		wantReason string
		wantBudget int64
	}{
		{"a new leader starts from what the nodes hold", nil, hot(start, 1000), BudgetReasonStart, start},
		{"a new leader with nodes holding less than the floor starts at the floor", nil, hot(1<<20, 1000), BudgetReasonStart, tFloor},
		{"fixed mode answers the ceiling", nil, with(hot(start, 1000), func(o *BudgetObservation) { o.Fixed = true }), BudgetReasonFixed, tCeiling},
		{"a lowered ceiling lowers the budget to it", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.Ceiling = 16 << 20 }), BudgetReasonCeiling, 16 << 20},
		{"a raised floor raises the budget to it", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.Floor = 40 << 20 }), BudgetReasonFloor, 40 << 20},
		{"no node reporting holds the budget", []BudgetObservation{hot(start, 1000)},
			BudgetObservation{Ceiling: tCeiling, Floor: tFloor, SLOms: 500}, BudgetReasonNoData, start},
		{"429 or 503 on over 1% of writes cuts the budget to 70%", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.PushbackPS = 5 }), BudgetReasonPushback, start * 7 / 10},
		{"pushback on 1% of writes or less is not pushback", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.PushbackPS = 1 }), BudgetReasonGrow, start + step},
		{"a p99 over the SLO cuts the budget to 90%", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.P99ms = 800 }), BudgetReasonSLO, start * 9 / 10},
		{"413 answers hold the budget", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.TooLargePS = 10 }), BudgetReasonTooLarge, start},
		{"nodes wanting less than the budget hold it", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.WantBytes, o.HasBytes = start/2, start/2 }), BudgetReasonIdle, start},
		{"nodes holding their baselines but wanting little hold it", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.WantBytes, o.HasBytes = 64<<10, start }), BudgetReasonIdle, start},
		{"goodput rising in the SLO grows the budget by 12%", []BudgetObservation{hot(start, 1000)},
			hot(start, 1000), BudgetReasonGrow, start + step},
		{"a growth step that did not raise goodput steps back", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			hot(start+step, 1010), BudgetReasonKnee, start},
		{"a growth step the nodes have not taken up yet waits", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			with(hot(start+step, 1000), func(o *BudgetObservation) { o.HasBytes = start }), BudgetReasonWait, start + step},
		{"a growth step less than half taken up waits", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			with(hot(start+step, 1000), func(o *BudgetObservation) { o.HasBytes = start + step/3 }), BudgetReasonWait, start + step},
		{"a growth step over half taken up that paid grows again", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			with(hot(start+step, 1050), func(o *BudgetObservation) { o.HasBytes = start + step*6/10 }), BudgetReasonGrow, start + step + (start+step)*12/100},
		{"a growth step still not taken up after 3 waits is judged", []BudgetObservation{hot(start, 1000), hot(start, 1000),
			with(hot(start+step, 1000), func(o *BudgetObservation) { o.HasBytes = start }),
			with(hot(start+step, 1000), func(o *BudgetObservation) { o.HasBytes = start }),
			with(hot(start+step, 1000), func(o *BudgetObservation) { o.HasBytes = start })},
			with(hot(start+step, 1000), func(o *BudgetObservation) { o.HasBytes = start }), BudgetReasonKnee, start},
		{"after the knee the budget settles", []BudgetObservation{hot(start, 1000), hot(start, 1000), hot(start+step, 1010)},
			hot(start, 1000), BudgetReasonSettled, start},
		{"after the knee it holds at the last paying budget", append([]BudgetObservation{hot(start, 1000), hot(start, 1000), hot(start+step, 1010)},
			repeat(hot(start, 1000), 0)...), hot(start, 1000), BudgetReasonSettled, start},
		{"after holding ProbeEvery intervals it probes 15% past the knee", append([]BudgetObservation{hot(start, 1000), hot(start, 1000), hot(start+step, 1010)},
			repeat(hot(start, 1000), 29)...), hot(start, 1000), BudgetReasonProbe, probe},
		{"a probe past the knee that paid raises the knee and probes again", append(append([]BudgetObservation{hot(start, 1000), hot(start, 1000), hot(start+step, 1010)},
			repeat(hot(start, 1000), 30)...), hot(start, 1000)), hot(probe, 1200), BudgetReasonProbe, int64(float64(probe) * 1.15)},
		{"a probe past the knee that did not pay steps back to the knee", append(append([]BudgetObservation{hot(start, 1000), hot(start, 1000), hot(start+step, 1010)},
			repeat(hot(start, 1000), 30)...), hot(start, 1000)), hot(probe, 1010), BudgetReasonKnee, start},
		{"writes slower than 1.4x the base cut to 90% of the knee estimate, in-flight bytes over the root of the rise", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			slow(hot(start+step, 1000), 80, start), BudgetReasonLatency, int64(float64(start/2) * 0.9)},
		{"without an in-flight figure the budget stands for the load", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			slow(hot(start+step, 1000), 80, 0), BudgetReasonLatency, int64(float64((start+step)/2) * 0.9)},
		{"writes up to 1.4x the base are no knee", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			slow(hot(start+step, 1100), 27, start), BudgetReasonGrow, start + step + (start+step)*12/100},
		{"write times over too few writes are not judged", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			with(slow(hot(start+step, 1100), 80, start), func(o *BudgetObservation) { o.WritesPS = 2 }), BudgetReasonGrow, start + step + (start+step)*12/100},
		{"at the margin below the knee estimate it holds", []BudgetObservation{hot(start, 1000), hot(start, 1000), slow(hot(start+step, 1000), 80, start)},
			hot(start/2*9/10, 1000), BudgetReasonSettled, int64(float64(start/2) * 0.9)},
		{"below the margin under the knee it grows back to it", []BudgetObservation{hot(start, 1000),
			with(hot(start, 1000), func(o *BudgetObservation) { o.PushbackPS = 5 })},
			hot(start*7/10, 1000), BudgetReasonRecover, start*7/10 + start*7/10*12/100},
		{"a rise that stays as high with far less in flight rebases and holds", []BudgetObservation{hot(start, 1000), hot(start, 1000), slow(hot(start+step, 1000), 80, start)},
			slow(hot(start/2, 1000), 80, start/2), BudgetReasonRebase, int64(float64(start/2) * 0.9)},
		{"a rise that fell with the load is the knee again", []BudgetObservation{hot(start, 1000), hot(start, 1000), slow(hot(start+step, 1000), 80, start)},
			slow(hot(start/2, 1000), 40, start*2/5), BudgetReasonLatency, int64(float64(int64(float64(start*2/5)/math.Sqrt(2))) * 0.9)},
		{"a rise on more bytes in writes than the budget (old grants a cut has not taken yet) never raises it", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			slow(hot(start+step, 1000), 80, 4*start), BudgetReasonLatency, start + step},
		{"a cut for the SLO that cost throughput is undone and held", []BudgetObservation{hot(start, 1000), overSLO(start, 1000)},
			overSLO(start*9/10, 880), BudgetReasonQueueing, start},
		{"a cut for the SLO that raised throughput cuts again", []BudgetObservation{hot(start, 1000), overSLO(start, 1000)},
			overSLO(start*9/10, 1100), BudgetReasonSLO, start * 9 / 10 * 9 / 10},
		{"a cut for the SLO that kept the throughput cuts again", []BudgetObservation{hot(start, 1000), overSLO(start, 1000)},
			overSLO(start*9/10, 980), BudgetReasonSLO, start * 9 / 10 * 9 / 10},
		{"after an undone cut a p99 over the SLO holds", []BudgetObservation{hot(start, 1000), overSLO(start, 1000), overSLO(start*9/10, 880), hot(start, 1000)},
			overSLO(start, 1000), BudgetReasonQueueing, start},
		{"after holding it tries another cut", append([]BudgetObservation{hot(start, 1000), overSLO(start, 1000), overSLO(start*9/10, 880)},
			repeat(overSLO(start, 1000), 10)...), overSLO(start, 1000), BudgetReasonSLO, start * 9 / 10},
		{"a p99 back in the SLO after an undone cut settles, then probes", append([]BudgetObservation{hot(start, 1000), overSLO(start, 1000), overSLO(start*9/10, 880)},
			repeat(hot(start, 1000), 9)...), hot(start, 1000), BudgetReasonProbe, start + step},
		{"at the ceiling it stays there", []BudgetObservation{hot(tCeiling, 1000)}, hot(tCeiling, 1000), BudgetReasonCeiling, tCeiling},
		{"the floor holds against pushback", []BudgetObservation{hot(tFloor, 1000)},
			with(hot(tFloor, 1000), func(o *BudgetObservation) { o.PushbackPS = 50 }), BudgetReasonPushback, tFloor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewBudgetController(BudgetConfig{})
			for _, o := range tt.prime {
				c.Next(o)
			}
			old := c.Budget()
			d := c.Next(tt.obs)
			if d.Reason != tt.wantReason || d.New != tt.wantBudget {
				t.Fatalf("decision %s %d → %d; want %s → %d", d.Reason, d.Old, d.New, tt.wantReason, tt.wantBudget)
			}
			if d.Old != old || d.New != c.Budget() || d.New > max(tt.obs.Ceiling, d.Floor) || d.New < d.Floor {
				t.Fatalf("decision %+v is not consistent with the controller (old %d, now %d)", d, old, c.Budget())
			}
			if !d.Recorded {
				t.Fatalf("decision %s is not recorded though it is the first of its reason", d.Reason)
			}
			if !slices.Contains(BudgetReasons, d.Reason) {
				t.Fatalf("reason %q is not in BudgetReasons (the API's enum)", d.Reason)
			}
		})
	}
}

func repeat(o BudgetObservation, n int) []BudgetObservation {
	out := make([]BudgetObservation, n)
	for i := range out {
		out[i] = o
	}
	return out
}

func TestBudgetControllerRecordsOnlyChanges(t *testing.T) {
	c := NewBudgetController(BudgetConfig{})
	idle := hot(32<<20, 1000)
	idle.WantBytes, idle.HasBytes = 1<<20, 1<<20
	c.Next(hot(32<<20, 1000))
	if d := c.Next(idle); !d.Recorded || d.Reason != BudgetReasonIdle {
		t.Fatalf("first idle decision %+v: want it recorded", d)
	}
	if d := c.Next(idle); d.Recorded {
		t.Fatalf("second idle decision recorded though nothing changed: %+v", d)
	}
}

// downstream is a pure capacity model of a shared database: goodput rises in
// proportion to the bytes in flight up to its knee, then falls (lock
// contention), its p99 grows steeply past the knee, and past 1.25× the knee
// its concurrency limit answers 429 to the excess.
type downstream struct {
	knee  float64 // bytes in flight
	peak  float64 // records/s at the knee
	baseP float64 // p99 ms below the knee
}

func (m downstream) observe(budget int64) BudgetObservation {
	b := float64(budget)
	x := b / m.knee
	g, p99, push := m.peak*x, m.baseP, 0.0
	if x > 1 {
		g = m.peak / (x * x)
		p99 = m.baseP * math.Pow(x, 4)
	}
	writes := 200.0
	if x > 1.25 {
		push = writes * (b - 1.25*m.knee) / b
	}
	return BudgetObservation{
		Interval: 2 * time.Second, Ceiling: tCeiling, Floor: tFloor, Nodes: 5,
		WantBytes: tCeiling, HasBytes: budget, GoodputRPS: g, ThroughputRPS: g,
		WritesPS: writes, PushbackPS: push, P99ms: p99, SLOms: 500,
	}
}

func TestBudgetControllerFindsTheKneeAndBacksOffWhenCapacityDrops(t *testing.T) {
	// lag is how many intervals the nodes take to use a new budget (the
	// grants follow at the next lease refresh).
	for _, lag := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("the nodes take up a new budget after %d intervals", lag), func(t *testing.T) {
			const knee = 64 << 20
			m := downstream{knee: knee, peak: 50000, baseP: 100}
			c := NewBudgetController(BudgetConfig{})
			budgets := []int64{tFloor} // what the nodes hold at the start
			inUse := func() int64 { return budgets[max(0, len(budgets)-1-lag)] }
			for range 200 {
				budgets = append(budgets, c.Next(m.observe(inUse())).New)
			}
			// Converged: the last 100 steps stay near the knee, and the
			// budget changes direction at most about twice per probe
			// (every SettleSteps+1 intervals).
			last := budgets[len(budgets)-100:]
			turns := 0
			for i, b := range last {
				if b < knee*7/10 || b > knee*115/100 {
					t.Fatalf("budget %d is not near the knee %d (last 100: %v)", b, knee, last)
				}
				if i >= 2 && (last[i]-last[i-1])*(last[i-1]-last[i-2]) < 0 {
					turns++
				}
			}
			if turns > 2*len(last)/11+2 {
				t.Fatalf("budget changed direction %d times in %d steps: it oscillates (%v)", turns, len(last), last)
			}
			// The downstream loses half its capacity: within 5 steps (plus
			// the lag) the budget is at most 1.1× the new knee.
			m.knee, m.peak = knee/2, 25000
			for i := range 5 + lag {
				budgets = append(budgets, c.Next(m.observe(inUse())).New)
				if b := budgets[len(budgets)-1]; b <= knee/2*11/10 {
					t.Logf("backed off to %d in %d steps", b, i+1)
					return
				}
			}
			t.Fatalf("budget %d is still above 1.1× the new knee %d after %d steps", budgets[len(budgets)-1], knee/2, 5+lag)
		})
	}
}

// TestBudgetControllerLearnsTheKneeFromWriteTimes runs the controller
// against a downstream whose writes take their base time below the knee
// and that times the square of the load over the knee past it (sinksim's
// knee), the nodes using all of the budget; the knee halves half-way.
func TestBudgetControllerLearnsTheKneeFromWriteTimes(t *testing.T) {
	knee := float64(64 << 20)
	observe := func(budget int64) BudgetObservation {
		load := float64(budget)
		f := math.Max(1, (load/knee)*(load/knee))
		g := 50000 * load / knee / f
		return BudgetObservation{Interval: time.Second, Ceiling: tCeiling, Floor: tFloor, Nodes: 5,
			WantBytes: tCeiling, HasBytes: budget, GoodputRPS: g, ThroughputRPS: g,
			WritesPS: 200, WriteMS: 50 * f, InFlightBytes: load, P99ms: 100, SLOms: 500}
	}
	const intervals, shift = 300, 150
	c := NewBudgetController(BudgetConfig{})
	b := int64(tFloor)
	over, low := 0, 0
	var reasons []string
	for i := range intervals {
		if i == shift {
			knee /= 2
		}
		d := c.Next(observe(b))
		b = d.New
		reasons = append(reasons, d.Reason)
		if float64(b) > knee {
			over++
		}
		if i >= shift-50 && i < shift || i >= intervals-50 {
			if float64(b) < 0.75*knee {
				low++
			}
		}
		if i == shift+1 && float64(b) > knee {
			t.Fatalf("budget %d still over the halved knee %.0f one interval after it halved (reasons %v)", b, knee, reasons[shift-2:])
		}
	}
	t.Logf("over the knee in %d of %d intervals, under 75%% of it in %d of 100 settled ones", over, intervals, low)
	// Over the knee: the first touch, one probe every ProbeEvery
	// intervals, and the interval in which the knee halved.
	if limit := 2 + intervals/30 + 1; over > limit {
		t.Fatalf("budget over the knee in %d of %d intervals; want at most %d (reasons %v)", over, intervals, limit, reasons)
	}
	// Settled, it uses the downstream: at least 75% of the knee in 90% of
	// the 50 intervals before the shift and the last 50.
	if low > 10 {
		t.Fatalf("budget under 75%% of the knee in %d of the 100 settled intervals (reasons %v)", low, reasons)
	}
}
