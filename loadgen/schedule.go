package loadgen

import (
	"math"
	"time"
)

// Due is the intended send time of record j (counting from 0) of an
// open-loop phase: the first t at which p.Offered(t) > j. It is a pure
// function, so the whole schedule of a phase can be computed, and checked,
// without a clock.
//
// hint must be no later than the answer (the due time of record j-1 is a
// good one; 0 always works) and only makes the search shorter. Due reports
// false when the record is not due before limit.
func Due(p Pattern, j int64, hint, limit time.Duration) (time.Duration, bool) {
	if inv, ok := p.(inverter); ok {
		d := inv.dueAt(j)
		return d, d < limit
	}
	n := float64(j)
	lo := max(hint, 0)
	if lo >= limit {
		return limit, false
	}
	flo := p.Offered(lo) - n
	if flo > 0 {
		return lo, true
	}
	// Bracket the answer: Offered(lo) <= j < Offered(hi). The first guess
	// follows the rate at lo, which is exact while the rate is constant.
	step := time.Millisecond
	if r := p.Rate(lo); r > 0 && !math.IsInf(r, 0) {
		step = time.Duration(min((-flo+0.5)/r*1e9, 1e15)) + 1
	}
	hi := lo
	for {
		if step >= limit-lo {
			hi = limit
		} else {
			hi = lo + step
		}
		fhi := p.Offered(hi) - n
		if fhi > 0 {
			return refine(p, n, lo, hi, flo, fhi), true
		}
		if hi >= limit {
			return limit, false
		}
		lo, flo = hi, fhi
		step *= 2
	}
}

// refine narrows [lo, hi] to one nanosecond by false position (Illinois
// variant), falling back to bisection every third step so that it always
// converges; it returns the first t with Offered(t) > n.
func refine(p Pattern, n float64, lo, hi time.Duration, flo, fhi float64) time.Duration {
	side := 0
	for i := 0; hi-lo > 1; i++ {
		m := lo + (hi-lo)/2
		if i%3 != 2 && fhi > flo {
			g := lo + time.Duration(float64(hi-lo)*(-flo)/(fhi-flo))
			if g > lo && g < hi {
				m = g
			}
		}
		fm := p.Offered(m) - n
		if fm > 0 {
			hi, fhi = m, fm
			if side == 1 {
				flo /= 2
			}
			side = 1
		} else {
			lo, flo = m, fm
			if side == -1 {
				fhi /= 2
			}
			side = -1
		}
	}
	return hi
}

// recordsBefore is the number of records of p due before end: the j with
// Due(j) < end.
func recordsBefore(p Pattern, end time.Duration) int64 {
	if end <= 0 {
		return 0
	}
	o := p.Offered(end - 1)
	if o > 1e15 {
		o = 1e15
	}
	n := int64(math.Ceil(o))
	// Offered is a float; settle the last record against Due itself.
	for n > 0 {
		if _, ok := Due(p, n-1, 0, end); ok {
			break
		}
		n--
	}
	for {
		if _, ok := Due(p, n, 0, end); !ok {
			return n
		}
		n++
	}
}
