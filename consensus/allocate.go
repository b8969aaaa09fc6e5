package consensus

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
)

// NodeDemand is one node's input to a budget epoch, in in-flight batch bytes.
type NodeDemand struct {
	ID   string
	Want int64 // what the node's controller would like to hold
	Has  int64 // what it holds now
}

// Grants maps a node id to the in-flight batch bytes it may hold.
type Grants map[string]int64

// Sum is the total of all grants.
func (g Grants) Sum() int64 {
	var s int64
	for _, v := range g {
		s += v
	}
	return s
}

// Clone returns a copy.
func (g Grants) Clone() Grants {
	out := make(Grants, len(g))
	for k, v := range g {
		out[k] = v
	}
	return out
}

// minGrowthBase is the least a grant's growth per epoch is computed from,
// so that a node with a zero floor can still grow.
const minGrowthBase = 64 << 10

// Floor is the per-node floor when n nodes share the budget:
// NodeFloorBytes, or an equal share of the budget when that is smaller.
func Floor(l Limits, n int) int64 {
	if n <= 0 {
		return l.NodeFloorBytes
	}
	return min(l.NodeFloorBytes, l.ClusterBudgetBytes/int64(n))
}

// Allocate is the leader's budget decision for one epoch. It is a pure
// function: the same inputs always give the same grants.
//
//  1. Share: every node gets the floor; the rest of the budget goes to the
//     nodes that want more than the floor, in proportion to how much more
//     (all of it when the budget suffices).
//  2. Growth: a grant may rise above max(previous grant, floor) for at most
//     MaxGrowingNodes nodes, those furthest below their share, and by at
//     most MaxGrowthPercent; the other nodes keep their previous grant or
//     shrink to their share.
//  3. Capacity: a grant never rises past what is free now. Each grant is at
//     most budget − Σhas + own has, and the nodes whose grant is above what
//     they hold share the free budget (budget − Σhas) in proportion to
//     their rise. A grant is never below the floor.
//
// The sum of the grants never exceeds the cluster budget. Demands with an
// empty or repeated id are ignored; wants, haves and previous grants are
// clamped to [0, budget].
func Allocate(l Limits, demands []NodeDemand, prev Grants) Grants {
	ds := normalize(l, demands)
	n := len(ds)
	out := make(Grants, n)
	if n == 0 {
		return out
	}
	budget := l.ClusterBudgetBytes
	floor := Floor(l, n)

	// 1. Proportional share above the floor.
	rest := budget - int64(n)*floor
	var sumExcess int64
	for _, d := range ds {
		sumExcess += max(0, d.Want-floor)
	}
	target := make([]int64, n)
	for i, d := range ds {
		excess := max(0, d.Want-floor)
		if sumExcess > rest {
			excess = mulDiv(excess, rest, sumExcess)
		}
		target[i] = floor + excess
	}

	// 2. At most K nodes grow, each by at most X %.
	grant := make([]int64, n)
	base := make([]int64, n)
	var growers []int
	for i, d := range ds {
		base[i] = max(min(prev[d.ID], budget), floor)
		if target[i] > base[i] {
			growers = append(growers, i)
		} else {
			grant[i] = target[i]
		}
	}
	slices.SortFunc(growers, func(a, b int) int {
		if c := cmp.Compare(target[b]-base[b], target[a]-base[a]); c != 0 {
			return c
		}
		return cmp.Compare(ds[a].ID, ds[b].ID)
	})
	for k, i := range growers {
		if k >= l.MaxGrowingNodes {
			grant[i] = base[i]
			continue
		}
		step := max(base[i], minGrowthBase) * int64(l.MaxGrowthPercent) / 100
		grant[i] = min(target[i], base[i]+step)
	}

	// 3. Nothing rises past what is free now.
	var sumHas int64
	for _, d := range ds {
		sumHas += d.Has
	}
	free := max(0, budget-sumHas)
	var sumRise int64
	for i, d := range ds {
		sumRise += max(0, grant[i]-d.Has)
	}
	for i, d := range ds {
		if rise := grant[i] - d.Has; rise > 0 && sumRise > free {
			grant[i] = d.Has + mulDiv(rise, free, sumRise)
		}
		grant[i] = min(grant[i], budget-sumHas+d.Has)
		out[d.ID] = max(grant[i], floor)
	}
	return out
}

// Relearn is the allocation of a new leader's learning mode: every node
// keeps its previous grant (raised to the floor), a node without one gets
// the floor. When that would exceed the budget (the budget was cut, or many
// nodes joined) it returns Allocate's answer instead, so the sum never
// exceeds the budget.
func Relearn(l Limits, demands []NodeDemand, prev Grants) Grants {
	ds := normalize(l, demands)
	floor := Floor(l, len(ds))
	out := make(Grants, len(ds))
	var sum int64
	for _, d := range ds {
		g := max(min(prev[d.ID], l.ClusterBudgetBytes), floor)
		out[d.ID] = g
		sum += g
		if sum > l.ClusterBudgetBytes {
			return Allocate(l, demands, prev)
		}
	}
	return out
}

// normalize sorts demands by id, drops empty and repeated ids and clamps
// the figures to [0, budget], so that no sum can overflow.
func normalize(l Limits, demands []NodeDemand) []NodeDemand {
	ds := make([]NodeDemand, 0, len(demands))
	seen := make(map[string]bool, len(demands))
	for _, d := range demands {
		if d.ID == "" || seen[d.ID] {
			continue
		}
		seen[d.ID] = true
		d.Want = min(max(d.Want, 0), l.ClusterBudgetBytes)
		d.Has = min(max(d.Has, 0), l.ClusterBudgetBytes)
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b NodeDemand) int { return cmp.Compare(a.ID, b.ID) })
	return ds
}

// mulDiv returns a*b/c rounded down for non-negative a, b and positive c,
// without overflowing in the product. It saturates if the result does not
// fit, which cannot happen when a <= c.
func mulDiv(a, b, c int64) int64 {
	if a <= 0 || b <= 0 || c <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(c))
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}
