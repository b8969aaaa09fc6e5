package syslog

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, time.November, 25, 12, 0, 0, 0, time.UTC)

// decode parses a record for comparison; numbers come back as float64.
func decode(t *testing.T, rec []byte) map[string]any {
	t.Helper()
	if !json.Valid(rec) {
		t.Fatalf("record is not valid JSON: %s", rec)
	}
	var m map[string]any
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatalf("decode %s: %v", rec, err)
	}
	return m
}

func TestParse(t *testing.T) {
	newYear := time.Date(2027, time.January, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   string
		now  time.Time // testNow when zero
		want map[string]any
	}{
		{
			name: "rfc5424 with structured data, as in RFC 5424 section 6.5",
			in:   `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry...`,
			want: map[string]any{
				"facility": 20.0, "severity": 5.0, "timestamp": "2003-10-11T22:14:15.003Z",
				"hostname": "mymachine.example.com", "app_name": "evntslog", "msg_id": "ID47",
				"structured_data": map[string]any{"exampleSDID@32473": map[string]any{"iut": "3", "eventSource": "Application", "eventID": "1011"}},
				"message":         "An application event log entry...",
			},
		},
		{
			name: "rfc5424 without structured data",
			in:   `<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su 4242 ID47 - 'su root' failed for lonvick on /dev/pts/8`,
			want: map[string]any{
				"facility": 4.0, "severity": 2.0, "timestamp": "2003-10-11T22:14:15.003Z",
				"hostname": "mymachine.example.com", "app_name": "su", "proc_id": "4242", "msg_id": "ID47",
				"message": "'su root' failed for lonvick on /dev/pts/8",
			},
		},
		{
			name: "rfc5424 nil values are left out and the timestamp is now",
			in:   `<13>1 - - - - - -`,
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T12:00:00Z", "message": ""},
		},
		{
			name: "rfc5424 escaped quote, backslash and bracket in param values",
			in:   `<13>1 - h a - - [esc@1 q="say \"hi\"" b="back\\slash" c="close\]bracket"] m`,
			want: map[string]any{
				"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T12:00:00Z", "hostname": "h", "app_name": "a",
				"structured_data": map[string]any{"esc@1": map[string]any{"q": `say "hi"`, "b": `back\slash`, "c": "close]bracket"}},
				"message":         "m",
			},
		},
		{
			name: "rfc5424 param named id is copied to the top level",
			in:   `<14>1 2026-11-25T10:00:00Z lg loadgen - - [meta@1 x="1"][loadgen@32473 id="lg-7-42" seq="42"] payload`,
			want: map[string]any{
				"facility": 1.0, "severity": 6.0, "timestamp": "2026-11-25T10:00:00Z", "hostname": "lg", "app_name": "loadgen",
				"id": "lg-7-42",
				"structured_data": map[string]any{
					"meta@1":        map[string]any{"x": "1"},
					"loadgen@32473": map[string]any{"id": "lg-7-42", "seq": "42"},
				},
				"message": "payload",
			},
		},
		{
			name: "rfc5424 timestamp with offset is written in UTC with its fraction",
			in:   `<13>1 2026-11-25T19:19:14.123456+05:30 h - - - - x`,
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T13:49:14.123456Z", "hostname": "h", "message": "x"},
		},
		{
			name: "rfc5424 byte order mark before the message is dropped",
			in:   "<13>1 - - - - - - \xef\xbb\xbfcaf\xc3\xa9",
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T12:00:00Z", "message": "café"},
		},
		{
			name: "rfc5424 control characters and invalid UTF-8 in the message survive as valid JSON",
			in:   "<13>1 - - - - - - tab\there \x01 quote\" \xff\xfe end",
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T12:00:00Z", "message": "tab\there \x01 quote\" \ufffd\ufffd end"},
		},
		{
			name: "rfc5424 embedded newline is kept, trailing CRLF and NUL are trimmed",
			in:   "<13>1 - - - - - - line1\nline2\r\n\x00",
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T12:00:00Z", "message": "line1\nline2"},
		},
		{
			name: "rfc5424 from util-linux logger",
			in:   `<13>1 2026-11-25T19:19:14.129111+00:00 vm root - - [timeQuality tzKnown="1" isSynced="0"] hello world` + "\n",
			want: map[string]any{
				"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T19:19:14.129111Z", "hostname": "vm", "app_name": "root",
				"structured_data": map[string]any{"timeQuality": map[string]any{"tzKnown": "1", "isSynced": "0"}},
				"message":         "hello world",
			},
		},
		{
			name: "rfc3164 as in RFC 3164 section 5.4, year taken from now",
			in:   `<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
			want: map[string]any{
				"facility": 4.0, "severity": 2.0, "timestamp": "2026-10-11T22:14:15Z",
				"hostname": "mymachine", "app_name": "su", "message": "'su root' failed for lonvick on /dev/pts/8",
			},
		},
		{
			name: "rfc3164 tag with pid",
			in:   `<13>Nov 25 19:19:14 vm sshd[123]: Accepted publickey`,
			want: map[string]any{
				"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T19:19:14Z",
				"hostname": "vm", "app_name": "sshd", "proc_id": "123", "message": "Accepted publickey",
			},
		},
		{
			name: "rfc3164 space-padded day",
			in:   `<13>Nov  5 01:02:03 vm cron: tick`,
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-05T01:02:03Z", "hostname": "vm", "app_name": "cron", "message": "tick"},
		},
		{
			name: "rfc3164 zero-padded day and fractional seconds",
			in:   `<13>Nov 05 01:02:03.250 vm cron: tick`,
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-05T01:02:03.25Z", "hostname": "vm", "app_name": "cron", "message": "tick"},
		},
		{
			name: "rfc3164 with an RFC 3339 timestamp keeps its year and zone",
			in:   `<13>2025-06-01T10:00:00.5+02:00 vm app[9]: hi`,
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2025-06-01T08:00:00.5Z", "hostname": "vm", "app_name": "app", "proc_id": "9", "message": "hi"},
		},
		{
			name: "rfc3164 December timestamp received in January is last year's",
			in:   `<13>Dec 31 23:59:59 vm app: late`,
			now:  newYear,
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-12-31T23:59:59Z", "hostname": "vm", "app_name": "app", "message": "late"},
		},
		{
			name: "rfc3164 from util-linux logger",
			in:   "<13>Nov 25 19:19:14 vm root: hello world\n",
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T19:19:14Z", "hostname": "vm", "app_name": "root", "message": "hello world"},
		},
		{
			name: "rfc3164 without a timestamp: all after PRI is the message, time is now",
			in:   `<13>hello world`,
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T12:00:00Z", "message": "hello world"},
		},
		{
			name: "rfc3164 with a control character is kept whole rather than cut",
			in:   "<13>Nov 25 19:19:14 vm app: a\x01b \xff",
			want: map[string]any{"facility": 1.0, "severity": 5.0, "timestamp": "2026-11-25T12:00:00Z", "message": "Nov 25 19:19:14 vm app: a\x01b \ufffd"},
		},
		{
			name: "priority 0 and 191 are the bounds",
			in:   `<191>Nov 25 19:19:14 vm app: x`,
			want: map[string]any{"facility": 23.0, "severity": 7.0, "timestamp": "2026-11-25T19:19:14Z", "hostname": "vm", "app_name": "app", "message": "x"},
		},
		{
			name: "priority 0 with only the PRI",
			in:   `<0>`,
			want: map[string]any{"facility": 0.0, "severity": 0.0, "timestamp": "2026-11-25T12:00:00Z", "message": ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = testNow
			}
			rec, err := Parse([]byte(tc.in), now)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := decode(t, rec); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q)\n got %v\nwant %v\n json %s", tc.in, got, tc.want, rec)
			}
		})
	}
}

func TestParseFieldOrderIsStable(t *testing.T) {
	in := `<165>1 2003-10-11T22:14:15.003Z host app 77 ID47 [b@1 z="1" a="2"][a@1 id="x"] hi`
	want := `{"facility":20,"severity":5,"timestamp":"2003-10-11T22:14:15.003Z","hostname":"host","app_name":"app","proc_id":"77","msg_id":"ID47","id":"x","structured_data":{"a@1":{"id":"x"},"b@1":{"a":"2","z":"1"}},"message":"hi"}`
	for i := 0; i < 3; i++ { // map order must not leak into the output
		rec, err := Parse([]byte(in), testNow)
		if err != nil {
			t.Fatal(err)
		}
		if string(rec) != want {
			t.Fatalf("got  %s\nwant %s", rec, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"empty message", "", "syslog: empty message"},
		{"only trailers", "\r\n\x00", "syslog: empty message"},
		{"no priority", "hello world", `syslog: priority: message must start with "<PRI>"`},
		{"binary garbage", "\xff\xfe\x00\x01\x02", `syslog: priority: message must start with "<PRI>"`},
		{"lone angle bracket", "<", "syslog: priority: expected"},
		{"unterminated priority", "<13", "syslog: priority: expected"},
		{"priority not a number", "<1a>x", "syslog: priority: expected"},
		{"priority of four digits", "<0013>x", "syslog: priority: expected"},
		{"priority with leading zero", "<01>x", "syslog: priority: leading zero"},
		{"priority out of range", "<192>x", "syslog: priority 192 out of range 0-191"},
		{"rfc5424 bad timestamp", "<13>1 garbage here", "syslog: rfc5424: expecting a RFC3339MICRO timestamp"},
		{"rfc5424 unterminated structured data", `<13>1 - h a - - [sd@1 k="v" hi`, "syslog: rfc5424: expecting a structured data parameter"},
		{"rfc5424 unescaped quote in param value", `<13>1 - h a - - [sd@1 k="a"b"] hi`, "syslog: rfc5424:"},
		{"rfc5424 duplicate SD-ID", `<13>1 - h a - - [sd@1 k="v"][sd@1 k="w"] hi`, "syslog: rfc5424: duplicate structured data element id"},
		{"rfc5424 missing fields", "<13>1 -", "syslog: rfc5424:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := Parse([]byte(tc.in), testNow)
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want error", tc.in, rec)
			}
			if !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) error %q, want prefix %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestParseReturnsOwnedSlice(t *testing.T) {
	a, err := Parse([]byte(`<13>1 - - - - - - first`), testNow)
	if err != nil {
		t.Fatal(err)
	}
	keep := string(a)
	if _, err := Parse([]byte(`<13>1 - - - - - - second`), testNow); err != nil {
		t.Fatal(err)
	}
	if string(a) != keep {
		t.Fatalf("first record changed by a later Parse: %s", a)
	}
}

func TestAppendTimestampMatchesRFC3339Nano(t *testing.T) {
	zone := time.FixedZone("x", -(7*3600 + 30*60))
	for _, ts := range []time.Time{
		time.Date(2026, 11, 25, 19, 19, 14, 0, time.UTC),
		time.Date(2026, 11, 25, 19, 19, 14, 123456789, time.UTC),
		time.Date(2026, 11, 25, 19, 19, 14, 100000000, time.UTC),
		time.Date(2026, 11, 25, 19, 19, 14, 1, time.UTC),
		time.Date(2026, 12, 31, 23, 0, 0, 500, zone), // next day in UTC
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	} {
		want := ts.UTC().Format(time.RFC3339Nano)
		if got := string(appendTimestamp(nil, ts)); got != want {
			t.Errorf("appendTimestamp(%v) = %s, want %s", ts, got, want)
		}
	}
}

func TestWithYear(t *testing.T) {
	stamp := func(m time.Month, d int) time.Time { return time.Date(0, m, d, 1, 2, 3, 0, time.UTC) }
	at := func(y int, m time.Month) time.Time { return time.Date(y, m, 15, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		name  string
		stamp time.Time
		now   time.Time
		year  int
	}{
		{"same month takes now's year", stamp(time.June, 1), at(2026, time.June), 2026},
		{"earlier month takes now's year", stamp(time.February, 1), at(2026, time.June), 2026},
		{"December seen in January is last year", stamp(time.December, 31), at(2027, time.January), 2026},
		{"January seen in December is next year", stamp(time.January, 1), at(2026, time.December), 2027},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := withYear(tc.stamp, tc.now).Year(); got != tc.year {
				t.Errorf("year %d, want %d", got, tc.year)
			}
		})
	}
}

func TestParseIsSafeForConcurrentUse(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				text := fmt.Sprintf("g%d-%d", g, i)
				rec, err := Parse([]byte(`<13>1 - h a - - [x@1 id="`+text+`"] `+text), testNow)
				if err != nil {
					t.Error(err)
					return
				}
				var m map[string]any
				if err := json.Unmarshal(rec, &m); err != nil || m["message"] != text || m["id"] != text {
					t.Errorf("record %s for %s", rec, text)
					return
				}
			}
		}()
	}
	wg.Wait()
}
