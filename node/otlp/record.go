package otlp

import (
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/batchpilot/batchpilot/node/jsonstr"
)

// Rejected says which log record of a request was refused and why.
type Rejected struct {
	Resource, Scope, Record int // 0-based positions in the request
	Reason                  string
}

func (r Rejected) String() string {
	return fmt.Sprintf("resourceLogs[%d].scopeLogs[%d].logRecords[%d]: %s", r.Resource, r.Scope, r.Record, r.Reason)
}

// ToRecords turns every log record of ld into one JSON object:
//
//	{"id": ..., "timestamp": "RFC 3339", "observed_timestamp": "...",
//	 "severity_text": "INFO", "severity_number": 9, "message": "<a string body>"
//	 or "body": <any other body>, "event_name": "...", "trace_id": "hex",
//	 "span_id": "hex", "flags": 1, "attributes": {...},
//	 "resource": {"attributes": {...}}, "scope": {"name", "version", "attributes"}}
//
// Empty fields are left out. "id" is the record's attribute "id", or else
// its "log.record.uid" (the semantic convention for a unique record id), so
// that loadgen and verify find OTLP records as they find the others. A
// record longer than maxLine bytes (0: no bound) is refused and reported.
func ToRecords(ld plog.Logs, maxLine int) ([][]byte, []Rejected) {
	var recs [][]byte
	var rejected []Rejected
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		resource := appendResource(nil, rl.Resource())
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			scope := appendScope(nil, sl.Scope())
			lrs := sl.LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				rec := appendRecord(make([]byte, 0, 256), lrs.At(k), resource, scope)
				if maxLine > 0 && len(rec) > maxLine {
					rejected = append(rejected, Rejected{Resource: i, Scope: j, Record: k,
						Reason: fmt.Sprintf("record of %d bytes is over the limit of %d bytes", len(rec), maxLine)})
					continue
				}
				recs = append(recs, rec)
			}
		}
	}
	return recs, rejected
}

func appendResource(dst []byte, r pcommon.Resource) []byte {
	if r.Attributes().Len() == 0 {
		return nil
	}
	dst = append(dst, `{"attributes":`...)
	dst = appendMap(dst, r.Attributes())
	return append(dst, '}')
}

func appendScope(dst []byte, s pcommon.InstrumentationScope) []byte {
	if s.Name() == "" && s.Version() == "" && s.Attributes().Len() == 0 {
		return nil
	}
	dst = append(dst, '{')
	sep := false
	if s.Name() != "" {
		dst = append(dst, `"name":`...)
		dst = jsonstr.Append(dst, s.Name())
		sep = true
	}
	if s.Version() != "" {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"version":`...)
		dst = jsonstr.Append(dst, s.Version())
		sep = true
	}
	if s.Attributes().Len() > 0 {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"attributes":`...)
		dst = appendMap(dst, s.Attributes())
	}
	return append(dst, '}')
}

func appendRecord(dst []byte, lr plog.LogRecord, resource, scope []byte) []byte {
	dst = append(dst, '{')
	first := true
	key := func(k string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
	}
	attrs := lr.Attributes()
	if v, ok := attrs.Get("id"); ok {
		key("id")
		dst = appendValue(dst, v)
	} else if v, ok := attrs.Get("log.record.uid"); ok {
		key("id")
		dst = appendValue(dst, v)
	}
	if ts := lr.Timestamp(); ts != 0 {
		key("timestamp")
		dst = appendTime(dst, ts)
	}
	if ts := lr.ObservedTimestamp(); ts != 0 {
		key("observed_timestamp")
		dst = appendTime(dst, ts)
	}
	if s := lr.SeverityText(); s != "" {
		key("severity_text")
		dst = jsonstr.Append(dst, s)
	}
	if n := lr.SeverityNumber(); n != plog.SeverityNumberUnspecified {
		key("severity_number")
		dst = strconv.AppendInt(dst, int64(n), 10)
	}
	switch body := lr.Body(); body.Type() {
	case pcommon.ValueTypeEmpty:
	case pcommon.ValueTypeStr:
		key("message")
		dst = jsonstr.Append(dst, body.Str())
	default:
		key("body")
		dst = appendValue(dst, body)
	}
	if s := lr.EventName(); s != "" {
		key("event_name")
		dst = jsonstr.Append(dst, s)
	}
	if id := lr.TraceID(); !id.IsEmpty() {
		key("trace_id")
		dst = jsonstr.Append(dst, id.String())
	}
	if id := lr.SpanID(); !id.IsEmpty() {
		key("span_id")
		dst = jsonstr.Append(dst, id.String())
	}
	if f := lr.Flags(); f != 0 {
		key("flags")
		dst = strconv.AppendUint(dst, uint64(f), 10)
	}
	if attrs.Len() > 0 {
		key("attributes")
		dst = appendMap(dst, attrs)
	}
	if resource != nil {
		key("resource")
		dst = append(dst, resource...)
	}
	if scope != nil {
		key("scope")
		dst = append(dst, scope...)
	}
	return append(dst, '}')
}

func appendTime(dst []byte, ts pcommon.Timestamp) []byte {
	dst = append(dst, '"')
	dst = ts.AsTime().UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendMap writes m as a JSON object; a key that occurs twice keeps its
// first value, so the object stays valid for every reader.
func appendMap(dst []byte, m pcommon.Map) []byte {
	dst = append(dst, '{')
	var seen []string // few keys: a scan is cheaper than a set
	var seenSet map[string]struct{}
	if m.Len() > 16 {
		seenSet = make(map[string]struct{}, m.Len())
	}
	m.Range(func(k string, v pcommon.Value) bool {
		if seenSet != nil {
			if _, dup := seenSet[k]; dup {
				return true
			}
			seenSet[k] = struct{}{}
		} else {
			if slices.Contains(seen, k) {
				return true
			}
			seen = append(seen, k)
		}
		if len(dst) > 0 && dst[len(dst)-1] != '{' {
			dst = append(dst, ',')
		}
		dst = jsonstr.Append(dst, k)
		dst = append(dst, ':')
		dst = appendValue(dst, v)
		return true
	})
	return append(dst, '}')
}

func appendValue(dst []byte, v pcommon.Value) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return jsonstr.Append(dst, v.Str())
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(dst, v.Int(), 10)
	case pcommon.ValueTypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return jsonstr.Append(dst, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(dst, v.Bool())
	case pcommon.ValueTypeMap:
		return appendMap(dst, v.Map())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		dst = append(dst, '[')
		for i := 0; i < s.Len(); i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, s.At(i))
		}
		return append(dst, ']')
	case pcommon.ValueTypeBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v.Bytes().AsRaw())
		return append(dst, '"')
	default:
		return append(dst, "null"...)
	}
}
