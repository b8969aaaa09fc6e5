package loadgen

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Scenario is a load test as a sequence of phases, usually read from a JSON
// file (see docs/loadtesting.md):
//
//	{"name": "ramp then spike", "seed": 7,
//	 "defaults": {"batch": 100, "record_size": 512},
//	 "phases": [
//	   {"name": "warm", "pattern": "ramp", "from": 100, "rate": 2000, "duration": "30s"},
//	   {"name": "spike", "pattern": "spike", "from": 2000, "rate": 8000, "duration": "20s",
//	    "protocol": "tcp", "framing": "octet"}]}
//
// A phase field left out takes the scenario's defaults, then the command's
// flags, then the built-in default.
type Scenario struct {
	Name     string  `json:"name,omitempty"`
	Seed     uint64  `json:"seed,omitempty"`
	Defaults *Phase  `json:"defaults,omitempty"`
	Phases   []Phase `json:"phases"`
}

// Phase is one stretch of a scenario. Rate is in records per second; for the
// shaped patterns it is the peak and From the low point.
//
//	constant  Rate for the whole phase
//	ramp      linear from From (default 0) to Rate over Duration
//	step      Levels (or Steps equal steps from From up to Rate), each held
//	          StepEvery (default Duration / number of levels)
//	spike     From (default Rate/10), Rate from SpikeAt (default Duration/2)
//	          for SpikeFor (default Duration/10)
//	sine      From (default 0) to Rate and back every Period (default Duration)
//	burst     From (default Rate/10), Rate in bursts of BurstFor (default 1s)
//	          that start as a Poisson process, a mean BurstEvery (default 10s) apart
//	replay    the entries of Trace at their recorded times / Speed (default 1);
//	          Duration defaults to one pass and a longer phase repeats the trace
//	closed    closed loop: the run's concurrency senders, each sending its next
//	          request as soon as the last is answered (also: constant without Rate)
type Phase struct {
	Name       string    `json:"name,omitempty"`
	Pattern    string    `json:"pattern,omitempty"`
	Duration   Duration  `json:"duration,omitempty"`
	Count      int64     `json:"count,omitempty"`
	Rate       float64   `json:"rate,omitempty"`
	From       *float64  `json:"from,omitempty"`
	Steps      int       `json:"steps,omitempty"`
	Levels     []float64 `json:"levels,omitempty"`
	StepEvery  Duration  `json:"step_every,omitempty"`
	Period     Duration  `json:"period,omitempty"`
	SpikeAt    Duration  `json:"spike_at,omitempty"`
	SpikeFor   Duration  `json:"spike_for,omitempty"`
	BurstEvery Duration  `json:"burst_every,omitempty"`
	BurstFor   Duration  `json:"burst_for,omitempty"`
	Trace      string    `json:"trace,omitempty"`
	Speed      float64   `json:"speed,omitempty"`
	// RecordSize is the size distribution (default 256 bytes fixed).
	RecordSize Size `json:"record_size,omitzero"`
	// Fields is how many extra fields each record carries besides id, ts,
	// level, service and msg (default 4): the processing cost of a record.
	Fields *int `json:"fields,omitempty"`
	// Protocol is http, tcp or udp (syslog); default: the first target's.
	Protocol string `json:"protocol,omitempty"`
	// Framing of syslog over TCP: octet (octet counting, default) or newline.
	Framing string `json:"framing,omitempty"`
	Gzip    *bool  `json:"gzip,omitempty"`
	// Batch is the records per HTTP request, or per TCP write (default 100).
	Batch int `json:"batch,omitempty"`
}

// Limits on what a scenario may ask for, so that a typo cannot exhaust
// memory.
const (
	maxPhaseDuration = 30 * 24 * time.Hour
	maxRate          = 1e8
	maxBatch         = 1_000_000
	maxFields        = 1000
	maxLevels        = 10_000
	maxPhases        = 10_000
	maxCount         = int64(1) << 50
	maxUDPRecord     = 65_000
	// unboundedHorizon is how far a burst phase without a duration draws
	// its bursts.
	unboundedHorizon = 24 * time.Hour
)

// Patterns are the names Phase.Pattern accepts.
var Patterns = []string{"constant", "ramp", "step", "spike", "sine", "burst", "replay", "closed"}

// Duration is a time.Duration that reads from JSON as a string ("1m30s") or
// a number of seconds.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

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
		if t < 0 || t > maxPhaseDuration {
			return fmt.Errorf("duration %q out of [0, %v]", x, maxPhaseDuration)
		}
		*d = Duration(t)
	case float64:
		if math.IsNaN(x) || x < 0 || x > maxPhaseDuration.Seconds() {
			return fmt.Errorf("duration %v s out of [0, %v]", x, maxPhaseDuration)
		}
		*d = Duration(x * 1e9)
	default:
		return fmt.Errorf("duration: want a string like \"30s\" or seconds, got %s", b)
	}
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ErrNoPhases is returned for a scenario without phases.
var ErrNoPhases = errors.New("scenario has no phases")

