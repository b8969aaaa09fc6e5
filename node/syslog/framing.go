package syslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// framing is how the messages of one TCP stream are delimited (RFC 6587).
type framing uint8

const (
	framingUnknown        framing = iota
	framingOctetCounting          // "LEN SP MSG", section 3.4.1
	framingNonTransparent         // "MSG LF", section 3.4.2
)

func (f framing) String() string {
	switch f {
	case framingOctetCounting:
		return "octet-counting"
	case framingNonTransparent:
		return "non-transparent"
	}
	return "unknown"
}

// Errors of the framing reader. errTooLong with non-transparent framing
// skips one message; errBadFrame, errTooLong with octet counting and
// errTruncated end the stream, since the next frame cannot be found.
var (
	errTooLong   = errors.New("message longer than the limit")
	errBadFrame  = errors.New("invalid octet-counting frame")
	errTruncated = errors.New("stream ended inside a message")
)

const (
	// maxCountDigits bounds the MSG-LEN field; any limit we accept fits.
	maxCountDigits = 10
	// minReadSpace is the free space below which the buffer is compacted
	// before reading, so that reads stay large.
	minReadSpace = 4 << 10
	// initialBufferSize is a connection's first buffer; it grows up to
	// the limit only for streams that carry long messages.
	initialBufferSize = 32 << 10
)

// frameReader splits a TCP byte stream into syslog messages. The framing is
// detected from the first byte that is not a '\n', '\r' or NUL: a digit means
// octet counting, anything else non-transparent framing, where a message ends
// at '\n' or NUL (and a '\r' before it is dropped with the other trailers by
// Parse).
//
// next returns a slice of the reader's buffer, valid until the next call.
// No message longer than max bytes is ever returned.
type frameReader struct {
	r    io.Reader
	max  int
	buf  []byte
	head int // unread data is buf[head:tail]
	tail int
	// scanned is how many bytes after head are known to hold no delimiter
	// (non-transparent framing), so a long message is not rescanned on
	// every read.
	scanned int
	mode    framing
	// skipping is set while the rest of an over-long message is discarded.
	skipping bool
	err      error // sticky error of r
}

func newFrameReader(r io.Reader, max int) *frameReader {
	size := initialBufferSize
	if limit := bufferLimit(max); size > limit {
		size = limit
	}
	return &frameReader{r: r, max: max, buf: make([]byte, size)}
}

// bufferLimit is the largest buffer a reader with this message limit needs:
// one message, its header or trailer, and room for a useful read.
func bufferLimit(max int) int {
	return max + maxCountDigits + 2 + minReadSpace
}

// buffered is how many bytes are read but not yet returned.
func (f *frameReader) buffered() int { return f.tail - f.head }

// Mode reports the framing detected so far.
func (f *frameReader) Mode() framing { return f.mode }

// next returns the next message. Errors: io.EOF at a clean end of the
// stream, errTooLong, errBadFrame and errTruncated (wrapped, with details),
// or the error of the underlying reader.
func (f *frameReader) next() ([]byte, error) {
	if f.mode == framingUnknown {
		if err := f.detect(); err != nil {
			return nil, err
		}
	}
	if f.mode == framingOctetCounting {
		return f.nextOctetCounted()
	}
	return f.nextLine()
}

// detect skips leading trailer bytes and picks the framing from the first
// byte after them.
func (f *frameReader) detect() error {
	for {
		for f.head < f.tail {
			switch c := f.buf[f.head]; {
			case isTrailer(c):
				f.head++
				continue
			case c >= '0' && c <= '9':
				f.mode = framingOctetCounting
			default:
				f.mode = framingNonTransparent
			}
			return nil
		}
		if err := f.fill(); err != nil {
			return err
		}
	}
}

// fill reads more data into the buffer, compacting or growing it first when
// the free space at its end is short. It returns the reader's error only
// when no data came with it.
func (f *frameReader) fill() error {
	if f.err != nil {
		return f.err
	}
	if len(f.buf)-f.tail < minReadSpace {
		if f.head > 0 {
			n := copy(f.buf, f.buf[f.head:f.tail])
			f.head, f.tail = 0, n
		}
		if len(f.buf)-f.tail < minReadSpace {
			if limit := bufferLimit(f.max); len(f.buf) < limit {
				grown := make([]byte, min(2*len(f.buf), limit))
				copy(grown, f.buf[:f.tail])
				f.buf = grown
			}
		}
	}
	if f.tail == len(f.buf) {
		// Cannot happen: callers consume or reject a full message before
		// asking for more. Fail rather than loop.
		return fmt.Errorf("syslog: framing buffer full (%d bytes)", len(f.buf))
	}
	for empty := 0; ; empty++ {
		n, err := f.r.Read(f.buf[f.tail:])
		f.tail += n
		if err != nil {
			f.err = err
		}
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
		if empty >= 100 {
			f.err = io.ErrNoProgress
			return f.err
		}
	}
}

