package syslog

import (
	"errors"
	"fmt"
	"sync"
	"time"

	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// Parse turns one syslog message into the JSON object the node stores, and
// returns a new slice that the caller owns.
//
// The format is detected per message: "<PRI>VERSION SP" (VERSION a number
// 1-999, in practice "1") is RFC 5424, anything else after a valid PRI is
// RFC 3164. Trailing '\n', '\r' and NUL bytes are ignored.
//
// The object always has "facility", "severity", "timestamp" (RFC 3339 with
// nanoseconds, UTC) and "message"; "hostname", "app_name", "proc_id",
// "msg_id" and "structured_data" (SD-ID → {param: value}) appear when the
// message has them, and "id" when a structured-data element has a param named
// "id". now is the receive time: it stands in for an absent or nil timestamp
// and supplies the year of an RFC 3164 timestamp, which has none (a December
// timestamp received in January belongs to the previous year, a January one
// received in December to the next). RFC 3164 timestamps carry no zone and
// are read as UTC.
//
// RFC 5424 messages are parsed strictly: a malformed header or structured
// data is an error. RFC 3164 is a description of practice rather than a
// grammar, so once the PRI is valid a message is never rejected: when the
// rest does not parse as "TIMESTAMP HOSTNAME TAG[PID]: MSG", everything after
// the PRI becomes the message and the timestamp is now, as RFC 3164 section
// 4.3.2 asks of relays.
//
// Parse is safe for concurrent use.
func Parse(msg []byte, now time.Time) ([]byte, error) {
	p := parserPool.Get().(*parser)
	defer parserPool.Put(p)
	out, err := p.appendRecord(p.scratch[:0], msg, now)
	if cap(out) <= maxPooledScratch {
		p.scratch = out[:0]
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), out...), nil
}

// maxPooledScratch bounds the scratch buffer a pooled parser keeps, so that
// one huge message does not pin its buffer in the pool.
const maxPooledScratch = 256 << 10

var parserPool = sync.Pool{New: func() any { return newParser() }}

var errEmpty = errors.New("syslog: empty message")

// parser holds the state machines and scratch space to parse messages one at
// a time. It is not safe for concurrent use: each connection has its own.
type parser struct {
	rfc5424 gosyslog.Machine
	rfc3164 gosyslog.Machine
	rec     record
	keys    []string
	scratch []byte
}

func newParser() *parser {
	return &parser{
		rfc5424: rfc5424.NewMachine(),
		rfc3164: rfc3164.NewMachine(
			rfc3164.WithRFC3339(),
			rfc3164.WithSecondFractions(),
			rfc3164.WithLenientDay(),
			rfc3164.WithEmbeddedNewlines(),
		),
	}
}

// appendRecord parses msg and appends its JSON record to dst. On error dst is
// returned unchanged.
func (p *parser) appendRecord(dst, msg []byte, now time.Time) (out []byte, err error) {
	defer func() {
		// The state machines are generated code fed with bytes from the
		// network; should one of them ever panic, that message is malformed,
		// not a reason to take the listener down.
		if r := recover(); r != nil {
			out, err = dst, fmt.Errorf("syslog: parser failed on this message: %v", r)
		}
	}()
	msg = trimTrailer(msg)
	if len(msg) == 0 {
		return dst, errEmpty
	}
	pri, n, err := parsePriority(msg)
	if err != nil {
		return dst, err
	}
	p.rec = record{facility: pri / 8, severity: pri % 8}
	if isRFC5424(msg[n:]) {
		err = p.parse5424(msg, now)
	} else {
		p.parse3164(msg, n, now)
	}
	if err != nil {
		return dst, err
	}
	out, p.keys = p.rec.appendJSON(dst, p.keys)
	p.rec = record{} // do not keep the message's strings alive
	return out, nil
}

// trimTrailer drops the trailing '\n', '\r' and NUL bytes that framing leaves.
func trimTrailer(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case '\n', '\r', 0:
			b = b[:len(b)-1]
		default:
			return b
		}
	}
	return b
}

