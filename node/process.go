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

// reservedKeys are the fields the node adds to every record it writes.
var reservedKeys = [...]string{"_node", "_received_at", "_source"}

// appendEnriched appends the record with the node's fields added as the
// last keys of the object. It is the one place where they are added, so the
// rule for a record that already has one of them holds for every intake:
// the node's fields win. The record's own "_node", "_received_at" and
// "_source" members (top level only, however their names are escaped) are
// left out, so the written object never has a duplicate key.
func appendEnriched(dst []byte, r *Record, node string) []byte {
	data := bytes.TrimRight(r.Data, " \t\r\n")
	if mayHaveReserved(data) {
		if kept, ok := withoutReserved(data); ok {
			data = kept
		}
	}
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

// mayHaveReserved is the cheap test in front of withoutReserved: a key
// that names a reserved field starts with '_', written as such or escaped.
func mayHaveReserved(data []byte) bool {
	return bytes.Contains(data, []byte(`"_`)) || bytes.Contains(data, []byte(`"\u005`))
}

// withoutReserved returns the JSON object data without its top-level
// members named like a reserved field, keeping the others byte for byte and
// in order. ok is false when it has none (or data is not a well-formed
// object), and data is then to be used as it is.
func withoutReserved(data []byte) (kept []byte, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i++
	var out []byte
	members := 0
	for {
		from := skipSpace(data, i)
		if from < len(data) && data[from] == '}' && members == 0 && out == nil {
			return nil, false // {}
		}
		if from >= len(data) || data[from] != '"' {
			return nil, false
		}
		keyEnd, escaped, okKey := skipString(data, from)
		if !okKey {
			return nil, false
		}
		colon := skipSpace(data, keyEnd)
		if colon >= len(data) || data[colon] != ':' {
			return nil, false
		}
		valEnd, okVal := skipValue(data, skipSpace(data, colon+1))
		if !okVal {
			return nil, false
		}
		if isReserved(data[from:keyEnd], escaped) {
			if out == nil {
				out = make([]byte, 0, len(data))
				out = append(out, '{')
				// The members before this one, as they were.
				out = appendMembers(out, data, members)
			}
		} else if out != nil {
			if out[len(out)-1] != '{' {
				out = append(out, ',')
			}
			out = append(out, data[from:valEnd]...)
		}
		members++
		i = skipSpace(data, valEnd)
		if i >= len(data) {
			return nil, false
		}
		switch data[i] {
		case ',':
			i++
		case '}':
			if out == nil {
				return nil, false
			}
			return append(out, '}'), true
		default:
			return nil, false
		}
	}
}

// appendMembers appends the first n members of the object data (whose
// first n members are known to be well formed and not reserved), separated
// by commas.
func appendMembers(out, data []byte, n int) []byte {
	i := skipSpace(data, 0) + 1
	for k := 0; k < n; k++ {
		from := skipSpace(data, i)
		keyEnd, _, _ := skipString(data, from)
		valEnd, _ := skipValue(data, skipSpace(data, skipSpace(data, keyEnd)+1))
		if k > 0 {
			out = append(out, ',')
		}
		out = append(out, data[from:valEnd]...)
		i = skipSpace(data, valEnd) + 1 // past the ','
	}
	return out
}

// isReserved reports whether the quoted key names a reserved field.
func isReserved(quoted []byte, escaped bool) bool {
	key := quoted[1 : len(quoted)-1]
	if escaped {
		var s string
		if json.Unmarshal(quoted, &s) != nil {
			return false
		}
		key = []byte(s)
	}
	for _, k := range reservedKeys {
		if string(key) == k {
			return true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] ('"')
// and whether it holds an escape.
func skipString(b []byte, i int) (end int, escaped, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped, true
		}
	}
	return 0, false, false
}

// skipValue returns the index just past the JSON value starting at b[i].
// It checks the nesting and the strings, not every detail: the intakes
// hand over valid JSON, and what it cannot follow it declines.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end, _, ok := skipString(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	default: // a number, true, false or null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j, j > i
	}
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
