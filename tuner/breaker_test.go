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

func failing(at, size int) Observation { o := healthy(at, size); o.SinkErrors = 6; return o }

func TestBreakerOpensOnSinkErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cross  func(*Observation)
		reason string
	}{
		{"sink errors above their share", func(o *Observation) { o.SinkErrors = 3 }, "sink errors 3 of 10"},
		{"sink errors with no batch finished", func(o *Observation) { o.Batches, o.SinkErrors = 0, 1 }, "sink errors"},
		{"sink errors besides batches refused as too large", func(o *Observation) { o.SinkErrors, o.TooLarge = 9, 6 }, "sink errors 3 of 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBreaker(BreakerConfig{})
			obs := healthy(0, 400)
			tc.cross(&obs)
			v := b.Check(obs, Decision{BatchSize: 500, Reason: "model"})
			d := v.Decision
			if b.State() != BreakerOpen || d.Breaker != BreakerOpen || v.Breaker != BreakerOpen {
				t.Fatalf("state %q / %q / %q, want open", b.State(), d.Breaker, v.Breaker)
			}
			if v.Trip != TripSinkErrors || v.Pressure != TripNone {
				t.Errorf("trip %v pressure %v, want sink-errors and none", v.Trip, v.Pressure)
			}
			if d.BatchSize != 200 {
				t.Errorf("size %d, want half the size in force (200)", d.BatchSize)
			}
			if !strings.Contains(b.Reason(), tc.reason) || !strings.HasPrefix(d.Reason, "breaker:open") || v.TripDetail != b.Reason() {
				t.Errorf("reason %q / %q / %q, want %q", b.Reason(), d.Reason, v.TripDetail, tc.reason)
			}
		})
	}
}

// A resource of the node over its limit is answered by refusing new work
// (the node's admission), not by a smaller batch, which costs more CPU per
// record: the breaker stays closed, the controller's decision passes, and
// the verdict names the resource and the limit that acts.
func TestPressureLeavesTheSizeAndNamesTheLimit(t *testing.T) {
	cgroup := CPUAllowance{Cores: 1.5, Source: AllowanceCgroupV2, File: "/sys/fs/cgroup/app/cpu.max"}
	for _, tc := range []struct {
		name   string
		cfg    BreakerConfig
		cross  func(*Observation)
		d      Decision
		cause  TripCause
		detail string
	}{
		{"cpu above its limit of the host's CPUs", BreakerConfig{}, func(o *Observation) { o.CPUPercent = 95 },
			Decision{BatchSize: 500, Reason: "model"}, TripCPU, "cpu 95% of the host's CPUs > 90%"},
		{"cpu above its limit of a cgroup quota", BreakerConfig{}, func(o *Observation) { o.CPUPercent, o.CPUAllowance = 95, cgroup },
			Decision{BatchSize: 500, Reason: "model"}, TripCPU, "cpu 95% of cgroup-v2: 1.50 cores (/sys/fs/cgroup/app/cpu.max) > 90%"},
		{"the observation's own cpu limit", BreakerConfig{}, func(o *Observation) { o.CPULimit, o.CPUPercent = 70, 75 },
			Decision{BatchSize: 500, Reason: "model"}, TripCPU, "> 70%"},
		{"memory above its limit", BreakerConfig{}, func(o *Observation) { o.MemPercent = 93 },
			Decision{BatchSize: 500, Reason: "model"}, TripMemory, "memory 93% of the host > 90%"},
		{"rss above its limit", BreakerConfig{RSSLimit: 1 << 30}, func(o *Observation) { o.RSSBytes = 2 << 30 },
			Decision{BatchSize: 500, Reason: "model"}, TripRSS, "rss 2147483648 > 1073741824 bytes"},
		{"a controller's own shrink under pressure passes too", BreakerConfig{}, func(o *Observation) { o.CPUPercent = 99 },
			Decision{BatchSize: 20, Reason: "shrink:p99"}, TripCPU, "cpu 99%"},
		{"cpu at its limit is not over it", BreakerConfig{}, func(o *Observation) { o.CPUPercent = 90 },
			Decision{BatchSize: 500, Reason: "model"}, TripNone, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBreaker(tc.cfg)
			obs := healthy(0, 400)
			tc.cross(&obs)
			v := b.Check(obs, tc.d)
			if v.Decision.BatchSize != tc.d.BatchSize || v.Decision.Reason != tc.d.Reason {
				t.Errorf("decision %+v, want the controller's %+v", v.Decision, tc.d)
			}
			if b.State() != BreakerClosed || v.Breaker != BreakerClosed || v.Trip != TripNone {
				t.Errorf("breaker %q / %q trip %v, want closed", b.State(), v.Breaker, v.Trip)
			}
			if v.Pressure != tc.cause || !strings.Contains(v.PressureDetail, tc.detail) {
				t.Errorf("pressure %v %q, want %v %q", v.Pressure, v.PressureDetail, tc.cause, tc.detail)
			}
			if c, detail := b.Pressure(); c != v.Pressure || detail != v.PressureDetail {
				t.Errorf("Pressure() %v %q, want the verdict's", c, detail)
			}
		})
	}
}

