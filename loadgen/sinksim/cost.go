package sinksim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// Cost is what one accepted request costs the simulated downstream: it
// answers only after this much time, holding a concurrency slot.
type Cost struct {
	PerRequest time.Duration
	PerRecord  time.Duration
	PerByte    time.Duration // of the decoded body
	// Jitter adds a uniform [0, Jitter) to each request.
	Jitter time.Duration
	// KneeBatch, when > 0, makes every record beyond the first KneeBatch of
	// a request cost KneeFactor × PerRecord (default factor 10): a
	// downstream whose per-record cost rises steeply above a batch size.
	KneeBatch  int
	KneeFactor float64
	// KneeBytes and KneeRequests, when > 0, are knees on the AGGREGATE
	// load, all clients together: past KneeBytes decoded body bytes (or
	// KneeRequests requests) being served at once, every request that
	// starts pays its cost × (load/knee)^KneeExponent (default
	// DefaultKneeExponent). See Contention.
	KneeBytes    int64
	KneeRequests int
	KneeExponent float64
}

// Of is the cost of a request of records records and size bytes, without
// jitter. It is a pure function (tests and the bench use it as the model).
func (c Cost) Of(records, size int) time.Duration {
	per := float64(c.PerRecord)
	rec := per * float64(records)
	if c.KneeBatch > 0 && records > c.KneeBatch {
		f := c.KneeFactor
		if f == 0 {
			f = 10
		}
		rec = per*float64(c.KneeBatch) + per*f*float64(records-c.KneeBatch)
	}
	total := float64(c.PerRequest) + rec + float64(size)*float64(c.PerByte)
	if total >= math.MaxInt64 {
		return math.MaxInt64 // saturate rather than wrap
	}
	return time.Duration(total)
}

// Duration reads from JSON as a string ("250ms") or a number of seconds.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// maxDuration bounds any duration in a scenario.
const maxDuration = 30 * 24 * time.Hour

func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		t, err := time.ParseDuration(x)
		if err != nil {
			return err
		}
		if t < 0 || t > maxDuration {
			return fmt.Errorf("duration %q out of [0, %v]", x, maxDuration)
		}
		*d = Duration(t)
	case float64:
		if math.IsNaN(x) || x < 0 || x > maxDuration.Seconds() {
			return fmt.Errorf("duration %v s out of [0, %v]", x, maxDuration)
		}
		*d = Duration(x * 1e9)
	default:
		return fmt.Errorf("duration: want a string like \"250ms\" or seconds, got %s", b)
	}
	return nil
}

// Scenario changes the cost over time, from the server's start: each phase
// holds for its duration; after the last, the last holds, or with Loop the
// first comes back.
//
//	{"loop": false, "phases": [
//	  {"name": "normal", "duration": "30s"},
//	  {"name": "slow-down", "duration": "30s", "scale": 3},
//	  {"name": "brown-out", "duration": "20s", "error_rate": 0.3, "error_kinds": ["503"], "max_concurrency": 2},
//	  {"name": "recovery", "duration": "30s"},
//	  {"name": "capacity-halved", "duration": "30s", "knee_bytes": 262144}]}
type Scenario struct {
	Loop   bool    `json:"loop,omitempty"`
	Phases []Phase `json:"phases"`
}

// Phase overrides the server's settings for a while. A field left out keeps
// the server's (flag) value; Scale multiplies the phase's per-request,
// per-record, per-byte and jitter costs.
type Phase struct {
	Name           string    `json:"name,omitempty"`
	Duration       Duration  `json:"duration"`
	Scale          *float64  `json:"scale,omitempty"`
	PerRequest     *Duration `json:"per_request,omitempty"`
	PerRecord      *Duration `json:"per_record,omitempty"`
	PerByte        *Duration `json:"per_byte,omitempty"`
	Jitter         *Duration `json:"jitter,omitempty"`
	KneeBatch      *int      `json:"knee_batch,omitempty"`
	KneeFactor     *float64  `json:"knee_factor,omitempty"`
	KneeBytes      *int64    `json:"knee_bytes,omitempty"`
	KneeRequests   *int      `json:"knee_requests,omitempty"`
	KneeExponent   *float64  `json:"knee_exponent,omitempty"`
	ErrorRate      *float64  `json:"error_rate,omitempty"`
	ErrorKinds     []string  `json:"error_kinds,omitempty"`
	MaxConcurrency *int      `json:"max_concurrency,omitempty"`
	Queue          *int      `json:"queue,omitempty"`
}

// ErrNoPhases is returned for a scenario without phases.
var ErrNoPhases = errors.New("sinksim scenario has no phases")

// ParseScenario reads a cost scenario from JSON.
func ParseScenario(b []byte) (*Scenario, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("sinksim scenario: %w", err)
	}
	if dec.More() {
		return nil, errors.New("sinksim scenario: data after the JSON object")
	}
	if len(sc.Phases) == 0 {
		return nil, ErrNoPhases
	}
	if len(sc.Phases) > 10_000 {
		return nil, errors.New("sinksim scenario: more than 10000 phases")
	}
	var total time.Duration
	for i, p := range sc.Phases {
		if err := p.check(); err != nil {
			return nil, fmt.Errorf("sinksim scenario phase %d (%s): %w", i+1, p.Name, err)
		}
		total += time.Duration(p.Duration)
	}
	if sc.Loop && total == 0 {
		return nil, errors.New("sinksim scenario: a loop needs phases with a duration")
	}
	return &sc, nil
}

