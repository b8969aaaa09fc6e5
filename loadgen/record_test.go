package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func encodeLines(e *encoder, seq int64, n int) []string {
	var pl payload
	e.encode(&pl, seq, 0, n, time.Date(2026, 11, 25, 19, 17, 45, 123456789, time.UTC))
	var out []string
	start := 0
	for _, end := range pl.ends {
		out = append(out, string(pl.buf[start:end]))
		start = end
	}
	return out
}

func TestHTTPRecordsAreJSONWithUniqueIDsAndTheirSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   Size
		fields int
		lo, hi int
	}{
		{"fixed 256 bytes, 4 fields", Size{Dist: "fixed", Mean: 256}, 4, 250, 262},
		{"fixed 2 KiB, no fields", Size{Mean: 2048}, 0, 2040, 2056},
		{"uniform 200..1000, 12 fields", Size{Dist: "uniform", Min: 200, Max: 1000}, 12, 190, 1010},
		{"lognormal around 500, clamped to 5000", Size{Dist: "lognormal", Mean: 500, StdDev: 400, Max: 5000}, 4, 100, 5010},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEncoder("run1", "http", "", tc.size, tc.fields, nil, 1)
			lines := encodeLines(e, 1_000_000, 300)
			var total int
			for i, l := range lines {
				if !strings.HasSuffix(l, "\n") {
					t.Fatalf("line %d lacks its newline", i)
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("line %d is not JSON: %v\n%s", i, err, l)
				}
				if want := fmt.Sprintf("run1-%d", 1_000_000+i); m["id"] != want {
					t.Fatalf("line %d id %v, want %s", i, m["id"], want)
				}
				if m["ts"] != "2026-11-25T19:17:45.123456Z" || m["level"] == nil || m["msg"] == nil {
					t.Fatalf("line %d lacks ts, level or msg: %s", i, l)
				}
				if got := len(m) - 5; got != tc.fields {
					t.Fatalf("line %d has %d extra fields, want %d", i, got, tc.fields)
				}
				n := len(l) - 1
				if n < tc.lo || n > tc.hi {
					t.Fatalf("line %d is %d bytes, want %d..%d", i, n, tc.lo, tc.hi)
				}
				total += n
			}
			if tc.size.Dist == "uniform" {
				if mean := total / len(lines); mean < 520 || mean > 680 {
					t.Errorf("mean size %d, want about 600", mean)
				}
			}
		})
	}
}

func TestSyslogRecordsAreRFC5424WithTheIDInStructuredData(t *testing.T) {
	for _, tc := range []struct {
		proto, framing string
	}{{"tcp", "octet"}, {"tcp", "newline"}, {"udp", ""}} {
		t.Run(tc.proto+" "+tc.framing, func(t *testing.T) {
			e := newEncoder("r", tc.proto, tc.framing, Size{Mean: 400}, 3, nil, 2)
			for i, frame := range encodeLines(e, 7, 50) {
				msg := frame
				switch {
				case tc.framing == "octet":
					sp := strings.IndexByte(frame, ' ')
					n, err := strconv.Atoi(frame[:sp])
					msg = frame[sp+1:]
					if err != nil || n != len(msg) {
						t.Fatalf("frame %d: octet count %q for a %d-byte message", i, frame[:sp], len(msg))
					}
				case tc.framing == "newline":
					if !strings.HasSuffix(frame, "\n") || strings.Count(frame, "\n") != 1 {
						t.Fatalf("frame %d: want one message per line", i)
					}
					msg = strings.TrimSuffix(frame, "\n")
				}
				m := syslogMsg.FindStringSubmatch(msg)
				if m == nil {
					t.Fatalf("frame %d is not RFC 5424 as loadgen sends it: %q", i, msg)
				}
				if m[2] != "r-"+strconv.Itoa(7+i) {
					t.Fatalf("frame %d: id %s", i, m[2])
				}
				if pri, _ := strconv.Atoi(m[1]); pri < 128 || pri > 135 {
					t.Fatalf("frame %d: priority %d is not local0", i, pri)
				}
				if len(msg) < 380 || len(msg) > 420 {
					t.Fatalf("frame %d: message of %d bytes, want about 400", i, len(msg))
				}
			}
		})
	}
}

