package tuner

import "math"

// LiftByteBound in Decision.BatchBytes lifts a byte bound that a
// controller set earlier: the node goes back to its configured
// --max-batch-bytes (none when 0). (0 in BatchBytes leaves the bound as it
// is, so lifting needs its own value.)
const LiftByteBound = math.MaxInt32

// byteMemory is what a controller of record counts learns about a body
// limit in bytes from 413s: a batch of B bytes (as the sink writes them)
// refused for its size means the limit is below B, whatever the records'
// sizes, so a bound of refusedShare·B holds it for small records and large
// ones alike. The node then cuts a batch at the bound (Vector's max_bytes
// beside max_events) while the controller still tunes the count, which is
// what a change in record size needs: a count remembered from 4 KiB records
// starves a phase of 200-byte ones, and a count grown on 200-byte records
// overruns the limit with 4 KiB ones (the bytes scenario of the bench
// suite).
//
// A 413 can also come from a limit in entries, not bytes (Datadog's logs
// API takes 1,000 entries a request); a bound learned from it is then too
// tight for larger records. So the bound is forgotten after refusedMaxAge
// intervals without a refusal, as the refused count is, and learned again
// if the limit is still there.
type byteMemory struct {
	bound  int  // learned bound in bytes (0: none)
	age    int  // intervals since the last refusal that set or confirmed it
	lifted bool // the bound was forgotten and the node not yet told
}

// observe reads the interval's attempts: the smallest batch refused for its
// size lowers the bound.
func (m *byteMemory) observe(attempts []Attempt) {
	refused := 0
	for _, a := range attempts {
		if a.Outcome == AttemptTooLarge && a.Bytes > 0 && (refused == 0 || a.Bytes < refused) {
			refused = a.Bytes
		}
	}
	if refused > 0 {
		if b := max(1, int(refusedShare*float64(refused))); m.bound == 0 || b < m.bound {
			m.bound = b
		}
		m.age, m.lifted = 0, false
		return
	}
	if m.bound > 0 {
		m.age++
		if m.age > refusedMaxAge {
			m.bound, m.age, m.lifted = 0, 0, true
		}
	}
}

// decision is the Decision.BatchBytes to send: the bound while it is
// known, LiftByteBound once after it is forgotten, else 0 (no change).
func (m *byteMemory) decision() int {
	switch {
	case m.bound > 0:
		return m.bound
	case m.lifted:
		m.lifted = false
		return LiftByteBound
	}
	return 0
}
