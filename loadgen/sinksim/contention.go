package sinksim

import (
	"math"
	"time"
)

// DefaultKneeExponent is the steepness of the aggregate knee when a cost
// leaves KneeExponent at 0.
const DefaultKneeExponent = 2

// maxKneeExponent bounds KneeExponent (a larger one only overflows sooner).
const maxKneeExponent = 16

// Contention is the factor by which the aggregate load of every client
// together stretches a request's service time: a database under lock
// contention. The load is what is being served at the moment the request
// starts paying its cost, the request itself included: inFlightBytes
// (decoded body bytes) and inFlightRequests. Past a knee the factor is
//
//	(load / knee) ^ KneeExponent
//
// (the larger of the two when both knees are set); at or below every knee
// it is 1. With the default exponent 2 the downstream's aggregate
// throughput, load / (service × factor), peaks at the knee and falls as
// knee² / load beyond it: the more the clients push together, the less
// gets through. It is a pure function.
func (c Cost) Contention(inFlightBytes int64, inFlightRequests int) float64 {
	exp := c.KneeExponent
	if exp == 0 {
		exp = DefaultKneeExponent
	}
	f := 1.0
	if c.KneeBytes > 0 && inFlightBytes > c.KneeBytes {
		f = math.Max(f, math.Pow(float64(inFlightBytes)/float64(c.KneeBytes), exp))
	}
	if c.KneeRequests > 0 && inFlightRequests > c.KneeRequests {
		f = math.Max(f, math.Pow(float64(inFlightRequests)/float64(c.KneeRequests), exp))
	}
	return f
}

// PastKnee reports whether the aggregate load is beyond a knee (the
// requests that start then pay more than their own cost).
func (c Cost) PastKnee(inFlightBytes int64, inFlightRequests int) bool {
	return (c.KneeBytes > 0 && inFlightBytes > c.KneeBytes) ||
		(c.KneeRequests > 0 && inFlightRequests > c.KneeRequests)
}

// Service is what a request of records records and size bytes costs when it
// starts under the given aggregate load, without jitter:
//
//	Of(records, size) × Contention(inFlightBytes, inFlightRequests)
//
// saturating rather than wrapping. It is a pure function.
func (c Cost) Service(records, size int, inFlightBytes int64, inFlightRequests int) time.Duration {
	return scale(c.Of(records, size), c.Contention(inFlightBytes, inFlightRequests))
}
