package syslog

import (
	"slices"
	"strconv"
	"time"

	"github.com/batchpilot/batchpilot/node/jsonstr"
)

// record holds the fields of one parsed message before it is written as JSON.
// An empty string means the field is absent and is left out of the output.
type record struct {
	facility  uint8
	severity  uint8
	timestamp time.Time
	hostname  string
	appName   string
	procID    string
	msgID     string
	sd        map[string]map[string]string
	message   string
}

// appendJSON appends r as one JSON object to dst. keys is scratch space for
// sorting structured-data names; the grown slice is returned for reuse.
//
// facility, severity, timestamp and message are always written; the other
// fields only when present. If a structured-data element has a param named
// "id", its value is also written as the top-level "id" (the first such
// element in SD-ID order wins), so that records from the load generator can be
// traced end to end.
func (r *record) appendJSON(dst []byte, keys []string) ([]byte, []string) {
	dst = append(dst, `{"facility":`...)
	dst = strconv.AppendUint(dst, uint64(r.facility), 10)
	dst = append(dst, `,"severity":`...)
	dst = strconv.AppendUint(dst, uint64(r.severity), 10)
	dst = append(dst, `,"timestamp":"`...)
	dst = appendTimestamp(dst, r.timestamp)
	dst = append(dst, '"')
	dst = appendField(dst, "hostname", r.hostname)
	dst = appendField(dst, "app_name", r.appName)
	dst = appendField(dst, "proc_id", r.procID)
	dst = appendField(dst, "msg_id", r.msgID)

	if len(r.sd) > 0 {
		keys = sortedKeys(keys[:0], r.sd)
		for _, id := range keys {
			if v, ok := r.sd[id]["id"]; ok {
				dst = append(dst, `,"id":`...)
				dst = jsonstr.Append(dst, v)
				break
			}
		}
		dst = append(dst, `,"structured_data":{`...)
		// The SD-IDs stay in keys[:n]; each element's param names are sorted
		// into the space after them.
		n := len(keys)
		for i := 0; i < n; i++ {
			id := keys[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonstr.Append(dst, id)
			dst = append(dst, ":{"...)
			params := r.sd[id]
			keys = sortedKeys(keys[:n], params)
			for j, name := range keys[n:] {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = jsonstr.Append(dst, name)
				dst = append(dst, ':')
				dst = jsonstr.Append(dst, params[name])
			}
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
		keys = keys[:0]
	}

	dst = append(dst, `,"message":`...)
	dst = jsonstr.Append(dst, r.message)
	return append(dst, '}'), keys
}

// appendTimestamp appends t in UTC as time.RFC3339Nano does (fraction
// without trailing zeros), without its layout interpretation, which is a
// measurable share of the per-record cost.
func appendTimestamp(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	hour, minute, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	if ns := t.Nanosecond(); ns != 0 {
		width := 9
		for ns%10 == 0 {
			ns /= 10
			width--
		}
		dst = append(dst, '.')
		dst = appendDigits(dst, ns, width)
	}
	return append(dst, 'Z')
}

// appendDigits appends v (non-negative) in decimal, zero-padded to width.
func appendDigits(dst []byte, v, width int) []byte {
	var b [9]byte
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, b[:width]...)
}

// sortedKeys appends the keys of m to dst and sorts the appended part.
func sortedKeys[V any](dst []string, m map[string]V) []string {
	start := len(dst)
	for k := range m {
		dst = append(dst, k)
	}
	if len(dst)-start > 1 {
		slices.Sort(dst[start:])
	}
	return dst
}

func appendField(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return jsonstr.Append(dst, value)
}
