package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/sink"
)

// refusing is a node.Receiver that refuses every request with err.
type refusing struct{ err error }

func (r refusing) Ingest(context.Context, [][]byte, node.Source) error    { return r.err }
func (r refusing) Offer(context.Context, []byte, node.Source, bool) error { return r.err }
func (r refusing) Rejected(string, int)                                   {}
func (r refusing) RetryAfter() int                                        { return 1 }

// startNode runs a real node over a file sink in a temporary directory.
func startNode(t *testing.T) (*node.Node, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sink")
	s, err := sink.NewFile(sink.FileConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Config{Name: "bulk-test", Sink: s, MaxLinger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	return n, dir
}

func stored(t *testing.T, dir string) []map[string]any {
	t.Helper()
	var out []map[string]any
	err := sink.ReadSegments(dir, func(line []byte) error {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("stored line is not JSON: %s", line)
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}

// Bodies as the shippers send them.
const (
	filebeatBody = `{"create":{"_index":"filebeat-8.15.0"}}
{"@timestamp":"2024-05-01T10:00:00.000Z","message":"GET /index.html 200","id":"fb-1","log":{"file":{"path":"/var/log/nginx/access.log"},"offset":0},"input":{"type":"filestream"},"ecs":{"version":"8.0.0"},"host":{"name":"web-1"},"agent":{"type":"filebeat","version":"8.15.0"}}
{"create":{"_index":"filebeat-8.15.0"}}
{"@timestamp":"2024-05-01T10:00:01.000Z","message":"GET /favicon.ico 404","id":"fb-2","log":{"file":{"path":"/var/log/nginx/access.log"},"offset":57}}
`
	fluentBitBody = `{"index":{"_index":"fluent-bit","_type":"_doc"}}
{"@timestamp":"2024-05-01T10:00:00.123Z","log":"kernel: eth0 up","id":"fl-1"}
{"create":{"_index":"fluent-bit"}}
{"@timestamp":"2024-05-01T10:00:00.456Z","log":"kernel: eth1 up","id":"fl-2","kubernetes":{"pod_name":"api-0"}}
`
	rsyslogBody = "{\"index\":{\"_index\": \"system\",\"_type\":\"events\"}}\n{\"message\":\"sshd started\",\"id\":\"rs-1\"}\n"
)

func TestBulkAPI(t *testing.T) {
	for _, tc := range []struct {
		name       string
		path       string
		encoding   string
		body       string
		recv       node.Receiver // nil: a real node
		wantStatus int
		wantIDs    []string // ids stored
		wantErrors bool
		wantIndex  string // _index of the first stored record
		wantBody   string // substring of the answer
		retryAfter bool
	}{
		{name: "Filebeat-shaped create actions are stored", path: "/_bulk", body: filebeatBody,
			wantStatus: 200, wantIDs: []string{"fb-1", "fb-2"}, wantIndex: "filebeat-8.15.0", wantBody: `"result":"created"`},
		{name: "Fluent Bit-shaped body with _type is stored", path: "/_bulk", body: fluentBitBody,
			wantStatus: 200, wantIDs: []string{"fl-1", "fl-2"}, wantIndex: "fluent-bit"},
		{name: "rsyslog-shaped body to an index path", path: "/system/events/_bulk", body: rsyslogBody,
			wantStatus: 200, wantIDs: []string{"rs-1"}, wantIndex: "system"},
		{name: "gzip body", path: "/_bulk", encoding: "gzip", body: gz(rsyslogBody),
			wantStatus: 200, wantIDs: []string{"rs-1"}},
		{name: "the URL's index applies where the action names none", path: "/applogs/_bulk",
			body: "{\"index\":{}}\n{\"id\":\"u-1\"}\n", wantStatus: 200, wantIDs: []string{"u-1"}, wantIndex: "applogs"},
		{name: "delete and update are refused per item and the rest stored", path: "/_bulk",
			body:       "{\"delete\":{\"_index\":\"x\",\"_id\":\"1\"}}\n{\"update\":{\"_index\":\"x\",\"_id\":\"1\"}}\n{\"doc\":{}}\n{\"index\":{\"_index\":\"x\"}}\n{\"id\":\"d-1\"}\n",
			wantStatus: 200, wantIDs: []string{"d-1"}, wantErrors: true, wantBody: "not supported"},
		{name: "a document that is not JSON is 400 with its line and stores nothing", path: "/_bulk",
			body: "{\"index\":{}}\n{\"id\":\"ok\"}\n{\"index\":{}}\n{not json}\n", wantStatus: 400, wantBody: "line 4"},
		{name: "an unknown action is 400 with its line", path: "/_bulk",
			body: "{\"index\":{}}\n{\"id\":\"ok\"}\n{\"upsert\":{}}\n{}\n", wantStatus: 400, wantBody: "line 3"},
		{name: "an action without its document is 400", path: "/_bulk",
			body: "{\"index\":{}}\n{\"id\":\"ok\"}\n{\"create\":{}}\n", wantStatus: 400, wantBody: "no document"},
		{name: "a body over the limit is 413", path: "/_bulk",
			body: "{\"index\":{}}\n{\"m\":\"" + strings.Repeat("x", 5000) + "\"}\n", wantStatus: 413},
		{name: "a full queue is 429 with Retry-After", path: "/_bulk", body: rsyslogBody, recv: refusing{node.ErrQueueFull},
			wantStatus: 429, retryAfter: true, wantBody: "es_rejected_execution_exception"},
		{name: "a draining node is 503", path: "/_bulk", body: rsyslogBody, recv: refusing{node.ErrDraining},
			wantStatus: 503, retryAfter: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv, dir := tc.recv, ""
			if recv == nil {
				var n *node.Node
				n, dir = startNode(t)
				recv = n
			}
			api := New(Config{Receiver: recv, NodeName: "n1", MaxBodyBytes: 4096, MaxDocBytes: 2048})
			req := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/x-ndjson")
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			rr := httptest.NewRecorder()
			api.ServeHTTP(rr, req)
			if rr.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rr.Code, tc.wantStatus, rr.Body)
			}
			if !strings.Contains(rr.Body.String(), tc.wantBody) {
				t.Errorf("answer %s does not contain %q", rr.Body, tc.wantBody)
			}
			if tc.retryAfter != (rr.Header().Get("Retry-After") != "") {
				t.Errorf("Retry-After %q; want one: %v", rr.Header().Get("Retry-After"), tc.retryAfter)
			}
			if rr.Code == 200 {
				var resp struct {
					Errors bool                        `json:"errors"`
					Items  []map[string]map[string]any `json:"items"`
				}
				if err := json.Unmarshal(rr.Body.Bytes(), &resp); err != nil {
					t.Fatalf("answer is not a bulk response: %v", err)
				}
				if resp.Errors != tc.wantErrors {
					t.Errorf("errors = %v, want %v", resp.Errors, tc.wantErrors)
				}
			}
			if dir == "" {
				return
			}
			recs := stored(t, dir)
			var ids []string
			for _, r := range recs {
				ids = append(ids, r["id"].(string))
				if r["_source"] != "bulk" {
					t.Errorf("record %v: _source is not bulk", r)
				}
			}
			if strings.Join(ids, ",") != strings.Join(tc.wantIDs, ",") {
				t.Fatalf("stored ids %v, want %v", ids, tc.wantIDs)
			}
			if tc.wantIndex != "" && recs[0]["_index"] != tc.wantIndex {
				t.Errorf("_index %v, want %q", recs[0]["_index"], tc.wantIndex)
			}
		})
	}
}

func TestBulkAPIAnswersWhatShippersAskBeforeSending(t *testing.T) {
	api := New(Config{Receiver: refusing{}, NodeName: "n1"})
	for _, tc := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/", 200, `"number":"` + Version + `"`},
		{"HEAD", "/", 200, ""},
		{"GET", "/_cat/health", 200, "green"},
		{"GET", "/_license", 200, `"status":"active"`},
		{"GET", "/_index_template/x", 404, "not served"},
	} {
		rr := httptest.NewRecorder()
		api.ServeHTTP(rr, httptest.NewRequest(tc.method, tc.path, nil))
		if rr.Code != tc.status || !strings.Contains(rr.Body.String(), tc.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.method, tc.path, rr.Code, rr.Body, tc.status, tc.want)
		}
		if rr.Header().Get("X-Elastic-Product") != "Elasticsearch" {
			t.Errorf("%s %s: no X-Elastic-Product header", tc.method, tc.path)
		}
	}
}

var _ http.Handler = (*API)(nil)