// ParseScenario reads a scenario from JSON. It rejects unknown fields and
// values out of range; whether each phase has what its pattern needs is
// checked when the run is planned, after the defaults are applied.
func ParseScenario(b []byte) (*Scenario, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if dec.More() {
		return nil, errors.New("scenario: data after the JSON object")
	}
	if len(sc.Phases) == 0 {
		return nil, ErrNoPhases
	}
	if len(sc.Phases) > maxPhases {
		return nil, fmt.Errorf("scenario: %d phases, at most %d", len(sc.Phases), maxPhases)
	}
	if sc.Defaults != nil {
		if err := sc.Defaults.checkRanges(); err != nil {
			return nil, fmt.Errorf("scenario defaults: %w", err)
		}
	}
	for i := range sc.Phases {
		if err := sc.Phases[i].checkRanges(); err != nil {
			return nil, fmt.Errorf("scenario phase %d (%s): %w", i+1, sc.Phases[i].label(i), err)
		}
	}
	return &sc, nil
}

// LoadScenario reads a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// SinglePhase is the scenario of a run set up by flags alone.
func SinglePhase(p Phase) *Scenario {
	return &Scenario{Phases: []Phase{p}}
}

func (p *Phase) label(i int) string {
	if p.Name != "" {
		return p.Name
	}
	return "phase" + strconv.Itoa(i+1)
}

