package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults for HTTPConfig's zero fields (the retry policy's, RetryPolicy).
const (
	DefaultHTTPTimeout     = 10 * time.Second
	DefaultHTTPMaxRetries  = DefaultMaxRetries
	DefaultHTTPBackoffBase = DefaultBackoffBase
	DefaultHTTPBackoffMax  = DefaultBackoffMax
)

const (
	// readyWindow is how long a successful write keeps Ready true without
	// probing the endpoint.
	readyWindow = 30 * time.Second
	// readyDialTimeout bounds Ready's TCP probe when ctx has no sooner deadline.
	readyDialTimeout = 2 * time.Second
	// maxDrain is how much of a response body is read to let the connection
	// be reused; past that the connection is dropped instead.
	maxDrain = 256 << 10
	// maxErrorBody is how much of an error response goes into the error.
	maxErrorBody = 512
)

// HTTPConfig configures the HTTP sink.
type HTTPConfig struct {
	// URL receives each batch as one POST of NDJSON. http or https.
	URL string
	// Timeout bounds one attempt, from sending the request to reading the
	// response. Zero means DefaultHTTPTimeout.
	Timeout time.Duration
	// MaxRetries is how many times a failed attempt is retried (so at most
	// MaxRetries+1 requests per batch). Zero means DefaultHTTPMaxRetries;
	// negative means no retries.
	MaxRetries int
	// BackoffBase and BackoffMax shape the wait before retry n:
	// min(BackoffBase·2ⁿ, BackoffMax), of which the upper half is jittered.
	// A Retry-After header replaces it, capped at BackoffMax. Zero means
	// DefaultHTTPBackoffBase and DefaultHTTPBackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Client sends the requests. Nil means a client of the sink's own whose
	// transport keeps enough idle connections for concurrent flushes.
	Client *http.Client
	// Logger receives retries; nil means slog.Default().
	Logger *slog.Logger
}

// HTTPStats are the HTTP sink's counters since it was created.
type HTTPStats struct {
	Requests uint64 // POSTs sent, retries included
	Retries  uint64 // POSTs that were retries
	Failures uint64 // Writes that returned an error
}

// StatusError is an unsuccessful HTTP answer to a batch. It unwraps to
// ErrBackpressure for 429 and 503, ErrBatchTooLarge for 413.
type StatusError struct {
	URL        string // redacted of any password
	StatusCode int
	Body       string // the start of the response body
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("POST %s: %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + strconv.Quote(e.Body)
	}
	return msg
}

// Unwrap returns ErrBackpressure when the status says the receiver is
// overloaded rather than that the data is wrong, and ErrBatchTooLarge for
// 413.
func (e *StatusError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return ErrBackpressure
	case http.StatusRequestEntityTooLarge:
		return ErrBatchTooLarge
	}
	return nil
}

// HTTP is a sink that POSTs every batch as NDJSON
// (Content-Type: application/x-ndjson) to one URL. A 2xx answer means the
// receiver has the batch durably. 429, 503, other 5xx, connection errors and
// timeouts are retried a bounded number of times with jittered exponential
// backoff, honouring Retry-After; other answers fail the batch at once.
// Safe for concurrent use.
type HTTP struct {
	url       string
	redacted  string
	hostport  string
	timeout   time.Duration
	retry     RetryPolicy
	client    *http.Client
	ownClient bool
	log       *slog.Logger

	closed atomic.Bool
	epoch  time.Time    // monotonic origin for lastOK
	lastOK atomic.Int64 // time since epoch of the last successful write, +1; 0 = never

	requests, retries, failures atomic.Uint64
}

// NewHTTP checks cfg and returns an HTTP sink. It does not contact the URL.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("http sink: bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("http sink: URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("http sink: URL %q has no host", u.Redacted())
	}
	for name, d := range map[string]time.Duration{"timeout": cfg.Timeout, "backoff base": cfg.BackoffBase, "backoff max": cfg.BackoffMax} {
		if d < 0 {
			return nil, fmt.Errorf("http sink: %s %s is negative", name, d)
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultHTTPTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &HTTP{
		url:      u.String(),
		redacted: u.Redacted(),
		hostport: hostPort(u),
		timeout:  cfg.Timeout,
		retry: RetryPolicy{MaxRetries: cfg.MaxRetries, BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax,
			Name: "http sink", Logger: cfg.Logger}.withDefaults(),
		client: cfg.Client,
		log:    cfg.Logger,
		epoch:  time.Now(),
	}
	if s.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The default keeps 2 idle connections per host; concurrent flushes
		// would then open and close connections all the time.
		t.MaxIdleConnsPerHost = 64
		s.client = &http.Client{Transport: t}
		s.ownClient = true
	}
	return s, nil
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Write POSTs the batch and returns nil once the receiver answered 2xx. On
// a retryable failure it waits and tries again, at most MaxRetries times;
// it gives up early when ctx ends or when ctx's deadline would pass before
// the next attempt. The error of a batch that failed because of 429, 503 or
// timeouts matches ErrBackpressure under errors.Is; a refused batch's error
// holds a *StatusError.
func (s *HTTP) Write(ctx context.Context, b *Batch) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if b == nil || len(b.Records) == 0 {
		return nil
	}
	body, err := appendNDJSON(make([]byte, 0, ndjsonSize(b)), b)
	if err != nil {
		s.failures.Add(1)
		return fmt.Errorf("http sink: %w", err)
	}
	if err := s.post(ctx, body, b.OnAttempt); err != nil {
		s.failures.Add(1)
		return err
	}
	s.lastOK.Store(int64(time.Since(s.epoch)) + 1)
	return nil
}

