package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeClock is a clock the tests step by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func ptr[T any](v T) *T                  { return &v }

type fsmHarness struct {
	t     *testing.T
	fsm   *fsm
	clock *fakeClock
	index uint64
}

func newHarness(t *testing.T) *fsmHarness {
	return &fsmHarness{t: t, fsm: newFSM(), clock: newFakeClock()}
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

// allocateCmd is an entry an older version wrote for every budget epoch.
func allocateCmd(id string) command {
	return command{Type: cmdAllocate, RequestID: id}
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

	// An old version's budget epoch is skipped: budgets are leases now.
	if r := h.apply(allocateCmd("a1")); r.err != nil {
		t.Fatal(r.err)
	}
	if got := h.fsm.limits(); got != want {
		t.Fatalf("an old allocation entry changed the limits to %+v", got)
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

	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot is taken are not in it.
	h.apply(command{Type: cmdSetLimits, RequestID: "p2", Patch: &LimitsPatch{MaxBatchSize: ptr(778)}})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	other := newHarness(t)
	if err := other.fsm.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if other.fsm.clusterID() != "c-9" || other.fsm.limits().MaxBatchSize != 777 {
		t.Fatalf("restored: cluster %q limits %+v", other.fsm.clusterID(), other.fsm.limits())
	}
	// The request ids came along: a retry is still a no-op after restore.
	if r := other.apply(command{Type: cmdSetLimits, RequestID: "p", Patch: &LimitsPatch{MaxBatchSize: ptr(1)}}); !r.duplicate {
		t.Fatalf("retry after restore: %+v, want a duplicate", r)
	}
	// A corrupt snapshot is refused.
	if err := other.fsm.Restore(io.NopCloser(strings.NewReader("{not json"))); err == nil {
		t.Fatal("a corrupt snapshot was restored")
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }
