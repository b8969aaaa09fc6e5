package bench

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

// meter sits in front of the node's ingest handler and notes, for every
// request the node acknowledged (200), the number of its last record, when
// the acknowledged attempt was sent (loadgen's SentHeader; without it, when
// the server began serving the attempt) and when the acknowledgement was
// written. It passes the request on unchanged.
type meter struct {
	next     http.Handler
	idPrefix []byte // `"id":"RUNID-`
	maxBody  int64

	mu   sync.Mutex
	acks []ack
}

// ack is one acknowledged request.
type ack struct {
	last int64
	n    int
	sent time.Time // the acknowledged attempt's send
	at   time.Time
}

func newMeter(next http.Handler, runID string, maxBody int64) *meter {
	return &meter{next: next, idPrefix: []byte(`"id":"` + runID + "-"), maxBody: maxBody}
}

func (m *meter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sent := time.Now()
	if t, ok := loadgen.ParseSentHeader(r.Header.Get(loadgen.SentHeader)); ok && t.Before(sent) {
		sent = t
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, m.maxBody+1))
	r.Body.Close()
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	last, n, ok := lastRecord(body, m.idPrefix)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	sw := &statusWriter{ResponseWriter: w}
	m.next.ServeHTTP(sw, r)
	if sw.status == http.StatusOK && ok {
		at := time.Now()
		m.mu.Lock()
		m.acks = append(m.acks, ack{last: last, n: n, sent: sent, at: at})
		m.mu.Unlock()
	}
}

// taken returns the acknowledgements noted so far.
func (m *meter) taken() []ack {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ack(nil), m.acks...)
}

// lastRecord reads an NDJSON body of loadgen records: the sequence number
// in the last record's id ("id":"RUNID-SEQ") and the number of records.
func lastRecord(body, idPrefix []byte) (last int64, n int, ok bool) {
	body = bytes.TrimRight(body, " \t\r\n")
	if len(body) == 0 {
		return 0, 0, false
	}
	n = bytes.Count(body, []byte{'\n'}) + 1
	line := body
	if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
		line = body[i+1:]
	}
	i := bytes.Index(line, idPrefix)
	if i < 0 {
		return 0, 0, false
	}
	rest := line[i+len(idPrefix):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return 0, 0, false
	}
	v, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil || v < 0 {
		return 0, 0, false
	}
	return v, n, true
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
