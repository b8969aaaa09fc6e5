package node

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseAttempt(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want int // 0: not ok
	}{
		{"the first attempt", "1", 1},
		{"a retry", "2", 2},
		{"spaces around are allowed", " 3 ", 3},
		{"zero is not an attempt", "0", 0},
		{"negative is not an attempt", "-2", 0},
		{"a word is not an attempt", "retry", 0},
		{"empty is not an attempt", "", 0},
		{"an overlong count is refused", "1234567890", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseAttempt(tc.in)
			if ok != (tc.want != 0) || got != tc.want {
				t.Errorf("ParseAttempt(%q) = %d, %v; want %d", tc.in, got, ok, tc.want)
			}
		})
	}
}

func FuzzParseAttempt(f *testing.F) {
	for _, s := range []string{"1", "2", " 7", "0", "-1", "", "99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		a, ok := ParseAttempt(v)
		if ok != (a >= 1) {
			t.Fatalf("ParseAttempt(%q) = %d, %v", v, a, ok)
		}
		// What it accepts reads back as the count written.
		if b, err := strconv.Atoi(strings.TrimSpace(v)); ok && (err != nil || b != a) {
			t.Fatalf("ParseAttempt(%q) = %d, not the count written", v, a)
		}
	})
}

// TestArrivalLeavesOutRetries drives the HTTP intake: the records of a
// request that says it is a retry (X-Attempt-Count or Envoy's
// x-envoy-attempt-count of 2 or more) were offered once already and are
// left out of the arrival rate the controllers see, whether the retry is
// admitted or refused; the refusals are still counted in Rejected.
func TestArrivalLeavesOutRetries(t *testing.T) {
	s := newMemSink()
	n := startNode(t, Config{Sink: s, ControlInterval: time.Hour})
	h := n.IngestHandler()
	post := func(header, attempt string, records int) int {
		var body bytes.Buffer
		for i := range records {
			body.WriteString(`{"m":` + strconv.Itoa(i) + "}\n")
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/logs", &body)
		req.Header.Set("Content-Type", "application/x-ndjson")
		if header != "" {
			req.Header.Set(header, attempt)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	for _, tc := range []struct {
		name, header, attempt string
		want                  float64
	}{
		{"a first attempt is demand", AttemptHeader, "1", 10},
		{"a request without the header is demand", "", "", 10},
		{"a malformed attempt is taken for a first", AttemptHeader, "again", 10},
		{"a retry is not", AttemptHeader, "2", 0},
		{"an Envoy retry is not", "x-envoy-attempt-count", "3", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			avg := 256.0
			n.observe(time.Now(), time.Second, &avg) // a fresh interval
			if code := post(tc.header, tc.attempt, 10); code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
			if got := n.observe(time.Now(), time.Second, &avg).ArrivalRate; got != tc.want {
				t.Errorf("arrival %v/s, want %v", got, tc.want)
			}
		})
	}
	t.Run("a refused retry is not demand either, but is counted refused", func(t *testing.T) {
		avg := 256.0
		n.observe(time.Now(), time.Second, &avg)
		n.queue.setPressure(whyCPU) // every request is refused
		defer n.queue.setPressure("")
		if code := post(AttemptHeader, "1", 10); code != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429", code)
		}
		if code := post(AttemptHeader, "2", 10); code != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429", code)
		}
		// Refused at the door, before the body is read: the records are
		// estimated from Content-Length, the same for both requests.
		obs := n.observe(time.Now(), time.Second, &avg)
		if obs.Rejected <= 0 || obs.ArrivalRate != float64(obs.Rejected)/2 {
			t.Errorf("arrival %v/s, refused %d; want half the refused (the first attempt's)", obs.ArrivalRate, obs.Rejected)
		}
	})
}
