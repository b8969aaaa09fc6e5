package tuner

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func healthy(at int, size int) Observation {
	return Observation{
		Now: t0.Add(time.Duration(at) * time.Second), Interval: time.Second,
		BatchSize: size, Batches: 10, CPUPercent: 40, MemPercent: 50,
	}
}

func TestBreakerTripsOnEachLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    BreakerConfig
		cross  func(*Observation)
		reason string
	}{
		{"cpu above its limit", BreakerConfig{}, func(o *Observation) { o.CPUPercent = 95 }, "cpu"},
		{"memory above its limit", BreakerConfig{}, func(o *Observation) { o.MemPercent = 93 }, "memory"},
		{"rss above its limit", BreakerConfig{RSSLimit: 1 << 30}, func(o *Observation) { o.RSSBytes = 2 << 30 }, "rss"},
		{"sink errors above their share", BreakerConfig{}, func(o *Observation) { o.SinkErrors = 3 }, "sink errors"},
		{"sink errors with no batch finished", BreakerConfig{}, func(o *Observation) { o.Batches, o.SinkErrors = 0, 1 }, "sink errors"},
		{"sink errors besides batches refused as too large", BreakerConfig{}, func(o *Observation) { o.SinkErrors, o.TooLarge = 9, 6 }, "sink errors 3 of 10"},
		{"the observation's own cpu limit", BreakerConfig{}, func(o *Observation) { o.CPULimit, o.CPUPercent = 70, 75 }, "cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBreaker(tc.cfg)
			obs := healthy(0, 400)
			tc.cross(&obs)
			d := b.Apply(obs, Decision{BatchSize: 500, Reason: "model"})
			if b.State() != BreakerOpen || d.Breaker != BreakerOpen {
				t.Fatalf("state %q / %q, want open", b.State(), d.Breaker)
			}
			if d.BatchSize != 200 {
				t.Errorf("size %d, want half the size in force (200)", d.BatchSize)
			}
			if !strings.Contains(b.Reason(), tc.reason) || !strings.HasPrefix(d.Reason, "breaker:open") {
				t.Errorf("reason %q / %q, want %q", b.Reason(), d.Reason, tc.reason)
			}
		})
	}
}

// A batch the downstream refused for its size (413) says the size is too
// big, not that the sink is failing: the controller shrinks, and the
// breaker, which would refuse everybody's records, stays closed.
func TestBreakerDoesNotTripOnBatchesRefusedAsTooLarge(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	obs := healthy(0, 400)
	obs.SinkErrors, obs.TooLarge = 10, 10
	if d := b.Apply(obs, Decision{BatchSize: 280, Reason: "refused"}); b.State() != BreakerClosed || d.BatchSize != 280 {
		t.Fatalf("state %q, size %d; want closed and the controller's 280", b.State(), d.BatchSize)
	}
}

// A downstream that takes part of the load and answers the rest 429 (or
// 503 with Retry-After, or times out) is pushing back, not failing: the
// breaker, which would refuse everybody's records, stays closed and the
// decision passes. One that takes nothing is down, whatever it answers, and
// a storm of other failures (500s, refused connections) opens it too.
func TestBreakerBackPressureIsNotFailure(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		errors, bp, tooLarge int
		wantState            string
	}{
		{"429s while other batches are written", 6, 6, 0, BreakerClosed},
		{"429s and 413s while other batches are written", 8, 5, 3, BreakerClosed},
		{"back pressure counted per attempt, beyond the failed batches", 6, 20, 0, BreakerClosed},
		{"every batch pushed back and none written: an outage", 10, 10, 0, BreakerOpen},
		{"a 5xx storm", 6, 0, 0, BreakerOpen},
		{"a 5xx storm beside 429s", 8, 3, 0, BreakerOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBreaker(BreakerConfig{})
			obs := healthy(0, 400) // 10 batches
			obs.SinkErrors, obs.Backpressure, obs.TooLarge = tc.errors, tc.bp, tc.tooLarge
			d := b.Apply(obs, Decision{BatchSize: 500, Reason: "model"})
			if b.State() != tc.wantState || d.Breaker != tc.wantState {
				t.Fatalf("state %q / %q, want %q", b.State(), d.Breaker, tc.wantState)
			}
			if tc.wantState == BreakerClosed && d.BatchSize != 500 {
				t.Fatalf("size %d, want the controller's 500", d.BatchSize)
			}
		})
	}
}

func TestBreakerLetsHealthyDecisionsThrough(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	obs := healthy(0, 400)
	obs.SinkErrors = 1 // one in ten batches: under the 20 % limit
	d := b.Apply(obs, Decision{BatchSize: 900, Reason: "model"})
	if d.BatchSize != 900 || d.Reason != "model" || d.Breaker != BreakerClosed {
		t.Errorf("got %+v, want the decision untouched", d)
	}
}

