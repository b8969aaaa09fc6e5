package consensus

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
)

// Demand is one node's input to the allocator, in in-flight batch bytes.
type Demand struct {
	ID       string
	Want     int64 // what the node's controller would like to hold
	Baseline int64 // what it is sure of: its share never falls below it
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

// MaxBaselineSharePercent is the most of the budget the baselines together
// may take: a node's baseline is the per-node floor, or an equal share of
// this part of the budget when the floor times the nodes would be more.
const MaxBaselineSharePercent = 50

// InitialBaseline is what a node holds before its first lease, and what the
// leader reserves for a member it has not heard from yet: one byte, which
// the node reads as one record at a time (a batch of one may always start
// when nothing is in flight). The node does not know the budget before a
// leader tells it, so nothing larger would be safe for any budget.
const InitialBaseline = 1

// Baseline is the safe baseline of each of n nodes: the node floor, but
// never so much that n baselines exceed MaxBaselineSharePercent of the
// budget, nor less than one byte.
func Baseline(l Limits, n int) int64 {
	share := mulDiv(l.ClusterBudgetBytes, MaxBaselineSharePercent, 100)
	if n > 0 {
		share /= int64(n)
	}
	return max(1, min(l.NodeFloorBytes, share))
}

// FairShares divides budget among the demands by max-min fairness (water
// filling): every node first gets its baseline, then the rest is shared so
// that no node gets more than it wants and no node that wants more gets
// less than any other's share above its baseline. It is a pure function:
// the same inputs always give the same shares, in any order. When the
// baselines alone exceed the budget every node gets just its baseline
// (they are reserved; the leader keeps their sum within the budget).
//
// Demands with an empty or repeated id are ignored; negative figures count
// as zero.
func FairShares(budget int64, demands []Demand) Grants {
	ds := normalizeDemands(demands)
	out := make(Grants, len(ds))
	rest := max(budget, 0)
	for _, d := range ds {
		out[d.ID] = d.Baseline
		rest -= d.Baseline
	}
	if rest <= 0 {
		return out
	}
	// Extra each node would like above its baseline, smallest first.
	type extra struct {
		id   string
		want int64
	}
	var xs []extra
	for _, d := range ds {
		if w := d.Want - d.Baseline; w > 0 {
			xs = append(xs, extra{d.ID, w})
		}
	}
	slices.SortFunc(xs, func(a, b extra) int {
		if c := cmp.Compare(a.want, b.want); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	for i, x := range xs {
		left := int64(len(xs) - i)
		level := rest / left
		give := min(x.want, level)
		if i == len(xs)-1 {
			give = min(x.want, rest)
		}
		out[x.id] += give
		rest -= give
	}
	return out
}

// GrantInput is what the leader knows when it answers one lease request.
type GrantInput struct {
	Budget   int64
	Share    int64 // the node's fair share (FairShares)
	Baseline int64 // the node's baseline now
	// Prev is the grant the node holds now (0: none).
	Prev int64
	// OthersHeld is what every other node may be holding now: its grant
	// while its lease is unexpired on the leader's clock, its baseline
	// otherwise, and the initial baseline for members not heard from.
	OthersHeld int64
	// MaxGrowthPercent bounds how much a grant rises in one answer above
	// max(Prev, Baseline) (from the limits; 0: no bound).
	MaxGrowthPercent int
	// Has is what the node says it holds (0: nothing it may keep).
	Has int64
}

// minGrowthBase is the least a grant's growth is computed from, so that a
// node with a small grant can still grow.
const minGrowthBase = 64 << 10

// Grant is the leader's answer to one lease request. It is a pure function:
//
//  1. the node's target is its fair share, raised to its baseline;
//  2. a grant rises at most MaxGrowthPercent above max(Prev, Baseline);
//  3. it never hands out capacity still held by others: the grant is at
//     most Budget − OthersHeld (Doorman's rule);
//  4. but out of what it holds (Prev, and what it says it Has: a node
//     whose lease ran out on its own clock is on its baseline while the
//     leader still counts the grant) the node keeps up to its target, so
//     that the sum of the holdings does not grow. Doorman's rule alone
//     squeezes every node that asks after a cut of the budget, before the
//     others have, down to its baseline: the others still hold their
//     grants under the old budget (the cluster bench: four of five nodes
//     on 8 KiB for a second or two after a cut from 232 to 142 KiB,
//     goodput from 5,800 to 800 records/s);
//  5. it is never below the baseline, which is reserved for the node
//     already (the leader counts every node's baseline in OthersHeld of
//     the others).
func Grant(in GrantInput) int64 {
	base := max(in.Baseline, 0)
	target := max(in.Share, base)
	g := target
	if in.MaxGrowthPercent > 0 {
		from := max(in.Prev, base)
		g = min(g, from+mulDiv(max(from, minGrowthBase), int64(in.MaxGrowthPercent), 100))
	}
	g = min(g, in.Budget-max(in.OthersHeld, 0))
	g = max(g, min(target, in.Prev, in.Has))
	return max(g, base)
}

// normalizeDemands sorts demands by id, drops empty and repeated ids and
// clamps negative figures to zero (a want below the baseline counts as the
// baseline).
func normalizeDemands(demands []Demand) []Demand {
	ds := make([]Demand, 0, len(demands))
	seen := make(map[string]bool, len(demands))
	for _, d := range demands {
		if d.ID == "" || seen[d.ID] {
			continue
		}
		seen[d.ID] = true
		d.Baseline = max(d.Baseline, 0)
		d.Want = max(d.Want, d.Baseline)
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b Demand) int { return cmp.Compare(a.ID, b.ID) })
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
