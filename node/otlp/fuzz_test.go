package otlp

import (
	"encoding/json"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// FuzzDecode feeds arbitrary protobuf and JSON bodies through the decoder
// and the record builder: a body is refused or every record is one valid
// JSON object; nothing panics.
func FuzzDecode(f *testing.F) {
	for _, js := range []bool{false, true} {
		req := plogotlp.NewExportRequestFromLogs(sampleLogs())
		var b []byte
		if js {
			b, _ = req.MarshalJSON()
		} else {
			b, _ = req.MarshalProto()
		}
		f.Add(b, js)
	}
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"doubleValue":"NaN"},"attributes":[{"key":"a"},{"key":"a"}]}]}]}]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, js bool) {
		req := plogotlp.NewExportRequest()
		var err error
		if js {
			err = req.UnmarshalJSON(body)
		} else {
			err = req.UnmarshalProto(body)
		}
		if err != nil {
			return
		}
		recs, _ := ToRecords(req.Logs(), 1<<20)
		for _, r := range recs {
			var m map[string]any
			if err := json.Unmarshal(r, &m); err != nil {
				t.Fatalf("record is not a JSON object: %s: %v", r, err)
			}
		}
	})
}
