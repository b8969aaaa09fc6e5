package consensus

import (
	"maps"
	"math"
	"math/rand/v2"
	"testing"
)

// smallLimits has round numbers so the expected grants can be worked out
// by hand. Allocate does not validate, so the budget may be below the
// minimum Validate asks of a real cluster.
func smallLimits(mut func(*Limits)) Limits {
	l := Limits{ClusterBudgetBytes: 1000, NodeFloorBytes: 100, MaxGrowthPercent: 1000, MaxGrowingNodes: 10}
	if mut != nil {
		mut(&l)
	}
	return l
}

func TestAllocate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  Limits
		demands []NodeDemand
		prev    Grants
		want    Grants
	}{
		{
			name:   "wants that fit in the budget are granted in full",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "a", Want: 300, Has: 300},
				{ID: "b", Want: 200, Has: 200},
			},
			prev: Grants{"a": 300, "b": 200},
			want: Grants{"a": 300, "b": 200},
		},
		{
			name:   "over-subscribed wants share what is above the floor in proportion",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "a", Want: 1000},
				{ID: "b", Want: 550},
			},
			prev: Grants{"a": 633, "b": 366},
			// rest 800 split 900:450 above the floor of 100.
			want: Grants{"a": 633, "b": 366},
		},
		{
			name:    "a node that wants nothing still gets the floor",
			limits:  smallLimits(nil),
			demands: []NodeDemand{{ID: "a"}, {ID: "b", Want: 400, Has: 400}},
			prev:    Grants{"a": 500, "b": 400},
			want:    Grants{"a": 100, "b": 400},
		},
		{
			name:    "the floor shrinks to an equal share when the budget cannot give every node the floor",
			limits:  smallLimits(func(l *Limits) { l.NodeFloorBytes = 400 }),
			demands: []NodeDemand{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d", Want: 900}},
			want:    Grants{"a": 250, "b": 250, "c": 250, "d": 250},
		},
		{
			name:   "at most K nodes grow in one epoch, the furthest below their share first",
			limits: smallLimits(func(l *Limits) { l.MaxGrowingNodes = 1 }),
			demands: []NodeDemand{
				{ID: "a", Want: 300, Has: 100},
				{ID: "b", Want: 500, Has: 100},
				{ID: "c", Want: 200, Has: 100},
			},
			prev: Grants{"a": 100, "b": 100, "c": 100},
			want: Grants{"a": 100, "b": 500, "c": 100},
		},
		{
			name:    "a grant grows by at most X percent in one epoch",
			limits:  smallLimits(func(l *Limits) { l.MaxGrowthPercent = 50; l.ClusterBudgetBytes = 1 << 20; l.NodeFloorBytes = 100 << 10 }),
			demands: []NodeDemand{{ID: "a", Want: 1 << 20, Has: 200 << 10}},
			prev:    Grants{"a": 200 << 10},
			want:    Grants{"a": 300 << 10},
		},
		{
			name:    "a new node grows from the floor",
			limits:  smallLimits(func(l *Limits) { l.MaxGrowthPercent = 50; l.ClusterBudgetBytes = 1 << 20; l.NodeFloorBytes = 100 << 10 }),
			demands: []NodeDemand{{ID: "a", Want: 1 << 20}},
			want:    Grants{"a": 150 << 10},
		},
		{
			name:   "growth never reaches past what the other nodes still hold",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "a", Want: 800, Has: 800},
				{ID: "b", Want: 500, Has: 100},
			},
			prev: Grants{"a": 800, "b": 100},
			// Shares are a 609, b 390; a still holds 800, so b may only
			// rise into the 100 bytes that are free.
			want: Grants{"a": 609, "b": 200},
		},
		{
			name:   "once the shrinking node has let go, the growing node gets its share",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "a", Want: 800, Has: 609},
				{ID: "b", Want: 500, Has: 200},
			},
			prev: Grants{"a": 609, "b": 200},
			want: Grants{"a": 609, "b": 390},
		},
		{
			name:   "the free budget is shared in proportion among the nodes that rise",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "a", Want: 450, Has: 400},
				{ID: "b", Want: 450, Has: 100},
				{ID: "c", Want: 100, Has: 200},
			},
			prev: Grants{"a": 400, "b": 100, "c": 100},
			// 300 is free; a would rise 50 and b 350, so each gets 3/4
			// of its rise (rounded down).
			want: Grants{"a": 437, "b": 362, "c": 100},
		},
		{
			name:   "an overshoot is taken back from every grant",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "a", Want: 700, Has: 700},
				{ID: "b", Want: 700, Has: 700},
			},
			prev: Grants{"a": 700, "b": 300},
			// 400 bytes over: each grant is at most 1000 − 1400 + 700.
			want: Grants{"a": 300, "b": 300},
		},
		{
			name:   "empty and repeated ids are ignored",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "", Want: 500},
				{ID: "a", Want: 200, Has: 200},
				{ID: "a", Want: 900, Has: 900},
			},
			prev: Grants{"a": 200},
			want: Grants{"a": 200},
		},
		{
			name:   "nodes that are gone lose their grants",
			limits: smallLimits(nil),
			demands: []NodeDemand{
				{ID: "a", Want: 200, Has: 200},
			},
			prev: Grants{"a": 200, "gone": 700},
			want: Grants{"a": 200},
		},
		{
			name:   "no nodes, no grants",
			limits: smallLimits(nil),
			want:   Grants{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Allocate(tc.limits, tc.demands, tc.prev)
			if !maps.Equal(got, tc.want) {
				t.Fatalf("Allocate = %v, want %v", got, tc.want)
			}
			if got.Sum() > tc.limits.ClusterBudgetBytes {
				t.Fatalf("grants sum to %d, over the budget %d", got.Sum(), tc.limits.ClusterBudgetBytes)
			}
		})
	}
}

