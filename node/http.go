package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/batchpilot/batchpilot/node/sink"
)

// IngestHandler serves POST /v1/logs: it decodes the body, queues every
// record, and answers 200 {"accepted": N} only once all of them are durably
// written. A malformed record fails the whole request with 400 and its line
// number, and nothing of that request is written.
func (n *Node) IngestHandler() http.Handler {
	return http.HandlerFunc(n.serveIngest)
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (n *Node) serveIngest(w http.ResponseWriter, r *http.Request) {
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
	body, status, err := n.readBody(r)
	if err != nil {
		if status == http.StatusRequestEntityTooLarge {
			n.Rejected("too_large", 1)
		} else {
			n.Rejected("malformed", 1)
		}
		writeError(w, status, err.Error(), 0)
		return
	}
	// The records point into the body; it goes back to the pool only after
	// they have been written (or never, if the client leaves first).
	format, err := FormatFor(r.Header.Get("Content-Type"), body.Bytes())
	if err != nil {
		n.Rejected("malformed", 1)
		writeError(w, http.StatusUnsupportedMediaType, err.Error(), 0)
		return
	}
	recs, err := Decode(format, body.Bytes(), n.cfg.MaxLineBytes)
	if err != nil {
		var de *DecodeError
		status, line := http.StatusBadRequest, 0
		if errors.As(err, &de) {
			line = de.Line
			if de.TooLong {
				status = http.StatusRequestEntityTooLarge
			}
		}
		reason := "malformed"
		if status == http.StatusRequestEntityTooLarge {
			reason = "too_large"
		}
		n.Rejected(reason, 1)
		writeError(w, status, err.Error(), line)
		return
	}
	err = n.Ingest(r.Context(), recs, SourceHTTP)
	if err == nil || errors.Is(err, ErrQueueFull) || errors.Is(err, ErrDraining) || errors.Is(err, ErrBreakerOpen) {
		// Every record is settled (or never queued): the body can be reused.
		body.Reset()
		bodyPool.Put(body)
	}
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"accepted\":%d}\n", len(recs))
	case errors.Is(err, ErrQueueFull):
		n.writeOverloaded(w, err)
	case errors.Is(err, ErrDraining), errors.Is(err, ErrBreakerOpen):
		writeError(w, http.StatusServiceUnavailable, err.Error(), 0)
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	case errors.Is(err, sink.ErrBadRecord):
		// The sink can never write a record of this request: retrying will
		// not help, so this is not a 503.
		writeError(w, http.StatusUnprocessableEntity, "the sink refused a record of this request: "+err.Error(), 0)
	default:
		writeError(w, http.StatusServiceUnavailable, "sink: "+err.Error(), 0)
	}
}

// readBody reads the request body, gunzipping it when asked, up to
// MaxBodyBytes after decompression.
func (n *Node) readBody(r *http.Request) (*bytes.Buffer, int, error) {
	limit := n.cfg.MaxBodyBytes
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
