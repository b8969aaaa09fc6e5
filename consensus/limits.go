package consensus

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Limits are the cluster-wide settings the leader enforces. They live in the
// FSM, so every node has the same ones, and change only through SetLimits.
type Limits struct {
	// MaxBatchSize caps every node's batch size, in records.
	MaxBatchSize int `json:"max_batch_size"`
	// ClusterBudgetBytes is the in-flight batch bytes the whole cluster
	// may hold at once; the sum of all grants never exceeds it.
	ClusterBudgetBytes int64 `json:"cluster_budget_bytes"`
	// NodeFloorBytes is the least a node is granted (less when the budget
	// cannot give every node that much) and what a node falls back to when
	// its lease goes stale.
	NodeFloorBytes int64 `json:"node_floor_bytes"`
	// MaxGrowthPercent is how much a node's grant may grow in one epoch.
	MaxGrowthPercent int `json:"max_growth_percent"`
	// MaxGrowingNodes is how many nodes' grants may grow in one epoch.
	MaxGrowingNodes int `json:"max_growing_nodes"`
	// SLOms is the p99 end-to-end latency objective.
	SLOms int `json:"slo_ms"`
	// CPULimitPercent and MemLimitPercent trip the nodes' breakers.
	CPULimitPercent float64 `json:"cpu_limit_percent"`
	MemLimitPercent float64 `json:"mem_limit_percent"`
	// EpochMS is the time between budget epochs.
	EpochMS int `json:"epoch_ms"`
	// LeaseTTLms is how long a node trusts its grant after applying it.
	LeaseTTLms int `json:"lease_ttl_ms"`
	// BudgetMode is "learned" (the leader learns the budget, with
	// ClusterBudgetBytes as its ceiling) or "fixed" (the budget is
	// ClusterBudgetBytes). Empty, as in the limits of a cluster made before
	// the mode existed, means learned.
	BudgetMode string `json:"budget_mode,omitempty"`
}

// LearnedBudget reports whether the leader learns the budget.
func (l Limits) LearnedBudget() bool { return l.BudgetMode != BudgetFixed }

// DefaultLimits are the limits of a new cluster.
func DefaultLimits() Limits {
	return Limits{
		MaxBatchSize:       10000,
		ClusterBudgetBytes: 256 << 20,
		NodeFloorBytes:     4 << 20,
		MaxGrowthPercent:   50,
		MaxGrowingNodes:    2,
		SLOms:              500,
		CPULimitPercent:    85,
		MemLimitPercent:    85,
		EpochMS:            2000,
		LeaseTTLms:         6000,
		BudgetMode:         BudgetLearned,
	}
}

// ErrInvalidLimits is wrapped by every validation error.
var ErrInvalidLimits = errors.New("invalid limits")

// The bounds Validate enforces.
const (
	maxBudgetBytes = 1 << 50 // 1 PiB keeps every product in int64
	minEpochMS     = 100
	maxEpochMS     = 60_000
	maxLeaseTTLms  = 600_000
)