func TestRelearn(t *testing.T) {
	demands := func(ids ...string) []NodeDemand {
		var ds []NodeDemand
		for _, id := range ids {
			ds = append(ds, NodeDemand{ID: id, Want: 1000, Has: 50})
		}
		return ds
	}
	for _, tc := range []struct {
		name    string
		limits  Limits
		demands []NodeDemand
		prev    Grants
		want    Grants
	}{
		{
			name:    "every node keeps its previous grant whatever it wants",
			limits:  smallLimits(nil),
			demands: demands("a", "b"),
			prev:    Grants{"a": 600, "b": 300},
			want:    Grants{"a": 600, "b": 300},
		},
		{
			name:    "a node without a grant gets the floor",
			limits:  smallLimits(nil),
			demands: demands("a", "b", "c"),
			prev:    Grants{"a": 600, "b": 300},
			want:    Grants{"a": 600, "b": 300, "c": 100},
		},
		{
			name:    "a grant below the floor is raised to it",
			limits:  smallLimits(nil),
			demands: demands("a", "b"),
			prev:    Grants{"a": 30, "b": 300},
			want:    Grants{"a": 100, "b": 300},
		},
		{
			name:    "a node that is gone loses its grant",
			limits:  smallLimits(nil),
			demands: demands("a"),
			prev:    Grants{"a": 600, "gone": 300},
			want:    Grants{"a": 600},
		},
		{
			name:    "when the old grants no longer fit the budget it allocates instead",
			limits:  smallLimits(func(l *Limits) { l.ClusterBudgetBytes = 800 }),
			demands: demands("a", "b"),
			prev:    Grants{"a": 600, "b": 300},
			want:    Allocate(smallLimits(func(l *Limits) { l.ClusterBudgetBytes = 800 }), demands("a", "b"), Grants{"a": 600, "b": 300}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Relearn(tc.limits, tc.demands, tc.prev)
			if !maps.Equal(got, tc.want) {
				t.Fatalf("Relearn = %v, want %v", got, tc.want)
			}
			if got.Sum() > tc.limits.ClusterBudgetBytes {
				t.Fatalf("grants sum to %d, over the budget %d", got.Sum(), tc.limits.ClusterBudgetBytes)
			}
		})
	}
}

