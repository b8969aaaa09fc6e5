package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSender answers from a function, in the test's bubble, so the engine
// runs on the virtual clock.
type fakeSender func(ctx context.Context, pl *payload) attempt

func (f fakeSender) send(ctx context.Context, _ *target, _ []byte, pl *payload) attempt {
	return f(ctx, pl)
}
func (f fakeSender) close() {}

func withFake(cfg Config, f fakeSender) Config {
	cfg.newSender = func(string) sender { return f }
	if cfg.RunID == "" {
		cfg.RunID = "t"
	}
	return cfg
}

// observed collects every completed batch.
type observed struct {
	mu      sync.Mutex
	batches []observedBatch
}

type observedBatch struct {
	c       claim
	res     result
	latency time.Duration
}

func (o *observed) hook(c claim, res result, latency time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches = append(o.batches, observedBatch{c, res, latency})
}

func mustRun(t *testing.T, ctx context.Context, cfg Config) *Report {
	t.Helper()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A target that stalls for a second shows it in the latency of every record
// scheduled during the stall, measured from the record's intended send
// time: the open loop does not wait for the target, so a slow answer cannot
// hide the queueing behind it (no coordinated omission).
func TestOpenLoopCountsQueueingDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		stallFrom, stallTo := start.Add(time.Second), start.Add(2*time.Second)
		var obs observed
		cfg := withFake(Config{
			Concurrency: 4,
			Defaults:    Phase{Rate: 100, Duration: Duration(3 * time.Second), Batch: 1},
			observe:     obs.hook,
		}, func(ctx context.Context, pl *payload) attempt {
			now := time.Now()
			if !now.Before(stallFrom) && now.Before(stallTo) {
				time.Sleep(stallTo.Sub(now)) // everything arriving in the stall waits for its end
			} else {
				time.Sleep(time.Millisecond)
			}
			return attempt{acked: true}
		})
		rep := mustRun(t, context.Background(), cfg)

		if rep.Totals.Offered != 300 || rep.Totals.Delivered != 300 {
			t.Fatalf("offered %d delivered %d, want 300 each", rep.Totals.Offered, rep.Totals.Delivered)
		}
		for _, b := range obs.batches {
			due := b.c.due
			switch {
			case due.Before(stallFrom):
				if b.latency != time.Millisecond {
					t.Errorf("record due at %v before the stall: latency %v, want the 1ms service time", due.Sub(start), b.latency)
				}
			case due.Before(stallTo):
				if want := stallTo.Sub(due); b.latency < want {
					t.Errorf("record due at %v: latency %v, but it could not be answered before the stall ended %v later",
						due.Sub(start), b.latency, want)
				}
			}
			if due.Equal(stallFrom) && b.latency < time.Second {
				t.Errorf("the record due when the stall began shows %v, want >= 1s", b.latency)
			}
		}
		sec := rep.Series[1]
		if sec.Offered != 100 || sec.Delivered != 100 {
			t.Errorf("second 1: offered %d delivered %d, want all 100 (none omitted)", sec.Offered, sec.Delivered)
		}
		if sec.Max < 1000 || sec.P50 < 450 {
			t.Errorf("second 1 (the stall): p50 %.0fms max %.0fms, want p50 >= 450ms and max >= 1000ms", sec.P50, sec.Max)
		}
		if p99 := rep.Series[0].P99; p99 > 1.1 {
			t.Errorf("second 0 (before the stall): p99 %.2fms, want the 1ms service time", p99)
		}
	})
}

