package loadgen

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

// The syslog structured-data element that carries a record's id. The node's
// syslog parser copies an SD param named id to the record's top-level "id".
const sdID = "loadgen@32473"

// tsLayout is fixed width (27 bytes), so record sizes do not wobble.
const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

// templatesPerPhase is how many distinct records a phase pre-generates; the
// size distribution is sampled this many times.
const templatesPerPhase = 512

// template is one pre-generated record without its id and time.
type template struct {
	// pri is the syslog priority ("134"); unused for JSON.
	pri []byte
	// tail follows the id: for JSON the rest of the object (`,"level":...}`
	// or `}`), for syslog the rest of the SD element and the message.
	tail []byte
}

// encoder turns record numbers into wire bytes for one phase. It is
// immutable after construction and shared by all senders.
type encoder struct {
	syslog    bool
	octet     bool   // syslog over TCP: octet counting
	newline   bool   // syslog over TCP: newline framing (UDP has neither)
	idPrefix  []byte // "RUN-"
	addTS     bool   // generated JSON records carry "ts"; replayed ones keep their own fields
	host      []byte // " HOST loadgen PID - [loadgen@32473 id=\""
	templates []template
}

var words = strings.Fields(`request served user session cache miss hit upstream timeout retry
	payment checkout order shipped queued worker started finished error warning latency
	connection opened closed reset token refreshed disk write read flushed batch node
	leader follower commit index snapshot compacted gc pause heap alloc tenant region`)

var levels = []struct {
	name string
	sev  int
	p    float64
}{{"info", 6, 0.80}, {"debug", 7, 0.10}, {"warn", 4, 0.07}, {"error", 3, 0.03}}

func newEncoder(runID, proto, framing string, size Size, fields int, trace *Trace, seed uint64) *encoder {
	e := &encoder{
		syslog:   proto == "tcp" || proto == "udp",
		octet:    proto == "tcp" && framing != "newline",
		newline:  proto == "tcp" && framing == "newline",
		idPrefix: []byte(runID + "-"),
		addTS:    trace == nil,
	}
	host, err := os.Hostname()
	if err != nil || host == "" || strings.ContainsAny(host, " \t") {
		host = "-"
	}
	e.host = []byte(" " + host + " loadgen " + strconv.Itoa(os.Getpid()) + " - [" + sdID + ` id="`)
	rng := rand.New(rand.NewPCG(seed, 0x7265636f7264)) // "record"
	if trace != nil {
		for _, line := range trace.Lines {
			e.templates = append(e.templates, e.replayTemplate(line))
		}
		return e
	}
	// The bytes every record has besides its template, with a 7-digit sequence.
	overhead := len(`{"id":"`) + len(e.idPrefix) + 7 + len(`","ts":"`) + 27 + len(`"`)
	if e.syslog {
		overhead = len("<134>1 ") + 27 + len(e.host) + len(e.idPrefix) + 7 + len(`"`)
	}
	for range templatesPerPhase {
		e.templates = append(e.templates, e.genTemplate(rng, size.draw(rng)-overhead, fields))
	}
	return e
}

func pickLevel(rng *rand.Rand) (string, int) {
	x := rng.Float64()
	for _, l := range levels {
		if x < l.p {
			return l.name, l.sev
		}
		x -= l.p
	}
	return "info", 6
}

// genTemplate makes a record whose template part is about n bytes.
func (e *encoder) genTemplate(rng *rand.Rand, n, fields int) template {
	level, sev := pickLevel(rng)
	var b []byte
	if e.syslog {
		for i := range fields {
			b = append(b, " f"...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `="`...)
			b = appendFieldValue(b, rng, i, false)
			b = append(b, '"')
		}
		b = append(b, "] "...)
		b = appendMessage(b, rng, n-len(b))
		return template{pri: strconv.AppendInt(nil, int64(16*8+sev), 10), tail: b}
	}
	b = append(b, `,"level":"`...)
	b = append(b, level...)
	b = append(b, `","service":"`...)
	b = append(b, words[rng.IntN(len(words))]...)
	b = append(b, '"')
	for i := range fields {
		b = append(b, `,"f`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `":`...)
		b = appendFieldValue(b, rng, i, true)
	}
	b = append(b, `,"msg":"`...)
	b = appendMessage(b, rng, n-len(b)-len(`"}`))
	b = append(b, `"}`...)
	return template{tail: b}
}

