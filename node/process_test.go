package node

import (
	"encoding/json"
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
