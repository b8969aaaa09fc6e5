package tuner

import (
	"testing"
	"time"
)

// steady is an interval of a node writing to a sink that costs 5 ms a batch
// and 10 µs a record, at rate records per second, with batches of size.
func steady(at, size int, rate float64) Observation {
	fill := min(float64(size), rate*0.2)
	bt := 5*time.Millisecond + time.Duration(fill)*10*time.Microsecond
	return Observation{
		Now: t0.Add(time.Duration(at) * time.Second), Interval: time.Second,
		BatchSize: size, MaxBatchSize: 20000, SLO: 500 * time.Millisecond,
		ArrivalRate: rate, Throughput: rate, Goodput: rate,
		P50: 20 * time.Millisecond, P99: 60 * time.Millisecond,
		Batches: int(rate / fill), MeanBatchFill: fill, MeanBatchTime: bt,
		QueueDepth: int(fill / 2), FlushConcurrency: 4, MaxLinger: 200 * time.Millisecond,
		CPUPercent: 30, MemPercent: 40,
	}
}

func TestGradientGivesLightLoadSmallBatchesAtOnce(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 5000})
	// 300 records/s: a batch may take a tenth of the 500 ms SLO to fill,
	// 15 records. The first decision gets there (give or take the probe).
	d := g.Next(steady(1, 5000, 300))
	if d.BatchSize > 16 {
		t.Errorf("size %d (%s), want at most 16 at once", d.BatchSize, d.Reason)
	}
}

func TestGradientClampsGrowthTo25PercentAnInterval(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 100})
	size := 100
	for i := 1; i <= 6; i++ {
		d := g.Next(steady(i, size, 20000))
		// The step is clamped on the size before the probe; the probe's
		// ±2 % swing comes on top.
		if float64(d.BatchSize) > 1.25*(1.02/0.98)*float64(size)+1 {
			t.Fatalf("interval %d: %d → %d (%s), more than +25 %%", i, size, d.BatchSize, d.Reason)
		}
		size = d.BatchSize
	}
	if size < 250 {
		t.Errorf("size %d after 6 intervals, want growth towards the fill bound (1000)", size)
	}
}

func TestGradientShrinksOnBackpressure(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 800})
	size := 800
	for i := 1; i <= 5; i++ {
		size = g.Next(steady(i, size, 10000)).BatchSize
	}
	o := steady(6, size, 10000)
	o.Backpressure = o.Batches / 5
	d := g.Next(o)
	if float64(d.BatchSize) > 0.85*float64(size) || d.Reason != "shrink:backpressure" {
		t.Errorf("%d → %d (%s), want a ×0.8 back-off", size, d.BatchSize, d.Reason)
	}
}

func TestGradientShrinksWhenP99ExceedsTheSLOWithoutABacklog(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 800})
	size := 800
	for i := 1; i <= 5; i++ {
		size = g.Next(steady(i, size, 10000)).BatchSize
	}
	o := steady(6, size, 10000)
	o.P99 = 700 * time.Millisecond
	d := g.Next(o)
	if float64(d.BatchSize) > 0.85*float64(size) {
		t.Errorf("%d → %d (%s), want a shrink", size, d.BatchSize, d.Reason)
	}
}

func TestGradientGrowsQuicklyWhenSaturated(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 20})
	o := steady(1, 20, 50000)
	// 20-record batches at 5.2 ms on 4 writers keep up with 15 000/s: the
	// queue grows by 35 000 a second and records are refused.
	o.Throughput, o.Goodput = 15000, 0
	o.Batches, o.MeanBatchFill, o.MeanBatchTime = 750, 20, 5200*time.Microsecond
	o.QueueDepth, o.P99 = 35000, 2*time.Second
	d := g.Next(o)
	if d.BatchSize < 40 {
		t.Errorf("size %d (%s), want at least doubling", d.BatchSize, d.Reason)
	}
}

func TestGradientHoldsWhenIdle(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 300})
	d := g.Next(Observation{Now: t0, Interval: time.Second, BatchSize: 300})
	if d.BatchSize != 300 || d.Reason != "hold:idle" {
		t.Errorf("got %+v, want 300 held", d)
	}
}

func TestGradientIsDeterministic(t *testing.T) {
	run := func() []Decision {
		g := NewGradient(GradientConfig{Initial: 100})
		var out []Decision
		size := 100
		for i := 1; i <= 50; i++ {
			rate := 2000.0
			if i > 25 {
				rate = 40000
			}
			d := g.Next(steady(i, size, rate))
			out = append(out, d)
			size = d.BatchSize
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("interval %d: %+v then %+v", i, a[i], b[i])
		}
	}
}

func TestGradientLearnsTheCostModel(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 100})
	size := 100
	for i := 1; i <= 30; i++ {
		size = g.Next(steady(i, size, 20000)).BatchSize
	}
	f, c, ok := g.Model()
	if !ok || f < 4*time.Millisecond || f > 6*time.Millisecond || c < 8*time.Microsecond || c > 12*time.Microsecond {
		t.Errorf("model F=%v c=%v (%v), want about 5ms and 10µs", f, c, ok)
	}
}