// appendFieldValue appends field i's value: a word, an integer, a decimal or
// a boolean, in turn (quoted only where JSON needs it).
func appendFieldValue(b []byte, rng *rand.Rand, i int, json bool) []byte {
	switch i % 4 {
	case 0:
		if json {
			b = append(b, '"')
		}
		b = append(b, words[rng.IntN(len(words))]...)
		if json {
			b = append(b, '"')
		}
	case 1:
		b = strconv.AppendInt(b, rng.Int64N(1_000_000), 10)
	case 2:
		b = strconv.AppendFloat(b, float64(rng.IntN(100_000))/100, 'f', 2, 64)
	default:
		b = strconv.AppendBool(b, rng.IntN(2) == 0)
	}
	return b
}

// appendMessage appends n bytes (at least two) of words and spaces.
func appendMessage(b []byte, rng *rand.Rand, n int) []byte {
	n = max(n, 2)
	start := len(b)
	for len(b)-start < n {
		if len(b) > start {
			b = append(b, ' ')
		}
		b = append(b, words[rng.IntN(len(words))]...)
	}
	return b[:start+n]
}

// replayTemplate turns a trace line into a template. A JSON object keeps its
// fields in order except "id", which loadgen replaces; other text becomes
// {"message": TEXT}. For syslog the line is the message.
func (e *encoder) replayTemplate(line []byte) template {
	if e.syslog {
		return template{pri: []byte("134"), tail: append([]byte("] "), line...)}
	}
	if tail, ok := objectWithoutID(line); ok {
		return template{tail: tail}
	}
	msg, _ := json.Marshal(string(line))
	tail := append([]byte(`,"message":`), msg...)
	return template{tail: append(tail, '}')}
}

// objectWithoutID returns a JSON object's members other than "id", as
// `,"k":v,...}` (or `}` when none is left).
func objectWithoutID(line []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var out []byte
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		if key == "id" {
			continue
		}
		k, _ := json.Marshal(key)
		out = append(out, ',')
		out = append(out, k...)
		out = append(out, ':')
		out = append(out, bytes.TrimSpace(v)...)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false // more after the object
	}
	return append(out, '}'), true
}

// payload is one batch encoded for the wire; senders reuse it.
type payload struct {
	buf []byte
	// ends holds the end offset of each message (UDP sends one per datagram).
	ends []int
	n    int
	// gzip: wire is buf compressed (HTTP only).
	gzip bool
	// attempt is the number of the attempt being sent: 1, then 2 for the
	// first retry (HTTP sends it as AttemptHeader).
	attempt int
}

func (p *payload) reset() {
	p.buf, p.ends, p.n, p.gzip, p.attempt = p.buf[:0], p.ends[:0], 0, false, 0
}

// encode appends records seq .. seq+n-1 (templates from local on) to pl.
func (e *encoder) encode(pl *payload, seq, local int64, n int, now time.Time) {
	var tsb [40]byte
	ts := now.UTC().AppendFormat(tsb[:0], tsLayout)
	var db [24]byte
	nt := int64(len(e.templates))
	for k := range int64(n) {
		t := &e.templates[(local+k)%nt]
		digits := strconv.AppendInt(db[:0], seq+k, 10)
		if e.syslog {
			size := 1 + len(t.pri) + 3 + len(ts) + len(e.host) + len(e.idPrefix) + len(digits) + 1 + len(t.tail)
			if e.octet {
				pl.buf = strconv.AppendInt(pl.buf, int64(size), 10)
				pl.buf = append(pl.buf, ' ')
			}
			pl.buf = append(pl.buf, '<')
			pl.buf = append(pl.buf, t.pri...)
			pl.buf = append(pl.buf, ">1 "...)
			pl.buf = append(pl.buf, ts...)
			pl.buf = append(pl.buf, e.host...)
			pl.buf = append(pl.buf, e.idPrefix...)
			pl.buf = append(pl.buf, digits...)
			pl.buf = append(pl.buf, '"')
			pl.buf = append(pl.buf, t.tail...)
			if e.newline {
				pl.buf = append(pl.buf, '\n')
			}
		} else {
			pl.buf = append(pl.buf, `{"id":"`...)
			pl.buf = append(pl.buf, e.idPrefix...)
			pl.buf = append(pl.buf, digits...)
			pl.buf = append(pl.buf, '"')
			if e.addTS {
				pl.buf = append(pl.buf, `,"ts":"`...)
				pl.buf = append(pl.buf, ts...)
				pl.buf = append(pl.buf, '"')
			}
			pl.buf = append(pl.buf, t.tail...)
			pl.buf = append(pl.buf, '\n')
		}
		pl.ends = append(pl.ends, len(pl.buf))
	}
	pl.n += n
}
