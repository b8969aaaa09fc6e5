package sink

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Defaults for RetryPolicy's zero fields.
const (
	DefaultMaxRetries  = 3
	DefaultBackoffBase = 100 * time.Millisecond
	DefaultBackoffMax  = 5 * time.Second
)

// Outcome is what the answer to one attempt means for the batch and for
// the node's tuner.
type Outcome int

// The outcomes of an attempt.
const (
	// OutcomeOK: the downstream has the batch.
	OutcomeOK Outcome = iota
	// OutcomeBackpressure: the downstream pushed back (HTTP 429 or 503, a
	// timeout, an overloaded database); another attempt may succeed later.
	OutcomeBackpressure
	// OutcomeTooLarge: the downstream refused the batch for its size (413).
	OutcomeTooLarge
	// OutcomeFailed: any other failure (a refused connection, a server
	// error, bad data).
	OutcomeFailed
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeBackpressure:
		return "backpressure"
	case OutcomeTooLarge:
		return "too_large"
	}
	return "failed"
}

// Attempt is one try at writing a batch, as a sink reports it to the node
// through Batch.OnAttempt: one request to the downstream, retries each
// their own.
type Attempt struct {
	// Start is when the attempt began; RTT how long until its answer (or
	// its failure), without any wait before it.
	Start time.Time
	RTT   time.Duration
	// N is the attempt's number for its batch, from 0.
	N       int
	Outcome Outcome
	// RetryAfter is the wait the downstream asked for (a Retry-After
	// header); negative when it asked for none.
	RetryAfter time.Duration
}

// AttemptResult is what one attempt returns to the policy: its error (nil
// on success), whether another attempt may succeed, the Retry-After the
// downstream asked for (negative: none) and the attempt's outcome.
type AttemptResult struct {
	Err        error
	Retry      bool
	RetryAfter time.Duration
	Outcome    Outcome
}

// RetryPolicy is how a sink retries a batch, shared by the http and
// postgres sinks: at most MaxRetries more attempts after the first, waiting
// min(BackoffBase·2ⁿ, BackoffMax) before retry n with the upper half
// jittered, or the downstream's Retry-After capped at BackoffMax; never
// retrying forever, and giving up early when the context ends or its
// deadline would pass before the next attempt. Every attempt, retries
// included, is reported to the batch's OnAttempt as it ends, so that the
// node's tuner sees each answer (a 429 later retried into a success is
// still back pressure; a success's RTT is its own, without the waits),
// as Vector's adaptive concurrency controller records every attempt
// (Controller::record_attempt).
type RetryPolicy struct {
	MaxRetries  int // 0: DefaultMaxRetries; negative: no retries
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Name prefixes errors and log lines ("http sink").
	Name   string
	Logger *slog.Logger
}

// withDefaults fills the zero fields in.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxRetries == 0 {
		p.MaxRetries = DefaultMaxRetries
	}
	if p.BackoffBase <= 0 {
		p.BackoffBase = DefaultBackoffBase
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = DefaultBackoffMax
	}
	if p.BackoffMax < p.BackoffBase {
		p.BackoffMax = p.BackoffBase
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Name == "" {
		p.Name = "sink"
	}
	return p
}

// Do runs attempt until it succeeds, fails for good, or the policy gives
// up, and returns nil or the last failure wrapped with the policy's name.
// report, when not nil, gets every attempt as it ends; logArgs are added
// to the retry log lines.
func (p RetryPolicy) Do(ctx context.Context, report func(Attempt), attempt func(context.Context) AttemptResult, logArgs ...any) error {
	p = p.withDefaults()
	var lastErr error
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return p.gaveUp(ctx, n, lastErr)
		}
		start := time.Now()
		res := attempt(ctx)
		if res.Err == nil {
			res.Outcome = OutcomeOK
		}
		if report != nil {
			report(Attempt{Start: start, RTT: time.Since(start), N: n, Outcome: res.Outcome, RetryAfter: res.RetryAfter})
		}
		if res.Err == nil {
			return nil
		}
		lastErr = res.Err
		if ctx.Err() != nil {
			return p.gaveUp(ctx, n+1, lastErr)
		}
		if !res.Retry {
			return fmt.Errorf("%s: %w", p.Name, lastErr)
		}
		if n >= p.retries() {
			return fmt.Errorf("%s: giving up after %d attempts: %w", p.Name, n+1, lastErr)
		}
		wait := p.Wait(n, res.RetryAfter)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return fmt.Errorf("%s: giving up after %d attempts, the next would start after the deadline: %w", p.Name, n+1, lastErr)
		}
		p.Logger.Warn(p.Name+": retrying batch", append(logArgs, "attempt", n+1, "wait", wait, "error", lastErr)...)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return p.gaveUp(ctx, n+1, lastErr)
		}
	}
}

// retries is how many retries the policy allows after the first attempt.
func (p RetryPolicy) retries() int { return max(p.MaxRetries, 0) }

func (p RetryPolicy) gaveUp(ctx context.Context, attempts int, lastErr error) error {
	if lastErr == nil {
		return fmt.Errorf("%s: %w", p.Name, ctx.Err())
	}
	return fmt.Errorf("%s: stopped after %d attempts: %w (last attempt: %w)", p.Name, attempts, ctx.Err(), lastErr)
}

// Wait is the wait after failed attempt n (0-based). A Retry-After from the
// downstream (retryAfter >= 0) is obeyed up to BackoffMax. Otherwise it is
// min(BackoffBase·2ⁿ, BackoffMax) with the upper half random, so that
// writers that failed together do not retry together.
func (p RetryPolicy) Wait(n int, retryAfter time.Duration) time.Duration {
	p = p.withDefaults()
	if retryAfter >= 0 {
		return min(retryAfter, p.BackoffMax)
	}
	d := p.BackoffBase
	for i := 0; i < n && d < p.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.BackoffMax)
	half := d / 2
	return half + rand.N(d-half+1)
}
