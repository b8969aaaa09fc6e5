package bench

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

// Scenario is a bench scenario: phases of offered load (loadgen's phase
// fields) against a downstream of known cost (sinksim's phase fields), with
// the node's settings and the fixed sizes to sweep. It is read from JSON:
//
//	{"name": "shifting", "seed": 1, "slo": "500ms",
//	 "node": {"max_linger": "200ms", "flush_concurrency": 4},
//	 "sink": {"retry_after": "1s"},
//	 "load_defaults": {"batch": 100, "record_size": 256},
//	 "sweep": [10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
//	 "quick": {"phase_duration": "4s", "control_interval": "250ms", "sweep": [20, 100, 500, 2000]},
//	 "phases": [
//	   {"name": "light", "duration": "30s", "source": "why these figures",
//	    "load": {"rate": 300, "batch": 10},
//	    "sink": {"per_request": "5ms", "per_record": "20us"}}]}
//
// A phase's "load" takes loadgen's scenario phase fields (without duration,
// count, protocol, gzip, trace: the bench sends NDJSON over HTTP for the
// phase's duration), over "load_defaults". Its "sink" takes sinksim's cost
// phase fields (without duration); a field left out keeps the downstream's
// base value, which is free and unlimited. Unknown fields are errors.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Seed drives the load's bursts and records and the downstream's
	// injected errors and jitter; default 1 (--seed overrides it).
	Seed uint64 `json:"seed,omitempty"`
	// SLO is the p99 end-to-end latency objective; default 500ms.
	SLO  loadgen.Duration `json:"slo,omitempty"`
	Node NodeSettings     `json:"node,omitzero"`
	Sink SinkSettings     `json:"sink,omitzero"`
	// Senders is loadgen's concurrency: requests in flight at most
	// (default 256). Latency is measured from the schedule either way; too
	// few senders only make requests leave late.
	Senders      int            `json:"senders,omitempty"`
	LoadDefaults *loadgen.Phase `json:"load_defaults,omitempty"`
	// Sweep are the fixed sizes run to find the best static size in
	// hindsight and the per-phase oracle (default DefaultSweep).
	Sweep  []int   `json:"sweep,omitempty"`
	Quick  *Quick  `json:"quick,omitempty"`
	Phases []Phase `json:"phases"`
}

// NodeSettings are the node's data-plane settings for every run; zero
// fields take the node's defaults (the agent's).
type NodeSettings struct {
	InitialBatchSize int              `json:"initial_batch_size,omitempty"` // 100
	MaxBatchSize     int              `json:"max_batch_size,omitempty"`     // 20000
	MaxLinger        loadgen.Duration `json:"max_linger,omitempty"`         // 200ms
	FlushConcurrency int              `json:"flush_concurrency,omitempty"`  // 4
	MaxBatchBytes    int64            `json:"max_batch_bytes,omitempty"`    // 0: no bound in bytes
	QueueRecords     int              `json:"queue_records,omitempty"`      // 200000
	ControlInterval  loadgen.Duration `json:"control_interval,omitempty"`   // 1s
}

// SinkSettings are the downstream's settings that no cost phase changes.
type SinkSettings struct {
	// RetryAfter goes with its 429 and 503 answers (default 1s).
	RetryAfter *loadgen.Duration `json:"retry_after,omitempty"`
	// MaxBody bounds a request body in bytes (default sinksim's, 64 MiB);
	// larger batches are answered 413.
	MaxBody int64 `json:"max_body,omitempty"`
}

// Quick is how --quick shortens the scenario: every phase lasts
// PhaseDuration (the load's own durations, such as burst lengths, scaled by
// the same factor), the control interval may be shortened with it, and a
// smaller sweep is run.
type Quick struct {
	PhaseDuration   loadgen.Duration `json:"phase_duration"`
	ControlInterval loadgen.Duration `json:"control_interval,omitempty"`
	Sweep           []int            `json:"sweep,omitempty"`
}

// Phase is one stretch of a scenario: a load against a downstream cost.
type Phase struct {
	Name     string           `json:"name"`
	Duration loadgen.Duration `json:"duration"`
	// Source says where the phase's figures come from.
	Source string        `json:"source,omitempty"`
	Load   loadgen.Phase `json:"load"`
	Sink   sinksim.Phase `json:"sink"`
	// Process is CPU work the node does on every batch before writing it
	// (parsing, enrichment, inference); none when left out.
	Process *ProcessCost `json:"process,omitempty"`
}

// ProcessCost is CPU time the node spends on a batch in the flush that
// writes it, before the sink: PerBatch once (a model call's fixed cost, say)
// plus PerRecord for each record. It is CPU time of the flushing thread,
// not wall time, so on a busy machine it takes longer and competes for the
// cores: a phase with a process cost is bound by the node's CPU rather than
// by the downstream.
type ProcessCost struct {
	PerBatch  loadgen.Duration `json:"per_batch,omitempty"`
	PerRecord loadgen.Duration `json:"per_record,omitempty"`
}

