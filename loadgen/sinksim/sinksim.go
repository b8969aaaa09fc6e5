// Package sinksim is a downstream simulator: an HTTP server that accepts
// batches of NDJSON records (the http sink's target) at a configurable cost,
// with a concurrency limit, injected errors and cost phases over time. It
// runs as "batchpilot sinksim" or in-process:
//
//	srv, err := sinksim.Start(sinksim.Config{Cost: sinksim.Cost{PerRecord: 50 * time.Microsecond}})
//	defer srv.Close()
//	// POST NDJSON to srv.URL() + "/anything"; srv.Stats() counts what arrived.
//
// A request that starts paying its cost under an aggregate load L (the
// decoded bytes, or the requests, being served at once by all clients
// together, itself included) pays
//
//	cost = (per_request + per_record × min(N, knee_batch)
//	        + per_record × knee_factor × max(0, N − knee_batch)
//	        + per_byte × bytes) × max(1, (L / knee)^knee_exponent) + uniform[0, jitter)
//
// where knee is knee_bytes for a load in bytes and knee_requests for one in
// requests (the larger factor wins; an unset knee is never passed), and
// knee_exponent defaults to 2. The first factor is one request's own cost
// (Cost.Of), the second the shared downstream's contention (Cost.Contention):
// past the knee the aggregate throughput falls as everyone pushes harder.
// Above max_concurrency requests at once the rest wait in line, and beyond
// the queue the answer is 429 with Retry-After.
package sinksim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Config sets up a simulator.
type Config struct {
	// Addr to listen on (Start); default 127.0.0.1:0, a free port.
	Addr string
	// Cost of each accepted request.
	Cost Cost
	// ErrorRate is the fraction of requests answered with an injected error
	// instead, of a kind drawn evenly from ErrorKinds (default 503):
	// "429" and "503" answer at once with Retry-After; "timeout" holds the
	// request without an answer until the client gives up or TimeoutHold
	// (default 30s) passes, then drops the connection.
	ErrorRate   float64
	ErrorKinds  []string
	TimeoutHold time.Duration
	// RetryAfter goes with injected 429/503 and queue-full answers, in whole
	// seconds rounded up; 0 sends "Retry-After: 0", negative omits it.
	RetryAfter time.Duration
	// MaxConcurrency requests pay their cost at once (0: no limit); the
	// rest wait in line, at most Queue of them (0: no limit, -1: none may
	// wait); beyond that the answer is 429.
	MaxConcurrency int
	Queue          int
	// Scenario changes all of the above over time (nil: constant).
	Scenario *Scenario
	// KeepIDs keeps the "id" of every accepted record (IDs, GET /ids).
	KeepIDs bool
	// Validate answers 400 {"error", "line"} for a line that is not JSON.
	Validate bool
	// MaxBody bounds a decoded request body (default 64 MiB; 413 above).
	MaxBody int64
	// Seed for injected errors and jitter (default 1).
	Seed   uint64
	Logger *slog.Logger
	// Now is the clock that places a request in the cost scenario (tests).
	Now func() time.Time
}

// Stats is what the simulator has seen; GET /stats answers it as JSON.
type Stats struct {
	// Requests: POSTs received, whatever the answer.
	Requests int64 `json:"requests"`
	// Records and Bytes (decoded) of the accepted requests.
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// WireBytes: request bodies as received (compressed or not), accepted
	// or not.
	WireBytes int64 `json:"wire_bytes"`
	Accepted  int64 `json:"accepted_requests"`
	// Rejected by reason: 429, 503, timeout (injected), queue_full,
	// bad_request, too_large.
	Rejected map[string]int64 `json:"rejected"`
	// Abandoned: clients that went away before their answer.
	Abandoned   int64 `json:"abandoned"`
	InFlight    int64 `json:"in_flight"`
	Queued      int64 `json:"queued"`
	MaxInFlight int64 `json:"max_in_flight"`
	// CostMS is the configured cost of the accepted requests (jitter
	// included), ServiceMS the time they actually held a slot paying it:
	// the model holds when the two agree.
	// InFlightBytes is the decoded bytes being served now (the aggregate
	// knee's load), MaxInFlightBytes its peak; PastKnee counts the accepted
	// requests that started with the aggregate load past a knee.
	InFlightBytes    int64   `json:"in_flight_bytes"`
	MaxInFlightBytes int64   `json:"max_in_flight_bytes"`
	PastKnee         int64   `json:"past_knee_requests"`
	CostMS           float64 `json:"cost_ms"`
	ServiceMS        float64 `json:"service_ms"`
	Phase            string  `json:"phase"`
	// IDs kept (KeepIDs) and ids seen more than once.
	IDs        int64 `json:"ids"`
	Duplicates int64 `json:"duplicate_ids"`
}

// Server is a running (or, from New, ready to mount) simulator. It is an
// http.Handler; every method is safe for concurrent use.
type Server struct {
	cfg   Config
	base  settings
	start time.Time
	limit limiter

	requests, records, bytes, wire, accepted, abandoned atomic.Int64
	inFlight, maxInFlight                               atomic.Int64
	costNS, serviceNS                                   atomic.Int64
	inFlightBytes, maxInFlightBytes, pastKnee           atomic.Int64

	mu       sync.Mutex
	rng      *rand.Rand
	rejected map[string]int64
	ids      map[string]int
	dups     int64

	ln  net.Listener
	srv *http.Server
}

