package syslog

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// frame is one result of frameReader.next: a message or an error.
type frame struct {
	msg string
	err error
}

// readFrames reads stream to its end in reads of at most chunk bytes.
func readFrames(stream string, chunk, max int) (frames []frame, mode framing) {
	fr := newFrameReader(&chunkReader{data: []byte(stream), n: chunk}, max)
	for len(frames) <= len(stream)+1 {
		msg, err := fr.next()
		if err == io.EOF {
			break
		}
		frames = append(frames, frame{string(msg), err})
		if err != nil && !(errors.Is(err, errTooLong) && fr.Mode() == framingNonTransparent) {
			break
		}
	}
	return frames, fr.Mode()
}

func TestFrameReader(t *testing.T) {
	long := strings.Repeat("x", 40)
	for _, tc := range []struct {
		name   string
		stream string
		max    int
		mode   framing
		want   []frame
	}{
		{
			name: "non-transparent splits on LF and NUL and keeps CR for Parse to trim",
			mode: framingNonTransparent, stream: "<1>a\n<1>b\r\n<1>c\x00<1>d\n",
			want: []frame{{msg: "<1>a"}, {msg: "<1>b\r"}, {msg: "<1>c"}, {msg: "<1>d"}},
		},
		{
			name: "non-transparent last message needs no delimiter",
			mode: framingNonTransparent, stream: "<1>a\n<1>b",
			want: []frame{{msg: "<1>a"}, {msg: "<1>b"}},
		},
		{
			name: "leading blank lines do not decide the framing",
			mode: framingOctetCounting, stream: "\r\n\n5 hello",
			want: []frame{{msg: "hello"}},
		},
		{
			name: "octet counting",
			mode: framingOctetCounting, stream: "5 hello6 world!1 x",
			want: []frame{{msg: "hello"}, {msg: "world!"}, {msg: "x"}},
		},
		{
			name: "octet counting keeps newlines inside a frame and skips trailers between frames",
			mode: framingOctetCounting, stream: "11 line1\nline2\n6 world!\r\n\x00",
			want: []frame{{msg: "line1\nline2"}, {msg: "world!"}},
		},
		{
			name: "message of exactly the limit passes, with CRLF",
			mode: framingNonTransparent, max: 16, stream: "<" + strings.Repeat("y", 15) + "\r\n<1>ok\n",
			want: []frame{{msg: "<" + strings.Repeat("y", 15)}, {msg: "<1>ok"}},
		},
		{
			name: "over-long line is reported once and skipped to the next LF",
			mode: framingNonTransparent, max: 16, stream: "<1>a\n<" + long + long + long + "\n<1>b\n",
			want: []frame{{msg: "<1>a"}, {err: errTooLong}, {msg: "<1>b"}},
		},
		{
			name: "over-long line at the end of the stream",
			mode: framingNonTransparent, max: 16, stream: "<1>a\n<" + long,
			want: []frame{{msg: "<1>a"}, {err: errTooLong}},
		},
		{
			name: "octet count over the limit ends the stream",
			mode: framingOctetCounting, max: 16, stream: "5 hello17 " + long,
			want: []frame{{msg: "hello"}, {err: errTooLong}},
		},
		{
			name: "octet count that is not a number ends the stream",
			mode: framingOctetCounting, stream: "5 hello5x hello",
			want: []frame{{msg: "hello"}, {err: errBadFrame}},
		},
		{
			name: "octet count with a leading zero ends the stream",
			mode: framingOctetCounting, stream: "05 hello",
			want: []frame{{err: errBadFrame}},
		},
		{
			name: "stream ending inside a frame",
			mode: framingOctetCounting, stream: "5 hello10 abc",
			want: []frame{{msg: "hello"}, {err: errTruncated}},
		},
		{
			name: "stream ending inside a frame header",
			mode: framingOctetCounting, stream: "5 hello10",
			want: []frame{{msg: "hello"}, {err: errTruncated}},
		},
		{
			name: "empty stream",
			mode: framingUnknown, stream: "",
		},
	} {
		for _, chunk := range []int{1, 3, 7, 1 << 20} {
			max := tc.max
			if max == 0 {
				max = 1024
			}
			got, mode := readFrames(tc.stream, chunk, max)
			if mode != tc.mode {
				t.Errorf("%s (reads of %d): framing %v, want %v", tc.name, chunk, mode, tc.mode)
			}
			if !sameFrames(got, tc.want) {
				t.Errorf("%s (reads of %d):\n got %v\nwant %v", tc.name, chunk, got, tc.want)
			}
		}
	}
}

func sameFrames(got, want []frame) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].msg != want[i].msg || !errors.Is(got[i].err, want[i].err) || (got[i].err == nil) != (want[i].err == nil) {
			return false
		}
	}
	return true
}

func TestFrameReaderGrowsOnlyForLongMessages(t *testing.T) {
	const max = 1 << 20
	msg := "<1>" + strings.Repeat("z", 200<<10)
	stream := "<1>short\n" + msg + "\n<1>after\n"
	fr := newFrameReader(&chunkReader{data: []byte(stream), n: 1500}, max)
	if len(fr.buf) > initialBufferSize {
		t.Fatalf("initial buffer %d bytes, want at most %d", len(fr.buf), initialBufferSize)
	}
	for _, want := range []string{"<1>short", msg, "<1>after"} {
		got, err := fr.next()
		if err != nil || string(got) != want {
			t.Fatalf("next() = %d bytes, %v; want %d bytes", len(got), err, len(want))
		}
	}
	if len(fr.buf) > bufferLimit(max) {
		t.Fatalf("buffer grew to %d bytes, limit %d", len(fr.buf), bufferLimit(max))
	}
}
