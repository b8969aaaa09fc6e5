package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

func TestLastRecord(t *testing.T) {
	prefix := []byte(`"id":"run7-`)
	for _, tc := range []struct {
		name string
		body string
		last int64
		n    int
		ok   bool
	}{
		{"one record", `{"id":"run7-41","ts":"x"}`, 41, 1, true},
		{"the last of three, trailing newline", "{\"id\":\"run7-1\"}\n{\"id\":\"run7-2\"}\n{\"id\":\"run7-3\",\"msg\":\"a\"}\n", 3, 3, true},
		{"the id need not come first", `{"msg":"a","id":"run7-9"}`, 9, 1, true},
		{"another run's ids are not ours", `{"id":"run8-9"}`, 0, 0, false},
		{"no id", `{"msg":"a"}`, 0, 0, false},
		{"not a number", `{"id":"run7-x"}`, 0, 0, false},
		{"empty id", `{"id":"run7-"}`, 0, 0, false},
		{"empty body", "\n", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			last, n, ok := lastRecord([]byte(tc.body), prefix)
			if last != tc.last || n != tc.n || ok != tc.ok {
				t.Errorf("lastRecord = %d, %d, %v; want %d, %d, %v", last, n, ok, tc.last, tc.n, tc.ok)
			}
		})
	}
}

func FuzzLastRecord(f *testing.F) {
	f.Add([]byte("{\"id\":\"r-1\"}\n{\"id\":\"r-2\"}"))
	f.Add([]byte(`{"id":"r-`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		last, n, ok := lastRecord(body, []byte(`"id":"r-`))
		if ok && (last < 0 || n < 1) {
			t.Errorf("lastRecord = %d, %d, true", last, n)
		}
	})
}

func f64(v float64) *float64 { return &v }

// The rebuilt schedule must be loadgen's: the same requests (last record
// and size) and no request leaving before its rebuilt intended time.
func TestScheduleIsLoadgens(t *testing.T) {
	ms := func(n int) loadgen.Duration { return loadgen.Duration(time.Duration(n) * time.Millisecond) }
	sc := &loadgen.Scenario{Name: "mix", Seed: 3, Phases: []loadgen.Phase{
		{Name: "constant", Rate: 3000, Duration: ms(300), Batch: 7},
		{Name: "burst", Pattern: "burst", From: f64(1000), Rate: 8000, BurstEvery: ms(100), BurstFor: ms(50), Duration: ms(400), Batch: 10},
		{Name: "ramp", Pattern: "ramp", Rate: 5000, Duration: ms(200), Batch: 13},
		{Name: "step", Pattern: "step", Rate: 4000, Steps: 3, Duration: ms(300), Batch: 20},
		{Name: "spike", Pattern: "spike", Rate: 6000, Duration: ms(300), Batch: 9},
		{Name: "sine", Pattern: "sine", From: f64(500), Rate: 3000, Duration: ms(300), Batch: 11},
	}}
	sched, err := newSchedule(sc)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		last int64
		n    int
		at   time.Time
	}
	var (
		mu   sync.Mutex
		seen []got
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		last, n, ok := lastRecord(body, []byte(`"id":"sch-`))
		if !ok {
			t.Errorf("a request without our ids: %.80q", body)
		}
		mu.Lock()
		seen = append(seen, got{last, n, at})
		mu.Unlock()
		w.Write([]byte(`{"accepted":` + strconv.Itoa(n) + `}`))
	}))
	defer srv.Close()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{Targets: []string{srv.URL}, Scenario: sc, RunID: "sch", Concurrency: 64})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Offered != sched.total() {
		t.Fatalf("loadgen offered %d records, the schedule has %d", rep.Totals.Offered, sched.total())
	}
	for i, p := range rep.Phases {
		if p.Offered != sched.phases[i].records {
			t.Errorf("phase %s: loadgen offered %d, the schedule has %d", p.Name, p.Offered, sched.phases[i].records)
		}
	}
	planned := sched.requests()
	sort.Slice(seen, func(i, j int) bool { return seen[i].last < seen[j].last })
	if len(seen) != len(planned) {
		t.Fatalf("%d requests arrived, the schedule has %d", len(seen), len(planned))
	}
	for i, p := range planned {
		s := seen[i]
		if s.last != p.last || s.n != p.n {
			t.Fatalf("request %d: arrived (last %d, %d records), scheduled (last %d, %d records)", i, s.last, s.n, p.last, p.n)
		}
		// loadgen sends a request at its intended time, never before.
		if early := rep.StartedAt.Add(p.due).Sub(s.at); early > time.Millisecond {
			t.Errorf("request %d (phase %d) arrived %v before its rebuilt intended time", i, p.phase, early)
		}
	}
}

func TestOutcomesMatchAcknowledgements(t *testing.T) {
	start := time.Unix(1000, 0)
	planned := []plannedRequest{
		{phase: 0, last: 9, n: 10, due: 100 * time.Millisecond},
		{phase: 0, last: 19, n: 10, due: 1200 * time.Millisecond},
		{phase: 1, last: 24, n: 5, due: 2100 * time.Millisecond},
	}
	acks := []ack{
		{last: 19, n: 10, sent: start.Add(1200 * time.Millisecond), at: start.Add(1500 * time.Millisecond)},
		{last: 19, n: 10, sent: start.Add(1300 * time.Millisecond), at: start.Add(1400 * time.Millisecond)}, // a retry answered first
		{last: 9, n: 10, sent: start.Add(100 * time.Millisecond), at: start.Add(150 * time.Millisecond)},
		{last: 24, n: 4, at: start.Add(3 * time.Second)},  // wrong size
		{last: 99, n: 10, at: start.Add(3 * time.Second)}, // unknown
	}
	outs, mismatched := outcomes(planned, acks, start)
	if mismatched != 2 {
		t.Errorf("%d mismatched, want 2", mismatched)
	}
	want := []outcome{
		{phase: 0, sec: 0, n: 10, acked: true, latency: 50 * time.Millisecond, attempt: 100 * time.Millisecond, attemptLatency: 50 * time.Millisecond},
		// The accepted attempt is the one answered first, the retry: its
		// own send and answer, not the intended time.
		{phase: 0, sec: 1, n: 10, acked: true, latency: 200 * time.Millisecond, attempt: 1300 * time.Millisecond, attemptLatency: 100 * time.Millisecond},
		{phase: 1, sec: 2, n: 5},
	}
	for i := range want {
		if outs[i] != want[i] {
			t.Errorf("outcome %d = %+v, want %+v", i, outs[i], want[i])
		}
	}
}