// Pressure begins as soon as a figure is over its limit and ends only once
// it has stayed at or below the limit less the band for the release time
// (3 intervals of 1 s after the last one above it),
// so that refusing work, which lowers the figure at once, does not make it
// flap on and off every interval.
func TestPressureHysteresis(t *testing.T) {
	type step struct {
		cpu, mem float64
		want     TripCause
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"begins over the limit, holds within the band, clears after the release", []step{
			{50, 50, TripNone}, {95, 50, TripCPU}, {85, 50, TripCPU}, {88, 50, TripCPU},
			{70, 50, TripCPU}, {70, 50, TripCPU}, {70, 50, TripNone}, {85, 50, TripNone},
		}},
		{"a figure back inside the band restarts the release", []step{
			{95, 50, TripCPU}, {70, 50, TripCPU}, {70, 50, TripCPU}, {82, 50, TripCPU},
			{70, 50, TripCPU}, {70, 50, TripCPU}, {70, 50, TripNone},
		}},
		{"one interval over the limit is enough to begin", []step{
			{50, 50, TripNone}, {91, 50, TripCPU}, {50, 50, TripCPU},
		}},
		{"the resource over its limit now is the one named", []step{
			{95, 50, TripCPU}, {60, 95, TripMemory}, {60, 85, TripMemory}, {95, 95, TripCPU},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBreaker(BreakerConfig{PressureBand: 10, PressureRelease: 3 * time.Second})
			for i, s := range tc.steps {
				o := healthy(i, 400)
				o.CPUPercent, o.MemPercent = s.cpu, s.mem
				v := b.Check(o, Decision{BatchSize: 400, Reason: "model"})
				if v.Pressure != s.want {
					t.Fatalf("step %d (cpu %.0f mem %.0f): pressure %v, want %v", i, s.cpu, s.mem, v.Pressure, s.want)
				}
				if v.Decision.BatchSize != 400 || v.Breaker != BreakerClosed {
					t.Fatalf("step %d: %+v, want the decision untouched and the breaker closed", i, v)
				}
			}
		})
	}
}

