package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured. Latency is per record, from the intended
// send time of the record's request (open loop: when the schedule said to
// send it, so time spent queued behind a slow target counts; closed loop:
// when the request started) to its acknowledgement. A request's intended
// time is the due time of its last record: a batch cannot leave before it
// is full.
type Report struct {
	RunID       string         `json:"run_id"`
	StartedAt   time.Time      `json:"started_at"`
	ElapsedS    float64        `json:"elapsed_s"`
	Interrupted bool           `json:"interrupted"`
	Targets     []string       `json:"targets"`
	Concurrency int            `json:"concurrency"`
	Totals      Summary        `json:"totals"`
	Phases      []PhaseSummary `json:"phases"`
	// Series has one entry per second of the schedule: records are counted
	// in the second they were due (open loop) or sent (closed loop), and
	// their latency with them, however late they were answered.
	Series []Second `json:"series"`
}

// Summary counts records unless the name says otherwise.
type Summary struct {
	// Offered: records the schedule asked for (open loop) or that were
	// sent (closed loop).
	Offered int64 `json:"offered"`
	// Sent: records of requests tried at least once.
	Sent int64 `json:"sent"`
	// Delivered: acknowledged (HTTP 2xx; TCP written) or sent over UDP.
	Delivered int64 `json:"delivered"`
	// Acked: the delivered records with an acknowledgement (HTTP, TCP);
	// these are the ids written to --acked.
	Acked int64 `json:"acked"`
	// Failed: sent but not delivered after the retries.
	Failed int64 `json:"failed"`
	// Canceled: in flight or queued when the run was interrupted.
	Canceled int64 `json:"canceled"`
	// Requests: attempts (HTTP requests, TCP writes, UDP batches), retries
	// included.
	Requests int64 `json:"requests"`
	Retries  int64 `json:"retries"`
	// Late: requests that left more than 10 ms after their intended time,
	// because every sender was busy: raise --concurrency if it is large.
	Late  int64 `json:"late_requests"`
	Bytes int64 `json:"bytes"`
	// Errors counts failed attempts by kind: 429, 503, 5xx, 400, 413, 4xx,
	// timeout, conn, bad_ack, other.
	Errors      map[string]int64 `json:"errors"`
	OfferedRPS  float64          `json:"offered_rps"`
	AchievedRPS float64          `json:"achieved_rps"`
	Latency     Latency          `json:"latency_ms"`
}

// Latency quantiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// PhaseSummary is one phase's share of the run.
type PhaseSummary struct {
	Name     string `json:"name"`
	Pattern  string `json:"pattern"`
	Protocol string `json:"protocol"`
	Batch    int    `json:"batch"`
	// StartS and DurationS place the phase on the run's timeline.
	StartS    float64 `json:"start_s"`
	DurationS float64 `json:"duration_s"`
	Summary
}

// Second is one second of the series.
type Second struct {
	T         int64   `json:"t"`
	Phase     string  `json:"phase"`
	Offered   int64   `json:"offered"`
	Delivered int64   `json:"delivered"`
	Failed    int64   `json:"failed"`
	Errors    int64   `json:"errors"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	return WriteJSONFile(path, r)
}

// WriteJSONFile writes v to path as indented JSON with a final newline: the
// shape of every report loadgen and the benches write.
func WriteJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteTable writes the final table: one row per phase and the total.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tpattern\tproto\tsecs\toffered/s\tachieved/s\tdelivered\tfailed\tretries\tp50\tp99\tmax\t")
	row := func(name, pattern, proto string, secs float64, s Summary) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.0f\t%.0f\t%d\t%d\t%d\t%s\t%s\t%s\t\n",
			name, pattern, proto, secs, s.OfferedRPS, s.AchievedRPS, s.Delivered, s.Failed, s.Retries,
			fmtMS(s.Latency.P50), fmtMS(s.Latency.P99), fmtMS(s.Latency.Max))
	}
	for _, p := range r.Phases {
		row(p.Name, p.Pattern, p.Protocol, p.DurationS, p.Summary)
	}
	if len(r.Phases) > 1 {
		row("total", "", "", r.ElapsedS, r.Totals)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := r.Totals
	fmt.Fprintf(w, "run %s: %d offered, %d sent, %d delivered (%d acked), %d failed, %d canceled, %d requests, %.1f MB",
		r.RunID, t.Offered, t.Sent, t.Delivered, t.Acked, t.Failed, t.Canceled, t.Requests, float64(t.Bytes)/1e6)
	if r.Interrupted {
		fmt.Fprint(w, ", interrupted")
	}
	fmt.Fprintln(w)
	if len(t.Errors) > 0 {
		fmt.Fprintf(w, "errors: %s\n", fmtErrors(t.Errors))
	}
	if t.Late > 0 {
		fmt.Fprintf(w, "late: %d requests left >10ms after their intended time (all senders busy; raise --concurrency)\n", t.Late)
	}
	return nil
}

func fmtMS(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 10000:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.1fs", ms/1000)
	}
}

func fmtErrors(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
