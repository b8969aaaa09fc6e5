package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchpilot/batchpilot/node/sink"
)

// TestReservedFieldsTheNodesWinOnEveryIntake sends records that already
// carry "_node", "_received_at" or "_source" through every intake the agent
// has, and reads the file sink's lines as written: each has the node's three
// fields exactly once, with the node's values, and the record's other fields.
func TestReservedFieldsTheNodesWinOnEveryIntake(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	forged := `"_node":"forged","_received_at":"1999-01-01T00:00:00Z","_source":"forged"`
	var gzBody bytes.Buffer
	zw := gzip.NewWriter(&gzBody)
	zw.Write([]byte(`{"id":"r-gzip",` + forged + `}` + "\n"))
	zw.Close()
	for _, tc := range []struct{ name, ct, enc, body string }{
		{"ndjson", "application/x-ndjson", "", `{"id":"r-ndjson",` + forged + `,"k":1}` + "\n"},
		{"json array", "application/json", "", `[{` + forged + `,"id":"r-array"}]`},
		{"json object", "application/json", "", `{"id":"r-object","\u005fnode":"escaped",` + forged + `}`},
		{"gzip ndjson", "application/x-ndjson", "gzip", gzBody.String()},
		{"plain text that looks like JSON", "text/plain", "", `{"_node":"r-text"}` + "\n"},
	} {
		req, err := http.NewRequest(http.MethodPost, p.url+"/v1/logs", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", tc.ct)
		if tc.enc != "" {
			req.Header.Set("Content-Encoding", tc.enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
	// Syslog builds its records from fixed names; a message or structured
	// data naming the fields is the record's data, not a field.
	for _, network := range []string{"tcp", "udp"} {
		c, err := net.Dial(network, p.syslog)
		if err != nil {
			t.Fatal(err)
		}
		msg := `<13>1 2026-11-25T10:00:00Z host app - - [x@1 _node="sd"] r-syslog-` + network + ` {"_node":"msg"}` + "\n"
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	want := []string{"r-ndjson", "r-array", "r-object", "r-gzip", `{"_node":"r-text"}`, "syslogr-syslog-tcp", "syslogr-syslog-udp"}
	var lines [][]byte
	poll(t, "every record in the sink", func() bool {
		lines = lines[:0]
		ids := map[string]bool{}
		err := sink.ReadSegments(filepath.Join(dir, "sink"), func(line []byte) error {
			lines = append(lines, bytes.Clone(line))
			var m map[string]any
			if json.Unmarshal(line, &m) == nil {
				if id, ok := m["id"].(string); ok {
					ids[id] = true
				}
				if msg, ok := m["message"].(string); ok {
					ids[msg] = true
					if m["_source"] == "syslog" && strings.HasPrefix(msg, "r-syslog-") {
						ids["syslog"+strings.Fields(msg)[0]] = true
					}
				}
			}
			return nil
		})
		if err != nil {
			return false
		}
		for _, w := range want {
			if !ids[w] {
				return false
			}
		}
		return true
	})
	for _, line := range lines {
		count := map[string]int{}
		dec := json.NewDecoder(bytes.NewReader(line))
		if _, err := dec.Token(); err != nil {
			t.Fatalf("line %s: %v", line, err)
		}
		vals := map[string]string{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatalf("line %s: %v", line, err)
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("line %s: %v", line, err)
			}
			k := tok.(string)
			count[k]++
			vals[k] = string(v)
		}
		for _, k := range []string{"_node", "_received_at", "_source"} {
			if count[k] != 1 {
				t.Errorf("%s appears %d times in %s", k, count[k], line)
			}
		}
		if vals["_node"] != `"e2e"` || vals["_received_at"] == `"1999-01-01T00:00:00Z"` ||
			(vals["_source"] != `"http"` && vals["_source"] != `"syslog"`) {
			t.Errorf("the record's own reserved fields won in %s", line)
		}
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
}
