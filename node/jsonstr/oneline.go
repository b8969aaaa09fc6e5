package jsonstr

import (
	"bytes"
	"encoding/json"
)

// OneLine keeps a JSON record on one line, as NDJSON needs: a record with
// a line break in it is compacted, one without is returned as is, and one
// that is not valid JSON is returned as is for the caller to judge.
func OneLine(b []byte) []byte {
	if bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}
