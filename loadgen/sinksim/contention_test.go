package sinksim

import (
	"context"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestContentionModel(t *testing.T) {
	base := Cost{PerRequest: 2 * time.Millisecond, PerRecord: 10 * time.Microsecond}
	withKnee := func(bytes int64, reqs int, exp float64) Cost {
		c := base
		c.KneeBytes, c.KneeRequests, c.KneeExponent = bytes, reqs, exp
		return c
	}
	for _, tc := range []struct {
		name     string
		cost     Cost
		bytes    int64
		requests int
		factor   float64
		past     bool
	}{
		{"no knee never stretches the cost", base, 1 << 40, 1 << 20, 1, false},
		{"at the byte knee the cost is its own", withKnee(1<<20, 0, 0), 1 << 20, 50, 1, false},
		{"below the byte knee the cost is its own", withKnee(1<<20, 0, 0), 1000, 50, 1, false},
		{"twice the byte knee costs four times with the default exponent", withKnee(1<<20, 0, 0), 2 << 20, 3, 4, true},
		{"three times the byte knee with exponent 3 costs 27 times", withKnee(1<<20, 0, 3), 3 << 20, 3, 27, true},
		{"exponent 1 grows with the load", withKnee(1<<20, 0, 1), 5 << 19, 3, 2.5, true},
		{"the request knee binds alone", withKnee(0, 4, 0), 1 << 40, 8, 4, true},
		{"the larger of two knees' factors wins", withKnee(1<<20, 4, 0), 3 << 20, 8, 9, true},
		{"a request knee not passed leaves the byte knee's factor", withKnee(1<<20, 100, 0), 2 << 20, 8, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.cost.Contention(tc.bytes, tc.requests)
			if math.Abs(f-tc.factor) > 1e-9 {
				t.Errorf("Contention(%d, %d) = %v, want %v", tc.bytes, tc.requests, f, tc.factor)
			}
			if p := tc.cost.PastKnee(tc.bytes, tc.requests); p != tc.past {
				t.Errorf("PastKnee(%d, %d) = %v, want %v", tc.bytes, tc.requests, p, tc.past)
			}
			own := tc.cost.Of(100, 20000)
			want := time.Duration(float64(own) * tc.factor)
			if got := tc.cost.Service(100, 20000, tc.bytes, tc.requests); got != want {
				t.Errorf("Service = %v, want %v (%v × %v)", got, want, own, tc.factor)
			}
		})
	}
}

func TestContentionPeaksAggregateThroughputAtTheKnee(t *testing.T) {
	// Little's law: L bytes in flight, each served for Service time, pass
	// L / Service bytes a second. With the knee the throughput must rise up
	// to the knee and fall beyond it.
	c := Cost{PerByte: time.Microsecond, KneeBytes: 1 << 20}
	const size = 64 << 10
	throughput := func(load int64) float64 {
		return float64(load) / c.Service(0, size, load, int(load/size)).Seconds()
	}
	atKnee := throughput(c.KneeBytes)
	for _, load := range []int64{c.KneeBytes / 4, c.KneeBytes / 2} {
		if throughput(load) >= atKnee {
			t.Errorf("throughput below the knee (%d bytes) %.0f B/s, not below the knee's %.0f", load, throughput(load), atKnee)
		}
	}
	for _, load := range []int64{c.KneeBytes * 2, c.KneeBytes * 4} {
		if throughput(load) >= atKnee {
			t.Errorf("throughput past the knee (%d bytes) %.0f B/s, not below the knee's %.0f", load, throughput(load), atKnee)
		}
	}
	if throughput(c.KneeBytes*4) >= throughput(c.KneeBytes*2) {
		t.Error("throughput does not keep falling as the load grows past the knee")
	}
}

