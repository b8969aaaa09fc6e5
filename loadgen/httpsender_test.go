package loadgen

import (
	"strconv"
	"testing"
)

func TestParseSentHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want int64 // Unix nanoseconds; 0: not ok
	}{
		{"a decimal count of nanoseconds is the send time", "1700000000123456789", 1700000000123456789},
		{"an empty header is no time", "", 0},
		{"zero is no time", "0", 0},
		{"a negative count is no time", "-5", 0},
		{"a date is not the format", "Sat, 05 Dec 2026 17:00:00 GMT", 0},
		{"a count past int64 is refused", "99999999999999999999", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseSentHeader(tc.in)
			if ok != (tc.want != 0) || (ok && got.UnixNano() != tc.want) {
				t.Errorf("ParseSentHeader(%q) = %v, %v; want %d", tc.in, got, ok, tc.want)
			}
		})
	}
}

func FuzzParseSentHeader(f *testing.F) {
	f.Add("1700000000123456789")
	f.Add("")
	f.Add("-1")
	f.Add("1e9")
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := ParseSentHeader(v)
		if !ok {
			if !got.IsZero() {
				t.Fatalf("ParseSentHeader(%q) refused it but returned %v", v, got)
			}
			return
		}
		if got.UnixNano() <= 0 {
			t.Fatalf("ParseSentHeader(%q) = %v, not after the epoch", v, got)
		}
		// What it accepts is what the sender writes.
		if back, ok := ParseSentHeader(strconv.FormatInt(got.UnixNano(), 10)); !ok || !back.Equal(got) {
			t.Fatalf("ParseSentHeader(%q) = %v does not round-trip", v, got)
		}
	})
}
