package otlp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/sink"
)

// receiver is a node.Receiver that keeps what it is given, or refuses
// with err.
type receiver struct {
	mu       sync.Mutex
	recs     [][]byte
	err      error
	rejected map[string]int
}

func (r *receiver) Ingest(_ context.Context, recs [][]byte, src node.Source) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if src != node.SourceOTLP {
		panic("source " + src)
	}
	if r.err != nil {
		return r.err
	}
	r.recs = append(r.recs, recs...)
	return nil
}

func (r *receiver) Offer(context.Context, []byte, node.Source, bool) error {
	panic("OTLP never offers")
}

func (r *receiver) RetryAfter() int { return 1 }

func (r *receiver) Rejected(reason string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rejected == nil {
		r.rejected = map[string]int{}
	}
	r.rejected[reason] += n
}

// sampleLogs is one resource with one scope and two records, the second
// with a long body.
func sampleLogs() plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("app.logger")
	sl.Scope().SetVersion("1.2")
	lr := sl.LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.Timestamp(1700000000123456789))
	lr.SetSeverityNumber(plog.SeverityNumberWarn)
	lr.SetSeverityText("WARN")
	lr.Body().SetStr("disk \"almost\" full")
	lr.Attributes().PutStr("id", "r1")
	lr.Attributes().PutInt("free_mb", 12)
	lr.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	lr.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	lr2 := sl.LogRecords().AppendEmpty()
	lr2.Attributes().PutStr("log.record.uid", "r2")
	m := lr2.Body().SetEmptyMap()
	m.PutStr("long", strings.Repeat("x", 400))
	return ld
}

