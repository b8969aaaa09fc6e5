package tuner

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNewParsesEveryControllerName(t *testing.T) {
	for _, tc := range []struct {
		spec, name string
	}{
		{"gradient", "gradient"},
		{"aimd", "aimd"},
		{"gradient2", "gradient2"},
		{"target", "target"},
		{"static", "static:100"},
		{"static:250", "static:250"},
		{" gradient ", "gradient"},
	} {
		c, err := New(tc.spec, 100, 20000)
		if err != nil {
			t.Fatalf("New(%q): %v", tc.spec, err)
		}
		if c.Name() != tc.name {
			t.Errorf("New(%q).Name() = %q, want %q", tc.spec, c.Name(), tc.name)
		}
	}
}

func TestNewRejectsUnknownNamesListingTheValidOnes(t *testing.T) {
	for _, spec := range []string{"", "pid", "gradient:3", "static:0", "static:x", "static:-5"} {
		_, err := New(spec, 100, 0)
		if err == nil {
			t.Fatalf("New(%q) succeeded", spec)
		}
		if strings.HasPrefix(spec, "static:") {
			if !strings.Contains(err.Error(), "positive integer") {
				t.Errorf("New(%q) = %v, want a word about the size", spec, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnknownController) {
			t.Errorf("New(%q) = %v, want ErrUnknownController", spec, err)
		}
		for _, name := range ControllerNames {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("New(%q) error %q does not list %q", spec, err, name)
			}
		}
	}
}

func TestStaticKeepsItsSizeWithinTheGrant(t *testing.T) {
	s := &Static{Size: 500}
	if d := s.Next(Observation{MaxBatchSize: 0}); d.BatchSize != 500 {
		t.Errorf("no grant: %d, want 500", d.BatchSize)
	}
	if d := s.Next(Observation{MaxBatchSize: 200}); d.BatchSize != 200 {
		t.Errorf("grant 200: %d, want 200", d.BatchSize)
	}
}

// Every controller answers within [1, MaxBatchSize] whatever it is fed.
func TestControllersStayWithinBounds(t *testing.T) {
	for _, spec := range []string{"gradient", "aimd", "gradient2", "target", "arc", "static:50000"} {
		c, _ := New(spec, 100, 0)
		now := time.Unix(0, 0)
		for i := 0; i < 200; i++ {
			now = now.Add(time.Second)
			obs := Observation{
				Now: now, Interval: time.Second, BatchSize: 100 + i*37%900, MaxBatchSize: 1000,
				ArrivalRate: float64(i * 997 % 60000), Throughput: float64(i * 331 % 40000),
				Batches: i % 50, MeanBatchFill: float64(i % 700), MeanBatchTime: time.Duration(i%300) * time.Millisecond,
				P99: time.Duration(i*13%2000) * time.Millisecond, SLO: 500 * time.Millisecond,
				QueueDepth: i * 113 % 30000, Backpressure: i % 7 / 6, CPUPercent: float64(i % 100),
			}
			obs.Goodput = obs.Throughput / 2
			for k := range i % 9 {
				obs.Attempts = append(obs.Attempts, Attempt{End: now.Add(-time.Duration(k*97) * time.Millisecond),
					RTT: time.Duration((i*k)%400) * time.Millisecond, Records: (i*k*31)%1500 + k%2,
					Outcome: AttemptOutcome((i + k) % 4), RetryAfter: -1, InFlight: k%4 + 1, Full: (i+k)%3 == 0})
			}
			d := c.Next(obs)
			if d.BatchSize < 1 || d.BatchSize > 1000 {
				t.Fatalf("%s: interval %d chose %d, outside [1, 1000]", spec, i, d.BatchSize)
			}
			if d.Reason == "" {
				t.Fatalf("%s: interval %d gave no reason", spec, i)
			}
		}
	}
}

func FuzzNew(f *testing.F) {
	for _, s := range []string{"gradient", "static:10", "static:", ":", "aimd:1", "target"} {
		f.Add(s, 100, 1000)
	}
	f.Fuzz(func(t *testing.T, spec string, initial, max int) {
		c, err := New(spec, initial, max)
		if err != nil {
			if c != nil {
				t.Fatalf("New(%q) returned both a controller and %v", spec, err)
			}
			return
		}
		d := c.Next(Observation{BatchSize: 1, MaxBatchSize: 100})
		if d.BatchSize < 1 || d.BatchSize > 100 {
			t.Fatalf("New(%q).Next = %d, outside [1, 100]", spec, d.BatchSize)
		}
	})
}

func TestAttemptStatsSumTheIntervalsAttempts(t *testing.T) {
	ms := time.Millisecond
	obs := Observation{Attempts: []Attempt{
		{RTT: 10 * ms, Records: 100, Outcome: AttemptOK, RetryAfter: -1, InFlight: 1},
		{RTT: 1 * ms, Records: 100, Outcome: AttemptBackpressure, RetryAfter: 2 * time.Second, InFlight: 3},
		{RTT: 30 * ms, Records: 50, Outcome: AttemptOK, RetryAfter: -1, InFlight: 2},
		{RTT: 2 * ms, Records: 900, Outcome: AttemptTooLarge, RetryAfter: -1, InFlight: 1},
		{RTT: 5 * ms, Records: 1, Outcome: AttemptFailed, RetryAfter: -1, InFlight: 1},
	}}
	got := obs.AttemptStats()
	want := AttemptStats{Attempts: 5, OK: 2, Backpressure: 1, TooLarge: 1, Failed: 1, MeanRTT: 20 * ms, OKRecords: 150,
		MaxRetryAfter: 2 * time.Second, MaxInFlight: 3}
	if got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	if (Observation{}).AttemptStats() != (AttemptStats{}) {
		t.Error("an interval without attempts has stats")
	}
}
