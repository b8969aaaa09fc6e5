package tuner

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestDecisionLogKeepsTheNewestNewestFirst(t *testing.T) {
	l := NewDecisionLog(3)
	for i := 1; i <= 5; i++ {
		node := "a"
		if i%2 == 0 {
			node = "b"
		}
		l.Add(DecisionRecord{Node: node, NewSize: i})
	}
	sizes := func(rs []DecisionRecord) string {
		s := ""
		for _, r := range rs {
			s += fmt.Sprint(r.NewSize)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		node  string
		limit int
		want  string
	}{
		{"all nodes, no limit", "", 0, "543"},
		{"limit", "", 2, "54"},
		{"one node", "a", 10, "53"},
		{"other node", "b", 0, "4"},
		{"unknown node", "z", 0, ""},
	} {
		if got := sizes(l.Recent(tc.node, tc.limit)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if l.Len() != 3 {
		t.Errorf("Len %d, want 3", l.Len())
	}
}

func TestDecisionRecordJSONIsSnakeCase(t *testing.T) {
	obs := Observation{
		Now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), BatchSize: 100,
		ArrivalRate: 10, Throughput: 9, Goodput: 8, P99: 250 * time.Millisecond,
		CPUPercent: 12, MemPercent: 34, QueueDepth: 56,
		Batches: 3, MeanBatchTime: 40 * time.Millisecond,
	}
	r := NewDecisionRecord("n1", "gradient", obs, Decision{BatchSize: 125, Reason: "model", WriteTime: 45 * time.Millisecond})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{
		"node": "n1", "controller": "gradient", "old_size": 100.0, "new_size": 125.0, "reason": "model",
		"arrival_rps": 10.0, "throughput_rps": 9.0, "goodput_rps": 8.0, "p99_ms": 250.0,
		"cpu_percent": 12.0, "mem_percent": 34.0, "queue_depth": 56.0, "breaker": "closed",
		"time": "2026-01-02T03:04:05Z", "write_ms": 40.0, "expected_write_ms": 45.0,
	} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

// TestDecisionRecordSaysTheWriteMeasuredAndTheWriteExpected: the write
// measured is the successful attempts' mean RTT when the sink reports
// attempts (a batch's time includes its waits for Retry-After); an
// interval in which no write finished, and a controller that expects
// nothing, leave the fields out.
func TestDecisionRecordSaysTheWriteMeasuredAndTheWriteExpected(t *testing.T) {
	obs := Observation{BatchSize: 100, Batches: 2, MeanBatchTime: 2 * time.Second, Attempts: []Attempt{
		{RTT: 30 * time.Millisecond, Records: 100, Outcome: AttemptOK},
		{RTT: 50 * time.Millisecond, Records: 100, Outcome: AttemptOK},
		{RTT: 5 * time.Millisecond, Records: 100, Outcome: AttemptBackpressure},
	}}
	r := NewDecisionRecord("n1", "gradient", obs, Decision{BatchSize: 200, WriteTime: 70 * time.Millisecond})
	if r.WriteMs != 40 || r.ExpectedWriteMs != 70 {
		t.Errorf("write %v ms, expected %v ms; want 40 (the attempts' mean, not the batches' 2 s) and 70", r.WriteMs, r.ExpectedWriteMs)
	}
	b, _ := json.Marshal(NewDecisionRecord("n1", "aimd", Observation{BatchSize: 100}, Decision{BatchSize: 50}))
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"write_ms", "expected_write_ms"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present with no write finished and none expected: %s", k, b)
		}
	}
}

func TestDecisionLogIsSafeForConcurrentUse(t *testing.T) {
	l := NewDecisionLog(64)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				l.Add(DecisionRecord{Node: "n", NewSize: i})
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if rs := l.Recent("n", 10); len(rs) > 10 {
					t.Errorf("%d records for a limit of 10", len(rs))
					return
				}
			}
		}()
	}
	wg.Wait()
	if l.Len() != 64 {
		t.Errorf("Len %d, want 64", l.Len())
	}
}