func TestBreakerCycle(t *testing.T) {
	b := NewBreaker(BreakerConfig{CoolDown: 3 * time.Second})
	hot := func(at, size int) Observation { o := healthy(at, size); o.CPUPercent = 97; return o }
	steps := []struct {
		obs       Observation
		want      int
		wantState string
	}{
		{hot(0, 400), 200, BreakerOpen},         // trips: half the size in force
		{hot(1, 200), 200, BreakerOpen},         // still over: hold, restart the cool-down
		{healthy(2, 200), 200, BreakerOpen},     // healthy, cooling down: hold
		{healthy(3, 200), 200, BreakerOpen},     // 2 s since the limit was last crossed
		{healthy(4, 200), 300, BreakerHalfOpen}, // 3 s: probe ¾ of the size that tripped
		{healthy(5, 300), 800, BreakerClosed},   // one healthy probe interval closes it
		{hot(6, 800), 400, BreakerOpen},         // and it trips again at once
	}
	for i, s := range steps {
		d := b.Apply(s.obs, Decision{BatchSize: 800, Reason: "model"})
		if d.BatchSize != s.want || b.State() != s.wantState || d.Breaker != s.wantState {
			t.Fatalf("step %d: size %d state %q (%s), want %d %q", i, d.BatchSize, b.State(), d.Reason, s.want, s.wantState)
		}
	}
}

func TestBreakerReopensWhenTheProbeCrossesALimit(t *testing.T) {
	b := NewBreaker(BreakerConfig{CoolDown: time.Second})
	o := healthy(0, 400)
	o.MemPercent = 95
	b.Apply(o, Decision{BatchSize: 400})
	b.Apply(healthy(1, 200), Decision{BatchSize: 400}) // half-open, probe 300
	if b.State() != BreakerHalfOpen {
		t.Fatalf("state %q, want half-open", b.State())
	}
	o = healthy(2, 300)
	o.MemPercent = 95
	d := b.Apply(o, Decision{BatchSize: 400})
	if b.State() != BreakerOpen || d.BatchSize != 150 {
		t.Errorf("state %q size %d, want open at 150", b.State(), d.BatchSize)
	}
}

func TestBreakerNeverRaisesADecision(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	o := healthy(0, 400)
	o.CPUPercent = 99
	if d := b.Apply(o, Decision{BatchSize: 20, Reason: "shrink:p99"}); d.BatchSize != 20 || d.Reason != "shrink:p99" {
		t.Errorf("got %+v, want the smaller decision kept", d)
	}
}

func TestBreakerShrinksWhileMemoryKeepsRisingDownToTheFloor(t *testing.T) {
	b := NewBreaker(BreakerConfig{Floor: 10})
	size := 100
	for i := 0; i < 10; i++ {
		o := healthy(i, size)
		o.MemPercent = 91 + float64(i)
		size = b.Apply(o, Decision{BatchSize: 100}).BatchSize
	}
	if size != 10 {
		t.Errorf("size %d, want the floor 10", size)
	}
	// Memory over the limit but no longer rising: hold.
	o := healthy(10, size)
	o.MemPercent = 95
	if d := b.Apply(o, Decision{BatchSize: 100}); d.BatchSize != 10 {
		t.Errorf("size %d, want 10 held", d.BatchSize)
	}
}

func TestBreakerHoldsRatherThanShrinksWhileCPUStaysHigh(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	size := 400
	for i := 0; i < 5; i++ {
		o := healthy(i, size)
		o.CPUPercent = 95 + float64(i)
		size = b.Apply(o, Decision{BatchSize: 400}).BatchSize
	}
	if size != 200 {
		t.Errorf("size %d, want 200: halved once, then held", size)
	}
}

func TestGuardedAppliesControllerThenBreakerThenGrant(t *testing.T) {
	g := Guard(&Static{Size: 5000}, NewBreaker(BreakerConfig{}))
	if g.Name() != "static:5000" {
		t.Errorf("name %q", g.Name())
	}
	o := healthy(0, 1000)
	o.MaxBatchSize = 3000
	if d := g.Next(o); d.BatchSize != 3000 || g.State() != BreakerClosed {
		t.Errorf("size %d state %q, want the grant 3000 and closed", d.BatchSize, g.State())
	}
	o.CPUPercent = 99
	if d := g.Next(o); d.BatchSize != 500 || g.State() != BreakerOpen {
		t.Errorf("size %d state %q, want 500 and open", d.BatchSize, g.State())
	}
}

func TestBreakerStateNames(t *testing.T) {
	if BreakerClosed != "closed" || BreakerOpen != "open" || BreakerHalfOpen != "half-open" {
		t.Error("state names changed: the API and gossip spell them closed, open, half-open")
	}
}
