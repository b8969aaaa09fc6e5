package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
	"github.com/batchpilot/batchpilot/node"
)

// TestOverloadIsRefusedEarlyAndRecovers drives an agent past its
// downstream's capacity with `batchpilot loadgen` (a separate process):
// the node refuses what it cannot write within its latency budget with 429
// and Retry-After instead of queueing it, its queue stays bounded by that
// budget, it recovers once the load falls below capacity, and every record
// it acknowledged is in the downstream (`batchpilot verify`).
func TestOverloadIsRefusedEarlyAndRecovers(t *testing.T) {
	// Two requests at once, 100 ms + 0.4 ms a record: about 1,400 records/s
	// in batches of 100.
	sim, err := sinksim.Start(sinksim.Config{
		Cost:           sinksim.Cost{PerRequest: 100 * time.Millisecond, PerRecord: 400 * time.Microsecond},
		MaxConcurrency: 2,
		KeepIDs:        true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	p := startProc(t, dir, "--sink", "http", "--sink-url", sim.URL()+"/bulk",
		"--controller", "static", "--batch-size", "100", "--latency-slo", "500ms",
		"--initial-limits", "cpu_limit_percent=100,mem_limit_percent=100")

	const warm, over = 2 * time.Second, 8 * time.Second
	scenario := filepath.Join(t.TempDir(), "overload.json")
	if err := os.WriteFile(scenario, []byte(fmt.Sprintf(`{"name": "overload", "defaults": {"batch": 100},
		"phases": [{"name": "warm", "rate": 300, "duration": "%s"},
		           {"name": "over", "rate": 3000, "duration": "%s"},
		           {"name": "under", "rate": 400, "duration": "30s"}]}`, warm, over)), 0o644); err != nil {
		t.Fatal(err)
	}
	load := startLoad(t, []string{p.url}, 100, "--scenario", scenario, "--retries", "3", "--max-retry-wait", "2s", "--concurrency", "64")
	began := time.Now()

	// While overloaded, the queue holds what can be written within the
	// budget: a few hundred records, where without admission it would grow
	// by ~1,600 a second to over 12,000.
	maxDepth, refusing := 0.0, false
	for time.Since(began) < warm+over {
		if s, err := scrape(p.url); err == nil {
			maxDepth = max(maxDepth, s["batchpilot_queue_depth"])
			refusing = refusing || s[`batchpilot_admission_refused_total{source="http",why="delay"}`] > 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !refusing {
		t.Errorf("the node refused nothing for delay while offered twice its downstream's capacity")
	}
	if maxDepth > 5000 {
		t.Errorf("queue reached %.0f records while overloaded; admission should hold it to what is written within the SLO", maxDepth)
	}

	// Recovery: below capacity the node stops refusing and its p99 comes
	// back inside the SLO (the time it takes is a figure, logged).
	ended := time.Now()
	var h node.Health
	pollFor(t, "the node to stop refusing and its p99 to come back inside the SLO", func() bool {
		h = nodeHealth(t, p.url)
		return time.Since(ended) > time.Second && h.Admission.Refused == 0 && h.P99ms > 0 && h.P99ms <= 500
	})
	recovered := time.Since(ended)

	rep := load.stop(t)
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	delivered := writeIDs(t, sim.IDs())
	out, err := exec.Command(binPath, "verify", "--acked", load.acked, "--delivered", delivered).Output()
	res := strings.TrimSpace(string(out))
	tot := rep.Totals
	t.Logf("overload: max queue %.0f records; recovered (p99 %.0f ms, nothing refused) %s after the overload; "+
		"loadgen: %d sent, %d acknowledged, %d failed, %d retries, errors %v, p99 %.0f ms; verify: %s",
		maxDepth, h.P99ms, recovered.Round(100*time.Millisecond),
		tot.Sent, tot.Acked, tot.Failed, tot.Retries, tot.Errors, tot.Latency.P99, res)
	if err != nil || !strings.HasPrefix(res, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", res, err)
	}
	if tot.Errors["429"] == 0 {
		t.Errorf("the generator saw no 429")
	}
}

// nodeHealth reads the node's health from GET /api/v1/nodes/{name}.
func nodeHealth(t *testing.T, url string) node.Health {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/nodes/e2e")
	if err != nil {
		return node.Health{}
	}
	defer resp.Body.Close()
	var v struct {
		Health node.Health `json:"health"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return node.Health{}
	}
	return v.Health
}