// Validate reports every out-of-range value, each naming the limit, the
// accepted range and the value given.
func (l Limits) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidLimits}, args...)...))
	}
	if l.MaxBatchSize < 1 || l.MaxBatchSize > 10_000_000 {
		bad("max_batch_size must be between 1 and 10000000, got %d", l.MaxBatchSize)
	}
	if l.ClusterBudgetBytes < 1024 || l.ClusterBudgetBytes > maxBudgetBytes {
		bad("cluster_budget_bytes must be between 1024 and %d, got %d", int64(maxBudgetBytes), l.ClusterBudgetBytes)
	}
	if l.NodeFloorBytes < 0 || l.NodeFloorBytes > l.ClusterBudgetBytes {
		bad("node_floor_bytes must be between 0 and cluster_budget_bytes (%d), got %d", l.ClusterBudgetBytes, l.NodeFloorBytes)
	}
	if l.MaxGrowthPercent < 1 || l.MaxGrowthPercent > 1000 {
		bad("max_growth_percent must be between 1 and 1000, got %d", l.MaxGrowthPercent)
	}
	if l.MaxGrowingNodes < 1 || l.MaxGrowingNodes > 10000 {
		bad("max_growing_nodes must be between 1 and 10000, got %d", l.MaxGrowingNodes)
	}
	if l.SLOms < 1 || l.SLOms > 3_600_000 {
		bad("slo_ms must be between 1 and 3600000, got %d", l.SLOms)
	}
	if !(l.CPULimitPercent > 0 && l.CPULimitPercent <= 100) {
		bad("cpu_limit_percent must be above 0 and at most 100, got %v", l.CPULimitPercent)
	}
	if !(l.MemLimitPercent > 0 && l.MemLimitPercent <= 100) {
		bad("mem_limit_percent must be above 0 and at most 100, got %v", l.MemLimitPercent)
	}
	if l.EpochMS < minEpochMS || l.EpochMS > maxEpochMS {
		bad("epoch_ms must be between %d and %d, got %d", minEpochMS, maxEpochMS, l.EpochMS)
	}
	if l.LeaseTTLms < 2*l.EpochMS || l.LeaseTTLms > maxLeaseTTLms {
		bad("lease_ttl_ms must be at least twice epoch_ms (%d) and at most %d, got %d", 2*l.EpochMS, maxLeaseTTLms, l.LeaseTTLms)
	}
	if l.BudgetMode != "" && l.BudgetMode != BudgetLearned && l.BudgetMode != BudgetFixed {
		bad("budget_mode must be %q or %q, got %q", BudgetLearned, BudgetFixed, l.BudgetMode)
	}
	return errors.Join(errs...)
}

// Epoch and LeaseTTL are EpochMS and LeaseTTLms as durations.
func (l Limits) Epoch() time.Duration    { return time.Duration(l.EpochMS) * time.Millisecond }
func (l Limits) LeaseTTL() time.Duration { return time.Duration(l.LeaseTTLms) * time.Millisecond }

// LimitsPatch changes some limits: a nil field is left as it is. It decodes
// from the same JSON names as Limits, so PUT /api/v1/limits can take a
// partial object.
type LimitsPatch struct {
	MaxBatchSize       *int     `json:"max_batch_size,omitempty"`
	ClusterBudgetBytes *int64   `json:"cluster_budget_bytes,omitempty"`
	NodeFloorBytes     *int64   `json:"node_floor_bytes,omitempty"`
	MaxGrowthPercent   *int     `json:"max_growth_percent,omitempty"`
	MaxGrowingNodes    *int     `json:"max_growing_nodes,omitempty"`
	SLOms              *int     `json:"slo_ms,omitempty"`
	CPULimitPercent    *float64 `json:"cpu_limit_percent,omitempty"`
	MemLimitPercent    *float64 `json:"mem_limit_percent,omitempty"`
	EpochMS            *int     `json:"epoch_ms,omitempty"`
	LeaseTTLms         *int     `json:"lease_ttl_ms,omitempty"`
	BudgetMode         *string  `json:"budget_mode,omitempty"`
}

// Apply returns l with the patch applied. It does not validate.
func (p LimitsPatch) Apply(l Limits) Limits {
	setIfGiven(&l.MaxBatchSize, p.MaxBatchSize)
	setIfGiven(&l.MaxGrowthPercent, p.MaxGrowthPercent)
	setIfGiven(&l.MaxGrowingNodes, p.MaxGrowingNodes)
	setIfGiven(&l.SLOms, p.SLOms)
	setIfGiven(&l.EpochMS, p.EpochMS)
	setIfGiven(&l.LeaseTTLms, p.LeaseTTLms)
	setIfGiven(&l.ClusterBudgetBytes, p.ClusterBudgetBytes)
	setIfGiven(&l.NodeFloorBytes, p.NodeFloorBytes)
	setIfGiven(&l.BudgetMode, p.BudgetMode)
	setIfGiven(&l.CPULimitPercent, p.CPULimitPercent)
	setIfGiven(&l.MemLimitPercent, p.MemLimitPercent)
	return l
}