// Closed loop: C senders, each sending its next request when the last is
// answered, so exactly C are in flight and latency is the service time.
func TestClosedLoopKeepsConcurrencyRequestsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var inFlight, peak atomic.Int64
		var obs observed
		cfg := withFake(Config{Concurrency: 3, Count: 300, Defaults: Phase{Batch: 1}, observe: obs.hook},
			func(ctx context.Context, pl *payload) attempt {
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(10 * time.Millisecond)
				inFlight.Add(-1)
				return attempt{acked: true}
			})
		start := time.Now()
		rep := mustRun(t, context.Background(), cfg)
		if peak.Load() != 3 {
			t.Errorf("peak in flight %d, want 3", peak.Load())
		}
		if rep.Totals.Delivered != 300 {
			t.Errorf("delivered %d, want 300", rep.Totals.Delivered)
		}
		if took := time.Since(start); took != time.Second {
			t.Errorf("300 requests of 10ms on 3 senders took %v, want 1s", took)
		}
		for _, b := range obs.batches {
			if b.latency != 10*time.Millisecond {
				t.Fatalf("closed-loop latency %v, want the 10ms service time", b.latency)
			}
		}
		if rep.Phases[0].Pattern != "closed" {
			t.Errorf("pattern %q, want closed", rep.Phases[0].Pattern)
		}
	})
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cfg          Config
		answers      func(try int) attempt // by attempt number of a batch
		wantLatency  time.Duration
		wantFailed   int64
		wantRetries  int64
		wantRequests int64
		wantKind     string
	}{
		{
			name:        "429 with Retry-After waits that long, then delivers",
			answers:     first(attempt{kind: "429", retryable: true, retryAfter: 2 * time.Second, hasRetryAfter: true}),
			wantLatency: 2*time.Second + 2*time.Millisecond, wantRetries: 5, wantRequests: 10, wantKind: "429",
		},
		{
			name:        "Retry-After is capped at MaxRetryWait",
			cfg:         Config{MaxRetryWait: 300 * time.Millisecond},
			answers:     first(attempt{kind: "503", retryable: true, retryAfter: time.Minute, hasRetryAfter: true}),
			wantLatency: 300*time.Millisecond + 2*time.Millisecond, wantRetries: 5, wantRequests: 10, wantKind: "503",
		},
		{
			name:       "400 is not retried",
			answers:    first(attempt{kind: "400"}),
			wantFailed: 5, wantRequests: 5, wantKind: "400",
		},
		{
			name:       "retries are bounded",
			cfg:        Config{Retries: 2},
			answers:    func(int) attempt { return attempt{kind: "503", retryable: true, hasRetryAfter: true} },
			wantFailed: 5, wantRetries: 10, wantRequests: 15, wantKind: "503",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				tries := map[int64]int{}
				var obs observed
				cfg := tc.cfg
				cfg.Concurrency, cfg.Count, cfg.observe = 5, 5, obs.hook
				cfg.Defaults = Phase{Rate: 10, Batch: 1}
				cfg = withFake(cfg, func(ctx context.Context, pl *payload) attempt {
					id := idOf(pl)
					mu.Lock()
					n := tries[id]
					tries[id]++
					mu.Unlock()
					time.Sleep(time.Millisecond)
					return tc.answers(n)
				})
				rep := mustRun(t, context.Background(), cfg)
				s := rep.Totals
				if s.Failed != tc.wantFailed || s.Retries != tc.wantRetries || s.Requests != tc.wantRequests {
					t.Errorf("failed %d retries %d requests %d, want %d %d %d",
						s.Failed, s.Retries, s.Requests, tc.wantFailed, tc.wantRetries, tc.wantRequests)
				}
				if s.Errors[tc.wantKind] == 0 {
					t.Errorf("errors %v, want some %s", s.Errors, tc.wantKind)
				}
				if tc.wantLatency > 0 {
					for _, b := range obs.batches {
						if b.latency != tc.wantLatency {
							t.Errorf("latency %v, want %v (from the intended time, retries included)", b.latency, tc.wantLatency)
						}
					}
				}
			})
		})
	}
}

// first answers a on a batch's first attempt and success after.
func first(a attempt) func(int) attempt {
	return func(try int) attempt {
		if try == 0 {
			return a
		}
		return attempt{acked: true}
	}
}

