package loadgen

import (
	"math"
	"testing"
	"time"
)

// schedule returns the due times of every record of p before end.
func schedule(t *testing.T, p Pattern, end time.Duration) []time.Duration {
	t.Helper()
	var out []time.Duration
	var hint time.Duration
	for j := int64(0); ; j++ {
		d, ok := Due(p, j, hint, end)
		if !ok {
			return out
		}
		if d < hint {
			t.Fatalf("record %d due at %v, before record %d at %v", j, d, j-1, hint)
		}
		out = append(out, d)
		hint = d
	}
}

func testReplay() *Replay {
	tr := &Trace{}
	// A trace that speeds up and slows down: 1000 entries per second with a
	// gap pattern repeating every second.
	for i := range 30_000 {
		sec := i / 1000
		k := i % 1000
		frac := math.Sqrt(float64(k) / 1000) // denser late in each second
		tr.At = append(tr.At, time.Duration((float64(sec)+frac)*1e9))
		tr.Lines = append(tr.Lines, []byte(`{"msg":"x"}`))
	}
	return NewReplay(tr, 1)
}

var patternCases = []struct {
	name string
	p    Pattern
	// spec gives the rate the pattern's definition promises at t, to check
	// Rate against (independently of the implementation).
	spec func(t time.Duration) float64
}{
	{"constant 2000/s", Constant{R: 2000}, func(time.Duration) float64 { return 2000 }},
	{"ramp 500 to 5000/s over 30s", Ramp{From: 500, To: 5000, D: 30 * time.Second},
		func(t time.Duration) float64 { return 500 + 4500*min(t.Seconds()/30, 1) }},
	{"step 1000, 3000, 2000, 4000/s every 7s", Step{Levels: []float64{1000, 3000, 2000, 4000}, Every: 7 * time.Second},
		func(t time.Duration) float64 {
			return []float64{1000, 3000, 2000, 4000}[min(int(t/(7*time.Second)), 3)]
		}},
	{"spike 1000 to 8000/s at 10.5s for 3s", Spike{Base: 1000, Peak: 8000, At: 10500 * time.Millisecond, For: 3 * time.Second},
		func(t time.Duration) float64 {
			if t >= 10500*time.Millisecond && t < 13500*time.Millisecond {
				return 8000
			}
			return 1000
		}},
	{"sine 200 to 6000/s with a 20s period", Sine{Min: 200, Max: 6000, Period: 20 * time.Second},
		func(t time.Duration) float64 { return 200 + 5800*(1-math.Cos(2*math.Pi*t.Seconds()/20))/2 }},
	{"burst 500 to 6000/s, bursts of 2s every 5s", NewBurst(500, 6000, 5*time.Second, 2*time.Second, 60*time.Second, 7), nil},
	{"replay of a 30s trace", testReplay(), nil},
}

// Each pattern's schedule offers, in every 1-second window, the records its
// rate integrates to within ±2 %; the integral agrees with the rate; and
// the rate is the one the pattern's definition promises.
func TestPatternsOfferTheirRateInEverySecond(t *testing.T) {
	const horizon = 30 * time.Second
	for _, tc := range patternCases {
		t.Run(tc.name, func(t *testing.T) {
			due := schedule(t, tc.p, horizon)
			counts := make([]int, int(horizon/time.Second))
			for _, d := range due {
				counts[int(d/time.Second)]++
			}
			for s, got := range counts {
				a, b := time.Duration(s)*time.Second, time.Duration(s+1)*time.Second
				want := tc.p.Offered(b-1) - tc.p.Offered(a-1)
				if s == 0 {
					want = tc.p.Offered(b - 1)
				}
				if math.Abs(float64(got)-want) > 0.02*want+1 {
					t.Errorf("second %d: %d records scheduled, the pattern offers %.1f (±2%%)", s, got, want)
				}
				// Offered is the integral of Rate: a 1ms midpoint sum.
				var integral float64
				for u := a; u < b; u += time.Millisecond {
					integral += tc.p.Rate(u+time.Millisecond/2) / 1000
				}
				if _, isReplay := tc.p.(*Replay); !isReplay && math.Abs(integral-want) > 0.005*want+1 {
					t.Errorf("second %d: Offered grows by %.1f, the rate integrates to %.1f", s, want, integral)
				}
			}
			if tc.spec != nil {
				for u := time.Duration(0); u < horizon; u += 250 * time.Millisecond {
					if got, want := tc.p.Rate(u), tc.spec(u); math.Abs(got-want) > 1e-6*want+1e-9 {
						t.Errorf("Rate(%v) = %.3f, the pattern promises %.3f", u, got, want)
					}
				}
			}
		})
	}
}

