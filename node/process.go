package node

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/batchpilot/batchpilot/node/jsonstr"
)

// Processor transforms a record in a batch before the sink writes it.
//
// Process is called from the flush goroutines, several at once, each with
// its own records: an implementation must be safe for concurrent use. It may
// replace r.Data with a new JSON object but must not modify the bytes of the
// old one in place (they may be shared with the request body). It cannot
// fail: a record it cannot improve is left as it is.
type Processor interface {
	Process(r *Record)
}

// appendEnriched appends the record with the node's fields added as the
// last keys of the object.
func appendEnriched(dst []byte, r *Record, node string) []byte {
	data := bytes.TrimRight(r.Data, " \t\r\n")
	body := bytes.TrimSpace(data[:len(data)-1]) // without the closing '}'
	dst = append(dst, body...)
	if len(body) > 1 { // more than "{"
		dst = append(dst, ',')
	}
	dst = append(dst, `"_node":`...)
	dst = jsonstr.Append(dst, node)
	dst = append(dst, `,"_received_at":"`...)
	dst = r.Received.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","_source":"`...)
	dst = append(dst, r.Source...)
	return append(dst, '"', '}')
}

// timestampKeys are the fields TimestampNormalizer rewrites.
var timestampKeys = []string{"timestamp", "@timestamp", "time", "ts"}

// timestampLayouts are the formats TimestampNormalizer understands.
var timestampLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
	time.RFC1123Z,
	time.RFC1123,
	time.RFC850,
	time.ANSIC,
	"02/Jan/2006:15:04:05 -0700", // common log format
}

// TimestampNormalizer rewrites a record's timestamp field ("timestamp",
// "@timestamp", "time" or "ts") to RFC 3339 in UTC with nanoseconds. It
// understands RFC 3339, RFC 1123, the common log format, and Unix seconds or
// milliseconds as numbers; it leaves other values alone. Records without
// such a field cost one scan of their bytes.
type TimestampNormalizer struct{}

// Process implements Processor.
func (TimestampNormalizer) Process(r *Record) {
	if r.Source == SourceSyslog { // the syslog parser already writes RFC 3339 UTC
		return
	}
	hit := false
	for _, k := range timestampKeys {
		if bytes.Contains(r.Data, []byte(`"`+k+`"`)) {
			hit = true
			break
		}
	}
	if !hit {
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(r.Data, &obj); err != nil {
		return
	}
	changed := false
	for _, k := range timestampKeys {
		v, ok := obj[k]
		if !ok {
			continue
		}
		if t, ok := parseTimestamp(v); ok {
			norm, _ := json.Marshal(t.UTC().Format(time.RFC3339Nano))
			if !bytes.Equal(norm, v) {
				obj[k] = norm
				changed = true
			}
		}
	}
	if !changed {
		return
	}
	if out, err := json.Marshal(obj); err == nil {
		r.Data = out
	}
}

func parseTimestamp(v json.RawMessage) (time.Time, bool) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		for _, layout := range timestampLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t, true
			}
		}
		return time.Time{}, false
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || f <= 0 {
		return time.Time{}, false
	}
	switch {
	case f > 1e17: // nanoseconds
		return time.Unix(0, int64(f)), true
	case f > 1e14: // microseconds
		return time.UnixMicro(int64(f)), true
	case f > 1e11: // milliseconds
		return time.UnixMilli(int64(f)), true
	default:
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), true
	}
}