// idOf is the sequence number in the first record's id ("t-42").
func idOf(pl *payload) int64 {
	line := pl.buf
	i := bytes.Index(line, []byte(`"id":"t-`))
	j := bytes.IndexByte(line[i+8:], '"')
	var n int64
	for _, c := range line[i+8 : i+8+j] {
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestBounds(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cfg         Config
		wantRecords int64
		wantBatches []int
	}{
		{"count ends the run mid-batch", Config{Count: 1234, Defaults: Phase{Rate: 10_000, Batch: 100}},
			1234, []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 34}},
		{"duration ends an unbounded phase", Config{Duration: 2500 * time.Millisecond, Defaults: Phase{Rate: 1000, Batch: 100}},
			2500, nil},
		{"a phase's count ends it", Config{Defaults: Phase{Rate: 1000, Batch: 100, Count: 250}},
			250, []int{100, 100, 50}},
		{"a phase's duration ends it with a partial batch", Config{Defaults: Phase{Rate: 1000, Batch: 300, Duration: Duration(time.Second)}},
			1000, []int{300, 300, 300, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var obs observed
				cfg := tc.cfg
				cfg.observe = obs.hook
				cfg.Concurrency = 1
				cfg = withFake(cfg, func(context.Context, *payload) attempt { return attempt{acked: true} })
				rep := mustRun(t, context.Background(), cfg)
				if rep.Totals.Delivered != tc.wantRecords || rep.Totals.Offered != tc.wantRecords {
					t.Errorf("offered %d delivered %d, want %d", rep.Totals.Offered, rep.Totals.Delivered, tc.wantRecords)
				}
				if tc.wantBatches != nil {
					var got []int
					for _, b := range obs.batches {
						got = append(got, b.c.n)
					}
					if !equalInts(got, tc.wantBatches) {
						t.Errorf("batches %v, want %v", got, tc.wantBatches)
					}
				}
			})
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Phases run one after the other on one timeline, and the report places
// each on it, with a per-second series and a summary per phase.
func TestScenarioPhasesShareOneTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc, err := ParseScenario([]byte(`{"phases": [
			{"name": "steady", "rate": 200, "duration": "2s", "batch": 10},
			{"name": "climb", "pattern": "ramp", "from": 0, "rate": 400, "duration": 2},
			{"name": "flat-out", "pattern": "closed", "count": 50, "batch": 5}]}`))
		if err != nil {
			t.Fatal(err)
		}
		cfg := withFake(Config{Scenario: sc, Concurrency: 2}, func(context.Context, *payload) attempt {
			time.Sleep(time.Millisecond)
			return attempt{acked: true}
		})
		rep := mustRun(t, context.Background(), cfg)
		want := []struct {
			name    string
			offered int64
			start   float64
			dur     float64
		}{{"steady", 400, 0, 2}, {"climb", 400, 2, 2}, {"flat-out", 50, 4, 0.01}}
		if len(rep.Phases) != 3 {
			t.Fatalf("%d phases in the report, want 3", len(rep.Phases))
		}
		for i, w := range want {
			p := rep.Phases[i]
			if p.Name != w.name || p.Offered != w.offered || p.Delivered != w.offered || p.StartS != w.start {
				t.Errorf("phase %d: %s offered %d delivered %d start %.2fs, want %s %d from %.2fs",
					i, p.Name, p.Offered, p.Delivered, p.StartS, w.name, w.offered, w.start)
			}
			if i < 2 && p.DurationS != w.dur {
				t.Errorf("phase %s lasted %.3fs, want %.3fs", p.Name, p.DurationS, w.dur)
			}
		}
		if len(rep.Series) != 5 {
			t.Fatalf("series has %d seconds, want 5: %+v", len(rep.Series), rep.Series)
		}
		for i, name := range []string{"steady", "steady", "climb", "climb", "flat-out"} {
			if rep.Series[i].Phase != name || rep.Series[i].T != int64(i) {
				t.Errorf("second %d: %+v, want phase %s", i, rep.Series[i], name)
			}
		}
		// The ramp offers 100 records in its first second and 300 in its second.
		if rep.Series[2].Offered != 100 || rep.Series[3].Offered != 300 {
			t.Errorf("ramp seconds offered %d and %d, want 100 and 300", rep.Series[2].Offered, rep.Series[3].Offered)
		}
	})
}

