package tuner

import (
	"math"
	"testing"
	"time"
)

func TestTargetBehavesAsFlinksBufferDebloater(t *testing.T) {
	alpha := 2 / 21.0
	throughput := func(rps float64) Observation {
		o := interval(100, 10*time.Millisecond, 1)
		o.Throughput = rps
		return o
	}
	t.Run("follows throughput × SLO/4 through a 20-sample EMA", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 100})
		// 1000 records/s × 125 ms = 125 records wanted.
		ema := 100.0
		for i := 0; i < 30; i++ {
			tg.Next(throughput(1000))
			ema += alpha * (125 - ema)
		}
		if math.Abs(tg.ema-ema) > 1e-9 {
			t.Errorf("EMA %g, want %g", tg.ema, ema)
		}
	})
	t.Run("keeps the size while the change is under 25 %", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 100})
		d := tg.Next(throughput(1000)) // EMA 102.4: a 2 % change
		if d.BatchSize != 100 || d.Reason != "hold:threshold" {
			t.Errorf("size %d (%s), want 100 held", d.BatchSize, d.Reason)
		}
	})
	t.Run("grows at most as if the instant value were twice the EMA", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 100})
		tg.Next(throughput(1e6)) // wants 125 000: capped at 200
		if want := 100 + alpha*(200-100); math.Abs(tg.ema-want) > 1e-9 {
			t.Errorf("EMA %g, want %g", tg.ema, want)
		}
	})
	t.Run("announces a change that reaches the maximum even if small", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 100, Max: 101})
		if d := tg.Next(throughput(1e6)); d.BatchSize != 101 {
			t.Errorf("size %d (%s), want 101", d.BatchSize, d.Reason)
		}
	})
	t.Run("announces a change of 25 % or more", func(t *testing.T) {
		tg := NewTarget(TargetConfig{Initial: 100})
		var d Decision
		for i := 0; i < 40 && d.BatchSize < 125; i++ {
			d = tg.Next(throughput(2000)) // wants 250
		}
		if d.BatchSize < 125 || d.Reason != "grow:throughput" {
			t.Errorf("size %d (%s), want a step of at least 25 %%", d.BatchSize, d.Reason)
		}
	})
}
