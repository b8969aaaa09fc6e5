package jsonstr

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "\x00\x01\x1f\x7f", "\b\f\n\r\t",
		"héllo wörld ✓ 😀", "\xff", "a\xc3", "\xed\xa0\x80", "\u2028\u2029", "<script>&",
		"\xef\xbb\xbf", strings.Repeat("x", 100) + "\xe2\x82", "\xf0\x9f\x98",
	} {
		ref, _ := json.Marshal(s)
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		for _, got := range [][]byte{Append(nil, s), Append(nil, []byte(s))} {
			var gotS string
			if err := json.Unmarshal(got, &gotS); err != nil {
				t.Errorf("Append(%q) = %s, not valid JSON: %v", s, got, err)
				continue
			}
			if gotS != want {
				t.Errorf("Append(%q) decodes to %q, encoding/json gives %q", s, gotS, want)
			}
		}
	}
}

func TestAppendDoesNotAllocateBeyondDst(t *testing.T) {
	dst := make([]byte, 0, 256)
	s := []byte("a line with \"quotes\", a tab\t, ünïcödé and a bad byte \xff")
	if n := testing.AllocsPerRun(100, func() { _ = Append(dst[:0], s) }); n != 0 {
		t.Errorf("Append allocated %.0f times a call", n)
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a one-line record is kept as is", `{"a": 1, "b": [1, 2]}`, `{"a": 1, "b": [1, 2]}`},
		{"line breaks between tokens are compacted away", "{\"a\":\n 1,\r\n\"b\": \"x y\"}", `{"a":1,"b":"x y"}`},
		{"invalid JSON is kept as is", "{\"a\":\n", "{\"a\":\n"},
	} {
		if got := string(OneLine([]byte(tc.in))); got != tc.want {
			t.Errorf("%s: OneLine(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}
