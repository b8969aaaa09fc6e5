package tuner_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/batchpilot/batchpilot/tuner"
)

// stepsFile holds a bench's control steps (batchpilot bench --steps FILE) to replay.
var stepsFile = flag.String("steps", "", "replay the gradient runs of this file of bench control steps (bench --steps) and show where this code decides otherwise")

// controlStep is a line of bench --steps (loadgen/bench.ControlStep).
type controlStep struct {
	Run     string            `json:"run"`
	Obs     tuner.Observation `json:"obs"`
	Dec     tuner.Decision    `json:"dec"`
	Breaker string            `json:"breaker"`
}

// TestGradientReplaysBenchSteps is a tool, run by hand: it feeds each gradient
// run of a bench's control steps to a fresh Gradient and logs every step, marking the
// decisions this code takes otherwise than the run did:
//
//	bin/batchpilot bench --scenario knee --quick --controllers gradient --no-sweep --steps /tmp/knee.jsonl
//	go test ./tuner -run TestGradientReplaysBenchSteps -steps /tmp/knee.jsonl -v
//
// Up to the first mark the replay is exact (Gradient reads only its
// observations); after it the observations are the run's, not what the
// changed decision would have brought, so a mark shows where a change
// departs, not what it would achieve. A step the breaker overrode shows
// its state. Without -steps it is skipped; an unreadable file fails it.
func TestGradientReplaysBenchSteps(t *testing.T) {
	if *stepsFile == "" {
		t.Skip("no -steps FILE")
	}
	f, err := os.Open(*stepsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var (
		g                    *tuner.Gradient
		run                  string
		steps, runs, departs int
	)
	for line := 1; sc.Scan(); line++ {
		var s controlStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("%s:%d: %v", *stepsFile, line, err)
		}
		if !strings.HasSuffix(s.Run, "/gradient") {
			continue
		}
		if s.Run != run {
			run, runs = s.Run, runs+1
			g = tuner.NewGradient(tuner.GradientConfig{Initial: max(1, s.Obs.BatchSize)})
			t.Logf("run %s", run)
		}
		d := g.Next(s.Obs)
		steps++
		mark := ""
		if d.BatchSize != s.Dec.BatchSize || d.Reason != s.Dec.Reason {
			departs++
			mark = fmt.Sprintf("  <- the run: %d %s", s.Dec.BatchSize, s.Dec.Reason)
		}
		if s.Breaker != "" && s.Breaker != tuner.BreakerClosed {
			mark += "  (breaker " + s.Breaker + ")"
		}
		o := s.Obs
		t.Logf("%s +%6.3fs size %5d -> %5d %-32s arrivals %6.0f/s written %6.0f/s queue %6d batches %3d of %7.1f in %7.1fms%s",
			o.Now.Format("15:04:05.000"), o.Interval.Seconds(), o.BatchSize, d.BatchSize, d.Reason,
			o.ArrivalRate, o.Throughput, o.QueueDepth, o.Batches, o.MeanBatchFill, float64(o.MeanBatchTime.Microseconds())/1000, mark)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if runs == 0 {
		t.Fatalf("%s holds no gradient run", *stepsFile)
	}
	t.Logf("%d gradient runs, %d steps, %d decided otherwise by this code", runs, steps, departs)
}
