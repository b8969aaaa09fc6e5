package consensus

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// FuzzApply feeds the FSM any sequence of log entries (one a line) after a
// valid init: whatever they hold, Apply must not panic and the limits must
// stay valid.
func FuzzApply(f *testing.F) {
	for _, c := range []command{
		{Type: cmdSetLimits, RequestID: "r1", Patch: &LimitsPatch{ClusterBudgetBytes: ptr(int64(1 << 20))}},
		allocateCmd("a1"),
		{Type: "unknown"},
	} {
		b, _ := json.Marshal(c)
		f.Add(b)
	}
	f.Add([]byte(`{"type":"allocate","allocation":{"epoch":3,"grants":{"me":-5},"budget":-1}}` + "\n" + `{"type":"set_limits","patch":{"cluster_budget_bytes":1}}`))
	f.Add([]byte("not json\n{}\n{\"type\":\"init\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		clock := newFakeClock()
		m := newFSM()
		init, _ := json.Marshal(command{Type: cmdInit, RequestID: "init", Limits: ptr(DefaultLimits())})
		m.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: init, AppendedAt: clock.now()})
		for i, line := range bytes.Split(data, []byte{'\n'}) {
			m.Apply(&raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: line, AppendedAt: clock.now()})
			clock.add(time.Second)
		}
		m.mu.Lock()
		limits := m.limitsLocked()
		m.mu.Unlock()
		if err := limits.Validate(); err != nil {
			t.Fatalf("limits in force are invalid: %v (%+v)", err, limits)
		}
	})
}

// FuzzParseLimitsPatch reads any KEY=VALUE list (as --initial-limits and
// `batchpilot limits set` take it): an error, or a patch whose result is
// either valid or refused by Validate; never a panic.
func FuzzParseLimitsPatch(f *testing.F) {
	f.Add("cluster_budget_bytes=67108864,epoch_ms=1000")
	f.Add("cpu_limit_percent=100,mem_limit_percent=100")
	f.Add("lease_ttl_ms=-1,=,x")
	f.Add("budget_mode=fixed,budget_mode=learnt")
	f.Add("max_batch_size=99999999999999999999")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseLimitsPatch(strings.Split(s, ","))
		if err != nil {
			return
		}
		_ = p.Apply(DefaultLimits()).Validate()
	})
}
