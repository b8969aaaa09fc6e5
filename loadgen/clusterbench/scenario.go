package clusterbench

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

// Scenario is one cluster bench: the shared downstream, the load every node
// is offered, phase by phase, and the budgets the hand-set sweep tries.
//
//	{"name": "shared-downstream", "seed": 1, "slo": "500ms", "record_size": 200, "batch": 20,
//	 "sink": {"per_request": "2ms", "per_byte": "10us", "knee_bytes": 196608, "max_concurrency": 64, "queue": 128},
//	 "phases": [
//	   {"name": "base", "duration": "15s", "rate": 400},
//	   {"name": "step", "duration": "30s", "rate": 3000},
//	   {"name": "hotspot", "duration": "30s", "rate": 700, "hot_factor": 5},
//	   {"name": "shift", "duration": "30s", "rate": 1500, "sink": {"knee_bytes": 98304}}],
//	 "budgets": [131072, 196608, 393216], "ceiling": 4194304}
type Scenario struct {
	Name string `json:"name"`
	Seed uint64 `json:"seed,omitempty"`
	// SLO is the latency objective: a record counts as goodput when the
	// request that carried it was acknowledged within it.
	SLO sinksim.Duration `json:"slo"`
	// RecordSize is the bytes of each record; Batch the records of each
	// request the load generator sends.
	RecordSize int `json:"record_size"`
	Batch      int `json:"batch"`
	// Senders bounds the requests in flight to one node (open loop: a
	// request due while all are busy is counted as offered and failed).
	Senders int `json:"senders,omitempty"`
	// Timeout is how long a sender waits for an acknowledgement.
	Timeout sinksim.Duration `json:"timeout,omitempty"`
	// Sink is the shared downstream (sinksim) at the start of the run.
	Sink SinkSettings `json:"sink"`
	// Node is what every node runs with (the arms set the controller and
	// the limits).
	Node NodeSettings `json:"node,omitempty"`
	// Phases of the load, in order.
	Phases []Phase `json:"phases"`
	// Budgets are the hand-set cluster budgets (bytes) swept for the
	// budget:BYTES arm; Ceiling is the learned arm's ceiling (the
	// operator's cluster_budget_bytes).
	Budgets []int64 `json:"budgets"`
	Ceiling int64   `json:"ceiling"`
	// Quick scales every phase's duration for --quick (default 0.4) and
	// keeps the first QuickBudgets budgets of the sweep (default 2).
	Quick        float64 `json:"quick_scale,omitempty"`
	QuickBudgets int     `json:"quick_budgets,omitempty"`
}

// SinkSettings are the shared downstream's costs and limits (see the
// sinksim package for the cost formula).
type SinkSettings struct {
	PerRequest     sinksim.Duration `json:"per_request"`
	PerRecord      sinksim.Duration `json:"per_record,omitempty"`
	PerByte        sinksim.Duration `json:"per_byte,omitempty"`
	KneeBytes      int64            `json:"knee_bytes,omitempty"`
	KneeRequests   int              `json:"knee_requests,omitempty"`
	KneeExponent   float64          `json:"knee_exponent,omitempty"`
	MaxConcurrency int              `json:"max_concurrency,omitempty"`
	Queue          int              `json:"queue,omitempty"`
}

// NodeSettings are agent flags every node takes, in every arm.
type NodeSettings struct {
	MaxLinger        sinksim.Duration `json:"max_linger,omitempty"`
	FlushConcurrency int              `json:"flush_concurrency,omitempty"`
	QueueRecords     int              `json:"queue_records,omitempty"`
	EpochMS          int              `json:"epoch_ms,omitempty"`
}

// Phase is a stretch of constant load: Rate records/s offered to every
// node, the first node HotFactor times that (a hot spot; 0 or 1: none),
// while Sink, when given, changes the downstream (a shift in its capacity;
// any field of a sinksim scenario phase but its name and duration).
type Phase struct {
	Name      string           `json:"name"`
	Duration  sinksim.Duration `json:"duration"`
	Rate      float64          `json:"rate"`
	HotFactor float64          `json:"hot_factor,omitempty"`
	Sink      *sinksim.Phase   `json:"sink,omitempty"`
}