// New checks cfg and returns a simulator to mount as an http.Handler.
func New(cfg Config) (*Server, error) {
	if err := checkRate(cfg.ErrorRate); err != nil {
		return nil, err
	}
	if len(cfg.ErrorKinds) == 0 {
		cfg.ErrorKinds = []string{Kind503}
	}
	if err := checkKinds(cfg.ErrorKinds); err != nil {
		return nil, err
	}
	if cfg.Cost.PerRequest < 0 || cfg.Cost.PerRecord < 0 || cfg.Cost.PerByte < 0 || cfg.Cost.Jitter < 0 ||
		cfg.Cost.KneeBatch < 0 || cfg.Cost.KneeFactor < 0 || math.IsNaN(cfg.Cost.KneeFactor) {
		return nil, errors.New("costs must not be negative")
	}
	if cfg.Cost.KneeBytes < 0 || cfg.Cost.KneeRequests < 0 {
		return nil, fmt.Errorf("aggregate knee must not be negative (knee bytes %d, knee requests %d)", cfg.Cost.KneeBytes, cfg.Cost.KneeRequests)
	}
	if err := checkKneeExponent(cfg.Cost.KneeExponent); err != nil {
		return nil, err
	}
	if cfg.MaxConcurrency < 0 || cfg.Queue < -1 {
		return nil, errors.New("max concurrency must be >= 0 and queue >= -1")
	}
	if cfg.TimeoutHold <= 0 {
		cfg.TimeoutHold = 30 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 20
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s := &Server{
		cfg: cfg,
		base: settings{phase: "base", cost: cfg.Cost, errorRate: cfg.ErrorRate, errorKinds: cfg.ErrorKinds,
			maxConc: cfg.MaxConcurrency, queue: cfg.Queue},
		start:    cfg.Now(),
		rng:      rand.New(rand.NewPCG(cfg.Seed, 0x73696e6b)), // "sink"
		rejected: map[string]int64{},
	}
	if cfg.KeepIDs {
		s.ids = map[string]int{}
	}
	return s, nil
}

// Start makes a simulator and serves it on cfg.Addr.
func Start(cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sinksim listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("sinksim serve", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address Start listens on.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is http://Addr.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Shutdown stops accepting and waits for requests in flight (or ctx).
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// Close stops at once, dropping requests in flight.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

// Stats returns the counters now.
func (s *Server) Stats() Stats {
	active, waiting := s.limit.load()
	st := Stats{
		Requests: s.requests.Load(), Records: s.records.Load(), Bytes: s.bytes.Load(),
		WireBytes: s.wire.Load(), Accepted: s.accepted.Load(), Abandoned: s.abandoned.Load(),
		InFlight: int64(active), Queued: int64(waiting), MaxInFlight: s.maxInFlight.Load(),
		InFlightBytes: s.inFlightBytes.Load(), MaxInFlightBytes: s.maxInFlightBytes.Load(), PastKnee: s.pastKnee.Load(),
		CostMS:    float64(s.costNS.Load()) / 1e6,
		ServiceMS: float64(s.serviceNS.Load()) / 1e6,
		Phase:     s.settings().phase,
	}
	s.mu.Lock()
	st.Rejected = make(map[string]int64, len(s.rejected))
	for k, v := range s.rejected {
		st.Rejected[k] = v
	}
	st.IDs, st.Duplicates = int64(len(s.ids)), s.dups
	s.mu.Unlock()
	return st
}

// IDs returns the record ids kept so far (KeepIDs), in no order.
func (s *Server) IDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.ids))
	for id := range s.ids {
		out = append(out, id)
	}
	return out
}

// HasID reports whether a record with id was accepted (KeepIDs).
func (s *Server) HasID(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id] > 0
}

func (s *Server) settings() settings {
	return s.cfg.Scenario.at(s.base, s.cfg.Now().Sub(s.start))
}