func TestTripCauseNames(t *testing.T) {
	for _, tc := range []struct {
		c        TripCause
		name     string
		pressure bool
	}{
		{TripNone, "", false}, {TripSinkErrors, "sink-errors", false},
		{TripCPU, "cpu", true}, {TripMemory, "memory", true}, {TripRSS, "rss", true},
	} {
		if tc.c.String() != tc.name || tc.c.Pressure() != tc.pressure {
			t.Errorf("%d: %q pressure %v, want %q %v", tc.c, tc.c.String(), tc.c.Pressure(), tc.name, tc.pressure)
		}
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
	steps := []struct {
		obs       Observation
		want      int
		wantState string
	}{
		{failing(0, 400), 200, BreakerOpen},     // trips: half the size in force
		{failing(1, 200), 200, BreakerOpen},     // still failing: hold, restart the cool-down
		{healthy(2, 200), 200, BreakerOpen},     // healthy, cooling down: hold
		{healthy(3, 200), 200, BreakerOpen},     // 2 s since the sink last failed
		{healthy(4, 200), 300, BreakerHalfOpen}, // 3 s: probe ¾ of the size that tripped
		{healthy(5, 300), 800, BreakerClosed},   // one healthy probe interval closes it
		{failing(6, 800), 400, BreakerOpen},     // and it trips again at once
	}
	for i, s := range steps {
		d := b.Apply(s.obs, Decision{BatchSize: 800, Reason: "model"})
		if d.BatchSize != s.want || b.State() != s.wantState || d.Breaker != s.wantState {
			t.Fatalf("step %d: size %d state %q (%s), want %d %q", i, d.BatchSize, b.State(), d.Reason, s.want, s.wantState)
		}
	}
}

func TestBreakerReopensWhenTheProbeFails(t *testing.T) {
	b := NewBreaker(BreakerConfig{CoolDown: time.Second})
	b.Apply(failing(0, 400), Decision{BatchSize: 400})
	b.Apply(healthy(1, 200), Decision{BatchSize: 400}) // half-open, probe 300
	if b.State() != BreakerHalfOpen {
		t.Fatalf("state %q, want half-open", b.State())
	}
	d := b.Apply(failing(2, 300), Decision{BatchSize: 400})
	if b.State() != BreakerOpen || d.BatchSize != 150 {
		t.Errorf("state %q size %d, want open at 150", b.State(), d.BatchSize)
	}
}

func TestBreakerNeverRaisesADecision(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	if d := b.Apply(failing(0, 400), Decision{BatchSize: 20, Reason: "shrink:p99"}); d.BatchSize != 20 || d.Reason != "shrink:p99" {
		t.Errorf("got %+v, want the smaller decision kept", d)
	}
}

func TestBreakerHoldsRatherThanShrinksWhileTheSinkKeepsFailing(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	size := 400
	for i := 0; i < 5; i++ {
		size = b.Apply(failing(i, size), Decision{BatchSize: 400}).BatchSize
	}
	if size != 200 {
		t.Errorf("size %d, want 200: halved once, then held", size)
	}
}

// Pressure never shrinks, however long it lasts and however the figures
// move; a failing sink beside it still does, and both are reported.
func TestPressureNeverShrinksButAFailingSinkStillDoes(t *testing.T) {
	b := NewBreaker(BreakerConfig{Floor: 10})
	for i := 0; i < 6; i++ {
		o := healthy(i, 400)
		o.CPUPercent, o.MemPercent = 95+float64(i%3), 91+float64(i) // memory rising too
		if v := b.Check(o, Decision{BatchSize: 400, Reason: "model"}); v.Decision.BatchSize != 400 || v.Pressure == TripNone {
			t.Fatalf("interval %d: %+v, want 400 kept under pressure", i, v)
		}
	}
	o := failing(6, 400)
	o.CPUPercent = 95
	v := b.Check(o, Decision{BatchSize: 400, Reason: "model"})
	if v.Decision.BatchSize != 200 || v.Trip != TripSinkErrors || v.Pressure != TripCPU {
		t.Errorf("%+v, want 200, tripped on sink errors, under cpu pressure", v)
	}
}

func TestStepIsControllerThenGuardThenGrant(t *testing.T) {
	for _, tc := range []struct {
		name         string
		guard        bool
		cross        func(*Observation)
		wantSize     int
		wantBreaker  string
		wantPressure TripCause
	}{
		{"no guard: the controller clamped to the grant", false, func(*Observation) {}, 3000, BreakerClosed, TripNone},
		{"healthy: the controller clamped to the grant", true, func(*Observation) {}, 3000, BreakerClosed, TripNone},
		{"cpu pressure: the size is left to the controller", true, func(o *Observation) { o.CPUPercent = 99 }, 3000, BreakerClosed, TripCPU},
		{"a failing sink: the breaker halves the size in force", true, func(o *Observation) { o.SinkErrors = 6 }, 500, BreakerOpen, TripNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g Safeguard
			if tc.guard {
				g = NewBreaker(BreakerConfig{})
			}
			o := healthy(0, 1000)
			o.MaxBatchSize = 3000
			tc.cross(&o)
			v := Step(&Static{Size: 5000}, g, o)
			if v.Decision.BatchSize != tc.wantSize || v.Breaker != tc.wantBreaker || v.Pressure != tc.wantPressure {
				t.Errorf("%+v, want size %d breaker %q pressure %v", v, tc.wantSize, tc.wantBreaker, tc.wantPressure)
			}
		})
	}
}

func TestGuardedIsStepAsAController(t *testing.T) {
	g := Guard(&Static{Size: 5000}, NewBreaker(BreakerConfig{}))
	if g.Name() != "static:5000" {
		t.Errorf("name %q", g.Name())
	}
	o := healthy(0, 1000)
	o.MaxBatchSize = 3000
	if d := g.Next(o); d.BatchSize != 3000 || g.State() != BreakerClosed {
		t.Errorf("size %d state %q, want the grant 3000 and closed", d.BatchSize, g.State())
	}
	o.SinkErrors = 6
	if d := g.Next(o); d.BatchSize != 500 || g.State() != BreakerOpen {
		t.Errorf("size %d state %q, want 500 and open", d.BatchSize, g.State())
	}
	c, sg := StepOf(g)
	if c != g.Controller || sg == nil {
		t.Errorf("StepOf(guarded) = %v, %v; want its controller and breaker", c, sg)
	}
	if c, sg := StepOf(g.Controller); c != g.Controller || sg != nil {
		t.Errorf("StepOf(unguarded) = %v, %v; want it and no guard", c, sg)
	}
	if _, sg := StepOf(&Guarded{Controller: g.Controller}); sg != nil {
		t.Errorf("StepOf(no breaker) gave a guard %v; want a nil interface", sg)
	}
}

func TestBreakerStateNames(t *testing.T) {
	if BreakerClosed != "closed" || BreakerOpen != "open" || BreakerHalfOpen != "half-open" {
		t.Error("state names changed: the API and gossip spell them closed, open, half-open")
	}
}
