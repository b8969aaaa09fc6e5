package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

// Report is the bench's comparison, as "bench --out" writes it. The fields
// of the contract come first; the rest is context.
type Report struct {
	Scenario   string   `json:"scenario"`
	Seed       uint64   `json:"seed"`
	SLOms      float64  `json:"slo_ms"`
	Results    []Result `json:"results"`
	BestStatic Best     `json:"best_static"`
	Oracle     Oracle   `json:"oracle"`

	Quick             bool    `json:"quick"`
	DurationS         float64 `json:"duration_s"` // the scenario's length
	ControlIntervalMS float64 `json:"control_interval_ms"`
	// CPULimitPercent is the CPU limit the breaker and the controllers'
	// objectives were given (see docs/bench.md).
	CPULimitPercent float64   `json:"cpu_limit_percent"`
	PhaseNames      []string  `json:"phase_names"`
	PhaseLengthsS   []float64 `json:"phase_lengths_s"`
	// Sweep holds the fixed-size runs of the whole scenario.
	Sweep []Result `json:"sweep"`
	// ElapsedS is the bench's own wall-clock time.
	ElapsedS float64 `json:"elapsed_s"`
	// Seeds, with --seeds N, are the seeds the scenario ran on; every
	// figure is then the mean over them (Result.Spread has the ranges).
	Seeds []uint64 `json:"seeds,omitempty"`
}