// Limits on a process cost.
const (
	maxProcessPerBatch  = time.Second
	maxProcessPerRecord = 10 * time.Millisecond
)

func (c *ProcessCost) check() error {
	if c == nil {
		return nil
	}
	if c.PerBatch < 0 || c.PerBatch.D() > maxProcessPerBatch {
		return fmt.Errorf("process per_batch %v out of [0, %v]", c.PerBatch.D(), maxProcessPerBatch)
	}
	if c.PerRecord < 0 || c.PerRecord.D() > maxProcessPerRecord {
		return fmt.Errorf("process per_record %v out of [0, %v]", c.PerRecord.D(), maxProcessPerRecord)
	}
	return nil
}

// of is the CPU time a batch of n records costs.
func (c *ProcessCost) of(n int) time.Duration {
	if c == nil {
		return 0
	}
	return c.PerBatch.D() + time.Duration(n)*c.PerRecord.D()
}

// DefaultSweep is the fixed sizes swept when a scenario names none.
var DefaultSweep = []int{10, 20, 50, 100, 200, 500, 1000, 2000, 5000}

// Limits on what a scenario may ask for.
const (
	maxPhases        = 100
	maxPhaseDuration = time.Hour
	maxSweep         = 50
	maxSenders       = 4096
)

// patterns are the load patterns the bench can put on a schedule; replay
// and closed loop have no schedule known in advance.
var patterns = []string{"constant", "ramp", "step", "spike", "sine", "burst"}

//go:embed scenarios/*.json
var builtin embed.FS

// Names lists the committed scenarios --scenario accepts.
func Names() []string {
	entries, _ := builtin.ReadDir("scenarios")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(names)
	return names
}

// Named returns a committed scenario by name ("shifting").
func Named(name string) (*Scenario, error) {
	if name == "" || strings.ContainsAny(name, `/\.`) {
		return nil, fmt.Errorf("unknown scenario %q (committed: %s)", name, strings.Join(Names(), ", "))
	}
	b, err := builtin.ReadFile(path.Join("scenarios", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("unknown scenario %q (committed: %s)", name, strings.Join(Names(), ", "))
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", name, err)
	}
	return sc, nil
}

// LoadScenario reads a scenario file.
func LoadScenario(file string) (*Scenario, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return sc, nil
}

// ErrNoPhases is returned for a scenario without phases.
var ErrNoPhases = errors.New("scenario has no phases")

// ParseScenario reads a scenario from JSON, fills in the defaults and checks
// it: unknown fields, values out of range, and load or cost fields that the
// bench cannot run are errors that name the phase.
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
	if err := sc.normalize(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// normalize fills the defaults in and checks everything.
func (sc *Scenario) normalize() error {
	if len(sc.Phases) == 0 {
		return ErrNoPhases
	}
	if len(sc.Phases) > maxPhases {
		return fmt.Errorf("scenario: %d phases, at most %d", len(sc.Phases), maxPhases)
	}
	if sc.Name == "" {
		sc.Name = "scenario"
	}
	if sc.Seed == 0 {
		sc.Seed = 1
	}
	if sc.SLO == 0 {
		sc.SLO = loadgen.Duration(500 * time.Millisecond)
	}
	if sc.SLO.D() > time.Minute {
		return fmt.Errorf("scenario: slo %v above 1m", sc.SLO.D())
	}
	if sc.Senders == 0 {
		sc.Senders = 256
	}
	if sc.Senders < 1 || sc.Senders > maxSenders {
		return fmt.Errorf("scenario: senders %d out of [1, %d]", sc.Senders, maxSenders)
	}
	if err := sc.Node.check(); err != nil {
		return fmt.Errorf("scenario node: %w", err)
	}
	if sc.Sink.MaxBody < 0 {
		return errors.New("scenario sink: max_body below 0")
	}
	if len(sc.Sweep) == 0 {
		sc.Sweep = slices.Clone(DefaultSweep)
	}
	if err := checkSweep(sc.Sweep, sc.Node.maxBatch()); err != nil {
		return fmt.Errorf("scenario sweep: %w", err)
	}
	if q := sc.Quick; q != nil {
		if q.PhaseDuration <= 0 || q.PhaseDuration.D() > maxPhaseDuration {
			return fmt.Errorf("scenario quick: phase_duration %v out of (0, %v]", q.PhaseDuration.D(), maxPhaseDuration)
		}
		if err := checkSweep(q.Sweep, sc.Node.maxBatch()); err != nil {
			return fmt.Errorf("scenario quick sweep: %w", err)
		}
	}
	seen := map[string]bool{}
	for i := range sc.Phases {
		p := &sc.Phases[i]
		if p.Name == "" {
			p.Name = fmt.Sprintf("phase%d", i+1)
		}
		if seen[p.Name] {
			return fmt.Errorf("scenario phase %d: name %q used twice", i+1, p.Name)
		}
		seen[p.Name] = true
		if err := p.check(sc.LoadDefaults); err != nil {
			return fmt.Errorf("scenario phase %d (%s): %w", i+1, p.Name, err)
		}
	}
	// loadgen and sinksim check their own fields' ranges.
	if _, err := sc.loadScenario(0, len(sc.Phases)); err != nil {
		return err
	}
	if _, err := sc.sinkScenario(0, len(sc.Phases)); err != nil {
		return err
	}
	return nil
}

func (n NodeSettings) check() error {
	for name, v := range map[string]int{"initial_batch_size": n.InitialBatchSize, "max_batch_size": n.MaxBatchSize,
		"flush_concurrency": n.FlushConcurrency, "queue_records": n.QueueRecords} {
		if v < 0 || v > 10_000_000 {
			return fmt.Errorf("%s %d out of [0, 10000000]", name, v)
		}
	}
	if n.MaxBatchBytes < 0 || n.MaxBatchBytes > 1<<30 {
		return fmt.Errorf("max_batch_bytes %d out of [0, 1 GiB]", n.MaxBatchBytes)
	}
	if n.FlushConcurrency > 1024 {
		return fmt.Errorf("flush_concurrency %d above 1024", n.FlushConcurrency)
	}
	if n.InitialBatchSize > n.maxBatch() {
		return fmt.Errorf("initial_batch_size %d above max_batch_size %d", n.InitialBatchSize, n.maxBatch())
	}
	if n.MaxLinger.D() > time.Minute || n.ControlInterval.D() > time.Minute {
		return errors.New("max_linger and control_interval must be at most 1m")
	}
	if n.ControlInterval != 0 && n.ControlInterval.D() < 10*time.Millisecond {
		return errors.New("control_interval below 10ms")
	}
	return nil
}

func (n NodeSettings) initial() int {
	if n.InitialBatchSize > 0 {
		return n.InitialBatchSize
	}
	return 100
}

func (n NodeSettings) maxBatch() int {
	if n.MaxBatchSize > 0 {
		return n.MaxBatchSize
	}
	return 20000
}

func checkSweep(sizes []int, max int) error {
	if len(sizes) > maxSweep {
		return fmt.Errorf("%d sizes, at most %d", len(sizes), maxSweep)
	}
	seen := map[int]bool{}
	for _, s := range sizes {
		if s < 1 || s > max {
			return fmt.Errorf("size %d out of [1, %d]", s, max)
		}
		if seen[s] {
			return fmt.Errorf("size %d twice", s)
		}
		seen[s] = true
	}
	return nil
}

// check applies the load defaults to the phase and rejects what the bench
// cannot run.
func (p *Phase) check(defaults *loadgen.Phase) error {
	if p.Duration <= 0 || p.Duration.D() > maxPhaseDuration {
		return fmt.Errorf("duration %v out of (0, %v]", p.Duration.D(), maxPhaseDuration)
	}
	if p.Load.Duration != 0 || p.Sink.Duration != 0 {
		return errors.New("the phase's duration is the load's and the downstream's: leave duration out of load and sink")
	}
	if p.Load.Name != "" || p.Sink.Name != "" {
		return errors.New("the phase's name is the load's and the downstream's: leave name out of load and sink")
	}
	if err := p.Process.check(); err != nil {
		return err
	}
	load, err := mergeLoad(p.Load, defaults)
	if err != nil {
		return err
	}
	p.Load = load
	switch {
	case p.Load.Pattern == "":
		p.Load.Pattern = "constant"
	case !slices.Contains(patterns, p.Load.Pattern):
		return fmt.Errorf("load pattern %q: the bench runs %s (replay and closed loop have no schedule known in advance)",
			p.Load.Pattern, strings.Join(patterns, ", "))
	}
	if p.Load.Rate <= 0 {
		return errors.New("load needs a rate > 0")
	}
	if p.Load.Count != 0 || p.Load.Trace != "" || p.Load.Speed != 0 {
		return errors.New("load: count, trace and speed are not for the bench (a phase lasts its duration)")
	}
	if p.Load.Protocol != "" && p.Load.Protocol != "http" {
		return fmt.Errorf("load protocol %q: the bench sends over HTTP, whose answers are acknowledgements", p.Load.Protocol)
	}
	if p.Load.Gzip != nil && *p.Load.Gzip {
		return errors.New("load gzip: the bench reads each request's record ids and takes NDJSON only")
	}
	return nil
}

// mergeLoad returns p with the fields it leaves out taken from d.
func mergeLoad(p loadgen.Phase, d *loadgen.Phase) (loadgen.Phase, error) {
	if d == nil {
		return p, nil
	}
	over := func(v loadgen.Phase) (map[string]json.RawMessage, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		m := map[string]json.RawMessage{}
		return m, json.Unmarshal(b, &m)
	}
	base, err := over(*d)
	if err != nil {
		return p, fmt.Errorf("load_defaults: %w", err)
	}
	own, err := over(p)
	if err != nil {
		return p, fmt.Errorf("load: %w", err)
	}
	for k, v := range own {
		base[k] = v
	}
	b, err := json.Marshal(base)
	if err != nil {
		return p, err
	}
	var out loadgen.Phase
	if err := json.Unmarshal(b, &out); err != nil {
		return p, fmt.Errorf("load with load_defaults: %w", err)
	}
	return out, nil
}

// Duration is the scenario's length.
func (sc *Scenario) Duration() time.Duration {
	var d time.Duration
	for _, p := range sc.Phases {
		d += p.Duration.D()
	}
	return d
}

// ControlInterval is the node's control interval in this scenario.
func (sc *Scenario) ControlInterval() time.Duration {
	if sc.Node.ControlInterval > 0 {
		return sc.Node.ControlInterval.D()
	}
	return time.Second
}

// WithSeed returns a copy of sc with another seed.
func (sc *Scenario) WithSeed(seed uint64) *Scenario {
	c := sc.clone()
	if seed != 0 {
		c.Seed = seed
	}
	return c
}

// QuickVersion returns the scenario --quick runs: every phase lasts the
// quick phase duration, with the load's own durations (burst lengths, spike
// times, step lengths, periods) scaled by the same factor, the quick
// control interval and the quick sweep. Without a quick section every phase
// lasts 5 s and the sweep keeps every other size.
func (sc *Scenario) QuickVersion() *Scenario {
	c := sc.clone()
	q := Quick{PhaseDuration: loadgen.Duration(5 * time.Second)}
	if sc.Quick != nil {
		q = *sc.Quick
	}
	for i := range c.Phases {
		p := &c.Phases[i]
		f := float64(q.PhaseDuration) / float64(p.Duration)
		p.Duration = q.PhaseDuration
		for _, d := range []*loadgen.Duration{&p.Load.StepEvery, &p.Load.Period, &p.Load.SpikeAt,
			&p.Load.SpikeFor, &p.Load.BurstEvery, &p.Load.BurstFor} {
			if *d > 0 {
				*d = loadgen.Duration(max(time.Millisecond, time.Duration(float64(*d)*f)))
			}
		}
	}
	if q.ControlInterval > 0 {
		c.Node.ControlInterval = q.ControlInterval
	}
	if len(q.Sweep) > 0 {
		c.Sweep = slices.Clone(q.Sweep)
	} else {
		var s []int
		for i := 0; i < len(sc.Sweep); i += 2 {
			s = append(s, sc.Sweep[i])
		}
		c.Sweep = s
	}
	c.Quick = nil
	return c
}

func (sc *Scenario) clone() *Scenario {
	b, err := json.Marshal(sc)
	if err != nil {
		panic(fmt.Sprintf("bench: clone scenario: %v", err))
	}
	var c Scenario
	if err := json.Unmarshal(b, &c); err != nil {
		panic(fmt.Sprintf("bench: clone scenario: %v", err))
	}
	return &c
}

// loadScenario is phases [from, to) as loadgen runs them: each phase's load
// (defaults applied) for the phase's duration. The seed is the one loadgen
// would use for phase from in a run of the whole scenario, so a phase run
// alone draws the same bursts and records.
func (sc *Scenario) loadScenario(from, to int) (*loadgen.Scenario, error) {
	out := &loadgen.Scenario{Name: sc.Name, Seed: sc.Seed + uint64(from)}
	for _, p := range sc.Phases[from:to] {
		l := p.Load
		l.Name, l.Duration = p.Name, p.Duration
		out.Phases = append(out.Phases, l)
	}
	// Let loadgen check its own fields' ranges.
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	if _, err := loadgen.ParseScenario(b); err != nil {
		return nil, err
	}
	return out, nil
}

// sinkScenario is phases [from, to) as sinksim runs them.
func (sc *Scenario) sinkScenario(from, to int) (*sinksim.Scenario, error) {
	out := &sinksim.Scenario{}
	for _, p := range sc.Phases[from:to] {
		s := p.Sink
		s.Name, s.Duration = p.Name, sinksim.Duration(p.Duration)
		out.Phases = append(out.Phases, s)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	if _, err := sinksim.ParseScenario(b); err != nil {
		return nil, err
	}
	return out, nil
}
