package sinksim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ndjson returns n records with ids from first on, each about size bytes.
func ndjson(first, n, size int) []byte {
	var b bytes.Buffer
	for i := range n {
		line := fmt.Sprintf(`{"id":"r-%d","msg":"`, first+i)
		b.WriteString(line)
		b.WriteString(strings.Repeat("x", max(size-len(line)-2, 0)))
		b.WriteString("\"}\n")
	}
	return b.Bytes()
}

func post(ctx context.Context, url string, body []byte, gz bool) (*http.Response, error) {
	if gz {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(body)
		w.Close()
		body = z.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCostOfIsTheModel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cost    Cost
		records int
		bytes   int
		want    time.Duration
	}{
		{"per request only", Cost{PerRequest: 5 * time.Millisecond}, 100, 1000, 5 * time.Millisecond},
		{"per record adds up", Cost{PerRequest: time.Millisecond, PerRecord: 20 * time.Microsecond}, 100, 0, 3 * time.Millisecond},
		{"per byte adds up", Cost{PerByte: 10 * time.Nanosecond}, 1, 100_000, time.Millisecond},
		{"below the knee the knee costs nothing", Cost{PerRecord: 10 * time.Microsecond, KneeBatch: 500}, 500, 0, 5 * time.Millisecond},
		{"above the knee records cost ten times more", Cost{PerRecord: 10 * time.Microsecond, KneeBatch: 500}, 600, 0, 5*time.Millisecond + 10*time.Millisecond},
		{"the knee factor is configurable", Cost{PerRecord: 10 * time.Microsecond, KneeBatch: 500, KneeFactor: 2}, 600, 0, 5*time.Millisecond + 2*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cost.Of(tc.records, tc.bytes); got != tc.want {
				t.Errorf("Of(%d, %d) = %v, want %v", tc.records, tc.bytes, got, tc.want)
			}
		})
	}
}

// The simulator answers only once the configured cost is paid (a lower
// bound that always holds), and not much later (a generous upper bound; the
// 10 % figure is measured in BenchmarkCostModel).
func TestAnswersAfterTheCostIsPaid(t *testing.T) {
	cost := Cost{PerRequest: 20 * time.Millisecond, PerRecord: 100 * time.Microsecond, PerByte: time.Nanosecond}
	s := start(t, Config{Cost: cost})
	for _, n := range []int{1, 100, 400} {
		body := ndjson(0, n, 200)
		want := cost.Of(n, len(body))
		began := time.Now()
		resp, err := post(context.Background(), s.URL()+"/bulk", body, n == 100)
		took := time.Since(began)
		if err != nil {
			t.Fatal(err)
		}
		var ack struct{ Accepted int }
		json.NewDecoder(resp.Body).Decode(&ack)
		if resp.StatusCode != 200 || ack.Accepted != n {
			t.Fatalf("batch of %d: status %d accepted %d", n, resp.StatusCode, ack.Accepted)
		}
		if took < want {
			t.Errorf("batch of %d answered after %v, before its cost %v", n, took, want)
		}
		if took > 2*want+500*time.Millisecond {
			t.Errorf("batch of %d answered after %v, far beyond its cost %v", n, took, want)
		}
	}
	st := s.Stats()
	if st.Requests != 3 || st.Accepted != 3 || st.Records != 501 {
		t.Errorf("stats %+v, want 3 requests, 3 accepted, 501 records", st)
	}
	if st.ServiceMS < st.CostMS {
		t.Errorf("service %.1fms below the configured cost %.1fms", st.ServiceMS, st.CostMS)
	}
}