// Result is one run of the scenario under one controller.
type Result struct {
	Controller string `json:"controller"`
	// GoodputRPS: records acknowledged within the SLO per second of the
	// whole run; ThroughputRPS: records acknowledged per second.
	GoodputRPS    float64 `json:"goodput_rps"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// P50ms and P99ms: end-to-end latency of the acknowledged records.
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// SLOOKRatio: the fraction of 1-second windows (by intended send time)
	// whose p99 is within the SLO; a record that was never acknowledged
	// counts as over it.
	SLOOKRatio float64 `json:"slo_ok_ratio"`
	// AckedSLOOKRatio: the fraction of 1-second windows, by the time the
	// attempt the node accepted was sent, whose p99 of the acknowledged
	// records' latency from that attempt's send to its acknowledgement is
	// within the SLO; windows with no acknowledged record do not count.
	// It is the goal "p99 of acknowledged records <= the SLO" read
	// literally: what the node admitted, and how soon it wrote it. A record
	// refused and retried is judged by the retry that was accepted, and a
	// record never acknowledged is not in it at all (SLOOKRatio and
	// GoodputRPS charge those). See docs/bench.md.
	AckedSLOOKRatio float64 `json:"acked_slo_ok_ratio"`
	// AckedWindows: the windows AckedSLOOKRatio is a fraction of.
	AckedWindows int `json:"acked_windows"`
	// AckedGoodputRPS: records acknowledged within the SLO of the send of
	// the attempt the node accepted, per second of the whole run: what the
	// node delivered on time of what it took (GoodputRPS charges a retried
	// record from its intended send time).
	AckedGoodputRPS float64       `json:"acked_goodput_rps"`
	PeakRSSBytes    uint64        `json:"peak_rss_bytes"`
	MeanBatchSize   float64       `json:"mean_batch_size"`
	Phases          []PhaseResult `json:"phases"`

	OfferedRPS float64 `json:"offered_rps"`
	// Unacked: records offered but never acknowledged (refused, failed,
	// or still unanswered when the run's grace time ran out).
	Unacked int64 `json:"unacked_records"`
	// LoadgenP99ms is loadgen's own p99, measured at the client: a check
	// on the bench's figure.
	LoadgenP99ms float64 `json:"loadgen_p99_ms"`
	LateRequests int64   `json:"late_requests"`
	// BreakerS: seconds the safety breaker was not closed.
	BreakerS float64 `json:"breaker_s"`
	// SinkRequests and Sink429: POSTs the downstream received, and those it
	// answered 429 (injected or queue full).
	SinkRequests int64 `json:"sink_requests"`
	// Decisions counts the tuner's decisions that changed the size, by
	// reason (the breaker's included).
	Decisions map[string]int `json:"decisions"`
	// CPUSeconds is the CPU time the whole bench process (generator, node
	// and downstream) used in the run; HostLoad the host's 1-minute load
	// average at its start or end, whichever was higher (2 cores: above 2,
	// other work was competing for the CPU).
	CPUSeconds float64  `json:"cpu_seconds"`
	HostLoad   float64  `json:"host_load"`
	Sink429    int64    `json:"sink_429"`
	Series     []Second `json:"series,omitempty"`
	// Spread, with --seeds N, is the range of the headline figures over
	// the seeds (the series is the first seed's).
	Spread *Spreads `json:"spread,omitempty"`
}

// PhaseResult is a Result restricted to one phase.
type PhaseResult struct {
	Name          string  `json:"name"`
	GoodputRPS    float64 `json:"goodput_rps"`
	P99ms         float64 `json:"p99_ms"`
	MeanBatchSize float64 `json:"mean_batch_size"`
	OfferedRPS    float64 `json:"offered_rps"`
	SLOOKRatio    float64 `json:"slo_ok_ratio"`
	// AckedSLOOKRatio: Result.AckedSLOOKRatio over the windows (by
	// accepted attempt) in the phase; the windows after the schedule's end
	// (retries accepted in the grace time) belong to the last phase.
	AckedSLOOKRatio float64 `json:"acked_slo_ok_ratio"`
	// AckedGoodputRPS: Result.AckedGoodputRPS for the phase's records (by
	// the phase they were due in), per second of the phase.
	AckedGoodputRPS float64 `json:"acked_goodput_rps"`
	// ThroughputRPS: the phase's records acknowledged, late or not, per
	// second of the phase (what the oracle's capacity is read from).
	ThroughputRPS float64 `json:"throughput_rps"`
}

// Second is one second of a run, by intended send time.
type Second struct {
	T          int     `json:"t"`
	BatchSize  float64 `json:"batch_size"`
	OfferedRPS float64 `json:"offered_rps"`
	GoodputRPS float64 `json:"goodput_rps"`
	// P99ms of the acknowledged records; OK: the window's p99, with
	// unacknowledged records counted as over the SLO, is within it.
	P99ms float64 `json:"p99_ms"`
	OK    bool    `json:"ok"`
	// Reason of the last decision that changed the size in this second.
	Reason string `json:"reason,omitempty"`
}

// Best is a static size and the goodput it reached.
type Best struct {
	BatchSize  int     `json:"batch_size"`
	GoodputRPS float64 `json:"goodput_rps"`
}

// Oracle is the goodput of the best static size chosen afresh for every
// phase, in hindsight: the per-phase best weighted by the phases' lengths.
// Where no size carries a phase's offered load at all (the downstream's
// capacity binds), a fixed size that queues what it cannot carry is late
// for everything, and its goodput says nothing of what the phase allows:
// there the phase's oracle is the capacity, the most records a second any
// size acknowledged (late or not), which a node that admits only what it
// can carry could deliver. That is an upper bound (it does not ask that
// the capacity be reached within the SLO) and is marked as such.
type Oracle struct {
	GoodputRPS float64 `json:"goodput_rps"`
	// Method: "phase-alone" (each phase run alone, from an empty node, at
	// every size of the sweep) or "whole-run" (the phases' figures within
	// the sweep's runs of the whole scenario, which carry one phase's
	// backlog into the next: a lower bound).
	Method string        `json:"method"`
	Phases []OraclePhase `json:"phases"`
}

// OraclePhase is the best static size of one phase.
type OraclePhase struct {
	Name       string  `json:"name"`
	BatchSize  int     `json:"batch_size"`
	GoodputRPS float64 `json:"goodput_rps"`
	// OfferedRPS is the phase's offered load; CapacityRPS the most records
	// a second any size acknowledged in it, at CapacityBatchSize.
	OfferedRPS        float64 `json:"offered_rps"`
	CapacityRPS       float64 `json:"capacity_rps"`
	CapacityBatchSize int     `json:"capacity_batch_size"`
	// Limit says what bounds the phase's oracle: "offered" (the best size
	// delivered the offered load within the SLO), "slo" (some size carried
	// the load but none delivered it all within the SLO: the oracle is the
	// best goodput) or "capacity" (no size carried the load: the oracle is
	// the capacity, an upper bound).
	Limit string `json:"limit"`
}

// Limits of an oracle phase.
const (
	LimitOffered  = "offered"
	LimitSLO      = "slo"
	LimitCapacity = "capacity"
)

// carried is the share of the offered load above which a phase counts as
// carried: a run of a few seconds loses a little at its edges.
const carried = 0.97

// outcome is what became of one request of the schedule.
type outcome struct {
	phase   int
	sec     int // the second of the run it was due in
	n       int // records
	acked   bool
	latency time.Duration // from its intended send time; acked only
	// attempt is when the attempt the node acknowledged was sent, since the
	// run's start, and attemptLatency the time from that send to the
	// acknowledgement; acked only.
	attempt, attemptLatency time.Duration
}

// sizeSample is the batch size in force at t since the run's start.
type sizeSample struct {
	t    time.Duration
	size int
}

// span is a phase on the run's timeline.
type span struct {
	name          string
	start, length time.Duration
}

// summarize computes a run's figures from its requests' outcomes and its
// batch-size samples: the pure core of the report.
func summarize(controller string, phases []span, outs []outcome, sizes []sizeSample, slo time.Duration) Result {
	res := Result{Controller: controller}
	var total time.Duration
	for _, p := range phases {
		total += p.length
	}
	runSecs := total.Seconds()
	nsec := int(math.Ceil(runSecs))
	if runSecs <= 0 {
		return res
	}
	type acc struct {
		offered, acked, good int64
		ackedGood            int64      // acked within the SLO of the accepted attempt
		lat                  []weighted // acked
		unacked              int64
	}
	all := &acc{}
	perPhase := make([]acc, len(phases))
	perSec := make([]acc, nsec)
	for _, o := range outs {
		targets := []*acc{all}
		if o.phase >= 0 && o.phase < len(phases) {
			targets = append(targets, &perPhase[o.phase])
		}
		if o.sec >= 0 && o.sec < nsec {
			targets = append(targets, &perSec[o.sec])
		}
		for _, a := range targets {
			a.offered += int64(o.n)
			if !o.acked {
				a.unacked += int64(o.n)
				continue
			}
			a.acked += int64(o.n)
			if o.latency <= slo {
				a.good += int64(o.n)
			}
			if o.attemptLatency <= slo {
				a.ackedGood += int64(o.n)
			}
			a.lat = append(a.lat, weighted{o.latency, int64(o.n)})
		}
	}
	res.GoodputRPS = float64(all.good) / runSecs
	res.AckedGoodputRPS = float64(all.ackedGood) / runSecs
	res.ThroughputRPS = float64(all.acked) / runSecs
	res.OfferedRPS = float64(all.offered) / runSecs
	res.Unacked = all.unacked
	res.P50ms = ms(quantile(all.lat, 0, 0.50))
	res.P99ms = ms(quantile(all.lat, 0, 0.99))

	// 1-second windows.
	secOK := make([]bool, nsec)
	secHas := make([]bool, nsec)
	var ok, windows int
	for i := range perSec {
		a := &perSec[i]
		if a.offered == 0 {
			continue
		}
		secHas[i] = true
		windows++
		// p99 with the unacknowledged records as infinitely late.
		if q := quantile(a.lat, a.unacked, 0.99); q <= slo {
			secOK[i], ok = true, ok+1
		}
	}
	if windows > 0 {
		res.SLOOKRatio = float64(ok) / float64(windows)
	}
	ackedOK, ackedHas := ackedWindows(outs, nsec, slo)
	res.AckedSLOOKRatio, res.AckedWindows = ratioOf(ackedOK, ackedHas, 0, len(ackedHas))

	// Batch size: the mean of the samples, per second and per phase.
	secSize := make([]float64, nsec)
	secN := make([]int, nsec)
	phSize := make([]float64, len(phases))
	phN := make([]int, len(phases))
	var sum float64
	var n int
	for _, s := range sizes {
		if s.t < 0 || s.t >= total {
			continue
		}
		sum += float64(s.size)
		n++
		i := int(s.t / time.Second)
		secSize[i] += float64(s.size)
		secN[i]++
		for j, p := range phases {
			if s.t >= p.start && s.t < p.start+p.length {
				phSize[j] += float64(s.size)
				phN[j]++
			}
		}
	}
	if n > 0 {
		res.MeanBatchSize = sum / float64(n)
	}
	for j, p := range phases {
		a := &perPhase[j]
		secs := p.length.Seconds()
		pr := PhaseResult{Name: p.name, P99ms: ms(quantile(a.lat, 0, 0.99))}
		if secs > 0 {
			pr.GoodputRPS = float64(a.good) / secs
			pr.AckedGoodputRPS = float64(a.ackedGood) / secs
			pr.OfferedRPS = float64(a.offered) / secs
			pr.ThroughputRPS = float64(a.acked) / secs
		}
		if phN[j] > 0 {
			pr.MeanBatchSize = phSize[j] / float64(phN[j])
		}
		var pw, pok int
		for i := int(p.start / time.Second); i < nsec && time.Duration(i)*time.Second < p.start+p.length; i++ {
			if secHas[i] {
				pw++
				if secOK[i] {
					pok++
				}
			}
		}
		if pw > 0 {
			pr.SLOOKRatio = float64(pok) / float64(pw)
		}
		from, to := int(p.start/time.Second), int(math.Ceil((p.start + p.length).Seconds()))
		if j == len(phases)-1 {
			to = len(ackedHas)
		}
		pr.AckedSLOOKRatio, _ = ratioOf(ackedOK, ackedHas, from, to)
		res.Phases = append(res.Phases, pr)
	}
	for i := range nsec {
		s := Second{T: i, OfferedRPS: float64(perSec[i].offered), GoodputRPS: float64(perSec[i].good),
			P99ms: ms(quantile(perSec[i].lat, 0, 0.99)), OK: secOK[i] || !secHas[i]}
		if secN[i] > 0 {
			s.BatchSize = secSize[i] / float64(secN[i])
		}
		res.Series = append(res.Series, s)
	}
	return res
}

// ackedWindows judges the 1-second windows by accepted attempt: has[i]
// says some record's accepted attempt was sent in second i, ok[i] that
// the p99 of those records' attempt latencies is within the SLO. There
// are at least nsec windows, more when attempts were accepted after the
// schedule (the grace time).
func ackedWindows(outs []outcome, nsec int, slo time.Duration) (ok, has []bool) {
	n := nsec
	for _, o := range outs {
		if o.acked {
			n = max(n, int(o.attempt/time.Second)+1)
		}
	}
	lat := make([][]weighted, n)
	for _, o := range outs {
		if !o.acked || o.attempt < 0 {
			continue
		}
		i := int(o.attempt / time.Second)
		lat[i] = append(lat[i], weighted{o.attemptLatency, int64(o.n)})
	}
	ok, has = make([]bool, n), make([]bool, n)
	for i := range lat {
		if len(lat[i]) == 0 {
			continue
		}
		has[i] = true
		ok[i] = quantile(lat[i], 0, 0.99) <= slo
	}
	return ok, has
}

// ratioOf is the share of the windows [from, to) with has that are ok,
// and how many have; 0 without any.
func ratioOf(ok, has []bool, from, to int) (float64, int) {
	var good, n int
	for i := max(from, 0); i < min(to, len(has)); i++ {
		if has[i] {
			n++
			if ok[i] {
				good++
			}
		}
	}
	if n == 0 {
		return 0, 0
	}
	return float64(good) / float64(n), n
}

// weighted is a latency shared by n records.
type weighted struct {
	d time.Duration
	n int64
}

// quantile is the q-quantile (nearest rank) of the latencies, with inf
// more records counted as infinitely late; it returns an hour for a rank
// among those, and 0 without records.
func quantile(lat []weighted, inf int64, q float64) time.Duration {
	var total int64
	for _, w := range lat {
		total += w.n
	}
	total += inf
	if total == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i].d < lat[j].d })
	rank := int64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen int64
	for _, w := range lat {
		seen += w.n
		if seen >= rank {
			return w.d
		}
	}
	return time.Hour
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// bestStatic is the sweep's run with the most goodput.
func bestStatic(sweep []Result) Best {
	var b Best
	for _, r := range sweep {
		size, ok := staticSize(r.Controller)
		if !ok {
			continue
		}
		if r.GoodputRPS > b.GoodputRPS || b.BatchSize == 0 {
			b = Best{BatchSize: size, GoodputRPS: r.GoodputRPS}
		}
	}
	return b
}

// staticSize reads N from "static:N".
func staticSize(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "static:")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// oracleOf picks, for every phase, the static run with the most goodput in
// that phase; runs[i] are the candidates for phase i (a Result whose phase
// figures include one named like the phase). Where no candidate carried
// the phase's offered load, the phase's oracle is the capacity instead
// (see Oracle). The oracle's goodput weighs each phase's oracle by the
// phase's length.
func oracleOf(phases []span, runs [][]Result, method string) Oracle {
	o := Oracle{Method: method}
	var total time.Duration
	for _, p := range phases {
		total += p.length
	}
	for i, p := range phases {
		best := OraclePhase{Name: p.name}
		for _, r := range runs[i] {
			size, ok := staticSize(r.Controller)
			if !ok {
				continue
			}
			for _, pr := range r.Phases {
				if pr.Name != p.name {
					continue
				}
				best.OfferedRPS = max(best.OfferedRPS, pr.OfferedRPS)
				if pr.GoodputRPS > best.GoodputRPS || best.BatchSize == 0 {
					best.BatchSize, best.GoodputRPS = size, pr.GoodputRPS
				}
				if pr.ThroughputRPS > best.CapacityRPS || best.CapacityBatchSize == 0 {
					best.CapacityBatchSize, best.CapacityRPS = size, pr.ThroughputRPS
				}
			}
		}
		switch {
		case best.GoodputRPS >= carried*best.OfferedRPS:
			best.Limit = LimitOffered
		case best.CapacityRPS >= carried*best.OfferedRPS:
			best.Limit = LimitSLO
		default:
			best.Limit = LimitCapacity
			if best.CapacityRPS > best.GoodputRPS {
				best.BatchSize, best.GoodputRPS = best.CapacityBatchSize, best.CapacityRPS
			}
		}
		o.Phases = append(o.Phases, best)
		if total > 0 {
			o.GoodputRPS += best.GoodputRPS * p.length.Seconds() / total.Seconds()
		}
	}
	return o
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	return loadgen.WriteJSONFile(path, r)
}

// WriteTable writes the comparison for a terminal: one row per controller
// (then per swept size) with its goodput against static:100, the best
// static size and the oracle, and each phase's goodput at its mean size.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "scenario %s, seed %d, SLO %.0fms, %.0fs, control interval %.0fms, CPU limit %.0f%%",
		r.Scenario, r.Seed, r.SLOms, r.DurationS, r.ControlIntervalMS, r.CPULimitPercent)
	if r.Quick {
		fmt.Fprint(w, ", quick")
	}
	fmt.Fprintln(w)
	var base float64
	for _, res := range append(append([]Result(nil), r.Results...), r.Sweep...) {
		if res.Controller == "static:100" {
			base = res.GoodputRPS
			break
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "controller\tgoodput/s\tvs static:100\tvs best\tvs oracle\tp99 ms\tslo_ok\tacked_ok\tacked goodput/s\tmean size\t"
	for _, p := range r.PhaseNames {
		head += p + "\t"
	}
	fmt.Fprintln(tw, head)
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	row := func(res Result) {
		line := fmt.Sprintf("%s\t%.0f\t%s\t%s\t%s\t%.0f\t%.2f\t%.2f\t%.0f\t%.0f\t", res.Controller, res.GoodputRPS,
			ratio(res.GoodputRPS, base), ratio(res.GoodputRPS, r.BestStatic.GoodputRPS),
			ratio(res.GoodputRPS, r.Oracle.GoodputRPS), res.P99ms, res.SLOOKRatio, res.AckedSLOOKRatio,
			res.AckedGoodputRPS, res.MeanBatchSize)
		for _, p := range res.Phases {
			line += fmt.Sprintf("%.0f@%.0f\t", p.GoodputRPS, p.MeanBatchSize)
		}
		fmt.Fprintln(tw, line)
	}
	for _, res := range r.Results {
		row(res)
	}
	if len(r.Sweep) > 0 {
		fmt.Fprintln(tw, "sweep:\t")
		for _, res := range r.Sweep {
			row(res)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Sweep) > 0 {
		fmt.Fprintf(w, "best static in hindsight: size %d, goodput %.0f/s\n", r.BestStatic.BatchSize, r.BestStatic.GoodputRPS)
		fmt.Fprintf(w, "per-phase oracle (%s): goodput %.0f/s (", r.Oracle.Method, r.Oracle.GoodputRPS)
		for i, p := range r.Oracle.Phases {
			if i > 0 {
				fmt.Fprint(w, ", ")
			}
			fmt.Fprintf(w, "%s %.0f@%d", p.Name, p.GoodputRPS, p.BatchSize)
			if p.Limit != LimitOffered && p.Limit != "" {
				fmt.Fprintf(w, " [%s]", p.Limit)
			}
		}
		fmt.Fprintln(w, ")")
		if r.Oracle.marked() {
			fmt.Fprint(w, oracleLegend)
		}
	}
	fmt.Fprintf(w, "cells: goodput/s @ mean batch size; the bench took %s\n", time.Duration(r.ElapsedS*float64(time.Second)).Round(time.Second))
	return nil
}

// oracleLegend explains the marks on the oracle's phases.
const oracleLegend = "oracle limits: [slo] some size carried the phase's load but none delivered it all within the SLO;\n" +
	"  [capacity] no size carried it: the oracle is the most any size acknowledged, late or not (an upper bound)\n"

// marked reports whether a phase's oracle is bounded by something other
// than the offered load.
func (o Oracle) marked() bool {
	for _, p := range o.Phases {
		if p.Limit != LimitOffered && p.Limit != "" {
			return true
		}
	}
	return false
}
