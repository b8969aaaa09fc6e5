// Package tuner picks batch sizes. It owns the controllers (pure, deterministic
// values: observation in, decision out, time passed in as a value), the safety
// breaker, the resource sampler, and the decision records.
//
// Nothing in a controller starts a goroutine or reads the clock; the node's
// control loop measures, calls Next, and applies the decision.
package tuner
