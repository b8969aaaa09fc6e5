package consensus

import (
	"maps"
	"math/rand/v2"
	"testing"
)

const mib = 1 << 20

func TestFairShares(t *testing.T) {
	for _, tc := range []struct {
		name    string
		budget  int64
		demands []Demand
		want    Grants
	}{
		{"no nodes get nothing", 100, nil, Grants{}},
		{"a budget that suffices gives every node what it wants",
			100, []Demand{{ID: "a", Want: 30, Baseline: 10}, {ID: "b", Want: 50, Baseline: 10}},
			Grants{"a": 30, "b": 50}},
		{"a short budget is shared max-min fairly: the small want is met, the big ones split the rest",
			100, []Demand{{ID: "a", Want: 20, Baseline: 10}, {ID: "b", Want: 90, Baseline: 10}, {ID: "c", Want: 90, Baseline: 10}},
			Grants{"a": 20, "b": 40, "c": 40}},
		{"a node that wants less than its baseline still gets the baseline",
			100, []Demand{{ID: "a", Want: 1, Baseline: 10}, {ID: "b", Want: 200, Baseline: 10}},
			Grants{"a": 10, "b": 90}},
		{"baselines over the budget give just the baselines (they are reserved)",
			15, []Demand{{ID: "a", Want: 50, Baseline: 10}, {ID: "b", Want: 50, Baseline: 10}},
			Grants{"a": 10, "b": 10}},
		{"empty and repeated ids are ignored, negative figures count as zero",
			100, []Demand{{ID: "", Want: 50}, {ID: "a", Want: -5, Baseline: -1}, {ID: "a", Want: 99}},
			Grants{"a": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FairShares(tc.budget, tc.demands); !maps.Equal(got, tc.want) {
				t.Fatalf("FairShares = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFairSharesNeverExceedTheBudgetAboveTheBaselines(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		budget := r.Int64N(1 << 30)
		n := 1 + r.IntN(50)
		var ds []Demand
		var bases int64
		for i := range n {
			b := r.Int64N(budget/int64(n) + 1)
			bases += b
			ds = append(ds, Demand{ID: string(rune('A' + i)), Want: r.Int64N(budget + 1), Baseline: b})
		}
		g := FairShares(budget, ds)
		if g.Sum() > max(budget, bases) {
			t.Fatalf("shares %d over budget %d (baselines %d)", g.Sum(), budget, bases)
		}
		for _, d := range ds {
			if g[d.ID] < d.Baseline || g[d.ID] > max(d.Want, d.Baseline) {
				t.Fatalf("%s: share %d outside [baseline %d, want %d]", d.ID, g[d.ID], d.Baseline, d.Want)
			}
		}
	}
}

func TestGrant(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   GrantInput
		want int64
	}{
		{"the fair share when it is free",
			GrantInput{Budget: 100 * mib, Share: 40 * mib, Baseline: mib, Prev: 40 * mib, OthersHeld: 50 * mib}, 40 * mib},
		{"never capacity still held by others under unexpired leases",
			GrantInput{Budget: 100 * mib, Share: 60 * mib, Baseline: mib, Prev: 60 * mib, OthersHeld: 70 * mib}, 30 * mib},
		{"never below the baseline, which is reserved",
			GrantInput{Budget: 100 * mib, Share: 60 * mib, Baseline: 4 * mib, Prev: 0, OthersHeld: 99 * mib}, 4 * mib},
		{"growth is bounded per answer",
			GrantInput{Budget: 100 * mib, Share: 80 * mib, Baseline: mib, Prev: 10 * mib, MaxGrowthPercent: 50}, 15 * mib},
		{"a small grant grows from at least 64 KiB",
			GrantInput{Budget: 100 * mib, Share: 80 * mib, Baseline: 1, Prev: 0, MaxGrowthPercent: 100}, 1 + 64<<10},
		{"after a cut a node keeps its share out of what it holds, though others hold more than is free",
			GrantInput{Budget: 60 * mib, Share: 15 * mib, Baseline: mib, Prev: 25 * mib, Has: 25 * mib, OthersHeld: 75 * mib}, 15 * mib},
		{"but no more than it says it has",
			GrantInput{Budget: 60 * mib, Share: 15 * mib, Baseline: mib, Prev: 25 * mib, Has: mib, OthersHeld: 75 * mib}, mib},
		{"a shrinking share shrinks the grant at once",
			GrantInput{Budget: 100 * mib, Share: 5 * mib, Baseline: mib, Prev: 50 * mib, MaxGrowthPercent: 50}, 5 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Grant(tc.in); got != tc.want {
				t.Fatalf("Grant(%+v) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestBaseline(t *testing.T) {
	l := DefaultLimits() // 256 MiB budget, 4 MiB floor
	for _, tc := range []struct {
		name string
		n    int
		want int64
	}{
		{"few nodes get the floor", 3, 4 * mib},
		{"many nodes share half the budget", 1000, (128 * mib) / 1000},
		{"never zero", 1 << 40, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Baseline(l, tc.n)
			if got != tc.want {
				t.Fatalf("Baseline(%d) = %d, want %d", tc.n, got, tc.want)
			}
			if tc.n < 1<<30 && got*int64(tc.n) > l.ClusterBudgetBytes*MaxBaselineSharePercent/100 {
				t.Fatalf("%d baselines of %d exceed %d%% of the budget", tc.n, got, MaxBaselineSharePercent)
			}
		})
	}
}

func TestMulDiv(t *testing.T) {
	if got := mulDiv(1<<62, 1<<62, 1<<62); got != 1<<62 {
		t.Fatalf("mulDiv overflowed: %d", got)
	}
	if got := mulDiv(-1, 5, 5); got != 0 {
		t.Fatalf("mulDiv of a negative = %d", got)
	}
}
