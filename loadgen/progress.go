package loadgen

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progressLine prints the live progress: rewritten in place with \r on a
// terminal, a plain line each time otherwise.
type progressLine struct {
	w        io.Writer
	terminal bool
	rec      *recorder
	plan     *plan
	start    time.Time

	lastT                      time.Time
	lastOffered, lastDelivered int64
	width                      int
}

func (p *progressLine) print(now time.Time) {
	if !p.lastT.IsZero() && now.Sub(p.lastT) < 100*time.Millisecond {
		return // too short a stretch for a rate (the final line right after a tick)
	}
	s := p.rec.snapshot()
	offered := p.plan.offeredBy(now)
	if p.lastT.IsZero() {
		p.lastT = p.start
	}
	dt := now.Sub(p.lastT).Seconds()
	var offRate, achRate float64
	if dt > 0 {
		offRate = float64(offered-p.lastOffered) / dt
		achRate = float64(s.delivered-p.lastDelivered) / dt
	}
	p.lastT, p.lastOffered, p.lastDelivered = now, offered, s.delivered
	errs := "0"
	if len(s.errors) > 0 {
		errs = fmtErrors(s.errors)
	}
	line := fmt.Sprintf("%7.1fs  offered %.0f/s  achieved %.0f/s  acked %d  failed %d  errors %s  p50 %s  p99 %s",
		now.Sub(p.start).Seconds(), offRate, achRate, s.delivered, s.failed, errs, fmtMS(s.p50), fmtMS(s.p99))
	if p.terminal {
		pad := ""
		if n := p.width - len(line); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		p.width = len(line)
		fmt.Fprintf(p.w, "\r%s%s", line, pad)
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progressLine) finish() {
	if p.terminal {
		fmt.Fprintln(p.w)
	}
}