// parsePriority reads "<PRI>" at the start of msg and returns its value and
// length.
func parsePriority(msg []byte) (pri uint8, n int, err error) {
	if msg[0] != '<' {
		return 0, 0, fmt.Errorf("syslog: priority: message must start with \"<PRI>\", got %q", head(msg))
	}
	v, i := 0, 1
	for ; i < len(msg) && i <= 4 && msg[i] >= '0' && msg[i] <= '9'; i++ {
		v = v*10 + int(msg[i]-'0')
	}
	digits := i - 1
	switch {
	case digits == 0 || digits > 3 || i >= len(msg) || msg[i] != '>':
		return 0, 0, fmt.Errorf("syslog: priority: expected \"<\" 1-3 digits \">\", got %q", head(msg))
	case digits > 1 && msg[1] == '0':
		return 0, 0, fmt.Errorf("syslog: priority: leading zero in %q", msg[:i+1])
	case v > 191:
		return 0, 0, fmt.Errorf("syslog: priority %d out of range 0-191", v)
	}
	return uint8(v), i + 1, nil
}

// isRFC5424 reports whether the bytes after the PRI start with an RFC 5424
// VERSION: a nonzero digit, up to two more digits, and a space. An RFC 3164
// message continues with a month name or an RFC 3339 date instead.
func isRFC5424(rest []byte) bool {
	if len(rest) < 2 || rest[0] < '1' || rest[0] > '9' {
		return false
	}
	for i := 1; i < len(rest) && i <= 3; i++ {
		switch c := rest[i]; {
		case c == ' ':
			return true
		case c < '0' || c > '9':
			return false
		}
	}
	return false
}

// head returns the start of msg for an error message.
func head(msg []byte) []byte {
	const max = 32
	if len(msg) > max {
		return msg[:max]
	}
	return msg
}

func (p *parser) parse5424(msg []byte, now time.Time) error {
	m, err := p.rfc5424.Parse(msg)
	if err != nil {
		return fmt.Errorf("syslog: rfc5424: %w", err)
	}
	sm, ok := m.(*rfc5424.SyslogMessage)
	if !ok || sm == nil {
		return errors.New("syslog: rfc5424: message did not parse")
	}
	r := &p.rec
	if sm.Facility != nil && sm.Severity != nil {
		r.facility, r.severity = *sm.Facility, *sm.Severity
	}
	r.timestamp = now
	if sm.Timestamp != nil {
		r.timestamp = *sm.Timestamp
	}
	r.hostname = deref(sm.Hostname)
	r.appName = deref(sm.Appname)
	r.procID = deref(sm.ProcID)
	r.msgID = deref(sm.MsgID)
	if sm.StructuredData != nil {
		r.sd = *sm.StructuredData
	}
	// RFC 5424 section 6.4: a UTF-8 MSG starts with a byte order mark, which
	// is an encoding marker, not text.
	const bom = "\xef\xbb\xbf"
	r.message = deref(sm.Message)
	if len(r.message) >= len(bom) && r.message[:len(bom)] == bom {
		r.message = r.message[len(bom):]
	}
	return nil
}

// parse3164 fills p.rec from an RFC 3164 message whose PRI (already in
// p.rec) is n bytes long.
func (p *parser) parse3164(msg []byte, n int, now time.Time) {
	r := &p.rec
	m, err := p.rfc3164.Parse(msg)
	sm, _ := m.(*rfc3164.SyslogMessage)
	// The machine stops without an error on bytes its grammar refuses (most
	// control characters), leaving the message cut short or unset. A fully
	// parsed MSG always runs to the end of the input, so anything else is
	// treated like an unparseable header.
	if err != nil || sm == nil || sm.Message == nil || !hasSuffix(msg, *sm.Message) {
		r.timestamp = now
		r.message = string(msg[n:])
		return
	}
	r.timestamp = now
	if sm.Timestamp != nil {
		r.timestamp = *sm.Timestamp
		if r.timestamp.Year() == 0 {
			r.timestamp = withYear(r.timestamp, now)
		}
	}
	r.hostname = deref(sm.Hostname)
	r.appName = deref(sm.Appname)
	r.procID = deref(sm.ProcID)
	r.message = *sm.Message
}

// withYear puts an RFC 3164 timestamp, which has no year, in now's year, or
// in the adjacent one across a new year: a December timestamp received in
// January is last year's, a January one received in December next year's.
func withYear(t, now time.Time) time.Time {
	now = now.UTC()
	year := now.Year()
	switch {
	case t.Month() == time.December && now.Month() == time.January:
		year--
	case t.Month() == time.January && now.Month() == time.December:
		year++
	}
	return time.Date(year, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

func hasSuffix(b []byte, s string) bool {
	return len(s) <= len(b) && string(b[len(b)-len(s):]) == s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
