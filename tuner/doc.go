// Package tuner picks batch sizes. It owns the controllers (pure,
// deterministic values: observation in, decision out, time passed in as a
// value), the safety breaker, the resource sampler, and the decision
// records.
//
// Nothing in a controller or the breaker starts a goroutine or reads the
// clock. The node's control loop is the thin shell around them; once per
// interval it:
//
//  1. measures: its own window (arrivals, writes, batch fills and times,
//     latency quantiles, queue) plus Sampler.Sample (CPU, memory, RSS),
//     merged into an Observation (Resources.ApplyTo), with MaxBatchSize
//     set to the grant from the leader;
//  2. asks the controller: Controller.Next(obs);
//  3. lets the guard override it: Breaker.Check(obs, d) — safety wins: a
//     failing sink shrinks the size, a resource over its limit (pressure)
//     leaves the size and has the node refuse new work;
//  4. clamps to the grant: Clamp(d.BatchSize, obs.MaxBatchSize);
//  5. applies the size and records it: DecisionLog.Add(NewDecisionRecord(...)).
//
// Step (and Guarded, its Controller form) does steps 2 to 4 in one call,
// for the node and the simulator alike. tuner/sim is a deterministic
// simulator of one node's pipeline on which the controllers are tested and
// compared.
package tuner
