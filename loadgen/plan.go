package loadgen

import (
	"math"
	"sync"
	"time"
)

// claim is one batch handed to a worker: records seq .. seq+n-1, the
// phase's local .. local+n-1, to be sent at due.
type claim struct {
	phase *phasePlan
	seq   int64
	local int64
	n     int
	due   time.Time
	sec   int64 // second of the series
}

// plan hands out batches in schedule order, across phases, to the workers.
// Open-loop phases run on a fixed timeline (a phase starts when the one
// before was scheduled to end, whenever its last request is answered), so a
// late request never shifts the schedule; a closed-loop phase starts when it
// is reached and ends when its duration or count is spent.
type plan struct {
	mu     sync.Mutex
	phases []*phasePlan
	rec    *recorder
	start  time.Time
	count  int64     // run's record cap; 0: none
	end    time.Time // run's deadline; zero: none

	i          int           // current phase
	entered    bool          // the current phase's start is fixed
	phaseStart time.Time     // on the timeline
	local      int64         // next record of the current phase
	hint       time.Duration // due of the last record handed out
	records    int64         // records of the current phase, once known (-1 until)
	seq        int64         // next record number of the run
	stopped    bool
	offered    int64 // records of the phases already left
	spans      []span
}

func newPlan(phases []*phasePlan, rec *recorder, start time.Time, count int64, dur time.Duration) *plan {
	p := &plan{phases: phases, rec: rec, start: start, count: count, phaseStart: start, records: -1,
		spans: make([]span, len(phases))}
	if dur > 0 {
		p.end = start.Add(dur)
	}
	return p
}

// next hands out the next batch; false when the run has no more.
func (p *plan) next(now time.Time) (claim, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.stopped && p.i < len(p.phases) {
		ph := p.phases[p.i]
		if !p.entered {
			p.entered = true
			p.spans[p.i] = span{started: true, start: p.phaseStart.Sub(p.start)}
		}
		n := int64(ph.batch)
		if ph.count > 0 {
			n = min(n, ph.count-p.local)
		}
		if p.count > 0 {
			n = min(n, p.count-p.seq)
			if n <= 0 {
				p.stop(p.leaveTime(now))
				break
			}
		}
		if n <= 0 {
			p.leave(p.leaveTime(now))
			continue
		}
		var c claim
		if ph.pat == nil {
			due := now
			if due.Before(p.phaseStart) {
				due = p.phaseStart
			}
			if ph.dur > 0 && !due.Before(p.phaseStart.Add(ph.dur)) {
				p.leave(p.phaseStart.Add(ph.dur))
				continue
			}
			if !p.end.IsZero() && !due.Before(p.end) {
				p.stop(p.end)
				break
			}
			c = claim{phase: ph, seq: p.seq, local: p.local, n: int(n), due: due}
		} else {
			limit := time.Duration(math.MaxInt64)
			if ph.dur > 0 {
				limit = ph.dur
			}
			runLimited := false
			if !p.end.IsZero() {
				if rl := p.end.Sub(p.phaseStart); rl < limit {
					limit, runLimited = max(rl, 0), true
				}
			}
			due, ok := Due(ph.pat, p.local+n-1, p.hint, limit)
			if !ok {
				// The last record of a full batch is not due in time: send
				// what is left before the limit.
				if p.records < 0 {
					p.records = recordsBefore(ph.pat, limit)
				}
				n = p.records - p.local
				if n <= 0 {
					if runLimited {
						p.stop(p.end)
						break
					}
					p.leave(p.leaveTime(now))
					continue
				}
				due, _ = Due(ph.pat, p.local+n-1, p.hint, limit)
			}
			p.hint = due
			c = claim{phase: ph, seq: p.seq, local: p.local, n: int(n), due: p.phaseStart.Add(due)}
		}
		c.sec = p.rec.second(c.due)
		p.seq += n
		p.local += n
		p.rec.claim(&c)
		return c, true
	}
	return claim{}, false
}

// leaveTime is when the current phase ends if it ends now: an open phase
// ends on its timeline (its duration, or when its next record would have
// been due), a closed one now.
func (p *plan) leaveTime(now time.Time) time.Time {
	ph := p.phases[p.i]
	switch {
	case ph.pat == nil:
		return maxTime(now, p.phaseStart)
	case ph.dur > 0 && ph.count == 0:
		return p.phaseStart.Add(ph.dur)
	default:
		next, _ := Due(ph.pat, p.local, p.hint, time.Duration(math.MaxInt64))
		if ph.dur > 0 {
			next = min(next, ph.dur)
		}
		return p.phaseStart.Add(next)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// leave moves to the next phase, which starts at t.
func (p *plan) leave(t time.Time) {
	p.spans[p.i].length = t.Sub(p.phaseStart)
	p.offered += p.local
	p.i++
	p.entered, p.local, p.hint, p.records = false, 0, 0, -1
	p.phaseStart = t
}

// stop ends the run's schedule at t.
func (p *plan) stop(t time.Time) {
	if p.stopped {
		return
	}
	if p.i < len(p.phases) && p.entered {
		p.spans[p.i].length = t.Sub(p.phaseStart)
	}
	p.stopped = true
}

// interrupt stops handing out batches (Ctrl-C) and returns the records the
// schedule had asked for by now that were never handed out, by phase.
func (p *plan) interrupt(now time.Time) (backlog int64, phase int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.i >= len(p.phases) {
		p.stopped = true
		return 0, 0
	}
	ph := p.phases[p.i]
	if ph.pat != nil && p.entered && !now.Before(p.phaseStart) {
		due := recordsBefore(ph.pat, p.phaseLimit(now.Sub(p.phaseStart)+1))
		if ph.count > 0 {
			due = min(due, ph.count)
		}
		if p.count > 0 {
			due = min(due, p.count-(p.seq-p.local))
		}
		backlog = max(due-p.local, 0)
	}
	phase = p.i
	end := now
	if ph.dur > 0 && p.entered {
		end = minTime(end, p.phaseStart.Add(ph.dur))
	}
	p.stop(end)
	return backlog, phase
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// phaseLimit caps a time into the current phase at the phase's end and
// the run's.
func (p *plan) phaseLimit(t time.Duration) time.Duration {
	if d := p.phases[p.i].dur; d > 0 {
		t = min(t, d)
	}
	if !p.end.IsZero() {
		t = min(t, max(p.end.Sub(p.phaseStart), 0))
	}
	return t
}

// offeredBy is how many records the schedule has asked for by now.
func (p *plan) offeredBy(now time.Time) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.offered
	if p.i < len(p.phases) && !p.stopped {
		ph := p.phases[p.i]
		if ph.pat != nil && !now.Before(p.phaseStart) {
			due := recordsBefore(ph.pat, p.phaseLimit(now.Sub(p.phaseStart)+1))
			if ph.count > 0 {
				due = min(due, ph.count)
			}
			n += due
		} else {
			n += p.local
		}
	} else {
		n += p.local
	}
	return n
}

// timeline returns each phase's span.
func (p *plan) timeline() []span {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]span(nil), p.spans...)
}
