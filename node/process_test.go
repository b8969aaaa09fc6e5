package node

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTimestampNormalizer(t *testing.T) {
	for _, tc := range []struct {
		name, in, key, want string
	}{
		{"RFC 3339 with an offset becomes UTC", `{"timestamp":"2026-11-25T12:00:00.5+02:00","m":1}`, "timestamp", "2026-11-25T10:00:00.5Z"},
		{"common log format", `{"time":"25/Nov/2026:10:00:00 +0000"}`, "time", "2026-11-25T10:00:00Z"},
		{"unix milliseconds", `{"ts":1764064800123}`, "ts", "2025-11-25T10:00:00.123Z"},
		{"unix seconds with a fraction", `{"@timestamp":1764064800.5}`, "@timestamp", "2025-11-25T10:00:00.5Z"},
		{"an unparseable value is kept", `{"timestamp":"yesterday"}`, "timestamp", "yesterday"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Record{Data: []byte(tc.in), Source: SourceHTTP, Received: time.Now()}
			TimestampNormalizer{}.Process(&r)
			var m map[string]any
			if err := json.Unmarshal(r.Data, &m); err != nil {
				t.Fatal(err)
			}
			if m[tc.key] != tc.want {
				t.Fatalf("%s = %v, want %s (record %s)", tc.key, m[tc.key], tc.want, r.Data)
			}
		})
	}
	t.Run("a record without a timestamp is left as it is", func(t *testing.T) {
		in := `{"b":2,"a":1}`
		r := Record{Data: []byte(in), Source: SourceHTTP}
		TimestampNormalizer{}.Process(&r)
		if string(r.Data) != in {
			t.Fatalf("record changed to %s", r.Data)
		}
	})
}

func TestEnrichedRecordKeepsItsFields(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct{ in, want string }{
		{`{"id":"x","n":1}`, `{"id":"x","n":1,"_node":"n\"1","_received_at":"2026-11-25T10:00:00.123456789Z","_source":"http"}`},
		{`{}`, `{"_node":"n\"1","_received_at":"2026-11-25T10:00:00.123456789Z","_source":"http"}`},
		{` { "a" : 1 } `, `{ "a" : 1,"_node":"n\"1","_received_at":"2026-11-25T10:00:00.123456789Z","_source":"http"}`},
	} {
		got := appendEnriched(nil, &Record{Data: []byte(tc.in), Source: SourceHTTP, Received: at}, `n"1`)
		if string(got) != tc.want || !json.Valid(got) {
			t.Errorf("appendEnriched(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// topLevelKeys lists the keys of a JSON object in order, duplicates included.
func topLevelKeys(t testing.TB, obj []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s (%v)", obj, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("bad object %s: %v", obj, err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("bad object %s: %v", obj, err)
		}
	}
	return keys
}

func TestEnrichedRecordTheNodesFieldsWin(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	const node = `,"_node":"n1","_received_at":"2026-11-25T10:00:00Z","_source":"http"}`
	for _, tc := range []struct{ name, in, want string }{
		{"a record's own _node is left out", `{"id":"x","_node":"forged"}`, `{"id":"x"` + node},
		{"all three are left out, the other fields keep their order", `{"_source":"s","a":1,"_received_at":"r","b":[1,{"_node":2}],"_node":"n"}`, `{"a":1,"b":[1,{"_node":2}]` + node},
		{"a record with only reserved fields keeps none of them", `{"_node":"x"}`, `{` + node[1:]},
		{"an escaped name is the same name", `{"\u005fnode":"x","\u005Fsource":1,"c":true}`, `{"c":true` + node},
		{"a duplicate is left out twice", `{"_node":1,"k":"v","_node":2}`, `{"k":"v"` + node},
		{"nested reserved names are the record's own", `{"meta":{"_node":"inner","_source":"x"}}`, `{"meta":{"_node":"inner","_source":"x"}` + node},
		{"other underscore names are kept", `{"_id":"1","_nodes":2,"_node_x":3}`, `{"_id":"1","_nodes":2,"_node_x":3` + node},
		{"a reserved name inside a string value is data", `{"msg":"\"_node\":\"x\""}`, `{"msg":"\"_node\":\"x\""` + node},
		{"whitespace between members is kept inside them", `{ "a" : 1 , "_node" : "x" , "b" : 2 }`, `{"a" : 1,"b" : 2` + node},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendEnriched(nil, &Record{Data: []byte(tc.in), Source: SourceHTTP, Received: at}, "n1")
			if string(got) != tc.want {
				t.Fatalf("appendEnriched(%s)\n got %s\nwant %s", tc.in, got, tc.want)
			}
			seen := map[string]int{}
			for _, k := range topLevelKeys(t, got) {
				seen[k]++
			}
			for _, k := range reservedKeys {
				if seen[k] != 1 {
					t.Errorf("%s appears %d times in %s", k, seen[k], got)
				}
			}
		})
	}
}

// FuzzEnrich feeds appendEnriched any JSON object, as every intake can: the
// result is one valid object with each of the node's fields exactly once and
// every other top-level member of the record kept.
func FuzzEnrich(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"_node":"x","a":[1,2]}`, `{"\u005fsource":{},"_received_at":null}`, ` { "_node" : 1 } `} {
		f.Add([]byte(s))
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in []byte) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(in, &obj) != nil || obj == nil || bytes.TrimSpace(in)[0] != '{' {
			return // intakes hand over JSON objects only
		}
		got := appendEnriched(nil, &Record{Data: in, Source: SourceSyslog, Received: at}, "n1")
		if !json.Valid(got) {
			t.Fatalf("invalid JSON %s from %s", got, in)
		}
		seen := map[string]int{}
		for _, k := range topLevelKeys(t, got) {
			seen[k]++
		}
		for _, k := range reservedKeys {
			if seen[k] != 1 {
				t.Fatalf("%s appears %d times in %s", k, seen[k], got)
			}
		}
		for k := range obj {
			if !slices.Contains(reservedKeys[:], k) && seen[k] == 0 {
				t.Fatalf("the record's own %q is gone from %s", k, got)
			}
		}
	})
}

// BenchmarkAppendEnriched measures adding the node's fields to a loadgen-like
// record of about 250 bytes: the common case with no reserved name, and a
// record that brings its own "_node".
func BenchmarkAppendEnriched(b *testing.B) {
	plain := []byte(`{"id":"RUN-000000000042","ts":"2026-11-25T10:00:00.000000Z","level":"info","service":"checkout","msg":"` + strings.Repeat("x", 160) + `"}`)
	own := append([]byte(`{"_node":"elsewhere",`), plain[1:]...)
	at := time.Now()
	for _, bc := range []struct {
		name string
		rec  []byte
	}{{"no reserved name", plain}, {"its own _node", own}} {
		b.Run(bc.name, func(b *testing.B) {
			r := Record{Data: bc.rec, Source: SourceHTTP, Received: at}
			var dst []byte
			b.SetBytes(int64(len(bc.rec)))
			b.ReportAllocs()
			for b.Loop() {
				dst = appendEnriched(dst[:0], &r, "node-1")
			}
		})
	}
}