// MaxConcurrency requests pay their cost at once; others wait in a queue of
// Queue, and beyond it are answered 429.
func TestConcurrencyLimitQueuesThenRejects(t *testing.T) {
	s := start(t, Config{Cost: Cost{PerRequest: time.Hour}, MaxConcurrency: 2, Queue: 1, RetryAfter: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for range 3 {
		wg.Go(func() { post(ctx, s.URL(), ndjson(0, 1, 50), false) })
	}
	waitFor(t, "two in flight and one queued", func() bool {
		st := s.Stats()
		return st.InFlight == 2 && st.Queued == 1
	})
	resp, err := post(context.Background(), s.URL(), ndjson(0, 1, 50), false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("a request beyond the queue: %d Retry-After %q, want 429 and 2", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if st := s.Stats(); st.MaxInFlight != 2 || st.Rejected["queue_full"] != 1 {
		t.Errorf("max in flight %d, rejected %v: want 2 and one queue_full", st.MaxInFlight, st.Rejected)
	}
	cancel()
	wg.Wait()
	waitFor(t, "the abandoned requests to be counted", func() bool { return s.Stats().Abandoned == 3 })
}

func TestReleasedSlotsGoToTheQueueInOrder(t *testing.T) {
	s := start(t, Config{Cost: Cost{PerRequest: 30 * time.Millisecond}, MaxConcurrency: 1})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 5 {
		wg.Go(func() {
			if resp, err := post(context.Background(), s.URL(), ndjson(0, 1, 50), false); err == nil && resp.StatusCode == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); ok.Load() != 5 || st.MaxInFlight != 1 || st.ServiceMS < 5*30 {
		t.Errorf("%d ok, max in flight %d, service %.0fms: want 5, 1 and >= 150ms", ok.Load(), st.MaxInFlight, st.ServiceMS)
	}
}

func TestInjectedErrors(t *testing.T) {
	t.Run("429 and 503 answer at once with Retry-After", func(t *testing.T) {
		for _, kind := range []string{Kind429, Kind503} {
			s := start(t, Config{ErrorRate: 1, ErrorKinds: []string{kind}, RetryAfter: 0})
			resp, err := post(context.Background(), s.URL(), ndjson(0, 3, 50), false)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(resp.StatusCode) != kind || resp.Header.Get("Retry-After") != "0" {
				t.Errorf("%s: got %d Retry-After %q", kind, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if st := s.Stats(); st.Records != 0 || st.Rejected[kind] != 1 {
				t.Errorf("%s: stats %+v, want nothing accepted and one rejected", kind, st)
			}
		}
	})
	t.Run("timeout holds until the client gives up", func(t *testing.T) {
		s := start(t, Config{ErrorRate: 1, ErrorKinds: []string{KindTimeout}})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := post(ctx, s.URL(), ndjson(0, 3, 50), false)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want the client's deadline", err)
		}
		if st := s.Stats(); st.Rejected[KindTimeout] != 1 {
			t.Errorf("rejected %v, want one timeout", st.Rejected)
		}
	})
	t.Run("the rate is a fraction of the requests", func(t *testing.T) {
		s := start(t, Config{ErrorRate: 0.25, ErrorKinds: []string{Kind429, Kind503}, Seed: 3})
		for i := range 400 {
			post(context.Background(), s.URL(), ndjson(i, 1, 50), false)
		}
		st := s.Stats()
		failed := st.Rejected[Kind429] + st.Rejected[Kind503]
		if failed < 60 || failed > 140 || st.Rejected[Kind429] == 0 || st.Rejected[Kind503] == 0 {
			t.Errorf("%v of 400 rejected, want about 100 of both kinds", st.Rejected)
		}
		if st.Accepted+failed != 400 {
			t.Errorf("accepted %d + rejected %d != 400", st.Accepted, failed)
		}
	})
}

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(d time.Duration) { c.ns.Store(int64(d)) }

func TestCostPhasesChangeOverTime(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"phases": [
		{"name": "normal", "duration": "10s"},
		{"name": "slow-down", "duration": "10s", "scale": 3},
		{"name": "brown-out", "duration": 5, "error_rate": 1, "error_kinds": ["503"]},
		{"name": "recovery", "duration": "10s", "per_record": "1ms"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var clock fakeClock
	s, err := New(Config{Cost: Cost{PerRequest: 2 * time.Millisecond, PerRecord: 100 * time.Microsecond}, Scenario: sc, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at        time.Duration
		phase     string
		cost      time.Duration // of 10 records
		errorRate float64
	}{
		{0, "normal", 3 * time.Millisecond, 0},
		{15 * time.Second, "slow-down", 9 * time.Millisecond, 0},
		{22 * time.Second, "brown-out", 3 * time.Millisecond, 1},
		{26 * time.Second, "recovery", 12 * time.Millisecond, 0},
		{time.Hour, "recovery", 12 * time.Millisecond, 0},
	} {
		clock.set(tc.at)
		st := s.settings()
		if st.phase != tc.phase || st.cost.Of(10, 0) != tc.cost || st.errorRate != tc.errorRate {
			t.Errorf("at %v: phase %s, cost %v, error rate %v; want %s, %v, %v",
				tc.at, st.phase, st.cost.Of(10, 0), st.errorRate, tc.phase, tc.cost, tc.errorRate)
		}
	}
	sc.Loop = true
	clock.set(36 * time.Second) // 35s a loop: 1s into "normal" again
	if st := s.settings(); st.phase != "normal" {
		t.Errorf("looping at 36s: phase %s, want normal", st.phase)
	}
}

func TestCountsRecordsAndKeepsIDs(t *testing.T) {
	s := start(t, Config{KeepIDs: true})
	for _, body := range [][]byte{
		ndjson(0, 10, 80),
		[]byte("{\"id\":\"r-3\"}\n\n  \n{\"id\":7}\n"), // a duplicate, blank lines, a numeric id
		[]byte(`[{"id":"a-1"},{"id":"a-2"}]`),
	} {
		resp, err := post(context.Background(), s.URL()+"/any/path", body, true)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("post: %v %v", err, resp)
		}
	}
	st := s.Stats()
	if st.Records != 14 || st.IDs != 13 || st.Duplicates != 1 {
		t.Errorf("records %d ids %d duplicates %d, want 14, 13, 1", st.Records, st.IDs, st.Duplicates)
	}
	for _, id := range []string{"r-0", "r-9", "7", "a-2"} {
		if !s.HasID(id) {
			t.Errorf("id %s not kept", id)
		}
	}
	resp, err := http.Get(s.URL() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	for _, k := range []string{"requests", "records", "bytes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("GET /stats lacks %q: %v", k, m)
		}
	}
	resp, err = http.Get(s.URL() + "/ids")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(b), "\n"); n != 13 {
		t.Errorf("GET /ids has %d lines, want 13", n)
	}
}

func TestBadInputGetsAClearError(t *testing.T) {
	s := start(t, Config{Validate: true, MaxBody: 1000})
	for _, tc := range []struct {
		name string
		body []byte
		gz   bool
		code int
		want string
	}{
		{"a line that is not JSON", []byte("{\"a\":1}\nnot json\n"), false, 400, `"line":2`},
		{"a body over the limit", ndjson(0, 50, 100), false, 413, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := post(context.Background(), s.URL(), tc.body, tc.gz)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Errorf("got %d %s, want %d with %s", resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL(), strings.NewReader("x"))
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("a body that claims gzip and is not: %d, want 400", resp.StatusCode)
	}
}

func TestConfigIsChecked(t *testing.T) {
	for _, cfg := range []Config{
		{ErrorRate: 1.5},
		{ErrorKinds: []string{"418"}},
		{Cost: Cost{PerRecord: -1}},
		{Queue: -2},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
}

func FuzzCostScenario(f *testing.F) {
	f.Add([]byte(`{"phases": [{"name": "slow", "duration": "10s", "scale": 3}]}`))
	f.Add([]byte(`{"loop": true, "phases": [{"duration": 1, "error_rate": 0.5, "error_kinds": ["429", "timeout"], "max_concurrency": 2, "queue": -1}]}`))
	f.Add([]byte(`{"phases": [{"duration": "1s", "per_request": "1ms", "per_record": "10us", "per_byte": "1ns", "jitter": "2ms", "knee_batch": 100, "knee_factor": 8}]}`))
	f.Add([]byte(`{"phases": [{"name": "normal", "duration": "20s", "knee_bytes": 1048576}, {"name": "shift", "duration": "20s", "knee_bytes": 524288, "knee_requests": 8, "knee_exponent": 3}]}`))
	f.Add([]byte(`{"phases": [{"duration": "1s", "knee_bytes": -1, "knee_exponent": 0.5}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseScenario(b)
		if err != nil {
			return
		}
		base := settings{cost: Cost{PerRequest: time.Millisecond}}
		for _, at := range []time.Duration{0, time.Second, time.Hour, 1 << 62} {
			st := sc.at(base, at)
			if st.errorRate < 0 || st.errorRate > 1 || st.cost.Of(100, 1000) < 0 ||
				st.cost.Service(100, 1000, 1<<40, 1<<20) < 0 || st.cost.Contention(1<<40, 1<<20) < 1 {
				t.Fatalf("settings at %v out of range: %+v", at, st)
			}
			if err := checkKinds(st.errorKinds); err != nil {
				t.Fatal(err)
			}
		}
	})
}