// LoadScenario reads a cost scenario file.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sinksim scenario: %w", err)
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

func (p Phase) check() error {
	if p.Scale != nil && (math.IsNaN(*p.Scale) || *p.Scale < 0 || *p.Scale > 1e6) {
		return fmt.Errorf("scale %v out of [0, 1e6]", *p.Scale)
	}
	if p.KneeBatch != nil && *p.KneeBatch < 0 {
		return errors.New("knee_batch below 0")
	}
	if p.KneeFactor != nil && (math.IsNaN(*p.KneeFactor) || *p.KneeFactor < 0 || *p.KneeFactor > 1e6) {
		return fmt.Errorf("knee_factor %v out of [0, 1e6]", *p.KneeFactor)
	}
	if p.KneeBytes != nil && *p.KneeBytes < 0 {
		return fmt.Errorf("knee_bytes %d below 0", *p.KneeBytes)
	}
	if p.KneeRequests != nil && *p.KneeRequests < 0 {
		return fmt.Errorf("knee_requests %d below 0", *p.KneeRequests)
	}
	if p.KneeExponent != nil {
		if err := checkKneeExponent(*p.KneeExponent); err != nil {
			return err
		}
	}
	if p.ErrorRate != nil {
		if err := checkRate(*p.ErrorRate); err != nil {
			return err
		}
	}
	if err := checkKinds(p.ErrorKinds); err != nil {
		return err
	}
	if p.MaxConcurrency != nil && *p.MaxConcurrency < 0 {
		return errors.New("max_concurrency below 0")
	}
	if p.Queue != nil && *p.Queue < -1 {
		return errors.New("queue below -1")
	}
	return nil
}

// checkKneeExponent accepts 0 (the default) or [1, maxKneeExponent]: below
// 1 the service time would not grow faster than the load past the knee.
func checkKneeExponent(e float64) error {
	if e != 0 && !(e >= 1 && e <= maxKneeExponent) {
		return fmt.Errorf("knee_exponent %v: want 0 (default %d) or 1 to %d", e, DefaultKneeExponent, maxKneeExponent)
	}
	return nil
}

func checkRate(r float64) error {
	if math.IsNaN(r) || r < 0 || r > 1 {
		return fmt.Errorf("error_rate %v out of [0, 1]", r)
	}
	return nil
}

// Kinds of injected errors.
const (
	Kind429     = "429"
	Kind503     = "503"
	KindTimeout = "timeout"
)

func checkKinds(kinds []string) error {
	for _, k := range kinds {
		switch k {
		case Kind429, Kind503, KindTimeout:
		default:
			return fmt.Errorf("unknown error kind %q (want 429, 503, timeout)", k)
		}
	}
	return nil
}

// settings are the values in force at one moment.
type settings struct {
	phase      string
	cost       Cost
	errorRate  float64
	errorKinds []string
	maxConc    int
	queue      int
}

// apply returns base with p's overrides.
func (p Phase) apply(base settings) settings {
	s := base
	s.phase = p.Name
	set := func(dst *time.Duration, v *Duration) {
		if v != nil {
			*dst = time.Duration(*v)
		}
	}
	set(&s.cost.PerRequest, p.PerRequest)
	set(&s.cost.PerRecord, p.PerRecord)
	set(&s.cost.PerByte, p.PerByte)
	set(&s.cost.Jitter, p.Jitter)
	if p.KneeBatch != nil {
		s.cost.KneeBatch = *p.KneeBatch
	}
	if p.KneeFactor != nil {
		s.cost.KneeFactor = *p.KneeFactor
	}
	if p.KneeBytes != nil {
		s.cost.KneeBytes = *p.KneeBytes
	}
	if p.KneeRequests != nil {
		s.cost.KneeRequests = *p.KneeRequests
	}
	if p.KneeExponent != nil {
		s.cost.KneeExponent = *p.KneeExponent
	}
	if p.Scale != nil {
		f := *p.Scale
		for _, d := range []*time.Duration{&s.cost.PerRequest, &s.cost.PerRecord, &s.cost.PerByte, &s.cost.Jitter} {
			*d = scale(*d, f)
		}
	}
	if p.ErrorRate != nil {
		s.errorRate = *p.ErrorRate
	}
	if p.ErrorKinds != nil {
		s.errorKinds = p.ErrorKinds
	}
	if p.MaxConcurrency != nil {
		s.maxConc = *p.MaxConcurrency
	}
	if p.Queue != nil {
		s.queue = *p.Queue
	}
	return s
}

// at returns the settings at elapsed since the start.
func (sc *Scenario) at(base settings, elapsed time.Duration) settings {
	if sc == nil || len(sc.Phases) == 0 {
		return base
	}
	if sc.Loop {
		var total time.Duration
		for _, p := range sc.Phases {
			total += time.Duration(p.Duration)
		}
		elapsed %= total
	}
	for _, p := range sc.Phases {
		if elapsed < time.Duration(p.Duration) {
			return p.apply(base)
		}
		elapsed -= time.Duration(p.Duration)
	}
	return sc.Phases[len(sc.Phases)-1].apply(base)
}

// scale multiplies d by f, saturating instead of wrapping.
func scale(d time.Duration, f float64) time.Duration {
	v := float64(d) * f
	if v >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(v)
}
