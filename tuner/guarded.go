package tuner

// Safeguard is the safety check between a controller and the clamp to the
// grant: it sees every observation and decision and returns the decision to
// carry out, with why it stepped in. Check is called once per control
// interval, from one goroutine at a time, and reads no clock (obs.Now is
// the time). Breaker is the one the node and the simulator use.
type Safeguard interface {
	Check(obs Observation, d Decision) Verdict
}

// Verdict is one guarded step's outcome: the decision to carry out and the
// guard's state behind it.
type Verdict struct {
	// Decision is the controller's decision as the guard left it, clamped
	// to the grant by Step. Its Breaker field is the breaker's state when
	// a guard was applied.
	Decision Decision
	// Breaker is the sink breaker's state: "closed", "open", "half-open".
	Breaker string
	// Trip is why the breaker is not closed (TripSinkErrors), TripNone
	// while it is closed; TripDetail says how ("sink errors 6 of 10
	// batches").
	Trip       TripCause
	TripDetail string
	// Pressure is the node's resource over its limit (TripCPU, TripMemory,
	// TripRSS), TripNone when none: the node refuses new work while it
	// lasts, and the size is left to the controller. PressureDetail names
	// the limit ("cpu 95% of cgroup-v2: 1.50 cores (...) > 90%").
	Pressure       TripCause
	PressureDetail string
}

// Step is one guarded control step, the one the node's control loop and
// the simulator both take: the controller's Next, then the guard (nil: none),
// then the clamp to obs.MaxBatchSize (the node's grant). It is pure as its
// parts are: the same observations give the same verdicts.
func Step(c Controller, g Safeguard, obs Observation) Verdict {
	d := c.Next(obs)
	v := Verdict{Decision: d, Breaker: BreakerClosed}
	if g != nil {
		v = g.Check(obs, d)
	}
	v.Decision.BatchSize = Clamp(v.Decision.BatchSize, obs.MaxBatchSize)
	if v.Decision.BatchSize != d.BatchSize {
		v.Decision.WriteTime = 0 // an estimate for another size
	}
	return v
}

// Guarded is a Controller whose decisions pass through a Breaker and are
// then clamped to obs.MaxBatchSize: Step as a Controller, for the
// simulator and the bench, which take a Controller.
type Guarded struct {
	Controller Controller
	Breaker    *Breaker
}

// Guard wraps c with b.
func Guard(c Controller, b *Breaker) *Guarded { return &Guarded{Controller: c, Breaker: b} }

// Name implements Controller: the inner controller's name.
func (g *Guarded) Name() string { return g.Controller.Name() }

// Next implements Controller: Step's decision.
func (g *Guarded) Next(obs Observation) Decision { return g.Step(obs).Decision }

// Step is Step with g's controller and breaker.
func (g *Guarded) Step(obs Observation) Verdict { return Step(g.Controller, g.guard(), obs) }

// guard is the breaker as a Safeguard: nil (not a nil *Breaker) without one.
func (g *Guarded) guard() Safeguard {
	if g.Breaker == nil {
		return nil
	}
	return g.Breaker
}

// State is the breaker's state ("closed" without a breaker).
func (g *Guarded) State() string {
	if g.Breaker == nil {
		return BreakerClosed
	}
	return g.Breaker.State()
}

// StepOf splits c into its controller and guard when it is a *Guarded, so
// that a caller handed a Controller takes the one guarded step with it.
func StepOf(c Controller) (Controller, Safeguard) {
	if g, ok := c.(*Guarded); ok {
		return g.Controller, g.guard()
	}
	return c, nil
}
