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
