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
// the SLO, with throughput thr, from nodes that do not report their write
// times (the SLO rule's case).
func overSLO(budget int64, thr float64) BudgetObservation {
	o := hot(budget, thr)
	o.P99ms, o.WriteMS = 900, 0
	return o
}

// sized is o with writes of bytes each on average, the nodes bound by the
// budget (all of what they hold in writes, a deep queue).
func sized(o BudgetObservation, bytes float64) BudgetObservation {
	o.BytesPS, o.InFlightBytes, o.QueuedRecords = o.WritesPS*bytes, float64(o.HasBytes), deep
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
		{"a p99 over the SLO without write times cuts the budget to 90%", []BudgetObservation{hot(start, 1000)},
			overSLO(start, 1000), BudgetReasonSLO, start * 9 / 10},
		{"a p99 over the SLO with writes at their base is the nodes' queues: no cut, the budget grows", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			with(hot(start+step, 1200), func(o *BudgetObservation) { o.P99ms = 800 }), BudgetReasonGrow, start + step + (start+step)*12/100},
		{"a p99 over the SLO with writes slower than their base, short of the latency rise, is no cut either", []BudgetObservation{hot(start, 1000), hot(start, 1000)},
			with(hot(start+step, 1200), func(o *BudgetObservation) { o.P99ms, o.WriteMS = 800, 27 }), BudgetReasonGrow, start + step + (start+step)*12/100},
		{"bigger writes that took no longer than their size explains are no knee", []BudgetObservation{sized(hot(start, 1000), 4096), sized(hot(start, 1000), 4096)},
			slow(sized(hot(start+step, 1100), 3*4096), 50, start+step*6/10), BudgetReasonGrow, start + step + (start+step)*12/100},
		{"bigger writes that took longer than their size explains are the knee", []BudgetObservation{sized(hot(start, 1000), 4096), sized(hot(start, 1000), 4096)},
			slow(sized(hot(start+step, 1000), 2*4096), 80, start), BudgetReasonLatency, int64(float64(int64(float64(start)/math.Sqrt(2))) * 0.9)},
		{"smaller writes are held to the base write time", []BudgetObservation{sized(hot(start, 1000), 4096), sized(hot(start, 1000), 4096)},
			slow(sized(hot(start+step, 1000), 1024), 30, start), BudgetReasonLatency, int64(float64(int64(float64(start)/math.Sqrt(1.5))) * 0.9)},
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
		{"a rise that fell with the load, above the last cut's knee estimate, is the knee again", []BudgetObservation{hot(start, 1000), hot(start, 1000), slow(hot(start+step, 1000), 80, start)},
			slow(hot(start/2, 1000), 40, start*3/5), BudgetReasonLatency, int64(float64(int64(float64(start*3/5)/math.Sqrt(2))) * 0.9)},
		{"a rise at a load under the last cut's knee estimate is no knee: it rebases and holds", []BudgetObservation{hot(start, 1000), hot(start, 1000), slow(hot(start+step, 1000), 80, start)},
			slow(hot(start/2, 1000), 30, start*2/5), BudgetReasonRebase, int64(float64(start/2) * 0.9)},
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
		{"nodes bound by the budget (half of it above the floor in writes, a step's worth of records queued) grow it", []BudgetObservation{hot(start, 1000)},
			loaded(hot(start, 1000), (start-tFloor)/2, deep), BudgetReasonGrow, start + step},
		{"nodes with under half the budget above the floor in writes hold it", []BudgetObservation{hot(start, 1000)},
			loaded(hot(start, 1000), (start-tFloor)/2-1, deep), BudgetReasonIdle, start},
		{"nodes with less than a growth step of records queued hold it: their load limits them", []BudgetObservation{hot(start, 1000)},
			loaded(hot(start, 1000), start, step/recordBytes-1), BudgetReasonIdle, start},
		{"nodes that wrote nothing hold it", []BudgetObservation{hot(start, 1000)},
			with(hot(start, 1000), func(o *BudgetObservation) { o.WritesPS = 0 }), BudgetReasonIdle, start},
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

// recordBytes is the bytes a record in loaded; deep is a queue that
// holds far more than a growth step of them.
const (
	recordBytes = 200
	deep        = 1 << 20
)

// loaded is o with the nodes reporting inFlight bytes in writes on
// average, queued records waiting, and recordBytes written per record.
func loaded(o BudgetObservation, inFlight, queued int64) BudgetObservation {
	o.InFlightBytes, o.QueuedRecords, o.BytesPS = float64(inFlight), queued, recordBytes*o.ThroughputRPS
	return o
}

// busy is hot(budget, g) with the nodes bound by the budget: all of it in
// writes, and a deep queue.
func busy(budget int64, g float64) BudgetObservation {
	return loaded(hot(budget, g), budget, deep)
}

// expect is one decision of a sequence: the observation and the reason,
// budget and knee estimate wanted (-1: any).
type expect struct {
	obs          BudgetObservation
	reason       string
	budget, knee int64
}

func times(n int, e expect) []expect {
	out := make([]expect, n)
	for i := range out {
		out[i] = e
	}
	return out
}

func seq(parts ...[]expect) []expect {
	var out []expect
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestBudgetControllerSequences checks the rules that take several
// decisions to show: a growth step judged only when the budget binds the
// nodes, and probes that back off while they fail.
func TestBudgetControllerSequences(t *testing.T) {
	start := int64(32 << 20)
	step := start * 12 / 100
	grown := start + step
	probe := int64(float64(start) * 1.15)
	short := BudgetConfig{ProbeEvery: 2, MaxProbeEvery: 8}
	// knee leaves the controller with the knee estimate at start, the
	// budget there: a growth step that did not pay (judged once the
	// nodes' bytes in writes, up 12 % with it, stopped rising).
	knee := []expect{
		{busy(start, 1000), BudgetReasonStart, start, 0},
		{busy(start, 1000), BudgetReasonGrow, grown, 0},
		{busy(grown, 1010), BudgetReasonWait, grown, 0},
		{busy(grown, 1010), BudgetReasonKnee, start, start},
	}
	settled := func(n int) []expect { return times(n, expect{busy(start, 1000), BudgetReasonSettled, start, start}) }
	probeOnce := []expect{{busy(start, 1000), BudgetReasonProbe, probe, start}}
	failed := []expect{{busy(probe, 1010), BudgetReasonWait, probe, start}, {busy(probe, 1010), BudgetReasonKnee, start, start}}
	idleStep := loaded(hot(grown, 1000), (grown-tFloor)/4, deep)
	tests := []struct {
		name  string
		cfg   BudgetConfig
		steps []expect
	}{
		{"a growth step the nodes did not fill waits, then holds unjudged: no knee, no more growth until they are bound", BudgetConfig{}, seq(
			[]expect{{busy(start, 1000), BudgetReasonStart, start, 0}, {busy(start, 1000), BudgetReasonGrow, grown, 0}},
			times(3, expect{idleStep, BudgetReasonWait, grown, 0}),
			times(2, expect{idleStep, BudgetReasonIdle, grown, 0}),
			[]expect{{busy(grown, 1200), BudgetReasonGrow, grown + grown*12/100, 0}})},
		{"a growth step that emptied the queues holds unjudged", BudgetConfig{}, seq(
			[]expect{{busy(start, 1000), BudgetReasonStart, start, 0}, {busy(start, 1000), BudgetReasonGrow, grown, 0}},
			times(3, expect{loaded(hot(grown, 1000), grown, 10), BudgetReasonWait, grown, 0}),
			[]expect{{loaded(hot(grown, 1000), grown, 10), BudgetReasonIdle, grown, 0}})},
		{"a growth step that binds the nodes and did not pay is the knee, judged once their bytes in writes stop rising", BudgetConfig{}, knee},
		{"a growth step is judged once the bytes in writes took up half of what the grants grew, and stopped rising", BudgetConfig{}, []expect{
			{busy(start, 1000), BudgetReasonStart, start, 0},
			{busy(start, 1000), BudgetReasonGrow, grown, 0},
			{loaded(hot(grown, 1000), start+step/2-1, deep), BudgetReasonWait, grown, 0},
			{loaded(hot(grown, 1000), start+(step+1)/2, deep), BudgetReasonKnee, start, start}}},
		{"a growth step is judged after at most 3 intervals of rising bytes in writes", BudgetConfig{}, []expect{
			{busy(start, 1000), BudgetReasonStart, start, 0},
			{loaded(hot(start, 1000), start/2, deep), BudgetReasonGrow, grown, 0},
			{loaded(hot(grown, 1000), start*6/10, deep), BudgetReasonWait, grown, 0},
			{loaded(hot(grown, 1000), start*7/10, deep), BudgetReasonWait, grown, 0},
			{loaded(hot(grown, 1000), start*8/10, deep), BudgetReasonWait, grown, 0},
			{loaded(hot(grown, 1000), start*9/10, deep), BudgetReasonKnee, start, start}}},
		{"after a probe that did not pay the next comes twice as late", BudgetConfig{}, seq(
			knee, settled(29), probeOnce, failed, settled(59), probeOnce)},
		{"after two probes in a row that did not pay, four times as late", BudgetConfig{}, seq(
			knee, settled(29), probeOnce, failed, settled(59), probeOnce, failed, settled(119), probeOnce)},
		{"the probe interval doubles up to MaxProbeEvery", short, seq(
			knee, settled(1), probeOnce, failed, settled(3), probeOnce, failed, settled(7), probeOnce, failed, settled(7), probeOnce)},
		{"a probe that paid starts the interval over", short, seq(
			knee, settled(1), probeOnce, failed, settled(3), probeOnce, failed, settled(7), probeOnce,
			[]expect{
				{busy(probe, 1200), BudgetReasonWait, probe, start},
				{busy(probe, 1200), BudgetReasonProbe, int64(float64(probe) * 1.15), probe},
				{busy(int64(float64(probe)*1.15), 1210), BudgetReasonWait, int64(float64(probe) * 1.15), probe},
				{busy(int64(float64(probe)*1.15), 1210), BudgetReasonKnee, probe, probe},
			},
			times(3, expect{busy(probe, 1200), BudgetReasonSettled, probe, probe}),
			[]expect{{busy(probe, 1200), BudgetReasonProbe, int64(float64(probe) * 1.15), probe}})},
		{"a knee estimate that moved on the write times starts the interval over", short, seq(
			knee, settled(1), probeOnce, failed, settled(1),
			[]expect{{slow(busy(start, 1000), 80, start), BudgetReasonLatency, start / 2 * 9 / 10, start / 2}},
			times(1, expect{busy(start/2*9/10, 1000), BudgetReasonSettled, start / 2 * 9 / 10, start / 2}),
			[]expect{{busy(start/2*9/10, 1000), BudgetReasonProbe, int64(float64(start/2) * 1.15), start / 2}})},
		{"a probe that slowed the writes, the estimate within 15 % of the last, counts as failed", short, seq(
			knee, settled(1), probeOnce,
			[]expect{{slow(busy(probe, 1000), 30, probe), BudgetReasonLatency, int64(float64(int64(float64(probe)/math.Sqrt(1.5))) * 0.9), int64(float64(probe) / math.Sqrt(1.5))}},
			times(3, expect{busy(int64(float64(int64(float64(probe)/math.Sqrt(1.5)))*0.9), 1000), BudgetReasonSettled, -1, -1}),
			[]expect{{busy(start, 1000), BudgetReasonProbe, -1, -1}})},
		{"a probe the nodes did not need goes back, the estimate and the interval kept", BudgetConfig{}, seq(
			knee, settled(29), probeOnce,
			times(3, expect{loaded(hot(probe, 1000), probe/10, deep), BudgetReasonWait, probe, start}),
			[]expect{{loaded(hot(probe, 1000), probe/10, deep), BudgetReasonIdle, start, start}},
			settled(29), probeOnce)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewBudgetController(tt.cfg)
			for i, e := range tt.steps {
				d := c.Next(e.obs)
				if d.Reason != e.reason || (e.budget >= 0 && d.New != e.budget) || (e.knee >= 0 && d.Detail.KneeBytes != e.knee) {
					t.Fatalf("decision %d: %s %d → %d, knee %d; want %s → %d, knee %d", i, d.Reason, d.Old, d.New, d.Detail.KneeBytes, e.reason, e.budget, e.knee)
				}
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

// writeTimeModel is a downstream whose writes take their base time below
// the knee and (load/knee)² times it past it (sinksim's knee); the nodes
// use all of the budget and queue more (they are bound by it).
func writeTimeModel(knee float64, budget int64) BudgetObservation {
	load := float64(budget)
	f := math.Max(1, (load/knee)*(load/knee))
	g := 50000 * load / knee / f
	return BudgetObservation{Interval: time.Second, Ceiling: tCeiling, Floor: tFloor, Nodes: 5,
		WantBytes: 2 * budget, HasBytes: budget, GoodputRPS: g, ThroughputRPS: g,
		WritesPS: 200, WriteMS: 50 * f, InFlightBytes: load, BytesPS: recordBytes * g, QueuedRecords: deep,
		P99ms: 100, SLOms: 500}
}

// TestBudgetControllerHoldsWhenWritesQueueUnderTheKnee runs the controller
// against the write-time downstream whose knee halves, and whose writes,
// once the budget is under half the old knee, also wait half their base
// time for a connection (smaller budgets, smaller batches, more requests
// queued: the cluster bench's downstream serves 24 at a time). That wait
// does not fall with the load, so no cut can remove it: after the cut for
// the halved knee the budget must hold, not follow the wait down to the
// floor.
func TestBudgetControllerHoldsWhenWritesQueueUnderTheKnee(t *testing.T) {
	const old = 64 << 20 // the knee before it halves
	knee := float64(old)
	observe := func(budget int64) BudgetObservation {
		o := writeTimeModel(knee, budget)
		if budget < old/2 {
			o.WriteMS += 25
		}
		return o
	}
	c := NewBudgetController(BudgetConfig{})
	b := int64(tFloor)
	for range 100 {
		b = c.Next(observe(b)).New
	}
	knee /= 2
	var reasons []string
	lowest := b
	for range 30 {
		d := c.Next(observe(b))
		b = d.New
		reasons = append(reasons, fmt.Sprintf("%s %d", d.Reason, d.New>>20))
		lowest = min(lowest, b)
	}
	if lowest < int64(0.6*knee) {
		t.Fatalf("budget fell to %d MiB under the halved knee of %.0f MiB (decisions, MiB: %v)", lowest>>20, knee/(1<<20), reasons)
	}
	if b > int64(1.15*knee) {
		t.Fatalf("budget %d MiB is over the halved knee of %.0f MiB (decisions, MiB: %v)", b>>20, knee/(1<<20), reasons)
	}
	t.Logf("after the knee halved, MiB: %v", reasons)
}

// TestBudgetControllerLearnsNoKneeFromALightLoad runs the controller
// through a light load (the nodes need 20 MiB in writes, queue only the
// batch they fill, and their tuners still want twice the budget: goodput
// does not rise with it), then a load the downstream's 64 MiB knee
// limits. The light phase must not leave a knee estimate behind (the
// cluster bench's run G kept one from such a phase for its whole run),
// and the heavy phase finds the real knee.
func TestBudgetControllerLearnsNoKneeFromALightLoad(t *testing.T) {
	const knee = 64 << 20
	const need = 20 << 20
	c := NewBudgetController(BudgetConfig{})
	b := int64(tFloor)
	for i := range 100 {
		o := writeTimeModel(knee, min(b, need))
		o.WantBytes, o.HasBytes, o.QueuedRecords = 2*b, b, 10
		d := c.Next(o)
		b = d.New
		if d.Detail.KneeBytes != 0 || d.Reason == BudgetReasonKnee || d.Reason == BudgetReasonLatency {
			t.Fatalf("light load, decision %d: %s %d → %d with a knee estimate %d; want none", i, d.Reason, d.Old, d.New, d.Detail.KneeBytes)
		}
	}
	var last []int64
	for i := range 200 {
		d := c.Next(writeTimeModel(knee, b))
		b = d.New
		if i >= 100 {
			last = append(last, b)
		}
	}
	for _, v := range last {
		if v < knee*7/10 || v > knee*115/100 {
			t.Fatalf("budget %d is not near the knee %d after the light load (last 100: %v)", v, knee, last)
		}
	}
}

// TestBudgetControllerProbesLessWhileTheKneeStays runs the controller for
// 1,000 intervals against a knee that stays at 64 MiB, then doubles: the
// probes back off while they find the knee where it was (every probe is
// an interval or two past the knee), and the doubled knee is still found
// within MaxProbeEvery intervals plus a few probes.
func TestBudgetControllerProbesLessWhileTheKneeStays(t *testing.T) {
	knee := float64(64 << 20)
	const moved, intervals = 1000, 1400
	c := NewBudgetController(BudgetConfig{})
	b := int64(tFloor)
	probes, over := 0, 0
	foundAt := -1
	for i := range intervals {
		if i == moved {
			knee *= 2
		}
		d := c.Next(writeTimeModel(knee, b))
		b = d.New
		if i < moved {
			if d.Reason == BudgetReasonProbe {
				probes++
			}
			if float64(b) > knee {
				over++
			}
		} else if foundAt < 0 && float64(b) >= 0.7*knee {
			foundAt = i - moved
		}
	}
	// Without the back-off: one probe every 30 intervals, 33 in 1,000.
	// With it, 30 + 60 + 120 + 240 + 240 + ...: at most 7.
	if probes > 7 {
		t.Fatalf("%d probes in %d intervals with the knee where it was; want at most 7", probes, moved)
	}
	if over > 2*probes+3 {
		t.Fatalf("budget over the knee in %d intervals with %d probes", over, probes)
	}
	if foundAt < 0 || foundAt > 240+40 {
		t.Fatalf("the doubled knee was found %d intervals after it moved; want within %d", foundAt, 240+40)
	}
	t.Logf("%d probes in %d intervals, over the knee in %d; the doubled knee reached 70 %% in %d intervals", probes, moved, over, foundAt)
	if float64(b) < 0.7*knee || float64(b) > 1.15*knee {
		t.Fatalf("budget %d at the end is not near the doubled knee %.0f", b, knee)
	}
}
