package tuner

import (
	"testing"
	"time"
)

func tooLarge(bytes int) Attempt {
	return Attempt{RTT: 5 * time.Millisecond, Records: 100, Bytes: bytes, Outcome: AttemptTooLarge}
}

func accepted(bytes int) Attempt {
	return Attempt{RTT: 5 * time.Millisecond, Records: 100, Bytes: bytes, Outcome: AttemptOK}
}

func TestByteMemoryLearnsABodyLimitFrom413sAndForgetsItAfterAMinute(t *testing.T) {
	type interval struct {
		attempts []Attempt
		want     int // Decision.BatchBytes after the interval
	}
	quiet := func(n int, want int) []interval {
		out := make([]interval, n)
		for i := range out {
			out[i] = interval{want: want}
		}
		return out
	}
	cat := func(parts ...[]interval) []interval {
		var out []interval
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name      string
		intervals []interval
	}{
		{"accepted batches of any size teach nothing", []interval{
			{[]Attempt{accepted(4 << 20), accepted(100)}, 0},
		}},
		{"a 413 without its bytes teaches nothing", []interval{
			{[]Attempt{tooLarge(0)}, 0},
		}},
		{"the smallest refused batch sets the bound at refusedShare of it", []interval{
			{[]Attempt{tooLarge(2_000_000), tooLarge(1_500_000), accepted(900_000)}, 1_050_000},
		}},
		{"a smaller refusal lowers the bound, a larger one does not raise it", []interval{
			{[]Attempt{tooLarge(1_500_000)}, 1_050_000},
			{[]Attempt{tooLarge(1_200_000)}, 840_000},
			{[]Attempt{tooLarge(3_000_000)}, 840_000},
		}},
		{"a minute without a refusal lifts the bound once, then leaves it", cat(
			[]interval{{[]Attempt{tooLarge(1_000_000)}, 700_000}},
			quiet(refusedMaxAge, 700_000),
			[]interval{{nil, LiftByteBound}, {nil, 0}},
		)},
		{"a refusal before the minute is up keeps the bound", cat(
			[]interval{{[]Attempt{tooLarge(1_000_000)}, 700_000}},
			quiet(refusedMaxAge-1, 700_000),
			[]interval{{[]Attempt{tooLarge(1_000_000)}, 700_000}},
			quiet(refusedMaxAge, 700_000),
		)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m byteMemory
			for i, iv := range tc.intervals {
				m.observe(iv.attempts)
				if got := m.decision(); got != iv.want {
					t.Fatalf("interval %d: BatchBytes %d, want %d", i, got, iv.want)
				}
			}
		})
	}
}

func TestGradientSendsTheByteBoundA413TaughtIt(t *testing.T) {
	g := NewGradient(GradientConfig{Initial: 400})
	obs := saturated(1, 400, 10000, 100)
	obs.Attempts = []Attempt{tooLarge(1_600_000)}
	obs.SinkErrors, obs.TooLarge = obs.Batches, obs.Batches
	if d := g.Next(obs); d.BatchBytes != 1_120_000 {
		t.Fatalf("after a 413 of a 1.6 MB batch: BatchBytes %d, want 1,120,000 (0.7 of it)", d.BatchBytes)
	}
	if d := g.Next(saturated(2, 400, 10000, 100)); d.BatchBytes != 1_120_000 {
		t.Fatalf("the interval after: BatchBytes %d, want the bound kept", d.BatchBytes)
	}
}
