package bench

import (
	"fmt"
	"math"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

// The bench needs every request's intended send time, which loadgen's
// report does not list. The schedule is a pure function of the scenario:
// this file rebuilds it the way loadgen plans a run of open-loop phases —
// each phase starts when the one before was scheduled to end, its records
// are due where the pattern's integral passes them (loadgen.Due), and its
// requests are consecutive runs of Batch records whose intended time is the
// due time of their last record (the last request of a phase takes what is
// left). The runner checks the rebuilt record counts against loadgen's.

// phaseSchedule is one phase's requests on the run's timeline.
type phaseSchedule struct {
	name     string
	start    time.Duration // since the run's start
	length   time.Duration
	firstSeq int64 // run-wide number of the phase's first record
	records  int64
	batch    int
	pat      loadgen.Pattern
}

// schedule is a run's requests, phase by phase.
type schedule struct {
	phases []phaseSchedule
}

// newSchedule rebuilds the schedule of loadgen running sc.
func newSchedule(sc *loadgen.Scenario) (*schedule, error) {
	seed := sc.Seed
	if seed == 0 {
		seed = 1
	}
	s := &schedule{}
	var start time.Duration
	var seq int64
	for i, p := range sc.Phases {
		pat, err := p.Arrivals(seed + uint64(i))
		if err != nil {
			return nil, fmt.Errorf("phase %s: %w", p.Name, err)
		}
		d := p.Duration.D()
		batch := p.Batch
		if batch <= 0 {
			batch = 100 // loadgen's default
		}
		n := recordsBefore(pat, d)
		s.phases = append(s.phases, phaseSchedule{name: p.Name, start: start, length: d,
			firstSeq: seq, records: n, batch: batch, pat: pat})
		start += d
		seq += n
	}
	return s, nil
}

// recordsBefore is the number of records of p due before end, as loadgen
// counts them.
func recordsBefore(p loadgen.Pattern, end time.Duration) int64 {
	if end <= 0 {
		return 0
	}
	n := int64(math.Ceil(min(p.Offered(end-1), 1e15)))
	for n > 0 {
		if _, ok := loadgen.Due(p, n-1, 0, end); ok {
			break
		}
		n--
	}
	for {
		if _, ok := loadgen.Due(p, n, 0, end); !ok {
			return n
		}
		n++
	}
}

// plannedRequest is one request of the schedule.
type plannedRequest struct {
	phase int
	last  int64         // run-wide number of its last record
	n     int           // records
	due   time.Duration // intended send time, since the run's start
}

// requests lists every request of the run in schedule order.
func (s *schedule) requests() []plannedRequest {
	var out []plannedRequest
	for i, ph := range s.phases {
		var hint time.Duration
		for local := int64(0); local < ph.records; {
			n := min(int64(ph.batch), ph.records-local)
			due, _ := loadgen.Due(ph.pat, local+n-1, hint, ph.length)
			hint = due
			out = append(out, plannedRequest{phase: i, last: ph.firstSeq + local + n - 1, n: int(n), due: ph.start + due})
			local += n
		}
	}
	return out
}

// total is the number of records the schedule offers.
func (s *schedule) total() int64 {
	var n int64
	for _, p := range s.phases {
		n += p.records
	}
	return n
}