// nextLine returns the next message of a non-transparent stream.
func (f *frameReader) nextLine() ([]byte, error) {
	for {
		data := f.buf[f.head:f.tail]
		i := indexDelimiter(data, f.scanned)
		if f.skipping {
			if i < 0 {
				f.head, f.scanned = f.tail, 0
			} else {
				f.head += i + 1
				f.scanned = 0
				f.skipping = false
				continue
			}
		} else if i >= 0 {
			line := data[:i]
			f.head += i + 1
			f.scanned = 0
			if len(line) > f.max {
				if len(line) == f.max+1 && line[f.max] == '\r' {
					return line[:f.max], nil
				}
				return nil, fmt.Errorf("%w: %d bytes before the delimiter, limit %d", errTooLong, len(line), f.max)
			}
			return line, nil
		} else if len(data) > f.max+1 {
			// No delimiter within the limit (plus a '\r'): drop what we
			// have and the rest of this message up to its delimiter.
			f.head, f.scanned = f.tail, 0
			f.skipping = true
			return nil, fmt.Errorf("%w: no delimiter within %d bytes", errTooLong, f.max)
		} else {
			f.scanned = len(data)
		}

		if err := f.fill(); err != nil {
			if err == io.EOF && !f.skipping && f.tail > f.head {
				// The last message of a stream needs no delimiter.
				line := f.buf[f.head:f.tail]
				f.head, f.scanned = f.tail, 0
				if len(line) > f.max {
					if len(line) == f.max+1 && line[f.max] == '\r' {
						return line[:f.max], nil
					}
					return nil, fmt.Errorf("%w: %d bytes at the end of the stream, limit %d", errTooLong, len(line), f.max)
				}
				return line, nil
			}
			return nil, err
		}
	}
}

// indexDelimiter returns the index of the first '\n' or NUL in data at or
// after from, or -1.
func indexDelimiter(data []byte, from int) int {
	rest := data[from:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		i = len(rest)
	}
	if j := bytes.IndexByte(rest[:i], 0); j >= 0 {
		i = j
	}
	if i == len(rest) {
		return -1
	}
	return from + i
}

// nextOctetCounted returns the next message of an octet-counting stream.
// Trailer bytes between frames ('\n', '\r', NUL), which some senders add,
// are skipped.
func (f *frameReader) nextOctetCounted() ([]byte, error) {
	// Header: NONZERO-DIGIT *DIGIT SP.
	var n, digits int
	for {
		for f.head < f.tail && isTrailer(f.buf[f.head]) {
			f.head++
		}
		data := f.buf[f.head:f.tail]
		n, digits = 0, 0
		complete := false
		for _, c := range data {
			if c == ' ' && digits > 0 {
				complete = true
				break
			}
			if c < '0' || c > '9' || (digits == 0 && c == '0') {
				return nil, fmt.Errorf("%w: expected a message length (a number without leading zeros, then a space), got %q", errBadFrame, head(data))
			}
			n = n*10 + int(c-'0')
			digits++
			if n > f.max {
				return nil, fmt.Errorf("%w: frame of %d+ bytes, limit %d", errTooLong, n, f.max)
			}
		}
		if complete {
			break
		}
		if err := f.fill(); err != nil {
			if err == io.EOF && len(data) > 0 {
				return nil, fmt.Errorf("%w: inside a frame header", errTruncated)
			}
			return nil, err
		}
	}
	// Body: the header stays unread until the whole frame is in, so a frame
	// is always contiguous in the buffer.
	size := digits + 1 + n
	for f.tail-f.head < size {
		if err := f.fill(); err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("%w: got %d of %d bytes", errTruncated, f.tail-f.head-digits-1, n)
			}
			return nil, err
		}
	}
	msg := f.buf[f.head+digits+1 : f.head+size]
	f.head += size
	return msg, nil
}

func isTrailer(c byte) bool { return c == '\n' || c == '\r' || c == 0 }