// ParseScenario reads a scenario from JSON and checks it.
func ParseScenario(b []byte) (*Scenario, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("cluster bench scenario: %w", err)
	}
	if dec.More() {
		return nil, errors.New("cluster bench scenario: data after the JSON object")
	}
	if err := sc.normalize(); err != nil {
		return nil, fmt.Errorf("cluster bench scenario %q: %w", sc.Name, err)
	}
	return &sc, nil
}

// LoadScenario reads a scenario file.
func LoadScenario(file string) (*Scenario, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read cluster bench scenario: %w", err)
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return sc, nil
}

//go:embed scenarios/*.json
var committed embed.FS

// Names lists the committed scenarios.
func Names() []string {
	ents, _ := committed.ReadDir("scenarios")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(out)
	return out
}

// DefaultScenario is the scenario the cluster bench runs without one named.
const DefaultScenario = "shared-downstream"

// Named returns a committed scenario.
func Named(name string) (*Scenario, error) {
	b, err := committed.ReadFile(path.Join("scenarios", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("no cluster bench scenario %q (committed: %s)", name, strings.Join(Names(), ", "))
	}
	return ParseScenario(b)
}

const (
	maxPhases  = 100
	maxRate    = 1e6
	maxBudget  = 1 << 50
	maxRecord  = 1 << 20
	maxBatch   = 100_000
	maxSenders = 4096
)

func (sc *Scenario) normalize() error {
	if sc.Seed == 0 {
		sc.Seed = 1
	}
	if sc.SLO == 0 {
		sc.SLO = sinksim.Duration(500 * time.Millisecond)
	}
	if sc.RecordSize == 0 {
		sc.RecordSize = 200
	}
	if sc.RecordSize < 40 || sc.RecordSize > maxRecord {
		return fmt.Errorf("record_size %d: want 40 to %d", sc.RecordSize, maxRecord)
	}
	if sc.Batch < 1 || sc.Batch > maxBatch {
		return fmt.Errorf("batch %d: want 1 to %d records a request", sc.Batch, maxBatch)
	}
	if sc.Senders == 0 {
		sc.Senders = 64
	}
	if sc.Senders < 1 || sc.Senders > maxSenders {
		return fmt.Errorf("senders %d: want 1 to %d", sc.Senders, maxSenders)
	}
	if sc.Timeout == 0 {
		sc.Timeout = sinksim.Duration(5 * time.Second)
	}
	if time.Duration(sc.Timeout) < time.Duration(sc.SLO) {
		return fmt.Errorf("timeout %v shorter than the slo %v", time.Duration(sc.Timeout), time.Duration(sc.SLO))
	}
	if len(sc.Phases) == 0 || len(sc.Phases) > maxPhases {
		return fmt.Errorf("%d phases: want 1 to %d", len(sc.Phases), maxPhases)
	}
	seen := map[string]bool{}
	for i, p := range sc.Phases {
		if p.Name == "" || seen[p.Name] {
			return fmt.Errorf("phase %d: a name, unique in the scenario, is required", i+1)
		}
		seen[p.Name] = true
		if p.Duration < sinksim.Duration(time.Second) {
			return fmt.Errorf("phase %s: duration %v below 1s", p.Name, time.Duration(p.Duration))
		}
		if math.IsNaN(p.Rate) || p.Rate <= 0 || p.Rate > maxRate {
			return fmt.Errorf("phase %s: rate %v: want above 0 and at most %v records/s a node", p.Name, p.Rate, maxRate)
		}
		if math.IsNaN(p.HotFactor) || p.HotFactor < 0 || p.HotFactor > 100 {
			return fmt.Errorf("phase %s: hot_factor %v: want 0 to 100", p.Name, p.HotFactor)
		}
		if p.Sink != nil {
			// Checked as a sinksim scenario of this one phase.
			ph := *p.Sink
			ph.Name, ph.Duration = p.Name, p.Duration
			b, err := json.Marshal(sinksim.Scenario{Phases: []sinksim.Phase{ph}})
			if err == nil {
				_, err = sinksim.ParseScenario(b)
			}
			if err != nil {
				return fmt.Errorf("phase %s: sink: %w", p.Name, err)
			}
		}
	}
	if _, err := sinksim.New(sc.sinkConfig()); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	if !sc.Sink.hasKnee() {
		return errors.New("sink: a knee (knee_bytes or knee_requests) is what the cluster shares; none is set")
	}
	if len(sc.Budgets) == 0 {
		return errors.New("budgets: at least one hand-set budget is needed for the budget:BYTES arm")
	}
	for _, b := range append(slicesClone(sc.Budgets), sc.Ceiling) {
		if b < 1024 || b > maxBudget {
			return fmt.Errorf("budget %d: want 1024 to %d bytes", b, int64(maxBudget))
		}
	}
	if sc.Quick == 0 {
		sc.Quick = 0.4
	}
	if math.IsNaN(sc.Quick) || sc.Quick <= 0 || sc.Quick > 1 {
		return fmt.Errorf("quick_scale %v: want above 0 and at most 1", sc.Quick)
	}
	if sc.QuickBudgets == 0 {
		sc.QuickBudgets = 2
	}
	if sc.QuickBudgets < 1 {
		return fmt.Errorf("quick_budgets %d: want at least 1", sc.QuickBudgets)
	}
	n := sc.Node
	if n.MaxLinger == 0 {
		sc.Node.MaxLinger = sinksim.Duration(50 * time.Millisecond)
	}
	if n.FlushConcurrency == 0 {
		sc.Node.FlushConcurrency = 4
	}
	if n.QueueRecords == 0 {
		sc.Node.QueueRecords = 50_000
	}
	if n.EpochMS == 0 {
		sc.Node.EpochMS = 1000
	}
	if sc.Node.FlushConcurrency < 1 || sc.Node.FlushConcurrency > 256 || sc.Node.QueueRecords < 1 ||
		sc.Node.EpochMS < 100 || sc.Node.EpochMS > 60_000 || sc.Node.MaxLinger < 0 {
		return fmt.Errorf("node: flush_concurrency 1 to 256, queue_records at least 1, epoch_ms 100 to 60000, max_linger not negative; got %+v", n)
	}
	return nil
}

func slicesClone(s []int64) []int64 { return append([]int64(nil), s...) }

func (s SinkSettings) hasKnee() bool { return s.KneeBytes > 0 || s.KneeRequests > 0 }

// sinkConfig is the downstream at the start of a run.
func (sc *Scenario) sinkConfig() sinksim.Config {
	s := sc.Sink
	return sinksim.Config{
		Cost: sinksim.Cost{PerRequest: time.Duration(s.PerRequest), PerRecord: time.Duration(s.PerRecord),
			PerByte: time.Duration(s.PerByte), KneeBytes: s.KneeBytes, KneeRequests: s.KneeRequests, KneeExponent: s.KneeExponent},
		MaxConcurrency: s.MaxConcurrency, Queue: s.Queue, RetryAfter: time.Second, Seed: sc.Seed,
	}
}

// sinkScenario is the downstream's changes over the run, phase by phase,
// from the start of the load.
func (sc *Scenario) sinkScenario() *sinksim.Scenario {
	out := &sinksim.Scenario{}
	changes := false
	for _, p := range sc.Phases {
		ph := sinksim.Phase{}
		if p.Sink != nil {
			ph = *p.Sink
			changes = true
		}
		ph.Name, ph.Duration = p.Name, p.Duration
		out.Phases = append(out.Phases, ph)
	}
	if !changes {
		return nil
	}
	return out
}

// Duration is the length of the load.
func (sc *Scenario) Duration() time.Duration {
	var d time.Duration
	for _, p := range sc.Phases {
		d += time.Duration(p.Duration)
	}
	return d
}

// QuickVersion is the scenario with every phase QuickScale as long (at
// least 2 s) and the first QuickBudgets budgets of the sweep.
func (sc *Scenario) QuickVersion() *Scenario {
	q := *sc
	q.Phases = make([]Phase, len(sc.Phases))
	for i, p := range sc.Phases {
		p.Duration = sinksim.Duration(max(2*time.Second, time.Duration(float64(p.Duration)*sc.Quick).Round(time.Second)))
		q.Phases[i] = p
	}
	q.Budgets = slicesClone(sc.Budgets[:min(len(sc.Budgets), sc.QuickBudgets)])
	return &q
}

// WithSeed is the scenario with another seed (0: its own).
func (sc *Scenario) WithSeed(seed uint64) *Scenario {
	q := *sc
	if seed != 0 {
		q.Seed = seed
	}
	return &q
}

// rateOf is node i's offered records/s in phase p.
func (p Phase) rateOf(i int) float64 {
	if i == 0 && p.HotFactor > 0 {
		return p.Rate * p.HotFactor
	}
	return p.Rate
}
