package tuner

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Observation is what a node measured over one control interval. The node's
// control loop fills it and hands it to a Controller; a simulation fills it
// from a cost model. Rates are per second over the interval.
type Observation struct {
	// Now is the end of the interval. Controllers take the time from here
	// and never read the clock.
	Now time.Time
	// Interval is the length of the interval the figures cover.
	Interval time.Duration

	// BatchSize is the size in force during the interval.
	BatchSize int
	// MaxBatchSize is the cap the controller must not exceed (the node's
	// grant from the leader, or the configured maximum).
	MaxBatchSize int

	ArrivalRate float64 // records offered per second
	Throughput  float64 // records durably written per second
	Goodput     float64 // records acknowledged within the SLO per second

	P50 time.Duration // end-to-end latency quantiles of the records written
	P99 time.Duration
	SLO time.Duration // the p99 latency objective

	Batches        int           // batches whose flush ended in the interval, failed ones included
	MeanBatchFill  float64       // mean records per flushed batch
	MeanBatchTime  time.Duration // mean processing + sink time per batch
	AvgRecordBytes float64
	QueueDepth     int   // records waiting at the end of the interval
	QueueBytes     int64 // bytes waiting at the end of the interval

	SinkErrors   int // batches that failed after the sink's retries
	Backpressure int // signals of a pushing-back downstream (429, 503, timeouts)
	// TooLarge counts the SinkErrors that were batches refused for their
	// size (HTTP 413): a batch size problem the controller fixes, not a
	// failing sink, so the breaker does not count them.
	TooLarge int

	// CPUPercent is this process's CPU use over the interval as a share of
	// the CPU it may use (CPUAllowance: a cgroup quota, or the host's
	// CPUs), 0-100; not the whole host's. 100 means the process uses all
	// it is allowed, whatever else runs on the host.
	CPUPercent float64
	// CPUAllowance is the CPU CPUPercent is a share of and which limit
	// sets it (zero when unknown: a simulation, or no sampler).
	CPUAllowance CPUAllowance
	MemPercent   float64 // whole-host memory use, 0-100
	RSSBytes     uint64  // this process's resident memory

	// The fields below are optional context; a zero value means unknown
	// and the controllers fall back to an estimate or a default.

	// FlushConcurrency is how many batches may be in flight at once (K).
	FlushConcurrency int
	// MaxLinger is the longest a record waits for its batch to fill before
	// the batch is flushed anyway.
	MaxLinger time.Duration
	// QueueCapacity is the queue's bound in records.
	QueueCapacity int
	// Rejected counts records refused in the interval because the queue
	// was full (answered 429 to the client).
	Rejected int
	// Graced counts records admitted in the interval past the admission's
	// delay bound, on the one request the node lets past it after a calm
	// interval (node/admission.go). The node falls behind as when it
	// refuses, and steps early on it; no client was refused, so none is
	// backing off.
	Graced int
	// CPULimit (percent of CPUAllowance) and MemLimit (percent of the
	// host's memory) are the limits, 0-100, that the gradient's objective
	// and the Breaker hold the node to; 0 means the Breaker's configured
	// default. Over them the node is under pressure and refuses new work
	// (see Breaker).
	CPULimit float64
	MemLimit float64

	// Attempts are the sink's requests to the downstream whose answers
	// came in the interval, oldest first, retries included (at most
	// MaxAttempts; AttemptsDropped counts the rest). Every controller sees
	// the same attempt-level signals: each request's own RTT, 429/503 and
	// Retry-After as back pressure even when a retry then succeeded, 413
	// as too large. A sink that does not report attempts (the file sink)
	// gives one per batch, timed around its write.
	Attempts        []Attempt
	AttemptsDropped int
	// FlushLimit is how many batches may be in flight at once now: the
	// node's FlushConcurrency unless a controller set a lower limit
	// (Decision.FlushConcurrency). 0: unknown.
	FlushLimit int
	// BatchBytes is the bound on a batch's bytes in force (as the sink
	// writes them; Decision.BatchBytes); 0: none.
	BatchBytes int
}

// MaxAttempts bounds Observation.Attempts.
const MaxAttempts = 4096

// AttemptOutcome is what the downstream's answer to an attempt meant.
type AttemptOutcome int

// The outcomes of an attempt.
const (
	AttemptOK           AttemptOutcome = iota // the downstream has the batch
	AttemptBackpressure                       // 429, 503, a timeout, an overloaded database
	AttemptTooLarge                           // 413: the batch is too large for the downstream
	AttemptFailed                             // any other failure
)

func (o AttemptOutcome) String() string {
	switch o {
	case AttemptOK:
		return "ok"
	case AttemptBackpressure:
		return "backpressure"
	case AttemptTooLarge:
		return "too_large"
	}
	return "failed"
}

// Attempt is one request of the sink to the downstream.
type Attempt struct {
	// End is when the answer came (or the attempt failed); RTT is from
	// sending to then, without any wait before it.
	End time.Time
	RTT time.Duration
	// Records and Bytes are the batch's (bytes as the sink writes them).
	Records int
	Bytes   int
	Outcome AttemptOutcome
	// RetryAfter is the wait the downstream asked for; negative: none.
	RetryAfter time.Duration
	// N is the attempt's number for its batch, from 0 (retries are 1, 2...).
	N int
	// InFlight is how many batches were being flushed when this one
	// started, itself included.
	InFlight int
	// Full says the batch was cut at its bound (records or bytes) rather
	// than flushed by the linger with room to spare.
	Full bool
}

