package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/batchpilot/batchpilot/node/logs"
	"github.com/batchpilot/batchpilot/node/sink"
)

// IngestHandler serves POST /v1/logs in the native formats (node/logs): it
// decodes the body, queues every record, and answers 200 {"accepted": N}
// only once all of them are durably written. A malformed record fails the
// whole request with 400 and its line number, and nothing of that request
// is written.
func (n *Node) IngestHandler() http.Handler { return n.LogsHandler() }

// LogsHandler is IngestHandler with more intakes sharing the path: a body
// that one of others claims (OTLP) is answered by it, any other by the
// native formats.
func (n *Node) LogsHandler(others ...BodyIntake) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.serveIngest(w, r, others) })
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (n *Node) serveIngest(w http.ResponseWriter, r *http.Request, others []BodyIntake) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST", 0)
		return
	}
	if n.draining.Load() {
		n.Rejected("draining", 1)
		writeError(w, http.StatusServiceUnavailable, ErrDraining.Error(), 0)
		return
	}
	if err := n.admitHeaders(r); err != nil {
		n.writeOverloaded(w, err) // before the body is read (admission.go)
		return
	}
	body, status, err := readBody(r, n.cfg.MaxBodyBytes)
	if err != nil {
		n.rejectedStatus(status, 1)
		for _, o := range others {
			if ew, ok := o.(BodyErrorWriter); ok && ew.WriteBodyError(w, r, status, err.Error()) {
				return
			}
		}
		writeError(w, status, err.Error(), 0)
		return
	}
	ct := r.Header.Get("Content-Type")
	for _, o := range others {
		if o.Claims(ct, body.Bytes()) {
			o.ServeBody(w, r, body.Bytes())
			body.Reset()
			bodyPool.Put(body)
			return
		}
	}
	// The records point into the body; it goes back to the pool only after
	// they have been written (or never, if the client leaves first).
	format, err := logs.FormatFor(ct, body.Bytes())
	if err != nil {
		n.Rejected("malformed", 1)
		writeError(w, http.StatusUnsupportedMediaType, err.Error(), 0)
		return
	}
	recs, err := logs.Decode(format, body.Bytes(), n.cfg.MaxLineBytes)
	if err != nil {
		var de *logs.DecodeError
		status, line := http.StatusBadRequest, 0
		if errors.As(err, &de) {
			line = de.Line
			if de.TooLong {
				status = http.StatusRequestEntityTooLarge
			}
		}
		n.rejectedStatus(status, 1)
		writeError(w, status, err.Error(), line)
		return
	}
	err = n.Ingest(r.Context(), recs, SourceHTTP)
	n.noteRetry(r, len(recs), err) // a retry is not new demand (admission_arrival.go)
	if err == nil || errors.Is(err, ErrQueueFull) || errors.Is(err, ErrDraining) || errors.Is(err, ErrBreakerOpen) {
		// Every record is settled (or never queued): the body can be reused.
		body.Reset()
		bodyPool.Put(body)
	}
	if err == nil {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"accepted\":%d}\n", len(recs))
		return
	}
	if r.Context().Err() != nil && !errors.Is(err, ErrQueueFull) && !errors.Is(err, ErrDraining) && !errors.Is(err, ErrBreakerOpen) {
		return // the client went away; nobody reads the answer
	}
	status, msg := IngestStatus(err)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(n.RetryAfter()))
	}
	writeError(w, status, msg, 0)
}

// IngestStatus maps an error of Receiver.Ingest to the HTTP status and
// message every HTTP intake answers with: 429 for a full queue or a
// request over the delay bound (send Retry-After: Receiver.RetryAfter), 503 while draining, while the breaker is open or when the
// sink failed, 422 when the sink can never write a record of the request.
func IngestStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrQueueFull):
		if errors.Is(err, ErrOverloaded) {
			return http.StatusTooManyRequests, msgOverloaded
		}
		return http.StatusTooManyRequests, "queue full: retry later"
	case errors.Is(err, ErrDraining), errors.Is(err, ErrBreakerOpen):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, sink.ErrBadRecord):
		// Retrying will not help, so this is not a 503.
		return http.StatusUnprocessableEntity, "the sink refused a record of this request: " + err.Error()
	default:
		return http.StatusServiceUnavailable, "sink: " + err.Error()
	}
}

// rejectedStatus counts a request refused with status before it was queued.
func (n *Node) rejectedStatus(status, count int) {
	if status == http.StatusRequestEntityTooLarge {
		n.Rejected("too_large", count)
	} else {
		n.Rejected("malformed", count)
	}
}

// ReadBody reads an ingest request's body, gunzipping it when
// Content-Encoding says so, up to limit bytes after decompression. On error
// status is what to answer: 413 over the limit, 415 for an unknown
// encoding, 400 for a body that cannot be read.
func ReadBody(r *http.Request, limit int64) ([]byte, int, error) {
	buf, status, err := readBody(r, limit)
	if err != nil {
		return nil, status, err
	}
	return buf.Bytes(), 0, nil
}

// readBody is ReadBody with a buffer from bodyPool.
func readBody(r *http.Request, limit int64) (*bytes.Buffer, int, error) {
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes is over the limit of %d bytes", r.ContentLength, limit)
	}
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("bad gzip body: %v", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q: use gzip or none", enc)
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 && r.Header.Get("Content-Encoding") == "" {
		buf.Grow(int(r.ContentLength))
	}
	got, err := buf.ReadFrom(io.LimitReader(src, limit+1))
	if err != nil {
		bodyPool.Put(buf)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is over the limit of %d bytes", mbe.Limit)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %v", err)
	}
	if got > limit {
		bodyPool.Put(buf)
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is over the limit of %d bytes", limit)
	}
	return buf, 0, nil
}

// writeError answers {"error": msg} and, for a bad record, its line.
func writeError(w http.ResponseWriter, status int, msg string, line int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	body := map[string]any{"error": msg}
	if line > 0 {
		body["line"] = line
	}
	_ = json.NewEncoder(w).Encode(body)
}

// WriteError is writeError for the other handlers of the agent.
func WriteError(w http.ResponseWriter, status int, msg string) { writeError(w, status, msg, 0) }
