package tuner

import (
	"math"
	"testing"
	"time"
)

// perRecord is n full batches of records, each written at rtt.
func perRecord(n, records int, rtt time.Duration) run {
	return run{n: n, every: 100 * ms, rtt: rtt, records: records, outcome: AttemptOK, full: true}
}

func TestGradient2BehavesAsNetflixsGradient2LimitOnLatencyPerRecord(t *testing.T) {
	// After a warm-up of ten samples at 0.5 ms a record (longRtt 0.5 ms),
	// one sample moves the long average by f (a window of ten intervals of
	// one sample: the warm-up's ten).
	grow := func(l float64) float64 { return 0.8*l + 0.2*(l+math.Sqrt(l)) } // gradient 1
	f := 2 / 11.0
	long := 0.5*(1-f) + 1.5*f // ms a record, after a sample of 1.5 ms
	for _, tc := range []struct {
		name string
		runs []run
		want int
	}{
		{"grows by √limit, smoothed, while the latency per record holds",
			[]run{perRecord(1, 100, 50*ms)}, int(grow(100))},
		{"grows while the latency per record stays within 1.5× its long average",
			[]run{perRecord(1, 100, 60*ms)}, int(grow(100))},
		{"keeps the limit when batches are under half of it (app-limited)",
			[]run{perRecord(1, 40, 20*ms)}, 100},
		{"shrinks when the latency per record is past 1.5× its long average",
			[]run{perRecord(1, 100, 150*ms)}, int(0.8*100 + 0.2*(100*1.5*long/1.5+10))},
		{"ignores 429s (Gradient2Limit ignores drops)",
			[]run{{n: 3, every: 100 * ms, rtt: ms, records: 100, outcome: AttemptBackpressure, full: true}}, 100},
		{"cuts at the gradient's floor on a 413", []run{{n: 1, every: 100 * ms, rtt: ms, records: 100, outcome: AttemptTooLarge}},
			int(0.8*100 + 0.2*(50+10))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGradient2(Gradient2Config{Initial: 100})
			// Warm-up: ten part-full samples (app-limited: the limit holds).
			obs, now := observe(epoch, 100, run{n: 10, every: 100 * ms, rtt: 20 * ms, records: 40, outcome: AttemptOK})
			if d := g.Next(obs); d.BatchSize != 100 {
				t.Fatalf("warm-up moved to %d (%s)", d.BatchSize, d.Reason)
			}
			obs, _ = observe(now, 100, tc.runs...)
			if d := g.Next(obs); d.BatchSize != tc.want {
				t.Errorf("size %d (%s), want %d", d.BatchSize, d.Reason, tc.want)
			}
		})
	}
}

func TestGradient2LongWindowSpansTenIntervals(t *testing.T) {
	g := NewGradient2(Gradient2Config{Initial: 100})
	obs, _ := observe(epoch, 100, perRecord(20, 100, 50*ms))
	g.Next(obs)
	if want := 2 / (10*20.0 + 1); math.Abs(g.long.factor-want) > 1e-12 {
		t.Errorf("long window factor %v, want %v (ten intervals of 20 samples)", g.long.factor, want)
	}
}

func TestGradient2DecaysTheLongRTTWhenItIsTwiceTheShortOne(t *testing.T) {
	g := NewGradient2(Gradient2Config{Initial: 100})
	obs, now := observe(epoch, 100, run{n: 10, every: 100 * ms, rtt: 100 * ms, records: 50, outcome: AttemptOK})
	g.Next(obs) // longRtt 2 ms a record
	obs, _ = observe(now, 100, run{n: 1, every: 100 * ms, rtt: 25 * ms, records: 50, outcome: AttemptOK})
	g.Next(obs)
	// longRtt: 2 ms ⊕ 0.5 ms with factor 2/(10+1), more than twice the
	// short one, so ×0.95.
	f := 2 / 11.0
	want := (0.002*(1-f) + 0.0005*f) * 0.95
	if math.Abs(g.long.value-want) > 1e-12 {
		t.Errorf("long RTT %g, want %g", g.long.value, want)
	}
}

func TestGradient2LongWindowWarmsUpWithAPlainMean(t *testing.T) {
	m := longAvg{warmup: 3, factor: 0.5}
	for i, x := range []float64{1, 2, 3} {
		if got, want := m.add(x), []float64{1, 1.5, 2}[i]; got != want {
			t.Fatalf("sample %d: %v, want %v", i, got, want)
		}
	}
	if got := m.add(4); got != 3 {
		t.Errorf("after warm-up: %v, want the EWMA 3", got)
	}
}