// post sends body under the retry policy, reporting every attempt.
func (s *HTTP) post(ctx context.Context, body []byte, report func(Attempt)) error {
	n := 0
	return s.retry.Do(ctx, report, func(ctx context.Context) AttemptResult {
		if n > 0 {
			s.retries.Add(1)
		}
		n++
		s.requests.Add(1)
		return s.attempt(ctx, body)
	}, "url", s.redacted)
}

// retryWait returns the wait after failed attempt n (0-based): the retry
// policy's (RetryPolicy.Wait).
func (s *HTTP) retryWait(n int, retryAfter time.Duration) time.Duration {
	return s.retry.Wait(n, retryAfter)
}

// attempt sends body once and sorts the answer: 2xx is success; 429 and
// 503 are back pressure and 413 a batch too large, as StatusError unwraps
// them; 429 and 5xx are retried, honouring Retry-After.
func (s *HTTP) attempt(ctx context.Context, body []byte) AttemptResult {
	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return AttemptResult{Err: fmt.Errorf("build request for %s: %w", s.redacted, err), RetryAfter: -1, Outcome: OutcomeFailed}
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := s.client.Do(req)
	if err != nil {
		return s.transportError(ctx, actx, err)
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return AttemptResult{RetryAfter: -1}
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	serr := &StatusError{URL: s.redacted, StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(head))}
	res := AttemptResult{Err: serr, RetryAfter: -1, Outcome: outcomeOf(serr)}
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests, code >= 500:
		res.Retry = true
		res.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return res
}

// transportError classifies an error from Client.Do. Timeouts are
// backpressure; a refused or broken connection is retried but is not.
func (s *HTTP) transportError(ctx, actx context.Context, err error) AttemptResult {
	if ctx.Err() != nil {
		// The caller's context ended; post reports that.
		return AttemptResult{Err: fmt.Errorf("POST %s: %w", s.redacted, err), RetryAfter: -1, Outcome: OutcomeFailed}
	}
	var nerr net.Error
	if actx.Err() != nil || (errors.As(err, &nerr) && nerr.Timeout()) {
		return AttemptResult{
			Err:        fmt.Errorf("POST %s: no answer within %s: %w: %w", s.redacted, s.timeout, ErrBackpressure, err),
			Retry:      true,
			RetryAfter: -1,
			Outcome:    OutcomeBackpressure,
		}
	}
	return AttemptResult{Err: fmt.Errorf("POST %s: %w", s.redacted, err), Retry: true, RetryAfter: -1, Outcome: OutcomeFailed}
}

// outcomeOf sorts a failed attempt's error for the tuner.
func outcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrBatchTooLarge):
		return OutcomeTooLarge
	case errors.Is(err, ErrBackpressure):
		return OutcomeBackpressure
	}
	return OutcomeFailed
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// It returns -1 when the header is absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return -1
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return -1
		}
		if secs > int64(time.Duration(1<<62)/time.Second) {
			secs = int64(time.Duration(1<<62) / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}

// Ready reports whether the endpoint looks reachable: a write succeeded
// within the last 30 seconds, or the URL's host and port accept a TCP
// connection now.
func (s *HTTP) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if ok := s.lastOK.Load(); ok != 0 && time.Since(s.epoch)-time.Duration(ok-1) < readyWindow {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, readyDialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", s.hostport)
	if err != nil {
		return fmt.Errorf("http sink: %s not reachable: %w", s.redacted, err)
	}
	conn.Close()
	return nil
}

// Close makes later Writes return ErrClosed and closes the idle connections
// of the sink's own client.
func (s *HTTP) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	return nil
}

// Stats returns the sink's counters.
func (s *HTTP) Stats() HTTPStats {
	return HTTPStats{
		Requests: s.requests.Load(),
		Retries:  s.retries.Load(),
		Failures: s.failures.Load(),
	}
}
