package node

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/tuner"
)

func TestPressureRefusesEveryNewRequest(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name      string
		queueOnly bool
		pressure  string
		depth, n  int
		want      string
	}{
		{"no pressure: an empty queue takes any request", false, "", 0, 5000, ""},
		{"cpu pressure refuses even with the queue empty", false, whyCPU, 0, 1, whyCPU},
		{"memory pressure refuses less than a batch queued", false, whyMemory, 10, 1, whyMemory},
		{"pressure refuses in queue mode too", true, whyCPU, 0, 1, whyCPU},
		{"queue mode without pressure admits", true, "", 1000, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQueue(1000000, 1<<30, tc.queueOnly)
			q.adm.update(busy(0))
			q.setPressure(tc.pressure)
			if got := q.adm.check(tc.depth, tc.n, now, now); got != tc.want {
				t.Errorf("check = %q, want %q", got, tc.want)
			}
		})
	}
}

// cpuFeed is a Resources func whose CPU figure the test sets.
type cpuFeed struct{ pct atomic.Uint64 }

func (f *cpuFeed) set(p float64) { f.pct.Store(math.Float64bits(p)) }
func (f *cpuFeed) resources() tuner.Resources {
	return tuner.Resources{
		CPUPercent:   math.Float64frombits(f.pct.Load()),
		MemPercent:   20,
		CPUAllowance: tuner.CPUAllowance{Cores: 1.5, Source: tuner.AllowanceCgroupV2, File: "/sys/fs/cgroup/app/cpu.max"},
	}
}

// Under CPU pressure the node pushes back on ingest instead of shrinking
// its batches: HTTP requests get 429 with Retry-After, syslog TCP is not
// read, the batch size and the sink breaker are left alone, and the health
// and /metrics name the limit that acts. When the pressure clears, the
// waiting syslog record is taken and ingest is admitted again.
func TestCPUPressureRefusesIngestWithoutShrinkingAndClears(t *testing.T) {
	feed := &cpuFeed{}
	feed.set(30)
	n := startNode(t, Config{Sink: newMemSink(), InitialBatchSize: 100, MaxLinger: time.Millisecond,
		ControlInterval: 10 * time.Millisecond, Resources: feed.resources,
		Guard: tuner.NewBreaker(tuner.BreakerConfig{PressureRelease: 30 * time.Millisecond})})
	if err := n.Ingest(context.Background(), recs(2, "before"), SourceHTTP); err != nil {
		t.Fatalf("ingest before the pressure: %v", err)
	}

	feed.set(97)
	// The queue's pressure is set last in a control step, after the health
	// and the metrics: wait for it, not only for the health.
	waitFor(t, func() bool { return n.Health().Admission.Pressure == whyCPU && n.queue.adm.pressure.Load() != 0 })
	h := n.Health()
	if !strings.Contains(h.Admission.PressureDetail, "cgroup-v2: 1.50 cores") || h.CPUAllowance == nil || h.CPUAllowance.Cores != 1.5 {
		t.Errorf("health names %q, allowance %+v; want the cgroup-v2 quota of 1.50 cores", h.Admission.PressureDetail, h.CPUAllowance)
	}
	if h.BatchSize != 100 || h.Breaker != tuner.BreakerClosed {
		t.Errorf("batch size %d breaker %q under pressure, want 100 kept and closed", h.BatchSize, h.Breaker)
	}
	if err := n.Ingest(context.Background(), recs(1, "hot"), SourceHTTP); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("ingest under pressure: %v, want ErrOverloaded", err)
	}
	req := httptest.NewRequest("POST", "/v1/logs", bytes.NewReader([]byte(`{"m":1}`+"\n")))
	req.Header.Set("Content-Type", "application/x-ndjson")
	rr := httptest.NewRecorder()
	n.IngestHandler().ServeHTTP(rr, req)
	if rr.Code != http.StatusTooManyRequests || rr.Header().Get("Retry-After") == "" {
		t.Fatalf("HTTP under pressure: %d Retry-After=%q, want 429 with Retry-After", rr.Code, rr.Header().Get("Retry-After"))
	}
	if got := counterValue(t, n, "batchpilot_admission_refused_total", "why", whyCPU); got < 2 {
		t.Errorf("batchpilot_admission_refused_total{why=cpu} = %v, want at least 2", got)
	}
	if got := gaugeValue(n.metrics.pressure.WithLabelValues(whyCPU)); got != 1 {
		t.Errorf("batchpilot_admission_pressure{why=cpu} = %v, want 1", got)
	}
	tcp := make(chan error, 1)
	go func() { tcp <- n.Offer(context.Background(), []byte(`{"id":"tcp"}`), SourceSyslog, true) }()
	waitFor(t, func() bool { return counterValue(t, n, "batchpilot_admission_paused_total", "source", "syslog") == 1 })

	feed.set(20)
	var tcpErr error
	waitFor(t, func() bool {
		select {
		case tcpErr = <-tcp:
			return true
		default:
			return false
		}
	})
	if tcpErr != nil {
		t.Fatalf("syslog TCP record after the pressure cleared: %v", tcpErr)
	}
	waitFor(t, func() bool { return n.Health().Admission.Pressure == "" })
	if err := n.Ingest(context.Background(), recs(2, "after"), SourceHTTP); err != nil {
		t.Fatalf("ingest after the pressure: %v", err)
	}
	if got := gaugeValue(n.metrics.pressure.WithLabelValues(whyCPU)); got != 0 {
		t.Errorf("batchpilot_admission_pressure{why=cpu} = %v after it cleared, want 0", got)
	}
}
