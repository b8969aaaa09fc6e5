package syslog

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
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
				dst = appendJSONString(dst, v)
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
			dst = appendJSONString(dst, id)
			dst = append(dst, ":{"...)
			params := r.sd[id]
			keys = sortedKeys(keys[:n], params)
			for j, name := range keys[n:] {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, name)
				dst = append(dst, ':')
				dst = appendJSONString(dst, params[name])
			}
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
		keys = keys[:0]
	}

	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, r.message)
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
	return appendJSONString(dst, value)
}

// jsonSafe reports, for each ASCII byte, whether it may appear unescaped
// inside a JSON string.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string. Quotes, backslashes and
// control characters are escaped; every byte that is not part of valid UTF-8
// becomes U+FFFD, so the result is always valid JSON whatever the input.
// U+2028 and U+2029 are escaped too, so the output is also safe to embed in
// JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied as is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
