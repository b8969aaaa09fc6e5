package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeClock is a clock the tests step by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time                  { return c.t }
func (c *fakeClock) add(d time.Duration)             { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock                       { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func ptr[T any](v T) *T                              { return &v }
func (c *fakeClock) since(d time.Duration) time.Time { return c.t.Add(-d) }

type fsmHarness struct {
	t     *testing.T
	fsm   *fsm
	lease *Lease
	clock *fakeClock
	index uint64
}

func newHarness(t *testing.T) *fsmHarness {
	clock := newFakeClock()
	lease := NewLease(1 << 20)
	return &fsmHarness{t: t, fsm: newFSM("me", lease, clock.now), lease: lease, clock: clock}
}

// apply applies a command as Raft would, stamped as appended at appended.
func (h *fsmHarness) applyAt(c command, appended time.Time) *fsmResponse {
	h.t.Helper()
	data, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	resp := h.fsm.Apply(&raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: appended})
	r, ok := resp.(*fsmResponse)
	if !ok {
		h.t.Fatalf("Apply returned %T", resp)
	}
	return r
}

func (h *fsmHarness) apply(c command) *fsmResponse { return h.applyAt(c, h.clock.now()) }

func allocateCmd(id string, epoch uint64, grants Grants) command {
	return command{Type: cmdAllocate, RequestID: id, Allocation: &Allocation{Epoch: epoch, Grants: grants, Floor: 1 << 20, Budget: 256 << 20, LeaderID: "leader"}}
}

func TestFSMStartsWithDefaultLimits(t *testing.T) {
	h := newHarness(t)
	if got := h.fsm.limits(); got != DefaultLimits() {
		t.Fatalf("limits = %+v, want the defaults", got)
	}
	if h.fsm.limitsSet() || h.fsm.clusterID() != "" {
		t.Fatal("a new FSM claims to be initialised")
	}
}

func TestFSMApply(t *testing.T) {
	h := newHarness(t)
	init := DefaultLimits()
	init.EpochMS = 500
	init.LeaseTTLms = 1500
	if r := h.apply(command{Type: cmdInit, RequestID: "i1", ClusterID: "c-1", Limits: &init}); r.err != nil {
		t.Fatal(r.err)
	}
	if h.fsm.clusterID() != "c-1" || h.fsm.limits() != init {
		t.Fatalf("after init: cluster %q limits %+v", h.fsm.clusterID(), h.fsm.limits())
	}
	// A second init (a later leader) changes nothing.
	if r := h.apply(command{Type: cmdInit, RequestID: "i2", ClusterID: "c-2", Limits: ptr(DefaultLimits())}); r.err != nil {
		t.Fatal(r.err)
	}
	if h.fsm.clusterID() != "c-1" || h.fsm.limits() != init {
		t.Fatal("a second init replaced the first")
	}

	// A patch changes only what it names.
	r := h.apply(command{Type: cmdSetLimits, RequestID: "p1", Patch: &LimitsPatch{MaxGrowingNodes: ptr(3), SLOms: ptr(250)}})
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := init
	want.MaxGrowingNodes, want.SLOms = 3, 250
	if got := h.fsm.limits(); got != want {
		t.Fatalf("after patch: %+v, want %+v", got, want)
	}

	// An invalid patch is refused with a clear error and changes nothing.
	r = h.apply(command{Type: cmdSetLimits, RequestID: "p2", Patch: &LimitsPatch{MaxGrowthPercent: ptr(0), SLOms: ptr(1)}})
	if r.err == nil || !errors.Is(r.err, ErrInvalidLimits) || !strings.Contains(r.err.Error(), "max_growth_percent") {
		t.Fatalf("invalid patch: err = %v", r.err)
	}
	if got := h.fsm.limits(); got != want {
		t.Fatalf("an invalid patch changed the limits to %+v", got)
	}

	// Allocations advance the epoch and record the index.
	if r := h.apply(allocateCmd("a1", 1, Grants{"me": 5 << 20, "other": 7 << 20})); r.err != nil {
		t.Fatal(r.err)
	}
	a := h.fsm.allocation()
	if a.Epoch != 1 || a.Index != h.index || !maps.Equal(a.Grants, Grants{"me": 5 << 20, "other": 7 << 20}) {
		t.Fatalf("allocation = %+v", a)
	}
	// A stale epoch (a deposed leader's late proposal) is refused.
	if r := h.apply(allocateCmd("a0", 1, Grants{"me": 1})); !errors.Is(r.err, errStaleEpoch) {
		t.Fatalf("stale epoch: err = %v", r.err)
	}
	// So is an allocation over the budget.
	if r := h.apply(allocateCmd("a2", 2, Grants{"me": want.ClusterBudgetBytes, "other": 1})); r.err == nil {
		t.Fatal("an allocation over the budget was applied")
	}
	if got := h.fsm.allocation().Epoch; got != 1 {
		t.Fatalf("refused allocations moved the epoch to %d", got)
	}
	if r := h.apply(command{Type: "bogus", RequestID: "b"}); r.err == nil {
		t.Fatal("an unknown command was applied")
	}
}

func TestFSMRepeatedRequestIDIsANoOp(t *testing.T) {
	h := newHarness(t)
	patch := &LimitsPatch{SLOms: ptr(300)}
	if r := h.apply(command{Type: cmdSetLimits, RequestID: "same", Patch: patch}); r.err != nil || r.duplicate {
		t.Fatalf("first apply: %+v", r)
	}
	// Someone else changes the SLO; the retry of the first request must not
	// undo that.
	if r := h.apply(command{Type: cmdSetLimits, RequestID: "other", Patch: &LimitsPatch{SLOms: ptr(400)}}); r.err != nil {
		t.Fatal(r.err)
	}
	r := h.apply(command{Type: cmdSetLimits, RequestID: "same", Patch: patch})
	if r.err != nil || !r.duplicate {
		t.Fatalf("retry: %+v, want a duplicate", r)
	}
	if got := h.fsm.limits().SLOms; got != 400 {
		t.Fatalf("the retried request was applied again: slo_ms = %d", got)
	}
	// A request that failed is not remembered: fixing it and sending it
	// again with the same id works.
	if r := h.apply(command{Type: cmdSetLimits, RequestID: "bad", Patch: &LimitsPatch{SLOms: ptr(-1)}}); r.err == nil {
		t.Fatal("slo_ms -1 applied")
	}
	if r := h.apply(command{Type: cmdSetLimits, RequestID: "bad", Patch: &LimitsPatch{SLOms: ptr(600)}}); r.err != nil || r.duplicate {
		t.Fatalf("retry of a refused request: %+v", r)
	}
}

func TestFSMForgetsOldRequestIDs(t *testing.T) {
	h := newHarness(t)
	for i := range maxRequestIDs + 10 {
		h.fsm.remember(strings.Repeat("x", 1) + string(rune(0x1000+i)))
	}
	if n := len(h.fsm.state.Requests); n != maxRequestIDs || len(h.fsm.seen) != maxRequestIDs {
		t.Fatalf("remembers %d ids (%d indexed), want %d", n, len(h.fsm.seen), maxRequestIDs)
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	h := newHarness(t)
	h.apply(command{Type: cmdInit, RequestID: "i", ClusterID: "c-9", Limits: ptr(DefaultLimits())})
	h.apply(command{Type: cmdSetLimits, RequestID: "p", Patch: &LimitsPatch{MaxBatchSize: ptr(777)}})
	h.apply(allocateCmd("a", 4, Grants{"me": 3 << 20, "x": 2 << 20}))

	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot is taken are not in it.
	h.apply(allocateCmd("a5", 5, Grants{"me": 9}))
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	other := newHarness(t)
	if err := other.fsm.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if other.fsm.clusterID() != "c-9" || other.fsm.limits().MaxBatchSize != 777 || other.fsm.allocation().Epoch != 4 {
		t.Fatalf("restored: cluster %q limits %+v allocation %+v", other.fsm.clusterID(), other.fsm.limits(), other.fsm.allocation())
	}
	// The request ids came along: a retry is still a no-op after restore.
	if r := other.apply(command{Type: cmdSetLimits, RequestID: "p", Patch: &LimitsPatch{MaxBatchSize: ptr(1)}}); !r.duplicate {
		t.Fatalf("retry after restore: %+v, want a duplicate", r)
	}
	// A restored allocation is history: it does not make the lease fresh.
	if _, fresh := other.lease.Grant(other.clock.now()); fresh {
		t.Fatal("restoring a snapshot renewed the lease")
	}
	// A corrupt snapshot is refused.
	if err := other.fsm.Restore(io.NopCloser(strings.NewReader("{not json"))); err == nil {
		t.Fatal("a corrupt snapshot was restored")
	}
}

func TestFSMRenewsTheLocalLease(t *testing.T) {
	h := newHarness(t)
	ttl := DefaultLimits().LeaseTTL()

	// An allocation without this node leaves the lease alone.
	h.apply(allocateCmd("a1", 1, Grants{"other": 5 << 20}))
	if _, fresh := h.lease.Grant(h.clock.now()); fresh {
		t.Fatal("an allocation without this node renewed its lease")
	}

	h.apply(allocateCmd("a2", 2, Grants{"me": 5 << 20}))
	if b, fresh := h.lease.Grant(h.clock.now()); !fresh || b != 5<<20 {
		t.Fatalf("after an allocation with this node: %d %v", b, fresh)
	}
	h.clock.add(ttl - time.Millisecond)
	if _, fresh := h.lease.Grant(h.clock.now()); !fresh {
		t.Fatal("lease stale before its TTL")
	}
	h.clock.add(time.Millisecond)
	if b, fresh := h.lease.Grant(h.clock.now()); fresh || b != 1<<20 {
		t.Fatalf("at the TTL: %d %v, want the floor 1 MiB and stale", b, fresh)
	}

	// An entry the leader appended longer than a TTL ago is a replayed log,
	// not a fresh epoch.
	h.applyAt(allocateCmd("a3", 3, Grants{"me": 8 << 20}), h.clock.since(ttl+time.Second))
	if _, fresh := h.lease.Grant(h.clock.now()); fresh {
		t.Fatal("a replayed old allocation renewed the lease")
	}
}

func TestFSMCutBudgetShrinksTheGrantsInForce(t *testing.T) {
	h := newHarness(t)
	h.apply(allocateCmd("a", 1, Grants{"me": 100 << 20, "other": 100 << 20}))
	if b, fresh := h.lease.Grant(h.clock.now()); !fresh || b != 100<<20 {
		t.Fatalf("lease before the cut: %d %v", b, fresh)
	}
	if r := h.apply(command{Type: cmdSetLimits, RequestID: "cut", Patch: &LimitsPatch{ClusterBudgetBytes: ptr(int64(100 << 20))}}); r.err != nil {
		t.Fatal(r.err)
	}
	a := h.fsm.allocation()
	if a.Grants.Sum() > 100<<20 || a.Grants["me"] != 50<<20 || a.Budget != 100<<20 {
		t.Fatalf("after the cut: %+v", a)
	}
	if b, fresh := h.lease.Grant(h.clock.now()); !fresh || b != 50<<20 {
		t.Fatalf("lease after the cut: %d %v, want the shrunk grant, still fresh", b, fresh)
	}
	// Raising the budget leaves the grants alone until the next epoch.
	h.apply(command{Type: cmdSetLimits, RequestID: "raise", Patch: &LimitsPatch{ClusterBudgetBytes: ptr(int64(1 << 30))}})
	if got := h.fsm.allocation().Grants["me"]; got != 50<<20 {
		t.Fatalf("raising the budget changed a grant to %d", got)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMBaselineFollowsTheClustersFloorBeforeTheFirstEpoch(t *testing.T) {
	h := newHarness(t) // the lease starts on a baseline of 1 MiB
	baseline := func() int64 {
		b, fresh := h.lease.Grant(h.clock.now())
		if fresh {
			t.Fatal("a lease without a grant is fresh")
		}
		return b
	}
	small := DefaultLimits()
	small.ClusterBudgetBytes, small.NodeFloorBytes = 160<<10, 16<<10
	h.apply(command{Type: cmdInit, RequestID: "init", ClusterID: "c", Limits: &small})
	if b := baseline(); b != 16<<10 {
		t.Fatalf("baseline after init with a 16 KiB floor: %d", b)
	}
	// A higher floor waits for an epoch that reserves it; a lower one is at once.
	h.apply(command{Type: cmdSetLimits, RequestID: "up", Patch: &LimitsPatch{NodeFloorBytes: ptr(int64(64 << 10))}})
	if b := baseline(); b != 16<<10 {
		t.Fatalf("baseline after the floor was raised: %d, want 16 KiB until an epoch", b)
	}
	h.apply(command{Type: cmdSetLimits, RequestID: "down", Patch: &LimitsPatch{NodeFloorBytes: ptr(int64(8 << 10))}})
	if b := baseline(); b != 8<<10 {
		t.Fatalf("baseline after the floor was cut: %d", b)
	}
}