func encode(t *testing.T, ld plog.Logs, json bool) []byte {
	t.Helper()
	req := plogotlp.NewExportRequestFromLogs(ld)
	var b []byte
	var err error
	if json {
		b, err = req.MarshalJSON()
	} else {
		b, err = req.MarshalProto()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestToRecordsKeepsResourceScopeSeverityAndTraceContext(t *testing.T) {
	recs, rejected := ToRecords(sampleLogs(), 0)
	if len(recs) != 2 || len(rejected) != 0 {
		t.Fatalf("got %d records, %d rejected; want 2, 0", len(recs), len(rejected))
	}
	var got map[string]any
	if err := json.Unmarshal(recs[0], &got); err != nil {
		t.Fatalf("record is not JSON: %s: %v", recs[0], err)
	}
	want := map[string]any{
		"id": "r1", "timestamp": "2023-11-14T22:13:20.123456789Z", "severity_text": "WARN",
		"severity_number": float64(13), "message": `disk "almost" full`,
		"trace_id": "0102030405060708090a0b0c0d0e0f10", "span_id": "0102030405060708",
		"attributes": map[string]any{"id": "r1", "free_mb": float64(12)},
		"resource":   map[string]any{"attributes": map[string]any{"service.name": "checkout"}},
		"scope":      map[string]any{"name": "app.logger", "version": "1.2"},
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Fatalf("record\n got %s\nwant %s", gb, wb)
	}
	if !strings.Contains(string(recs[1]), `"id":"r2"`) || !strings.Contains(string(recs[1]), `"body":{"long":`) {
		t.Fatalf("second record %s: want id from log.record.uid and a structured body", recs[1])
	}
}

func TestIntake(t *testing.T) {
	for _, tc := range []struct {
		name         string
		contentType  string
		body         func(t *testing.T) []byte
		maxLine      int
		err          error
		wantStatus   int
		wantStored   int
		wantRejected int64 // partial success
		retryAfter   bool
	}{
		{name: "protobuf request is stored and answered with an empty response", contentType: "application/x-protobuf",
			body: func(t *testing.T) []byte { return encode(t, sampleLogs(), false) }, wantStatus: 200, wantStored: 2},
		{name: "JSON request is stored", contentType: "application/json",
			body: func(t *testing.T) []byte { return encode(t, sampleLogs(), true) }, wantStatus: 200, wantStored: 2},
		{name: "a record over the limit is refused as a partial success", contentType: "application/x-protobuf", maxLine: 480,
			body: func(t *testing.T) []byte { return encode(t, sampleLogs(), false) }, wantStatus: 200, wantStored: 1, wantRejected: 1},
		{name: "garbage protobuf is 400 and stores nothing", contentType: "application/x-protobuf",
			body: func(*testing.T) []byte { return []byte{0x0a, 0xff, 0xff, 0x01} }, wantStatus: 400},
		{name: "bad JSON is 400 and stores nothing", contentType: "application/json",
			body: func(*testing.T) []byte {
				return []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}`)
			}, wantStatus: 400},
		{name: "a full queue is 429 with Retry-After", contentType: "application/x-protobuf", err: node.ErrQueueFull,
			body: func(t *testing.T) []byte { return encode(t, sampleLogs(), false) }, wantStatus: 429, retryAfter: true},
		{name: "a draining node is 503 with Retry-After", contentType: "application/json", err: node.ErrDraining,
			body: func(t *testing.T) []byte { return encode(t, sampleLogs(), true) }, wantStatus: 503, retryAfter: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv := &receiver{err: tc.err}
			in := New(recv, tc.maxLine)
			body := tc.body(t)
			if !in.Claims(tc.contentType, body) {
				t.Fatalf("intake does not claim a %s body", tc.contentType)
			}
			req := httptest.NewRequest("POST", "/v1/logs", nil)
			req.Header.Set("Content-Type", tc.contentType)
			rr := httptest.NewRecorder()
			in.ServeBody(rr, req, body)
			if rr.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %q", rr.Code, tc.wantStatus, rr.Body)
			}
			if got := rr.Header().Get("Content-Type"); !strings.HasPrefix(got, strings.Split(tc.contentType, ";")[0]) {
				t.Errorf("answer Content-Type %q, want the request's %q", got, tc.contentType)
			}
			if tc.retryAfter != (rr.Header().Get("Retry-After") != "") {
				t.Errorf("Retry-After %q, want one: %v", rr.Header().Get("Retry-After"), tc.retryAfter)
			}
			if len(recv.recs) != tc.wantStored {
				t.Fatalf("stored %d records, want %d", len(recv.recs), tc.wantStored)
			}
			if rr.Code != 200 {
				if tc.contentType == "application/x-protobuf" {
					var st spb.Status
					if err := proto.Unmarshal(rr.Body.Bytes(), &st); err != nil || st.Message == "" {
						t.Errorf("error body is not a google.rpc.Status with a message: %v %q", err, rr.Body)
					}
				} else if !strings.Contains(rr.Body.String(), `"message"`) {
					t.Errorf("error body %q has no message", rr.Body)
				}
				return
			}
			resp := plogotlp.NewExportResponse()
			var err error
			if tc.contentType == "application/x-protobuf" {
				err = resp.UnmarshalProto(rr.Body.Bytes())
			} else {
				err = resp.UnmarshalJSON(rr.Body.Bytes())
			}
			if err != nil {
				t.Fatalf("answer is not an ExportLogsServiceResponse: %v", err)
			}
			if got := resp.PartialSuccess().RejectedLogRecords(); got != tc.wantRejected {
				t.Errorf("partial success rejected %d, want %d (%q)", got, tc.wantRejected, resp.PartialSuccess().ErrorMessage())
			}
			if tc.wantRejected > 0 && !strings.Contains(resp.PartialSuccess().ErrorMessage(), "logRecords[1]") {
				t.Errorf("partial success message %q does not say which record", resp.PartialSuccess().ErrorMessage())
			}
		})
	}
}

func TestClaims(t *testing.T) {
	in := New(&receiver{}, 0)
	for _, tc := range []struct {
		ct, body string
		want     bool
	}{
		{"application/x-protobuf", "", true},
		{"application/json", `{"resourceLogs":[]}`, true},
		{"application/json", ` {"other":1,"resourceLogs":[]}`, true},
		{"application/json", `{"message":"mentions resourceLogs"}`, false},
		{"application/json", `[{"resourceLogs":1}]`, false},
		{"application/x-ndjson", `{"resourceLogs":[]}`, false},
		{"", "x", false},
	} {
		if got := in.Claims(tc.ct, []byte(tc.body)); got != tc.want {
			t.Errorf("Claims(%q, %q) = %v, want %v", tc.ct, tc.body, got, tc.want)
		}
	}
}

var _ http.Handler = (*node.Node)(nil).IngestHandler()

// TestBodyOverTheLimitIsAnsweredAsOTLP goes through the node's /v1/logs
// handler: a protobuf body over the limit is 413 with a google.rpc.Status.
func TestBodyOverTheLimitIsAnsweredAsOTLP(t *testing.T) {
	dir := t.TempDir()
	s, err := sink.NewFile(sink.FileConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Config{Name: "otlp-test", Sink: s, MaxBodyBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	h := n.LogsHandler(New(n, 0))
	req := httptest.NewRequest("POST", "/v1/logs", bytes.NewReader(encode(t, sampleLogs(), false)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	var st spb.Status
	if rr.Code != http.StatusRequestEntityTooLarge || proto.Unmarshal(rr.Body.Bytes(), &st) != nil || !strings.Contains(st.Message, "over the limit") {
		t.Fatalf("status %d, body %q; want 413 with a google.rpc.Status", rr.Code, rr.Body)
	}
}