// checkRanges rejects values no phase may have, whatever its pattern.
func (p *Phase) checkRanges() error {
	if p.Pattern != "" && !contains(Patterns, p.Pattern) {
		return fmt.Errorf("unknown pattern %q (want %s)", p.Pattern, strings.Join(Patterns, ", "))
	}
	rates := append([]float64{p.Rate}, p.Levels...)
	if p.From != nil {
		rates = append(rates, *p.From)
	}
	for _, r := range rates {
		if math.IsNaN(r) || r < 0 || r > maxRate {
			return fmt.Errorf("rate %v out of [0, %g]", r, float64(maxRate))
		}
	}
	if len(p.Levels) > maxLevels || p.Steps < 0 || p.Steps > maxLevels {
		return fmt.Errorf("at most %d step levels", maxLevels)
	}
	if p.Count < 0 || p.Count > maxCount {
		return fmt.Errorf("count %d out of [0, %d]", p.Count, maxCount)
	}
	if math.IsNaN(p.Speed) || p.Speed < 0 || p.Speed > 1e6 {
		return fmt.Errorf("speed %v out of (0, 1e6]", p.Speed)
	}
	if p.Fields != nil && (*p.Fields < 0 || *p.Fields > maxFields) {
		return fmt.Errorf("fields %d out of [0, %d]", *p.Fields, maxFields)
	}
	if p.Batch < 0 || p.Batch > maxBatch {
		return fmt.Errorf("batch %d out of [1, %d]", p.Batch, maxBatch)
	}
	switch p.Protocol {
	case "", "http", "tcp", "udp":
	default:
		return fmt.Errorf("unknown protocol %q (want http, tcp, udp)", p.Protocol)
	}
	switch p.Framing {
	case "", "octet", "newline":
	default:
		return fmt.Errorf("unknown framing %q (want octet, newline)", p.Framing)
	}
	return p.RecordSize.validate()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// withDefaults fills the fields p leaves out (zero or nil) from d.
func (p Phase) withDefaults(d Phase) Phase {
	p.Pattern = cmp.Or(p.Pattern, d.Pattern)
	p.Duration = cmp.Or(p.Duration, d.Duration)
	p.Count = cmp.Or(p.Count, d.Count)
	p.Rate = cmp.Or(p.Rate, d.Rate)
	p.From = cmp.Or(p.From, d.From)
	p.Steps = cmp.Or(p.Steps, d.Steps)
	if p.Levels == nil {
		p.Levels = d.Levels
	}
	p.StepEvery = cmp.Or(p.StepEvery, d.StepEvery)
	p.Period = cmp.Or(p.Period, d.Period)
	p.SpikeAt = cmp.Or(p.SpikeAt, d.SpikeAt)
	p.SpikeFor = cmp.Or(p.SpikeFor, d.SpikeFor)
	p.BurstEvery = cmp.Or(p.BurstEvery, d.BurstEvery)
	p.BurstFor = cmp.Or(p.BurstFor, d.BurstFor)
	p.Trace = cmp.Or(p.Trace, d.Trace)
	p.Speed = cmp.Or(p.Speed, d.Speed)
	p.RecordSize = cmp.Or(p.RecordSize, d.RecordSize)
	p.Fields = cmp.Or(p.Fields, d.Fields)
	p.Protocol = cmp.Or(p.Protocol, d.Protocol)
	p.Framing = cmp.Or(p.Framing, d.Framing)
	p.Gzip = cmp.Or(p.Gzip, d.Gzip)
	p.Batch = cmp.Or(p.Batch, d.Batch)
	return p
}

// builtinPhase holds the defaults of last resort.
func builtinPhase() Phase {
	fields := 4
	gz := false
	return Phase{
		Pattern:    "constant",
		RecordSize: Size{Dist: "fixed", Mean: 256},
		Fields:     &fields,
		Framing:    "octet",
		Gzip:       &gz,
		Batch:      100,
		Speed:      1,
	}
}

// traceLoader reads the trace a replay phase names.
type traceLoader func(path string) (*Trace, error)

func loadTraceFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	tr, err := ParseTrace(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tr, nil
}

// phasePlan is a phase ready to run: defaults applied, pattern built,
// records pre-generated.
type phasePlan struct {
	index   int
	name    string
	pattern string
	pat     Pattern       // nil for a closed-loop phase
	dur     time.Duration // 0: unbounded
	count   int64         // 0: unbounded
	batch   int
	proto   string // http, tcp, udp
	framing string
	gzip    bool
	rate    float64 // nominal, for the table
	enc     *encoder
}

// plan applies the defaults to every phase of sc, checks that each has what
// its pattern needs, and builds it. defaults are the command's flags; proto
// is the protocol of a phase that names none.
func (sc *Scenario) plan(defaults Phase, proto string, load traceLoader, runID string) ([]*phasePlan, error) {
	if len(sc.Phases) == 0 {
		return nil, ErrNoPhases
	}
	if err := defaults.checkRanges(); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	base := defaults.withDefaults(builtinPhase())
	if sc.Defaults != nil {
		base = sc.Defaults.withDefaults(base)
	}
	seed := sc.Seed
	if seed == 0 {
		seed = 1
	}
	plans := make([]*phasePlan, 0, len(sc.Phases))
	for i, ph := range sc.Phases {
		p := ph.withDefaults(base)
		if p.Protocol == "" {
			p.Protocol = proto
		}
		pp, err := p.build(i, seed+uint64(i), load, runID)
		if err != nil {
			return nil, fmt.Errorf("phase %d (%s): %w", i+1, ph.label(i), err)
		}
		if pp.pat == nil && pp.dur == 0 && pp.count == 0 && i < len(sc.Phases)-1 {
			return nil, fmt.Errorf("phase %d (%s): a closed-loop phase before the last needs a duration or a count", i+1, ph.label(i))
		}
		if pp.pat != nil && pp.dur == 0 && pp.count == 0 && i < len(sc.Phases)-1 {
			return nil, fmt.Errorf("phase %d (%s): only the last phase may be unbounded", i+1, ph.label(i))
		}
		plans = append(plans, pp)
	}
	return plans, nil
}

// build checks p (defaults applied) and makes its plan.
func (p Phase) build(index int, seed uint64, load traceLoader, runID string) (*phasePlan, error) {
	if err := p.checkRanges(); err != nil {
		return nil, err
	}
	dur := p.Duration.D()
	pp := &phasePlan{
		index: index, name: p.label(index), pattern: p.Pattern,
		dur: dur, count: p.Count, batch: p.Batch, proto: p.Protocol,
		framing: p.Framing, gzip: p.Gzip != nil && *p.Gzip, rate: p.Rate,
	}
	if pp.batch == 0 {
		pp.batch = 1
	}
	if pp.proto == "" {
		return nil, errors.New("no protocol: name one or give a target")
	}
	var trace *Trace
	switch p.Pattern {
	case "", "constant":
		pp.pattern = "constant"
		if p.Rate > 0 {
			pp.pat = Constant{R: p.Rate}
		} else {
			pp.pattern = "closed"
		}
	case "closed":
		if p.Rate > 0 {
			return nil, errors.New("pattern closed takes no rate (it sends as fast as answers come)")
		}
	case "replay":
		if p.Trace == "" {
			return nil, errors.New("pattern replay needs a trace file")
		}
		if p.Rate > 0 {
			return nil, errors.New("pattern replay takes its rate from the trace (use speed)")
		}
		var err error
		if trace, err = load(p.Trace); err != nil {
			return nil, err
		}
		speed := p.Speed
		if speed == 0 {
			speed = 1
		}
		rp := NewReplay(trace, speed)
		pp.pat = rp
		if pp.dur == 0 && pp.count == 0 {
			pp.dur = rp.Period()
		}
		pp.rate = rp.Rate(0)
	default:
		pat, err := p.Arrivals(seed)
		if err != nil {
			return nil, err
		}
		pp.pat = pat
	}
	if pp.pat == nil {
		pp.pattern = "closed"
	}
	fields := 4
	if p.Fields != nil {
		fields = *p.Fields
	}
	size := p.RecordSize
	if size.isZero() {
		size = Size{Dist: "fixed", Mean: 256}
	}
	if pp.proto == "udp" && size.upper() > maxUDPRecord {
		return nil, fmt.Errorf("record_size up to %d does not fit a UDP datagram (at most %d)", size.upper(), maxUDPRecord)
	}
	pp.enc = newEncoder(runID, pp.proto, pp.framing, size, fields, trace, seed)
	return pp, nil
}

// Arrivals builds the arrival pattern of an open-loop phase (its defaults
// applied) whose schedule is known in advance, every pattern but closed and
// replay: the schedule loadgen sends it by, which the bench rebuilds with it
// too. seed draws a burst pattern's bursts. A phase with no duration runs
// unbounded.
func (p Phase) Arrivals(seed uint64) (Pattern, error) {
	dur := p.Duration.D()
	needDur := func() error {
		if dur <= 0 {
			return fmt.Errorf("pattern %s needs a duration", p.Pattern)
		}
		return nil
	}
	needRate := func() error {
		if p.Rate <= 0 {
			return fmt.Errorf("pattern %s needs a rate > 0", p.Pattern)
		}
		return nil
	}
	from := func(def float64) float64 {
		if p.From != nil {
			return *p.From
		}
		return def
	}
	switch p.Pattern {
	case "", "constant":
		if err := needRate(); err != nil {
			return nil, err
		}
		return Constant{R: p.Rate}, nil
	case "ramp":
		if err := needDur(); err != nil {
			return nil, err
		}
		if p.Rate == 0 && from(0) == 0 {
			return nil, errors.New("pattern ramp needs a rate or from > 0")
		}
		return Ramp{From: from(0), To: p.Rate, D: dur}, nil
	case "step":
		if err := needRate(); err != nil {
			return nil, err
		}
		levels := p.Levels
		if len(levels) == 0 {
			n := p.Steps
			if n == 0 {
				n = 4
			}
			lo := from(0)
			for i := 1; i <= n; i++ {
				levels = append(levels, lo+(p.Rate-lo)*float64(i)/float64(n))
			}
		}
		every := p.StepEvery.D()
		if every == 0 {
			if err := needDur(); err != nil {
				return nil, fmt.Errorf("%w (or step_every)", err)
			}
			every = dur / time.Duration(len(levels))
		}
		if every <= 0 {
			return nil, errors.New("pattern step: each level must last > 0")
		}
		return Step{Levels: levels, Every: every}, nil
	case "spike":
		if err := needRate(); err != nil {
			return nil, err
		}
		at, length := p.SpikeAt.D(), p.SpikeFor.D()
		if at == 0 {
			at = 10 * time.Second
			if dur > 0 {
				at = dur / 2
			}
		}
		if length == 0 {
			length = 5 * time.Second
			if dur > 0 {
				length = max(dur/10, time.Millisecond)
			}
		}
		return Spike{Base: from(p.Rate / 10), Peak: p.Rate, At: at, For: length}, nil
	case "sine":
		if err := needRate(); err != nil {
			return nil, err
		}
		period := p.Period.D()
		if period == 0 {
			period = time.Minute
			if dur > 0 {
				period = dur
			}
		}
		if period < time.Millisecond {
			return nil, errors.New("pattern sine: period below 1ms")
		}
		lo := from(0)
		if lo > p.Rate {
			return nil, errors.New("pattern sine: from above rate")
		}
		return Sine{Min: lo, Max: p.Rate, Period: period}, nil
	case "burst":
		if err := needRate(); err != nil {
			return nil, err
		}
		every, length := p.BurstEvery.D(), p.BurstFor.D()
		if every == 0 {
			every = 10 * time.Second
		}
		if length == 0 {
			length = time.Second
		}
		horizon := dur
		if horizon == 0 {
			horizon = unboundedHorizon
		}
		if every < time.Millisecond || horizon/every > maxBursts/2 {
			return nil, fmt.Errorf("pattern burst: burst_every %v too small for %v", every, horizon)
		}
		return NewBurst(from(p.Rate/10), p.Rate, every, length, horizon, seed), nil
	case "closed", "replay":
		return nil, fmt.Errorf("pattern %q has no schedule known in advance", p.Pattern)
	}
	return nil, fmt.Errorf("unknown pattern %q", p.Pattern)
}