// TestAllocateProperties checks the invariants on random inputs, including
// negative and enormous figures, with a fixed seed so a failure repeats.
func TestAllocateProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	figure := func(budget int64) int64 {
		switch rng.IntN(10) {
		case 0:
			return -rng.Int64N(1 << 40)
		case 1:
			return math.MaxInt64 - rng.Int64N(10)
		case 2:
			return 0
		default:
			return rng.Int64N(budget + budget/2 + 1)
		}
	}
	for iter := range 20000 {
		budget := 1024 + rng.Int64N(1<<40)
		if iter%4 == 0 {
			budget = 1024 + rng.Int64N(1<<14)
		}
		l := Limits{
			ClusterBudgetBytes: budget,
			NodeFloorBytes:     rng.Int64N(budget/4 + 1),
			MaxGrowthPercent:   1 + rng.IntN(1000),
			MaxGrowingNodes:    1 + rng.IntN(8),
		}
		n := rng.IntN(25)
		demands := make([]NodeDemand, n)
		prev := Grants{}
		for i := range demands {
			id := string(rune('a' + rng.IntN(26)))
			demands[i] = NodeDemand{ID: id, Want: figure(budget), Has: figure(budget)}
			if rng.IntN(4) > 0 {
				prev[id] = max(0, figure(budget))
			}
		}
		got := Allocate(l, demands, prev)
		ds := normalize(l, demands)
		floor := Floor(l, len(ds))
		if len(got) != len(ds) {
			t.Fatalf("iter %d: %d grants for %d distinct nodes", iter, len(got), len(ds))
		}
		if got.Sum() > budget {
			t.Fatalf("iter %d: grants sum to %d, over the budget %d\nlimits %+v\ndemands %+v\nprev %v\ngrants %v", iter, got.Sum(), budget, l, demands, prev, got)
		}
		var sumHas, rises int64
		for _, d := range ds {
			sumHas += d.Has
		}
		growing := 0
		for _, d := range ds {
			g := got[d.ID]
			base := max(min(prev[d.ID], budget), floor)
			if g < floor {
				t.Fatalf("iter %d: %s granted %d, below the floor %d", iter, d.ID, g, floor)
			}
			if g > base {
				growing++
			}
			if limit := base + max(base, minGrowthBase)*int64(l.MaxGrowthPercent)/100; g > limit {
				t.Fatalf("iter %d: %s grew from %d to %d, over %d%%", iter, d.ID, base, g, l.MaxGrowthPercent)
			}
			if g > floor {
				if g > budget-sumHas+d.Has {
					t.Fatalf("iter %d: %s granted %d, over budget − Σhas + has = %d", iter, d.ID, g, budget-sumHas+d.Has)
				}
				rises += max(0, g-d.Has)
			}
		}
		if growing > l.MaxGrowingNodes {
			t.Fatalf("iter %d: %d grants grew, more than %d", iter, growing, l.MaxGrowingNodes)
		}
		if rises > max(0, budget-sumHas) {
			t.Fatalf("iter %d: grants rise %d above what nodes hold, but only %d is free", iter, rises, budget-sumHas)
		}
		// The order of the demands does not matter.
		shuffled := append([]NodeDemand(nil), demands...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := Allocate(l, shuffled, prev); len(ds) == len(demands) && !maps.Equal(again, got) {
			t.Fatalf("iter %d: the order of the demands changed the grants: %v vs %v", iter, got, again)
		}
		if r := Relearn(l, demands, prev); r.Sum() > budget {
			t.Fatalf("iter %d: learning-mode grants sum to %d, over the budget %d", iter, r.Sum(), budget)
		}
	}
}

func TestMulDiv(t *testing.T) {
	for _, tc := range []struct{ a, b, c, want int64 }{
		{10, 10, 3, 33},
		{1 << 50, 1 << 50, 1 << 51, 1 << 49},
		{0, 5, 7, 0},
		{5, 0, 7, 0},
		{math.MaxInt64, math.MaxInt64, 1, math.MaxInt64},
	} {
		if got := mulDiv(tc.a, tc.b, tc.c); got != tc.want {
			t.Errorf("mulDiv(%d, %d, %d) = %d, want %d", tc.a, tc.b, tc.c, got, tc.want)
		}
	}
}
