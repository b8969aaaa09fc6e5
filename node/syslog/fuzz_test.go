package syslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/batchpilot/batchpilot/node/jsonstr"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry...`,
		`<13>1 - - - - - -`,
		`<13>1 - h a - - [esc@1 q="say \"hi\"" b="back\\slash" c="close\]bracket"] m`,
		`<14>1 2026-11-25T10:00:00Z lg loadgen - - [loadgen@32473 id="lg-7-42" seq="42"] payload`,
		"<13>1 - - - - - - \xef\xbb\xbftab\there \x01 \xff\xfe\r\n",
		`<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
		`<13>Nov  5 01:02:03.250 vm sshd[123]: tick`,
		`<13>2025-06-01T10:00:00.5+02:00 vm app[9]: hi`,
		"<13>Nov 25 19:19:14 vm app: a\x01b \xff",
		`<13>hello world`,
		"\xff\xfe\x00\x01",
		"<0>",
		"<191>1 -",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		rec, err := Parse(msg, testNow)
		if err != nil {
			if rec != nil {
				t.Fatalf("Parse(%q) returned a record with error %v", msg, err)
			}
			return
		}
		if !json.Valid(rec) {
			t.Fatalf("Parse(%q) = %s: not valid JSON", msg, rec)
		}
		var m map[string]any
		if err := json.Unmarshal(rec, &m); err != nil {
			t.Fatalf("Parse(%q) = %s: %v", msg, rec, err)
		}
		for _, k := range []string{"facility", "severity", "timestamp", "message"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("Parse(%q) = %s: no %q", msg, rec, k)
			}
		}

		// The string encoder agrees with encoding/json on any input.
		got := jsonstr.Append(nil, msg)
		var gotS, wantS string
		if err := json.Unmarshal(got, &gotS); err != nil {
			t.Fatalf("jsonstr.Append(%q) = %s: %v", msg, got, err)
		}
		ref, _ := json.Marshal(string(msg))
		_ = json.Unmarshal(ref, &wantS)
		if gotS != wantS {
			t.Fatalf("jsonstr.Append(%q) decodes to %q, encoding/json to %q", msg, gotS, wantS)
		}
	})
}

// chunkReader returns at most n bytes per Read, to exercise every split of a
// stream across reads.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func FuzzFraming(f *testing.F) {
	for _, s := range []string{
		"<13>1 - - - - - - a\n<13>1 - - - - - - b\r\n",
		"12 <13>1 - - -a17 <13>1 - - - - - - b",
		"5 hello\n6 world!\x00",
		"\x00\x00<13>x\x00<13>y",
		"99999999999 x",
		"0 x",
		"3x abc",
		"\xff\xfe garbage without newline that is longer than the limit of sixty-four bytes\n<13>ok\n",
		"12 short",
		"\n\n\n",
	} {
		f.Add([]byte(s), uint8(7))
	}
	const limit = 64
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		fr := newFrameReader(&chunkReader{data: stream, n: int(chunk) + 1}, limit)
		// Every call consumes at least one byte or ends the stream.
		for calls := 0; calls <= len(stream)+2; calls++ {
			msg, err := fr.next()
			if err != nil {
				if errors.Is(err, errTooLong) && fr.Mode() == framingNonTransparent {
					continue
				}
				return
			}
			if len(msg) > limit {
				t.Fatalf("message of %d bytes, limit %d: %q", len(msg), limit, msg)
			}
			if fr.Mode() == framingNonTransparent && bytes.ContainsAny(msg, "\n\x00") {
				t.Fatalf("non-transparent message contains a delimiter: %q", msg)
			}
			if !bytes.Contains(stream, msg) {
				t.Fatalf("message %q is not part of the stream", msg)
			}
		}
		t.Fatalf("framing reader did not finish a %d-byte stream", len(stream))
	})
}