func (s *Server) reject(w http.ResponseWriter, code int, reason, msg string) {
	s.mu.Lock()
	s.rejected[reason]++
	s.mu.Unlock()
	if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && s.cfg.RetryAfter >= 0 {
		secs := int64(math.Ceil(s.cfg.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeJSON(w, code, map[string]any{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// ServeHTTP accepts POST of NDJSON (or a JSON array) on any path and
// answers 200 {"accepted": N} once the cost is paid; GET /stats, GET /ids
// and GET /healthz report.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		switch r.URL.Path {
		case "/stats":
			writeJSON(w, http.StatusOK, s.Stats())
		case "/ids":
			w.Header().Set("Content-Type", "text/plain")
			bw := bufio.NewWriter(w)
			for _, id := range s.IDs() {
				bw.WriteString(id)
				bw.WriteByte('\n')
			}
			bw.Flush()
		case "/healthz", "/readyz":
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "GET /stats, /ids or /healthz; POST records on any path"})
		}
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + r.Method + " not allowed"})
		return
	}
	s.requests.Add(1)
	st := s.settings()
	switch kind := s.fault(st); kind {
	case Kind429:
		s.reject(w, http.StatusTooManyRequests, Kind429, "injected 429")
		return
	case Kind503:
		s.reject(w, http.StatusServiceUnavailable, Kind503, "injected 503")
		return
	case KindTimeout:
		s.mu.Lock()
		s.rejected[KindTimeout]++
		s.mu.Unlock()
		t := time.NewTimer(s.cfg.TimeoutHold)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		panic(http.ErrAbortHandler) // drop the connection without an answer
	}
	if err := s.limit.acquire(r.Context(), st.maxConc, st.queue); err != nil {
		if errors.Is(err, errQueueFull) {
			s.reject(w, http.StatusTooManyRequests, "queue_full", "queue full")
		} else {
			s.abandoned.Add(1)
		}
		return
	}
	began := time.Now()
	n := s.inFlight.Add(1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	defer func() {
		s.inFlight.Add(-1)
		s.limit.release(s.settings().maxConc)
	}()

	body, wire, err := s.readBody(r)
	s.wire.Add(wire)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) || errors.Is(err, errTooLarge) {
			s.reject(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		} else {
			s.reject(w, http.StatusBadRequest, "bad_request", err.Error())
		}
		return
	}
	records, ids, line, err := s.parse(body)
	if err != nil {
		s.mu.Lock()
		s.rejected["bad_request"]++
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "line": line})
		return
	}
	// The aggregate load this request starts under, itself included.
	load := s.inFlightBytes.Add(int64(len(body)))
	defer s.inFlightBytes.Add(-int64(len(body)))
	for m := s.maxInFlightBytes.Load(); load > m && !s.maxInFlightBytes.CompareAndSwap(m, load); m = s.maxInFlightBytes.Load() {
	}
	reqs := int(s.inFlight.Load())
	past := st.cost.PastKnee(load, reqs)
	cost := st.cost.Service(records, len(body), load, reqs) + s.jitter(st.cost.Jitter)
	if wait := cost - time.Since(began); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.abandoned.Add(1)
			return
		}
	}
	s.serviceNS.Add(int64(time.Since(began)))
	s.costNS.Add(int64(cost))
	s.records.Add(int64(records))
	s.bytes.Add(int64(len(body)))
	s.accepted.Add(1)
	if past {
		s.pastKnee.Add(1)
	}
	if s.ids != nil {
		s.mu.Lock()
		for _, id := range ids {
			if s.ids[id]++; s.ids[id] > 1 {
				s.dups++
			}
		}
		s.mu.Unlock()
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": records})
}

// fault draws whether this request gets an injected error, and which.
func (s *Server) fault(st settings) string {
	if st.errorRate <= 0 || len(st.errorKinds) == 0 {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rng.Float64() >= st.errorRate {
		return ""
	}
	return st.errorKinds[s.rng.IntN(len(st.errorKinds))]
}

func (s *Server) jitter(j time.Duration) time.Duration {
	if j <= 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.rng.Int64N(int64(j)))
}

var errTooLarge = errors.New("body too large")

// readBody reads the whole body, gunzipping it if it says so; wire is the
// size as received.
func (s *Server) readBody(r *http.Request) (body []byte, wire int64, err error) {
	cr := &countingReader{r: http.MaxBytesReader(nil, r.Body, s.cfg.MaxBody)}
	var src io.Reader = cr
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(cr)
		if err != nil {
			return nil, cr.n, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	body, err = io.ReadAll(io.LimitReader(src, s.cfg.MaxBody+1))
	if err == nil && int64(len(body)) > s.cfg.MaxBody {
		err = errTooLarge
	}
	return body, cr.n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// parse counts the records of an NDJSON body (one per non-empty line) or a
// JSON array, collecting ids if kept. line is the 1-based line of a bad
// record.
func (s *Server) parse(body []byte) (records int, ids []string, line int, err error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return 0, nil, 1, fmt.Errorf("JSON array: %w", err)
		}
		for _, rec := range arr {
			if s.ids != nil {
				if id, ok := recordID(rec); ok {
					ids = append(ids, id)
				}
			}
		}
		return len(arr), ids, 0, nil
	}
	for n := 1; len(body) > 0; n++ {
		var rec []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			rec, body = body[:i], body[i+1:]
		} else {
			rec, body = body, nil
		}
		rec = bytes.TrimSpace(rec)
		if len(rec) == 0 {
			continue
		}
		if s.cfg.Validate && !json.Valid(rec) {
			return 0, nil, n, fmt.Errorf("line %d is not JSON", n)
		}
		records++
		if s.ids != nil {
			if id, ok := recordID(rec); ok {
				ids = append(ids, id)
			}
		}
	}
	return records, ids, 0, nil
}

// recordID returns a record's "id" (a string, or a number as written).
func recordID(rec []byte) (string, bool) {
	var v struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(rec, &v) != nil || len(v.ID) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(v.ID, &s) == nil {
		return s, true
	}
	return string(v.ID), true
}