// setIfGiven sets *dst to *v when v is given.
func setIfGiven[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// IsEmpty reports whether the patch changes nothing.
func (p LimitsPatch) IsEmpty() bool { return p == LimitsPatch{} }

// LimitNames lists the limits' names as the API and CLI spell them.
func LimitNames() []string {
	names := make([]string, 0, len(limitSetters))
	for n := range limitSetters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var limitSetters = map[string]func(p *LimitsPatch, v string) error{
	"max_batch_size":       intSetter(func(p *LimitsPatch) **int { return &p.MaxBatchSize }),
	"cluster_budget_bytes": int64Setter(func(p *LimitsPatch) **int64 { return &p.ClusterBudgetBytes }),
	"node_floor_bytes":     int64Setter(func(p *LimitsPatch) **int64 { return &p.NodeFloorBytes }),
	"max_growth_percent":   intSetter(func(p *LimitsPatch) **int { return &p.MaxGrowthPercent }),
	"max_growing_nodes":    intSetter(func(p *LimitsPatch) **int { return &p.MaxGrowingNodes }),
	"slo_ms":               intSetter(func(p *LimitsPatch) **int { return &p.SLOms }),
	"cpu_limit_percent":    floatSetter(func(p *LimitsPatch) **float64 { return &p.CPULimitPercent }),
	"mem_limit_percent":    floatSetter(func(p *LimitsPatch) **float64 { return &p.MemLimitPercent }),
	"epoch_ms":             intSetter(func(p *LimitsPatch) **int { return &p.EpochMS }),
	"lease_ttl_ms":         intSetter(func(p *LimitsPatch) **int { return &p.LeaseTTLms }),
	"budget_mode": func(p *LimitsPatch, v string) error {
		p.BudgetMode = &v
		return nil
	},
}

func intSetter(field func(*LimitsPatch) **int) func(*LimitsPatch, string) error {
	return func(p *LimitsPatch, v string) error {
		n, err := strconv.ParseInt(v, 10, 0)
		if err != nil || n > math.MaxInt32 || n < math.MinInt32 {
			return fmt.Errorf("%q is not a whole number", v)
		}
		i := int(n)
		*field(p) = &i
		return nil
	}
}

func int64Setter(field func(*LimitsPatch) **int64) func(*LimitsPatch, string) error {
	return func(p *LimitsPatch, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*field(p) = &n
		return nil
	}
}

func floatSetter(field func(*LimitsPatch) **float64) func(*LimitsPatch, string) error {
	return func(p *LimitsPatch, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", v)
		}
		*field(p) = &f
		return nil
	}
}

// Set sets one limit from its name and text value, as `batchpilot limits
// set KEY=VALUE` gives them.
func (p *LimitsPatch) Set(name, value string) error {
	set, ok := limitSetters[name]
	if !ok {
		return fmt.Errorf("%w: unknown limit %q (known: %s)", ErrInvalidLimits, name, strings.Join(LimitNames(), ", "))
	}
	if err := set(p, strings.TrimSpace(value)); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidLimits, name, err)
	}
	return nil
}

// ParseLimitsPatch reads KEY=VALUE arguments into a patch.
func ParseLimitsPatch(args []string) (LimitsPatch, error) {
	var p LimitsPatch
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return LimitsPatch{}, fmt.Errorf("%w: %q is not KEY=VALUE", ErrInvalidLimits, a)
		}
		if err := p.Set(strings.TrimSpace(k), v); err != nil {
			return LimitsPatch{}, err
		}
	}
	return p, nil
}