func TestServerCountsRequestsPastTheAggregateKnee(t *testing.T) {
	cost := Cost{PerRequest: time.Millisecond, KneeBytes: 10_000}
	s := start(t, Config{Cost: cost})
	small, large := ndjson(0, 10, 100), ndjson(10, 50, 400)
	for _, body := range [][]byte{small, large} {
		resp, err := post(context.Background(), s.URL(), body, false)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	st := s.Stats()
	// The large body alone (about 20 kB) is past a 10 kB knee; the small
	// one is not. Sent one after the other, neither meets the other.
	if st.PastKnee != 1 {
		t.Errorf("past_knee_requests %d, want 1", st.PastKnee)
	}
	if st.MaxInFlightBytes != int64(len(large)) || st.InFlightBytes != 0 {
		t.Errorf("max_in_flight_bytes %d (want %d), in_flight_bytes %d (want 0)", st.MaxInFlightBytes, len(large), st.InFlightBytes)
	}
	want := cost.Of(10, len(small)) + cost.Service(50, len(large), int64(len(large)), 1)
	if got := time.Duration(st.CostMS * 1e6); (got - want).Abs() > time.Microsecond {
		t.Errorf("cost_ms %v, want %v: the large request pays the contention factor", got, want)
	}
}

func TestAggregateKneeIsChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative byte knee", Config{Cost: Cost{KneeBytes: -1}}, "aggregate knee"},
		{"negative request knee", Config{Cost: Cost{KneeRequests: -1}}, "aggregate knee"},
		{"exponent below 1", Config{Cost: Cost{KneeBytes: 1, KneeExponent: 0.5}}, "knee_exponent"},
		{"exponent not a number", Config{Cost: Cost{KneeBytes: 1, KneeExponent: math.NaN()}}, "knee_exponent"},
		{"exponent too large", Config{Cost: Cost{KneeBytes: 1, KneeExponent: 17}}, "knee_exponent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, json, want string }{
		{"negative knee_bytes", `{"phases": [{"duration": "1s", "knee_bytes": -5}]}`, "knee_bytes -5 below 0"},
		{"negative knee_requests", `{"phases": [{"duration": "1s", "knee_requests": -1}]}`, "knee_requests -1 below 0"},
		{"knee_exponent out of range", `{"phases": [{"duration": "1s", "knee_exponent": 0.2}]}`, "knee_exponent 0.2"},
		{"knee_bytes not a number", `{"phases": [{"duration": "1s", "knee_bytes": "1MB"}]}`, "knee_bytes"},
	} {
		t.Run("scenario "+tc.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseScenario: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestScenarioShiftsTheAggregateKnee(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"phases": [
		{"name": "normal", "duration": "10s"},
		{"name": "capacity-halved", "duration": "10s", "knee_bytes": 500000, "knee_requests": 4, "knee_exponent": 3}]}`))
	if err != nil {
		t.Fatal(err)
	}
	base := settings{cost: Cost{KneeBytes: 1_000_000}}
	if st := sc.at(base, 5*time.Second); st.cost.KneeBytes != 1_000_000 || st.cost.KneeRequests != 0 {
		t.Errorf("first phase: %+v, want the base knee", st.cost)
	}
	if st := sc.at(base, 15*time.Second); st.cost.KneeBytes != 500_000 || st.cost.KneeRequests != 4 || st.cost.KneeExponent != 3 {
		t.Errorf("second phase: %+v, want the shifted knee", st.cost)
	}
}

// BenchmarkContention is the pure model's cost per request.
func BenchmarkContention(b *testing.B) {
	c := Cost{PerRequest: 2 * time.Millisecond, PerRecord: 10 * time.Microsecond, KneeBytes: 1 << 20, KneeRequests: 16}
	var sink time.Duration
	var load int64
	for b.Loop() {
		load = (load + 4099) % (4 << 20)
		sink += c.Service(100, 20000, load, int(load>>16))
	}
	_ = sink
}

// BenchmarkAggregateKnee drives the server with C clients at once, each
// sending 64 kB batches in a closed loop, against a knee of 4 such batches:
// the reported batches/s rise up to the knee and fall past it (the
// collapse the cluster bench measures).
func BenchmarkAggregateKnee(b *testing.B) {
	body := ndjson(0, 160, 400)
	cost := Cost{PerRequest: 2 * time.Millisecond, PerByte: 50 * time.Nanosecond, KneeBytes: 4 * int64(len(body))}
	for _, clients := range []int{2, 4, 8, 16} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			s, err := Start(Config{Cost: cost})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			began := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			n := 0
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						mu.Lock()
						if n >= b.N {
							mu.Unlock()
							return
						}
						n++
						mu.Unlock()
						resp, err := post(context.Background(), s.URL(), body, false)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "batches/s")
			b.ReportMetric(float64(s.Stats().PastKnee)/float64(b.N), "past-knee/op")
		})
	}
}
