package logs

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		format   string
		body     string
		maxLine  int
		want     []string
		wantLine int // 0: no error
		tooLong  bool
	}{
		{name: "ndjson keeps each object as sent", format: FormatNDJSON,
			body: "{\"a\":1}\n{\"b\":\"x\"}\n", want: []string{`{"a":1}`, `{"b":"x"}`}},
		{name: "ndjson skips blank lines and CRLF", format: FormatNDJSON,
			body: "{\"a\":1}\r\n\r\n  \n{\"b\":2}", want: []string{`{"a":1}`, `{"b":2}`}},
		{name: "ndjson names the line of the first malformed record", format: FormatNDJSON,
			body: "{\"a\":1}\n{\"a\":2}\n{\"a\":\n{\"a\":4}\n", wantLine: 3},
		{name: "ndjson rejects a record that is not an object", format: FormatNDJSON,
			body: "{\"a\":1}\n[1,2]\n", wantLine: 2},
		{name: "ndjson rejects a bare string", format: FormatNDJSON,
			body: "\"hello\"\n", wantLine: 1},
		{name: "ndjson over-long line is too long, with its line", format: FormatNDJSON,
			body: "{\"a\":1}\n{\"a\":\"" + strings.Repeat("x", 100) + "\"}\n", maxLine: 50, wantLine: 2, tooLong: true},
		{name: "json array of objects", format: FormatJSON,
			body: "[{\"a\":1},\n {\"b\":2}]", want: []string{`{"a":1}`, `{"b":2}`}},
		{name: "json single object", format: FormatJSON,
			body: `{"a": 1}`, want: []string{`{"a": 1}`}},
		{name: "json pretty object is kept on one line", format: FormatJSON,
			body: "{\n  \"a\": 1\n}", want: []string{`{"a":1}`}},
		{name: "json array element that is not an object names its line", format: FormatJSON,
			body: "[\n{\"a\":1},\n2\n]", wantLine: 3},
		{name: "json array with a syntax error", format: FormatJSON,
			body: "[\n{\"a\":1},\n{\"a\" 1}\n]", wantLine: 3},
		{name: "json trailing garbage", format: FormatJSON,
			body: "[{\"a\":1}] x", wantLine: 1},
		{name: "json empty array is no records", format: FormatJSON, body: "[]", want: nil},
		{name: "text lines become message records", format: FormatText,
			body: "hello \"world\"\n\nsecond\tline\n", want: []string{`{"message":"hello \"world\""}`, `{"message":"second\tline"}`}},
		{name: "text invalid utf-8 is replaced", format: FormatText,
			body: "bad \xff byte", want: []string{`{"message":"bad \ufffd byte"}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := Decode(tc.format, []byte(tc.body), tc.maxLine)
			if tc.wantLine != 0 {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("err = %v, want a DecodeError", err)
				}
				if de.Line != tc.wantLine || de.TooLong != tc.tooLong {
					t.Fatalf("err = %+v, want line %d tooLong %v", de, tc.wantLine, tc.tooLong)
				}
				if recs != nil {
					t.Fatalf("records returned with an error: %q", recs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(tc.want) {
				t.Fatalf("got %d records %q, want %d", len(recs), recs, len(tc.want))
			}
			for i := range recs {
				if string(recs[i]) != tc.want[i] {
					t.Errorf("record %d = %s, want %s", i, recs[i], tc.want[i])
				}
				if !json.Valid(recs[i]) {
					t.Errorf("record %d is not valid JSON: %s", i, recs[i])
				}
			}
		})
	}
}

func TestFormatFor(t *testing.T) {
	for _, tc := range []struct {
		ct, body, want string
		wantErr        bool
	}{
		{ct: "application/x-ndjson", want: FormatNDJSON},
		{ct: "application/json; charset=utf-8", want: FormatJSON},
		{ct: "text/plain", want: FormatText},
		{ct: "", body: " [{}]", want: FormatJSON},
		{ct: "", body: "{}", want: FormatNDJSON},
		{ct: "application/x-www-form-urlencoded", body: "{}\n{}", want: FormatNDJSON},
		{ct: "image/png", wantErr: true},
		{ct: "a/b; ===", wantErr: true},
	} {
		got, err := FormatFor(tc.ct, []byte(tc.body))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("FormatFor(%q, %q) = %q, %v; want %q (error %v)", tc.ct, tc.body, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"{\"a\":1}\n{\"b\":[1,2]}\n", "[{\"a\":1},{}]", "{\"a\":\n", "plain text\nline", "\xff\xfe{", "[1,{\"a\":1}]", "{}{}"} {
		f.Add([]byte(s), uint8(0))
	}
	formats := []string{FormatNDJSON, FormatJSON, FormatText}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		format := formats[int(which)%len(formats)]
		recs, err := Decode(format, body, 1<<10)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			if recs != nil {
				t.Fatal("records returned with an error")
			}
			return
		}
		for i, r := range recs {
			if !json.Valid(r) || r[0] != '{' {
				t.Fatalf("%s record %d is not a JSON object: %q", format, i, r)
			}
			if strings.ContainsAny(string(r), "\n") {
				t.Fatalf("record %d spans lines: %q", i, r)
			}
			if len(r) > 1<<10 && format != FormatText {
				t.Fatalf("record %d over the line limit: %d bytes", i, len(r))
			}
		}
	})
}
