package sink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// reply is one scripted answer of a downstream.
type reply struct {
	status     int
	retryAfter string
	body       string
	hang       bool // answer nothing until the client gives up
}

// downstream is an httptest server on 127.0.0.1 that answers from a script
// (the last reply repeats) and records what it received.
type downstream struct {
	*httptest.Server
	mu       sync.Mutex
	script   []reply
	times    []time.Time
	bodies   []string
	ctypes   []string
	conns    int
	received chan struct{} // one send per request, never blocks
}

func newDownstream(t *testing.T, script ...reply) *downstream {
	t.Helper()
	d := &downstream{script: script, received: make(chan struct{}, 1000)}
	stop := make(chan struct{})
	d.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		n := len(d.times)
		d.times = append(d.times, time.Now())
		d.bodies = append(d.bodies, string(body))
		d.ctypes = append(d.ctypes, r.Header.Get("Content-Type"))
		rep := d.script[min(n, len(d.script)-1)]
		d.mu.Unlock()
		d.received <- struct{}{}
		if rep.hang {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.body)
	}))
	d.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			d.mu.Lock()
			d.conns++
			d.mu.Unlock()
		}
	}
	d.Start()
	t.Cleanup(d.Close)
	t.Cleanup(func() { close(stop) }) // runs first: frees hanging handlers
	return d
}

func (d *downstream) requests() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.times)
}

func newHTTP(t *testing.T, cfg HTTPConfig) *HTTP {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 5 * time.Millisecond
	}
	s, err := NewHTTP(cfg)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// deadPort returns a 127.0.0.1 address that nothing listens on.
func deadPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestHTTPWrite(t *testing.T) {
	for _, tc := range []struct {
		name             string
		script           []reply
		maxRetries       int
		wantRequests     int
		wantErr          bool
		wantBackpressure bool
		wantStatus       int // of the *StatusError, when wantErr
	}{
		{name: "a 200 delivers the batch in one request", script: []reply{{status: 200}}, wantRequests: 1},
		{name: "a 204 is success too", script: []reply{{status: 204}}, wantRequests: 1},
		{name: "503 is retried until it succeeds", script: []reply{{status: 503}, {status: 503}, {status: 200}}, wantRequests: 3},
		{name: "429 is retried until it succeeds", script: []reply{{status: 429}, {status: 200}}, wantRequests: 2},
		{name: "500 is retried until it succeeds", script: []reply{{status: 500}, {status: 200}}, wantRequests: 2},
		{
			name: "400 is not retried", script: []reply{{status: 400, body: `{"error":"bad line 3"}`}, {status: 200}},
			wantRequests: 1, wantErr: true, wantStatus: 400,
		},
		{
			name: "413 is not retried", script: []reply{{status: 413}, {status: 200}},
			wantRequests: 1, wantErr: true, wantStatus: 413,
		},
		{
			name: "429 until the retries run out is backpressure", script: []reply{{status: 429}}, maxRetries: 2,
			wantRequests: 3, wantErr: true, wantBackpressure: true, wantStatus: 429,
		},
		{
			name: "503 until the retries run out is backpressure", script: []reply{{status: 503}}, maxRetries: 3,
			wantRequests: 4, wantErr: true, wantBackpressure: true, wantStatus: 503,
		},
		{
			name: "502 until the retries run out is an error but not backpressure", script: []reply{{status: 502}}, maxRetries: 1,
			wantRequests: 2, wantErr: true, wantStatus: 502,
		},
		{
			name: "negative MaxRetries sends one request only", script: []reply{{status: 503}}, maxRetries: -1,
			wantRequests: 1, wantErr: true, wantBackpressure: true, wantStatus: 503,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDownstream(t, tc.script...)
			s := newHTTP(t, HTTPConfig{URL: d.URL + "/ingest", MaxRetries: tc.maxRetries})
			b := batchOf(1, 3)
			err := s.Write(context.Background(), b)

			if got := d.requests(); got != tc.wantRequests {
				t.Fatalf("downstream saw %d requests, want %d", got, tc.wantRequests)
			}
			d.mu.Lock()
			body, ctype := d.bodies[0], d.ctypes[0]
			d.mu.Unlock()
			if want := strings.Join(linesOf(b), "\n") + "\n"; body != want {
				t.Fatalf("body %q, want NDJSON %q", body, want)
			}
			if ctype != "application/x-ndjson" {
				t.Fatalf("Content-Type %q, want application/x-ndjson", ctype)
			}
			st := s.Stats()
			if st.Requests != uint64(tc.wantRequests) || st.Retries != uint64(tc.wantRequests-1) {
				t.Fatalf("Stats() = %+v, want %d requests and %d retries", st, tc.wantRequests, tc.wantRequests-1)
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				if st.Failures != 0 {
					t.Fatalf("Stats().Failures = %d after a success", st.Failures)
				}
				return
			}
			if err == nil {
				t.Fatal("Write returned nil")
			}
			if st.Failures != 1 {
				t.Fatalf("Stats().Failures = %d, want 1", st.Failures)
			}
			if got := errors.Is(err, ErrBackpressure); got != tc.wantBackpressure {
				t.Fatalf("errors.Is(%v, ErrBackpressure) = %v, want %v", err, got, tc.wantBackpressure)
			}
			if got := errors.Is(err, ErrBatchTooLarge); got != (tc.wantStatus == 413) {
				t.Fatalf("errors.Is(%v, ErrBatchTooLarge) = %v, want it for 413 only", err, got)
			}
			var serr *StatusError
			if !errors.As(err, &serr) || serr.StatusCode != tc.wantStatus {
				t.Fatalf("error %v does not hold a *StatusError with status %d", err, tc.wantStatus)
			}
			for _, want := range []string{strconv.Itoa(tc.wantStatus), d.URL + "/ingest"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestHTTPWaitsAsLongAsRetryAfterSays(t *testing.T) {
	d := newDownstream(t, reply{status: 503, retryAfter: "1"}, reply{status: 200})
	s := newHTTP(t, HTTPConfig{URL: d.URL, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Second})
	if err := s.Write(context.Background(), batchOf(1, 2)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.times) != 2 {
		t.Fatalf("downstream saw %d requests, want 2", len(d.times))
	}
	// A lower bound only: the retry must not come before the server asked.
	if gap := d.times[1].Sub(d.times[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried %v after a 503 with Retry-After: 1", gap)
	}
}

func TestHTTPRetryWait(t *testing.T) {
	s := newHTTP(t, HTTPConfig{URL: "http://127.0.0.1:1", BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second})
	for _, tc := range []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{"first retry waits half to all of the base", 0, -1, 50 * time.Millisecond, 100 * time.Millisecond},
		{"each retry doubles the step", 3, -1, 400 * time.Millisecond, 800 * time.Millisecond},
		{"the step stops at BackoffMax", 10, -1, time.Second, 2 * time.Second},
		{"a huge attempt number does not overflow", 1000, -1, time.Second, 2 * time.Second},
		{"Retry-After replaces the backoff", 0, time.Second, time.Second, time.Second},
		{"Retry-After is capped at BackoffMax", 0, time.Minute, 2 * time.Second, 2 * time.Second},
		{"Retry-After: 0 retries at once", 2, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 200 {
				if got := s.retryWait(tc.attempt, tc.retryAfter); got < tc.lo || got > tc.hi {
					t.Fatalf("retryWait(%d, %v) = %v, want within [%v, %v]", tc.attempt, tc.retryAfter, got, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", -1},
		{"3", 3 * time.Second},
		{" 0 ", 0},
		{"-4", -1},
		{"soon", -1},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"99999999999999999", time.Duration(1<<62) / time.Second * time.Second},
	} {
		if got := parseRetryAfter(tc.header, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

func TestHTTPTimeoutsAreRetriedAndReportedAsBackpressure(t *testing.T) {
	d := newDownstream(t, reply{hang: true})
	s := newHTTP(t, HTTPConfig{URL: d.URL, Timeout: 50 * time.Millisecond, MaxRetries: 1})
	err := s.Write(context.Background(), batchOf(1, 1))
	if !errors.Is(err, ErrBackpressure) {
		t.Fatalf("Write to a downstream that never answers returned %v, want ErrBackpressure", err)
	}
	if got := d.requests(); got != 2 {
		t.Fatalf("downstream saw %d requests, want 2", got)
	}
}

func TestHTTPRefusedConnectionIsRetriedThenFailsWithoutBackpressure(t *testing.T) {
	s := newHTTP(t, HTTPConfig{URL: "http://" + deadPort(t), MaxRetries: 2})
	err := s.Write(context.Background(), batchOf(1, 1))
	if err == nil || errors.Is(err, ErrBackpressure) {
		t.Fatalf("Write to a closed port returned %v, want a plain error", err)
	}
	if st := s.Stats(); st.Requests != 3 || st.Failures != 1 {
		t.Fatalf("Stats() = %+v, want 3 requests and 1 failure", st)
	}
}

func TestHTTPCancellationStopsRetrying(t *testing.T) {
	d := newDownstream(t, reply{status: 503, retryAfter: "30"})
	var logs syncBuffer
	s := newHTTP(t, HTTPConfig{URL: d.URL, BackoffMax: time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Write(ctx, batchOf(1, 1)) }()
	// Cancel once the sink has had its 503 and is waiting to retry.
	waitFor(t, "the sink to wait for its retry", func() bool { return strings.Contains(logs.String(), "retrying batch") })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Write returned %v, want context.Canceled", err)
		}
		if !errors.Is(err, ErrBackpressure) {
			t.Fatalf("Write's error %v lost the last attempt's 503", err)
		}
	case <-time.After(20 * time.Second): // far below the 30 s Retry-After
		t.Fatal("Write kept waiting to retry after its context was cancelled")
	}
	if got := d.requests(); got != 1 {
		t.Fatalf("downstream saw %d requests after the cancel, want 1", got)
	}
}

func TestHTTPGivesUpAtOnceWhenTheRetryWouldMissTheDeadline(t *testing.T) {
	d := newDownstream(t, reply{status: 429, retryAfter: "30"})
	s := newHTTP(t, HTTPConfig{URL: d.URL, BackoffMax: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Write(ctx, batchOf(1, 1))
	if !errors.Is(err, ErrBackpressure) {
		t.Fatalf("Write returned %v, want ErrBackpressure", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Write waited out its context instead of giving up when the retry could not make it")
	}
	if got := d.requests(); got != 1 {
		t.Fatalf("downstream saw %d requests, want 1", got)
	}
}

func TestHTTPReusesConnections(t *testing.T) {
	big := strings.Repeat("x", 8<<10)
	d := newDownstream(t, reply{status: 503, body: big}, reply{status: 200, body: big})
	s := newHTTP(t, HTTPConfig{URL: d.URL})
	for i := range 20 {
		if err := s.Write(context.Background(), batchOf(i, 2)); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns != 1 {
		t.Fatalf("21 sequential requests opened %d connections, want 1 (bodies drained and closed)", d.conns)
	}
}

func TestHTTPReady(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) *HTTP
		ready bool
	}{
		{"an endpoint that accepts connections is ready", func(t *testing.T) *HTTP {
			return newHTTP(t, HTTPConfig{URL: newDownstream(t, reply{status: 200}).URL})
		}, true},
		{"an endpoint that refuses connections is not ready", func(t *testing.T) *HTTP {
			return newHTTP(t, HTTPConfig{URL: "http://" + deadPort(t) + "/x"})
		}, false},
		{"a recent successful write is ready without a probe", func(t *testing.T) *HTTP {
			d := newDownstream(t, reply{status: 200})
			s := newHTTP(t, HTTPConfig{URL: d.URL})
			if err := s.Write(context.Background(), batchOf(1, 1)); err != nil {
				t.Fatal(err)
			}
			d.Close()
			return s
		}, true},
		{"a closed sink is not ready", func(t *testing.T) *HTTP {
			s := newHTTP(t, HTTPConfig{URL: newDownstream(t, reply{status: 200}).URL})
			s.Close()
			return s
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			if err := s.Ready(context.Background()); (err == nil) != tc.ready {
				t.Fatalf("Ready() = %v, want ready=%v", err, tc.ready)
			}
		})
	}
}

func TestHTTPAfterClose(t *testing.T) {
	d := newDownstream(t, reply{status: 200})
	s := newHTTP(t, HTTPConfig{URL: d.URL})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), batchOf(1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close returned %v, want ErrClosed", err)
	}
	if got := d.requests(); got != 0 {
		t.Fatalf("a closed sink sent %d requests", got)
	}
}

func TestHTTPRefusesBadRecordsWithoutSending(t *testing.T) {
	d := newDownstream(t, reply{status: 200})
	s := newHTTP(t, HTTPConfig{URL: d.URL})
	err := s.Write(context.Background(), &Batch{Records: [][]byte{[]byte("{\"a\":\n1}")}})
	if !errors.Is(err, ErrBadRecord) {
		t.Fatalf("Write returned %v, want ErrBadRecord", err)
	}
	if got := d.requests(); got != 0 {
		t.Fatalf("a refused batch was sent in %d requests", got)
	}
}

func TestNewHTTPRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  HTTPConfig
	}{
		{"no URL", HTTPConfig{}},
		{"a URL that is not http", HTTPConfig{URL: "ftp://127.0.0.1/x"}},
		{"a URL without host", HTTPConfig{URL: "http:///path"}},
		{"an unparsable URL", HTTPConfig{URL: "http://[::1"}},
		{"a negative timeout", HTTPConfig{URL: "http://127.0.0.1:1", Timeout: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewHTTP(tc.cfg); err == nil {
				t.Fatal("NewHTTP accepted it")
			}
		})
	}
}

func TestStatusErrorKeepsPasswordsOutOfMessages(t *testing.T) {
	d := newDownstream(t, reply{status: 400})
	u := strings.Replace(d.URL, "http://", "http://user:s3cret@", 1)
	s := newHTTP(t, HTTPConfig{URL: u})
	err := s.Write(context.Background(), batchOf(1, 1))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v shows the URL's password", err)
	}
}