// Interrupting a run (Ctrl-C) stops the schedule, lets requests in flight
// finish or time out, and still returns the report; the acked file holds
// exactly the acknowledged ids.
func TestInterruptStillReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var acked bytes.Buffer
		var sent atomic.Int64
		cfg := withFake(Config{
			Concurrency: 4, Acked: &acked, DrainTimeout: 500 * time.Millisecond,
			Defaults: Phase{Rate: 100, Duration: Duration(10 * time.Second), Batch: 1},
		}, func(ctx context.Context, pl *payload) attempt {
			if sent.Add(1) > 150 {
				<-ctx.Done() // a request that never gets an answer
				return attempt{kind: "canceled"}
			}
			time.Sleep(time.Millisecond)
			return attempt{acked: true}
		})
		go func() {
			time.Sleep(1995 * time.Millisecond)
			cancel()
		}()
		start := time.Now()
		rep := mustRun(t, ctx, cfg)
		if took := time.Since(start); took != 1995*time.Millisecond+500*time.Millisecond {
			t.Errorf("the run took %v after the interrupt, want the 500ms drain", took-1995*time.Millisecond)
		}
		s := rep.Totals
		if !rep.Interrupted || s.Delivered != 150 || s.Acked != 150 {
			t.Errorf("interrupted %v delivered %d acked %d, want true 150 150", rep.Interrupted, s.Delivered, s.Acked)
		}
		// Due by 1.995s: records 0..199; 150 delivered, 4 stuck in flight, the rest queued.
		if s.Offered != 200 || s.Canceled != 50 {
			t.Errorf("offered %d canceled %d, want 200 and 50", s.Offered, s.Canceled)
		}
		if n := len(rep.Series); n != 2 {
			t.Errorf("series of %d seconds for a run interrupted at 1.995s, want 2", n)
		}
		lines := 0
		sc := bufio.NewScanner(&acked)
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "t-") {
				t.Fatalf("acked line %q", sc.Text())
			}
			lines++
		}
		if lines != 150 {
			t.Errorf("%d acked ids written, want 150", lines)
		}
	})
}

func TestProgressLine(t *testing.T) {
	for _, terminal := range []bool{false, true} {
		t.Run("terminal="+strconv.FormatBool(terminal), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var out bytes.Buffer
				cfg := withFake(Config{
					Progress: &out, Terminal: terminal, ProgressEvery: time.Second, Concurrency: 2,
					Defaults: Phase{Rate: 1000, Batch: 10, Duration: Duration(3500 * time.Millisecond)},
				}, func(ctx context.Context, pl *payload) attempt {
					time.Sleep(2 * time.Millisecond)
					if idOf(pl)%100 == 0 {
						return attempt{kind: "503", retryable: true, hasRetryAfter: true}
					}
					return attempt{acked: true}
				})
				mustRun(t, context.Background(), cfg)
				text := out.String()
				sep := "\n"
				if terminal {
					sep = "\r"
					if !strings.HasSuffix(text, "\n") || strings.Count(text, "\n") != 1 {
						t.Errorf("on a terminal the line is rewritten in place and ended once: %q", text)
					}
				}
				var lines []string
				for _, l := range strings.Split(text, sep) {
					if l = strings.TrimSpace(l); l != "" {
						lines = append(lines, l)
					}
				}
				// Ticks at 1s, 2s, 3s and the end at 3.5s.
				if len(lines) != 4 {
					t.Fatalf("%d progress lines, want 4: %q", len(lines), text)
				}
				want := regexp.MustCompile(`^2\.0s  offered 1000/s  achieved \d+/s  acked \d+  failed \d+  errors 503=\d+  p50 \S+  p99 \S+$`)
				if !want.MatchString(lines[1]) {
					t.Errorf("progress line %q does not match %v", lines[1], want)
				}
			})
		})
	}
}

// Idle senders claim the batches due next and wait for their time; an
// interrupt gives those back, and they leave no trace in the series.
func TestInterruptGivesBackBatchesClaimedAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cfg := withFake(Config{Concurrency: 8, Defaults: Phase{Rate: 2, Batch: 1, Duration: Duration(time.Minute)}},
			func(context.Context, *payload) attempt { return attempt{acked: true} })
		go func() {
			time.Sleep(600 * time.Millisecond)
			cancel()
		}()
		rep := mustRun(t, ctx, cfg)
		if rep.Totals.Offered != 2 || rep.Totals.Delivered != 2 || len(rep.Series) != 1 {
			t.Errorf("offered %d delivered %d over %d seconds of series, want 2, 2 and 1",
				rep.Totals.Offered, rep.Totals.Delivered, len(rep.Series))
		}
	})
}
