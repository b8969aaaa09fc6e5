package sink

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRetryPolicyReportsEveryAttempt(t *testing.T) {
	errBusy := errors.New("busy")
	errBad := errors.New("bad")
	busy := AttemptResult{Err: errBusy, Retry: true, RetryAfter: 0, Outcome: OutcomeBackpressure}
	ok := AttemptResult{RetryAfter: -1}
	for _, tc := range []struct {
		name     string
		script   []AttemptResult
		retries  int
		want     []Outcome
		wantErr  string
		wantWait []time.Duration // the Retry-After reported per attempt
	}{
		{"a deferral retried into a success is two attempts, the first back pressure",
			[]AttemptResult{busy, ok}, 3, []Outcome{OutcomeBackpressure, OutcomeOK}, "", []time.Duration{0, -1}},
		{"a success at once is one attempt", []AttemptResult{ok}, 3, []Outcome{OutcomeOK}, "", []time.Duration{-1}},
		{"a refusal that is not retried is one attempt",
			[]AttemptResult{{Err: errBad, RetryAfter: -1, Outcome: OutcomeTooLarge}}, 3, []Outcome{OutcomeTooLarge}, "bad", nil},
		{"back pressure until the retries run out is reported each time",
			[]AttemptResult{busy, busy, busy}, 2, []Outcome{OutcomeBackpressure, OutcomeBackpressure, OutcomeBackpressure},
			"giving up after 3 attempts", nil},
		{"no retries sends one attempt", []AttemptResult{busy, ok}, -1, []Outcome{OutcomeBackpressure}, "giving up after 1 attempts", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := RetryPolicy{MaxRetries: tc.retries, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
				Name: "test sink", Logger: discardLogger}
			var got []Attempt
			n := 0
			err := p.Do(context.Background(), func(a Attempt) { got = append(got, a) }, func(context.Context) AttemptResult {
				r := tc.script[min(n, len(tc.script)-1)]
				n++
				return r
			})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr != "" && !strings.HasPrefix(err.Error(), "test sink: ") {
				t.Errorf("error %q does not name the sink", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d attempts reported, want %d", len(got), len(tc.want))
			}
			for i, a := range got {
				if a.Outcome != tc.want[i] || a.N != i || a.RTT < 0 || a.Start.IsZero() {
					t.Errorf("attempt %d: %+v, want outcome %v", i, a, tc.want[i])
				}
				if tc.wantWait != nil && a.RetryAfter != tc.wantWait[i] {
					t.Errorf("attempt %d: Retry-After %v, want %v", i, a.RetryAfter, tc.wantWait[i])
				}
			}
		})
	}
}

func TestRetryPolicyStopsWithItsContext(t *testing.T) {
	p := RetryPolicy{BackoffBase: time.Hour, BackoffMax: time.Hour, Name: "test sink", Logger: discardLogger}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	attempts := 0
	err := p.Do(ctx, nil, func(context.Context) AttemptResult {
		attempts++
		return AttemptResult{Err: errors.New("busy"), Retry: true, RetryAfter: -1, Outcome: OutcomeBackpressure}
	})
	// The next attempt would start an hour later, after the deadline.
	if err == nil || !strings.Contains(err.Error(), "after the deadline") || attempts != 1 {
		t.Errorf("error %v after %d attempts, want a give-up before the deadline after 1", err, attempts)
	}
	cancel()
	if err := p.Do(ctx, nil, func(context.Context) AttemptResult {
		t.Fatal("attempted after the context ended")
		return AttemptResult{}
	}); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want the context's", err)
	}
}

func TestRetryPolicyWait(t *testing.T) {
	p := RetryPolicy{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}
	for _, tc := range []struct {
		name       string
		n          int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{"Retry-After is obeyed", 0, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond},
		{"Retry-After is capped at the maximum", 0, time.Minute, time.Second, time.Second},
		{"the first backoff is the base with its upper half jittered", 0, -1, 50 * time.Millisecond, 100 * time.Millisecond},
		{"the backoff doubles", 2, -1, 200 * time.Millisecond, 400 * time.Millisecond},
		{"the backoff stops at the maximum", 10, -1, 500 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				if got := p.Wait(tc.n, tc.retryAfter); got < tc.lo || got > tc.hi {
					t.Fatalf("Wait(%d, %v) = %v, want within [%v, %v]", tc.n, tc.retryAfter, got, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestHTTPReportsEachAttemptOfABatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []reply
		want   []Outcome
	}{
		{"a 429 retried into a success", []reply{{status: 429, retryAfter: "0"}, {status: 200}}, []Outcome{OutcomeBackpressure, OutcomeOK}},
		{"a 503 then a success", []reply{{status: 503}, {status: 204}}, []Outcome{OutcomeBackpressure, OutcomeOK}},
		{"a 413 is too large and not retried", []reply{{status: 413}}, []Outcome{OutcomeTooLarge}},
		{"a 500 then a success", []reply{{status: 500}, {status: 200}}, []Outcome{OutcomeFailed, OutcomeOK}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDownstream(t, tc.script...)
			s := newHTTP(t, HTTPConfig{URL: d.URL})
			var got []Attempt
			b := &Batch{Records: [][]byte{[]byte(`{"a":1}`)}, Bytes: 7, OnAttempt: func(a Attempt) { got = append(got, a) }}
			_ = s.Write(context.Background(), b)
			if len(got) != len(tc.want) {
				t.Fatalf("%d attempts reported, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, a := range got {
				if a.Outcome != tc.want[i] {
					t.Errorf("attempt %d: %v, want %v", i, a.Outcome, tc.want[i])
				}
			}
			if tc.script[0].retryAfter == "0" && got[0].RetryAfter != 0 {
				t.Errorf("Retry-After: 0 reported as %v", got[0].RetryAfter)
			}
		})
	}
}
