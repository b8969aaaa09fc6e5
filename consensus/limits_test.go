package consensus

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDefaultLimitsAreValid(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		patch LimitsPatch
		want  string // a phrase the error must contain
	}{
		{"zero max batch size", LimitsPatch{MaxBatchSize: ptr(0)}, "max_batch_size must be between 1 and"},
		{"a budget under 1 KiB", LimitsPatch{ClusterBudgetBytes: ptr(int64(1000))}, "cluster_budget_bytes must be between 1024"},
		{"a floor above the budget", LimitsPatch{NodeFloorBytes: ptr(int64(1 << 40))}, "node_floor_bytes must be between 0 and cluster_budget_bytes"},
		{"negative floor", LimitsPatch{NodeFloorBytes: ptr(int64(-1))}, "node_floor_bytes"},
		{"zero growth", LimitsPatch{MaxGrowthPercent: ptr(0)}, "max_growth_percent must be between 1 and 1000, got 0"},
		{"no growing nodes", LimitsPatch{MaxGrowingNodes: ptr(0)}, "max_growing_nodes"},
		{"zero SLO", LimitsPatch{SLOms: ptr(0)}, "slo_ms"},
		{"CPU over 100", LimitsPatch{CPULimitPercent: ptr(101.0)}, "cpu_limit_percent"},
		{"memory zero", LimitsPatch{MemLimitPercent: ptr(0.0)}, "mem_limit_percent"},
		{"epoch too short", LimitsPatch{EpochMS: ptr(10)}, "epoch_ms must be between 100 and 60000, got 10"},
		{"lease shorter than two epochs", LimitsPatch{LeaseTTLms: ptr(3000)}, "lease_ttl_ms must be at least twice epoch_ms (4000)"},
		{"an unknown budget mode", LimitsPatch{BudgetMode: ptr("adaptive")}, `budget_mode must be "learned" or "fixed", got "adaptive"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.patch.Apply(DefaultLimits()).Validate()
			if err == nil || !errors.Is(err, ErrInvalidLimits) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want ErrInvalidLimits mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseLimitsPatch(t *testing.T) {
	p, err := ParseLimitsPatch([]string{"max_batch_size=2000", "cpu_limit_percent=72.5", "cluster_budget_bytes=1073741824"})
	if err != nil {
		t.Fatal(err)
	}
	l := p.Apply(DefaultLimits())
	if l.MaxBatchSize != 2000 || l.CPULimitPercent != 72.5 || l.ClusterBudgetBytes != 1<<30 || l.SLOms != DefaultLimits().SLOms {
		t.Fatalf("patched limits = %+v", l)
	}
	for _, tc := range []struct{ arg, want string }{
		{"nope=1", `unknown limit "nope"`},
		{"max_batch_size", "is not KEY=VALUE"},
		{"max_batch_size=lots", `max_batch_size: "lots" is not a whole number`},
		{"cpu_limit_percent=NaN", "cpu_limit_percent"},
	} {
		if _, err := ParseLimitsPatch([]string{tc.arg}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLimitsPatch(%q) error = %v, want it to mention %q", tc.arg, err, tc.want)
		}
	}
}

func TestLimitsPatchJSONUsesTheLimitNames(t *testing.T) {
	var p LimitsPatch
	if err := json.Unmarshal([]byte(`{"slo_ms": 250, "max_growing_nodes": 4}`), &p); err != nil {
		t.Fatal(err)
	}
	if p.SLOms == nil || *p.SLOms != 250 || p.MaxGrowingNodes == nil || *p.MaxGrowingNodes != 4 || p.EpochMS != nil {
		t.Fatalf("decoded patch = %+v", p)
	}
	b, _ := json.Marshal(DefaultLimits())
	for _, name := range LimitNames() {
		if !strings.Contains(string(b), `"`+name+`"`) {
			t.Errorf("Limits JSON has no %q", name)
		}
	}
	if (LimitsPatch{}).IsEmpty() != true || p.IsEmpty() {
		t.Error("IsEmpty is wrong")
	}
}
