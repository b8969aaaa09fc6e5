package bulk

import (
	"encoding/json"
	"testing"
)

// FuzzParse: a bulk body is refused with a line number, or every stored
// record is one valid JSON object.
func FuzzParse(f *testing.F) {
	for _, b := range []string{filebeatBody, fluentBitBody, rsyslogBody,
		"{\"delete\":{\"_id\":1}}\n{\"update\":{}}\n{\"doc\":{}}\n", "{\"index\":{\"_id\":null}}\n{ }\n"} {
		f.Add([]byte(b), "idx")
	}
	f.Fuzz(func(t *testing.T, body []byte, index string) {
		items, err := Parse(body, index, 1<<16)
		if err != nil {
			if pe, ok := err.(*ParseError); !ok || pe.Line < 1 {
				t.Fatalf("error %v has no line", err)
			}
			return
		}
		for _, it := range items {
			if it.Record == nil {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(it.Record, &m); err != nil {
				t.Fatalf("record is not a JSON object: %q: %v", it.Record, err)
			}
		}
	})
}

// FuzzParseAction: the fast path of an action line agrees with the map
// decoding it short-cuts.
func FuzzParseAction(f *testing.F) {
	for _, s := range []string{`{"index":{"_index":"a","_id":"1"}}`, `{"create":{}}`, `{"index":{},"x":1}`,
		`{"index":{"_index":"a\",\"b"}}`, `{"delete":{"_id":2}}`, `{"index":{}, "index":{}}`, `{"update":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		name, meta, err := parseAction(b)
		sname, smeta, serr := parseActionSlow(b)
		if err != nil {
			return
		}
		if serr != nil || name != sname || string(meta.ID) != string(smeta.ID) ||
			(meta.Index == nil) != (smeta.Index == nil) || (meta.Index != nil && *meta.Index != *smeta.Index) {
			t.Fatalf("%q: fast path %q %+v, map %q %+v %v", b, name, meta, sname, smeta, serr)
		}
	})
}
