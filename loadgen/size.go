package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
)

// Size is the distribution of record sizes in bytes (the encoded record,
// without framing). In a scenario file it is either a number (a fixed size)
// or an object:
//
//	{"dist": "fixed|uniform|normal|lognormal", "mean": 512, "stddev": 128, "min": 64, "max": 4096}
//
// uniform draws from [min, max]; normal and lognormal draw around mean with
// stddev and are clamped to [min, max]. Sizes below what a record's id and
// fields need are raised to that.
type Size struct {
	Dist   string `json:"dist,omitempty"`
	Mean   int    `json:"mean,omitempty"`
	StdDev int    `json:"stddev,omitempty"`
	Min    int    `json:"min,omitempty"`
	Max    int    `json:"max,omitempty"`
}

// maxRecordSize bounds one record.
const maxRecordSize = 16 << 20

// UnmarshalJSON accepts a number or an object.
func (s *Size) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '{' {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("record_size: want a number or an object: %w", err)
		}
		if n != math.Trunc(n) || n < 0 || n > maxRecordSize {
			return fmt.Errorf("record_size %v: want whole bytes in [0, %d]", n, maxRecordSize)
		}
		*s = Size{Dist: "fixed", Mean: int(n)}
		return nil
	}
	type plain Size
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("record_size: %w", err)
	}
	*s = Size(p)
	return nil
}

// isZero reports whether no size was given.
func (s Size) isZero() bool { return s == Size{} }

func (s Size) validate() error {
	for _, v := range []int{s.Mean, s.StdDev, s.Min, s.Max} {
		if v < 0 || v > maxRecordSize {
			return fmt.Errorf("record_size: %d out of [0, %d]", v, maxRecordSize)
		}
	}
	switch s.Dist {
	case "", "fixed":
		if s.Mean == 0 && s.Max > 0 {
			return fmt.Errorf("record_size: fixed wants mean")
		}
	case "uniform":
		if s.Max < s.Min || s.Max == 0 {
			return fmt.Errorf("record_size: uniform wants 0 <= min <= max, max > 0")
		}
	case "normal", "lognormal":
		if s.Mean == 0 {
			return fmt.Errorf("record_size: %s wants mean > 0", s.Dist)
		}
		if s.Max > 0 && s.Max < s.Min {
			return fmt.Errorf("record_size: max < min")
		}
	default:
		return fmt.Errorf("record_size: unknown dist %q (want fixed, uniform, normal, lognormal)", s.Dist)
	}
	return nil
}

// draw returns one size.
func (s Size) draw(rng *rand.Rand) int {
	var v float64
	switch s.Dist {
	case "uniform":
		return s.Min + rng.IntN(s.Max-s.Min+1)
	case "normal":
		v = float64(s.Mean) + rng.NormFloat64()*float64(s.StdDev)
	case "lognormal":
		// Parameters of the underlying normal for the wanted mean and stddev.
		m, sd := float64(s.Mean), float64(s.StdDev)
		sigma2 := math.Log(1 + sd*sd/(m*m))
		v = math.Exp(math.Log(m) - sigma2/2 + rng.NormFloat64()*math.Sqrt(sigma2))
	default:
		return s.Mean
	}
	lo, hi := float64(s.Min), float64(maxRecordSize)
	if s.Max > 0 {
		hi = float64(s.Max)
	}
	return int(math.Round(min(max(v, lo), hi)))
}

// upper is the largest size the distribution can draw.
func (s Size) upper() int {
	switch s.Dist {
	case "uniform":
		return s.Max
	case "normal", "lognormal":
		if s.Max > 0 {
			return s.Max
		}
		return maxRecordSize
	default:
		return s.Mean
	}
}
