package tuner

import (
	"math"
	"testing"
	"time"
)

func TestGradient2BehavesAsNetflixsGradient2Limit(t *testing.T) {
	const ms = time.Millisecond
	warm := func() *Gradient2 {
		g := NewGradient2(Gradient2Config{Initial: 100})
		g.estimated = 100
		// Ten samples fill the long window's warm-up with a plain mean.
		for i := 0; i < 10; i++ {
			g.long.add(0.010)
		}
		return g
	}
	for _, tc := range []struct {
		name string
		obs  Observation
		want func(est float64) float64
	}{
		{
			"a steady RTT grows by smoothing × √limit",
			interval(100, 10*ms, 1),
			func(est float64) float64 { return est*0.8 + (est+math.Sqrt(est))*0.2 },
		},
		{
			"an RTT 1.5× the long one is tolerated (gradient 1)",
			interval(100, 15*ms, 1),
			func(est float64) float64 { return est*0.8 + (est+math.Sqrt(est))*0.2 },
		},
		{
			"a tripled RTT shrinks with gradient max(0.5, 1.5·long/short)",
			interval(100, 30*ms, 1),
			func(est float64) float64 {
				long := 0.010 + (0.030-0.010)*2/601.0
				grad := math.Max(0.5, 1.5*long/0.030)
				return est*0.8 + (est*grad+math.Sqrt(est))*0.2
			},
		},
		{
			"an app-limited interval (batches under half full) keeps the limit",
			interval(100, 30*ms, 0.4),
			func(est float64) float64 { return est },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := warm()
			d := g.Next(tc.obs)
			want := tc.want(100)
			if math.Abs(g.estimated-want) > 1e-9 || d.BatchSize != int(want) {
				t.Errorf("estimate %.4f size %d (%s), want %.4f", g.estimated, d.BatchSize, d.Reason, want)
			}
		})
	}
}

func TestGradient2DecaysTheLongRTTWhenItIsTwiceTheShortOne(t *testing.T) {
	g := NewGradient2(Gradient2Config{Initial: 100})
	for i := 0; i < 10; i++ {
		g.long.add(0.100)
	}
	g.Next(interval(100, 20*time.Millisecond, 1))
	want := (0.100 + (0.020-0.100)*2/601.0) * 0.95
	if math.Abs(g.long.value-want) > 1e-12 {
		t.Errorf("long RTT %g, want %g", g.long.value, want)
	}
}

func TestGradient2LongWindowWarmsUpWithAPlainMean(t *testing.T) {
	m := longAvg{warmup: 10, factor: 2 / 601.0}
	for i := 1; i <= 4; i++ {
		m.add(float64(i))
	}
	if m.value != 2.5 {
		t.Errorf("mean of 1..4 = %g, want 2.5", m.value)
	}
}