// AttemptStats sums an interval's attempts.
type AttemptStats struct {
	Attempts, OK, Backpressure, TooLarge, Failed int
	// MeanRTT is the mean RTT of the successful attempts; OKRecords the
	// records they carried.
	MeanRTT   time.Duration
	OKRecords int
	// MaxRetryAfter is the longest wait the downstream asked for.
	MaxRetryAfter time.Duration
	// MaxInFlight is the most batches in flight when an attempt started.
	MaxInFlight int
}

// AttemptStats sums obs.Attempts.
func (obs Observation) AttemptStats() AttemptStats {
	var s AttemptStats
	var rtt time.Duration
	for _, a := range obs.Attempts {
		s.Attempts++
		s.MaxInFlight = max(s.MaxInFlight, a.InFlight)
		s.MaxRetryAfter = max(s.MaxRetryAfter, a.RetryAfter)
		switch a.Outcome {
		case AttemptOK:
			s.OK++
			s.OKRecords += a.Records
			rtt += a.RTT
		case AttemptBackpressure:
			s.Backpressure++
		case AttemptTooLarge:
			s.TooLarge++
		default:
			s.Failed++
		}
	}
	if s.OK > 0 {
		s.MeanRTT = rtt / time.Duration(s.OK)
	}
	return s
}

// Decision is a controller's answer for the next interval.
type Decision struct {
	BatchSize int
	// Reason is a short machine-friendly word or phrase ("grow", "shrink:p99",
	// "hold:deadband", "model-bound") that the decision log shows.
	Reason string
	// Breaker is the breaker's state after it saw this decision ("closed",
	// "open", "half-open"); empty when no breaker was applied.
	Breaker string
	// FlushConcurrency, when > 0, sets how many batches may be in flight
	// at once, up to the node's FlushConcurrency (a controller of request
	// concurrency, arc, sets it); 0 leaves it as it is.
	FlushConcurrency int
	// BatchBytes, when > 0, bounds a batch's bytes as the sink writes them
	// as well as its records (Vector's max_bytes beside max_events); 0
	// leaves the bound as it is.
	BatchBytes int
	// WriteTime, when > 0, is the time the controller expects one batch of
	// BatchSize to take to write (its cost model's figure). The node's
	// admission counts the capacity a larger size will have from it until
	// batches of that size are measured (node/admission.go). 0: no
	// estimate; Step clears it when the guard or the cap changed the size.
	WriteTime time.Duration
}

// FlowController is implemented by a controller that sets the flush
// concurrency or a byte bound from the start (arc): the node reads
// InitialFlow once, before its first batch, and then takes both from each
// Decision. Zero values leave the node's own.
type FlowController interface {
	Controller
	InitialFlow() (flushConcurrency, batchBytes int)
}

// Controller chooses the batch size for the next interval.
//
// A Controller is a value that keeps its own state between calls. Next is
// called once per control interval, from one goroutine at a time; it must not
// block, start goroutines, or read the clock (obs.Now is the time). The same
// sequence of observations always gives the same sequence of decisions.
type Controller interface {
	// Name is the controller's name as --controller and the bench report
	// spell it ("gradient", "aimd", "static:100").
	Name() string
	// Next returns the batch size for the next interval. The result is
	// at least 1 and at most obs.MaxBatchSize when that is positive.
	Next(obs Observation) Decision
}

// Static keeps one fixed batch size: the baseline every tool ships today.
type Static struct {
	Size int
}

// Name implements Controller.
func (s *Static) Name() string { return "static:" + strconv.Itoa(s.Size) }

// Next implements Controller.
func (s *Static) Next(obs Observation) Decision {
	return Decision{BatchSize: Clamp(s.Size, obs.MaxBatchSize), Reason: "static"}
}

// Clamp keeps size within [1, max]; a max of 0 or less means no upper bound.
func Clamp(size, max int) int {
	if max > 0 && size > max {
		size = max
	}
	if size < 1 {
		size = 1
	}
	return size
}

// defaultSLO is the latency objective assumed when an Observation has none.
const defaultSLO = 500 * time.Millisecond

// ErrUnknownController is returned by New for a spec it does not know.
var ErrUnknownController = errors.New("unknown controller")

// ControllerNames are the specs New accepts, as --controller documents them.
var ControllerNames = []string{"gradient", "aimd", "gradient2", "target", "arc", "static", "static:N"}

// New returns the controller a spec names: "gradient", "aimd", "gradient2",
// "target", "arc" (a fixed batch with adaptive flush concurrency, as Vector
// runs it), "static" (fixed at initial) or "static:N" (fixed at N). initial
// is the starting size and max the largest size it may choose (0: only
// obs.MaxBatchSize bounds it).
func New(spec string, initial, max int) (Controller, error) {
	if initial < 1 {
		initial = 100
	}
	name, arg, hasArg := strings.Cut(strings.TrimSpace(spec), ":")
	if hasArg && name != "static" {
		return nil, fmt.Errorf("controller %q: %w (valid: %s)", spec, ErrUnknownController, strings.Join(ControllerNames, ", "))
	}
	switch name {
	case "gradient":
		return NewGradient(GradientConfig{Initial: initial, Max: max}), nil
	case "aimd":
		return NewAIMD(AIMDConfig{Initial: initial, Max: max}), nil
	case "gradient2":
		return NewGradient2(Gradient2Config{Initial: initial, Max: max}), nil
	case "target":
		return NewTarget(TargetConfig{Initial: initial, Max: max}), nil
	case "arc":
		return NewARC(ARCConfig{}), nil
	case "static":
		size := initial
		if hasArg {
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("controller %q: static size must be a positive integer", spec)
			}
			size = n
		}
		return &Static{Size: size}, nil
	}
	return nil, fmt.Errorf("controller %q: %w (valid: %s)", spec, ErrUnknownController, strings.Join(ControllerNames, ", "))
}
