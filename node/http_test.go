package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}

func TestIngestHTTP(t *testing.T) {
	long := `{"a":"` + strings.Repeat("x", 300) + `"}`
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		encoding    string
		body        string
		wantStatus  int
		wantBody    string // substring
		wantWritten int
	}{
		{name: "ndjson is accepted after it is written", contentType: "application/x-ndjson",
			body: "{\"a\":1}\n{\"a\":2}\n", wantStatus: 200, wantBody: `{"accepted":2}`, wantWritten: 2},
		{name: "json array", contentType: "application/json",
			body: `[{"a":1},{"a":2},{"a":3}]`, wantStatus: 200, wantBody: `{"accepted":3}`, wantWritten: 3},
		{name: "text lines", contentType: "text/plain",
			body: "one\ntwo\n", wantStatus: 200, wantBody: `{"accepted":2}`, wantWritten: 2},
		{name: "gzip body", contentType: "application/x-ndjson", encoding: "gzip",
			body: gz("{\"a\":1}\n"), wantStatus: 200, wantBody: `{"accepted":1}`, wantWritten: 1},
		{name: "malformed record names its line and writes nothing", contentType: "application/x-ndjson",
			body: "{\"a\":1}\n{\"a\":2}\n{oops}\n", wantStatus: 400, wantBody: `"line":3`},
		{name: "over-long record is 413 with its line", contentType: "application/x-ndjson",
			body: "{\"a\":1}\n" + long + "\n", wantStatus: 413, wantBody: `"line":2`},
		{name: "oversized body is 413", contentType: "application/x-ndjson",
			body: strings.Repeat("{\"a\":1}\n", 200), wantStatus: 413, wantBody: "over the limit"},
		{name: "gzip bomb is 413", contentType: "application/x-ndjson", encoding: "gzip",
			body: gz(strings.Repeat("{\"a\":1}\n", 1000)), wantStatus: 413, wantBody: "over the limit"},
		{name: "corrupt gzip is 400", contentType: "application/x-ndjson", encoding: "gzip",
			body: "not gzip at all", wantStatus: 400, wantBody: "gzip"},
		{name: "unknown encoding is 415", contentType: "application/x-ndjson", encoding: "br",
			body: "{}", wantStatus: 415, wantBody: "Content-Encoding"},
		{name: "unknown content type is 415", contentType: "image/png",
			body: "{}", wantStatus: 415, wantBody: "Content-Type"},
		{name: "GET is 405", method: "GET", wantStatus: 405, wantBody: "POST"},
		{name: "binary garbage is 400", contentType: "application/x-ndjson",
			body: "\x00\x01\xff\xfe", wantStatus: 400, wantBody: `"line":1`},
		{name: "empty body accepts nothing", contentType: "application/x-ndjson",
			body: "", wantStatus: 200, wantBody: `{"accepted":0}`},
		{name: "a record the sink can never write is 422", contentType: "application/x-ndjson",
			body: "{\"a\":1}\n{\"a\":\"poison\"}\n", wantStatus: 422, wantBody: "sink refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemSink()
			s.refuse = "poison"
			n := startNode(t, Config{Sink: s, MaxLinger: time.Millisecond, MaxBodyBytes: 1000, MaxLineBytes: 200})
			method := tc.method
			if method == "" {
				method = "POST"
			}
			req := httptest.NewRequest(method, "/v1/logs", strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			rr := httptest.NewRecorder()
			n.IngestHandler().ServeHTTP(rr, req)
			body, _ := io.ReadAll(rr.Body)
			if rr.Code != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("got %d %s, want %d containing %s", rr.Code, body, tc.wantStatus, tc.wantBody)
			}
			if rr.Code != 200 {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body is not {\"error\": ...}: %s", body)
				}
			}
			if got := len(s.records()); got != tc.wantWritten {
				t.Fatalf("sink has %d records, want %d", got, tc.wantWritten)
			}
		})
	}
}

func TestIngestHTTPQueueFullIs429WithRetryAfter(t *testing.T) {
	s := newMemSink()
	s.gate = make(chan struct{})
	defer close(s.gate)
	n := startNode(t, Config{Sink: s, InitialBatchSize: 1, FlushConcurrency: 1, QueueRecords: 2, MaxLinger: time.Millisecond})
	go func() { _ = n.Ingest(context.Background(), recs(1, "x"), SourceHTTP) }()
	<-s.entered
	go func() { _ = n.Ingest(context.Background(), recs(2, "y"), SourceHTTP) }()
	waitFor(t, func() bool { d, _, _, _ := n.queue.state(); return d == 2 })
	rr := httptest.NewRecorder()
	n.IngestHandler().ServeHTTP(rr, httptest.NewRequest("POST", "/v1/logs", strings.NewReader("{}\n")))
	if rr.Code != http.StatusTooManyRequests || rr.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d Retry-After=%q, want 429 with Retry-After", rr.Code, rr.Header().Get("Retry-After"))
	}
}

func TestIngestHTTPWhileDrainingIs503(t *testing.T) {
	n := startNode(t, Config{Sink: newMemSink()})
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rr := httptest.NewRecorder()
	n.IngestHandler().ServeHTTP(rr, httptest.NewRequest("POST", "/v1/logs", strings.NewReader("{}\n")))
	if rr.Code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", rr.Code)
	}
}

func TestIngestHTTPSinkFailureIs503(t *testing.T) {
	s := newMemSink()
	s.fail = io.ErrUnexpectedEOF
	n := startNode(t, Config{Sink: s, MaxLinger: time.Millisecond})
	rr := httptest.NewRecorder()
	n.IngestHandler().ServeHTTP(rr, httptest.NewRequest("POST", "/v1/logs", strings.NewReader("{}\n")))
	if rr.Code != http.StatusServiceUnavailable || !strings.Contains(rr.Body.String(), "sink") {
		t.Fatalf("got %d %s, want 503 naming the sink", rr.Code, rr.Body)
	}
}