func TestBurstsArePoissonAndHitTheirPeak(t *testing.T) {
	const horizon = 2 * time.Hour
	p := NewBurst(100, 5000, 10*time.Second, time.Second, horizon, 42)
	starts := p.Bursts()
	// Quiet gaps have mean 10s: about horizon / 11s bursts.
	want := float64(horizon) / float64(11*time.Second)
	if n := float64(len(starts)); n < 0.85*want || n > 1.15*want {
		t.Fatalf("%d bursts in %v, want about %.0f", len(starts), horizon, want)
	}
	for i, s := range starts {
		if got := p.Rate(s + time.Second/2); got != 5000 {
			t.Fatalf("burst %d: rate %v inside, want 5000", i, got)
		}
		if i > 0 && s < starts[i-1]+time.Second {
			t.Fatalf("burst %d starts at %v, inside burst %d", i, s, i-1)
		}
	}
	if got := p.Rate(starts[0] - time.Millisecond); got != 100 {
		t.Fatalf("rate before the first burst %v, want the base 100", got)
	}
	// The same seed draws the same bursts; another seed others.
	again := NewBurst(100, 5000, 10*time.Second, time.Second, horizon, 42).Bursts()
	other := NewBurst(100, 5000, 10*time.Second, time.Second, horizon, 43).Bursts()
	if len(again) != len(starts) || again[3] != starts[3] {
		t.Fatal("the same seed drew different bursts")
	}
	if len(other) == len(starts) && other[3] == starts[3] {
		t.Fatal("another seed drew the same bursts")
	}
}

func TestReplaySendsEachEntryAtItsTimeAndLoops(t *testing.T) {
	tr := &Trace{At: []time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond, 900 * time.Millisecond}}
	p := NewReplay(tr, 2) // twice as fast
	want := []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond, 450 * time.Millisecond,
		600 * time.Millisecond, 650 * time.Millisecond} // second pass after 450ms + a mean gap of 150ms
	for j, w := range want {
		if got, ok := Due(p, int64(j), 0, time.Hour); !ok || got != w {
			t.Errorf("entry %d due at %v, want %v", j, got, w)
		}
	}
	// Due through the generic search agrees with the closed form.
	for j := int64(0); j < 20; j++ {
		fast, _ := Due(p, j, 0, time.Hour)
		slow, _ := Due(searchOnly{p}, j, 0, time.Hour)
		if fast != slow {
			t.Errorf("entry %d: closed form %v, search %v", j, fast, slow)
		}
	}
}

// searchOnly hides a pattern's closed-form inverse.
type searchOnly struct{ Pattern }

func TestDueSearchMatchesClosedForms(t *testing.T) {
	c := Constant{R: 3333}
	var hint time.Duration
	for j := int64(0); j < 5000; j += 7 {
		want := c.dueAt(j)
		got, ok := Due(searchOnly{c}, j, hint, time.Hour)
		if !ok || (got-want).Abs() > 2 {
			t.Fatalf("record %d: search %v, closed form %v", j, got, want)
		}
		hint = got
	}
}

func TestRecordsBeforeCountsTheSchedule(t *testing.T) {
	for _, tc := range patternCases {
		for _, end := range []time.Duration{time.Second, 7 * time.Second, 12345 * time.Millisecond} {
			want := int64(len(schedule(t, tc.p, end)))
			if got := recordsBefore(tc.p, end); got != want {
				t.Errorf("%s: %d records before %v, the schedule has %d", tc.name, got, end, want)
			}
		}
	}
}

func BenchmarkDue(b *testing.B) {
	for _, tc := range patternCases {
		b.Run(tc.name, func(b *testing.B) {
			var hint time.Duration
			j := int64(0)
			for b.Loop() {
				d, ok := Due(tc.p, j, hint, time.Hour)
				if !ok {
					j, hint = 0, 0
					continue
				}
				hint = d
				j++
			}
		})
	}
}