func TestReplayedRecordsKeepTheirFieldsAndGetOurID(t *testing.T) {
	tr, err := ParseTrace(strings.NewReader(strings.Join([]string{
		`0.0 {"id": "theirs", "level": "warn", "n": 3}`,
		`0.5 plain "text" line`,
		`1.0 {}`,
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	e := newEncoder("r", "http", "", Size{}, 0, tr, 1)
	lines := encodeLines(e, 0, 3)
	want := []map[string]any{
		{"id": "r-0", "level": "warn", "n": 3.0},
		{"id": "r-1", "message": `plain "text" line`},
		{"id": "r-2"},
	}
	for i, l := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("line %d: %v, want %v", i, got, want[i])
		}
	}
	// Over syslog the line is the message.
	se := newEncoder("r", "tcp", "newline", Size{}, 0, tr, 1)
	if l := encodeLines(se, 0, 2)[1]; !strings.HasSuffix(l, `id="r-1"] plain "text" line`+"\n") {
		t.Errorf("syslog replay: %q", l)
	}
}

func TestParseTrace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []time.Duration
		wantErr string
	}{
		{"relative seconds, unsorted", "# a trace\n2.5 b\n\n0.5 a\n3 c\n", []time.Duration{0, 2 * time.Second, 2500 * time.Millisecond}, ""},
		{"RFC 3339 times from the first", "2026-01-01T00:00:01Z x\n2026-01-01T00:00:00.25Z y\n", []time.Duration{0, 750 * time.Millisecond}, ""},
		{"tab separated", "0\tx\n0.001\ty\n", []time.Duration{0, time.Millisecond}, ""},
		{"no record", "1.5\n", nil, "line 1"},
		{"bad time", "soon x\n", nil, "neither seconds nor RFC 3339"},
		{"mixed forms", "0 x\n2026-01-01T00:00:00Z y\n", nil, "after relative seconds"},
		{"negative time", "-1 x\n", nil, "out of range"},
		{"empty", "# nothing\n", nil, "no entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ParseTrace(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(tr.At) != fmt.Sprint(tc.want) {
				t.Errorf("times %v, want %v", tr.At, tc.want)
			}
		})
	}
}

func FuzzTrace(f *testing.F) {
	f.Add("0 {\"a\":1}\n0.5 text\n")
	f.Add("2026-01-01T00:00:00Z x\n2026-01-01T00:00:02Z {\"id\":1}\n")
	f.Fuzz(func(t *testing.T, in string) {
		tr, err := ParseTrace(strings.NewReader(in))
		if err != nil {
			return
		}
		for i := 1; i < len(tr.At); i++ {
			if tr.At[i] < tr.At[i-1] || tr.At[0] != 0 {
				t.Fatalf("times not sorted from zero: %v", tr.At)
			}
		}
		// Every entry becomes a valid record with our id.
		e := newEncoder("f", "http", "", Size{}, 0, tr, 1)
		var pl payload
		e.encode(&pl, 0, 0, len(tr.Lines), time.Unix(0, 0))
		dec := json.NewDecoder(bytes.NewReader(pl.buf))
		for i := range tr.Lines {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("entry %d %q encodes to bad JSON: %v", i, tr.Lines[i], err)
			}
			if m["id"] != "f-"+strconv.Itoa(i) {
				t.Fatalf("entry %d: id %v", i, m["id"])
			}
		}
		p := NewReplay(tr, 1)
		if d, ok := Due(p, int64(len(tr.At)-1), 0, time.Duration(1<<62)); !ok || d != tr.At[len(tr.At)-1] {
			t.Fatalf("last entry due %v, want %v", d, tr.At[len(tr.At)-1])
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	for _, proto := range []string{"http", "tcp"} {
		b.Run(proto, func(b *testing.B) {
			e := newEncoder("bench", proto, "octet", Size{Mean: 256}, 4, nil, 1)
			var pl payload
			now := time.Now()
			for b.Loop() {
				pl.reset()
				e.encode(&pl, 1_000_000, 0, 100, now)
			}
			b.SetBytes(int64(len(pl.buf)))
			b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "records/s")
		})
	}
}
