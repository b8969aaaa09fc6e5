package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"time"
)

// Trace is a recorded stream: when each line was seen and the line itself.
// The text format, one entry per line, is
//
//	TIME RECORD
//
// where TIME is either seconds since the start of the trace (a decimal such
// as 0.25) or an RFC 3339 timestamp (then the first entry is time zero),
// followed by one space or tab and the record: a JSON object or plain text.
// Empty lines and lines starting with '#' are skipped. Entries need not be in
// order; they are sorted by time (stably).
type Trace struct {
	// At holds the entries' times since the first, sorted.
	At []time.Duration
	// Lines holds the records, in the same order as At.
	Lines [][]byte
}

// maxTraceEntries bounds a trace held in memory.
const maxTraceEntries = 10_000_000

// ErrEmptyTrace is returned for a trace without entries.
var ErrEmptyTrace = errors.New("trace has no entries")

// ParseTrace reads a trace in the text format described at Trace.
func ParseTrace(r io.Reader) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	type entry struct {
		at   time.Duration
		line []byte
	}
	var (
		entries  []entry
		absolute = -1 // unknown, 0 relative, 1 RFC 3339
		first    time.Time
	)
	for n := 1; sc.Scan(); n++ {
		raw := bytes.TrimRight(sc.Bytes(), "\r")
		if len(bytes.TrimSpace(raw)) == 0 || raw[0] == '#' {
			continue
		}
		sep := bytes.IndexAny(raw, " \t")
		if sep <= 0 || sep == len(raw)-1 {
			return nil, fmt.Errorf("trace line %d: want TIME RECORD", n)
		}
		ts, rec := string(raw[:sep]), raw[sep+1:]
		var at time.Duration
		if f, err := strconv.ParseFloat(ts, 64); err == nil {
			if absolute == 1 {
				return nil, fmt.Errorf("trace line %d: seconds %q after RFC 3339 times", n, ts)
			}
			absolute = 0
			if math.IsNaN(f) || f < 0 || f > maxPhaseDuration.Seconds() {
				return nil, fmt.Errorf("trace line %d: time %q out of range", n, ts)
			}
			at = time.Duration(f * 1e9)
		} else if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			if absolute == 0 {
				return nil, fmt.Errorf("trace line %d: RFC 3339 time %q after relative seconds", n, ts)
			}
			if absolute == -1 {
				absolute, first = 1, t
			}
			d := t.Sub(first)
			if d < -maxPhaseDuration || d > maxPhaseDuration {
				return nil, fmt.Errorf("trace line %d: time %q too far from the first entry", n, ts)
			}
			at = d
		} else {
			return nil, fmt.Errorf("trace line %d: time %q is neither seconds nor RFC 3339", n, ts)
		}
		if len(entries) == maxTraceEntries {
			return nil, fmt.Errorf("trace line %d: more than %d entries", n, maxTraceEntries)
		}
		entries = append(entries, entry{at, bytes.Clone(rec)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	if len(entries) == 0 {
		return nil, ErrEmptyTrace
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].at < entries[j].at })
	tr := &Trace{At: make([]time.Duration, len(entries)), Lines: make([][]byte, len(entries))}
	base := entries[0].at
	for i, e := range entries {
		tr.At[i], tr.Lines[i] = e.at-base, e.line
	}
	return tr, nil
}

// Replay offers the entries of a trace at their recorded times divided by
// Speed, and starts the trace over when it runs out.
type Replay struct {
	at     []time.Duration // scaled
	period time.Duration   // one pass, including the gap before the repeat
}

// NewReplay paces tr at speed (2 plays it twice as fast).
func NewReplay(tr *Trace, speed float64) *Replay {
	p := &Replay{at: make([]time.Duration, len(tr.At))}
	for i, a := range tr.At {
		p.at[i] = time.Duration(float64(a) / speed)
	}
	n := len(p.at)
	span := p.at[n-1]
	gap := time.Second
	if n > 1 && span > 0 {
		gap = span / time.Duration(n-1)
	}
	p.period = span + max(gap, 1)
	return p
}

// Period is the length of one pass through the trace.
func (p *Replay) Period() time.Duration { return p.period }

func (p *Replay) Rate(t time.Duration) float64 {
	return float64(len(p.at)) / seconds(p.period)
}

func (p *Replay) Offered(t time.Duration) float64 {
	if t < 0 {
		return 0
	}
	loops := int64(t / p.period)
	rest := t - time.Duration(loops)*p.period
	in := sort.Search(len(p.at), func(i int) bool { return p.at[i] > rest })
	return float64(loops)*float64(len(p.at)) + float64(in)
}

func (p *Replay) dueAt(j int64) time.Duration {
	n := int64(len(p.at))
	return time.Duration(j/n)*p.period + p.at[j%n]
}
