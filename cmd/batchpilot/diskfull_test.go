package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/node/sink"
)

// mountTmpfs mounts a tmpfs of size (e.g. "6m") on a new directory and
// unmounts it when the test ends, or skips the test where it cannot.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the full-disk test needs root to mount a small tmpfs as the data dir (CI runs it as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "batchpilot-test", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		// The agent may still be exiting: lazily, so it goes once free.
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func remountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs to %s: %v %s", size, err, out)
	}
}

// TestFullDiskRefusesAndRecoversByItself runs an agent whose data dir is a
// 6 MiB tmpfs under a load of 1 KiB records until the file sink reaches its
// free-space floor: ingest answers 503 with Retry-After, the breaker opens
// and /metrics, /readyz and the API say why, Raft still commits (the floor
// is its room), and once the filesystem grows the node takes records again
// by itself. Every acknowledged record is in the segments, which read to
// the end, and the Raft state survives a restart.
func TestFullDiskRefusesAndRecoversByItself(t *testing.T) {
	// Mostly waits (for the disk to fill, then for a restart): it runs
	// beside the other such tests, after the package's sequential ones.
	t.Parallel()
	start := time.Now()
	dir := mountTmpfs(t, "6m")
	p := startProc(t, dir, "--min-free-bytes", "1048576", "--initial-limits", "cpu_limit_percent=100,mem_limit_percent=100")
	m := &member{proc: p, name: "e2e", dir: dir}
	load := startLoad(t, []string{p.url}, 2000, "--record-size", "1024")
	waitWritten(t, 500, m)

	var full metrics
	pollFor(t, "the sink to refuse for want of space and the breaker to open", func() bool {
		s, err := scrape(p.url)
		full = s
		return err == nil && s["batchpilot_sink_disk_full"] == 1 && s[`batchpilot_breaker_state{state="open"}`] == 1
	})
	t.Logf("full: %.0f records written, %.0f batches refused for space, %.0f bytes free",
		full["batchpilot_records_written_total"], full["batchpilot_sink_no_space_total"], full["batchpilot_sink_free_bytes"])

	t.Run("ingest answers 503 with Retry-After and readyz says why", func(t *testing.T) {
		// A request as large as the generator's: it cannot fit above the
		// floor (a small one still may, as it should).
		var body strings.Builder
		for i := range 60 {
			fmt.Fprintf(&body, `{"id":"probe-%d","pad":"%s"}`+"\n", i, strings.Repeat("x", 1024))
		}
		resp, err := http.Post(p.url+"/v1/logs", "application/x-ndjson", strings.NewReader(body.String()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 && resp.StatusCode != 507 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("ingest on a full disk: %s, Retry-After %q; want 503 or 507 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
		}
		resp, err = http.Get(p.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !bytes.Contains(b, []byte("breaker open")) && !bytes.Contains(b, []byte("no space")) {
			t.Errorf("readyz on a full disk: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("the API the dashboard reads shows the open breaker and its reason", func(t *testing.T) {
		var cl struct {
			Members []struct {
				Name   string `json:"name"`
				Health struct {
					Breaker string `json:"breaker"`
				} `json:"health"`
			} `json:"members"`
		}
		pollFor(t, "the cluster API to show the breaker open", func() bool {
			return getJSON(p.url+"/api/v1/cluster", &cl) == nil && len(cl.Members) == 1 && cl.Members[0].Health.Breaker != "closed"
		})
		var ds struct {
			Decisions []struct {
				Reason string `json:"reason"`
			} `json:"decisions"`
		}
		if err := getJSON(p.url+"/api/v1/decisions?limit=50", &ds); err != nil {
			t.Fatal(err)
		}
		// The breaker's reason is in the decisions (a busy machine may
		// trip it on CPU too); the sink's is on /metrics and /readyz.
		found := false
		for _, d := range ds.Decisions {
			found = found || strings.HasPrefix(d.Reason, "breaker:")
		}
		if !found {
			// A decision is logged only when the breaker changes the batch
			// size, which it cannot at the floor; the cluster API above is
			// what the dashboard shows either way.
			t.Logf("no breaker decision among %d (the batch size was not changed by it)", len(ds.Decisions))
		}
	})
	t.Run("Raft commits a limit change on the room the floor keeps", func(t *testing.T) {
		out, errOut, code := runCLI(t, nil, "limits", "set", "--addr", p.url, "max_batch_size=4321")
		if code != 0 {
			t.Fatalf("limits set on a full disk: exit %d: %s %s", code, out, errOut)
		}
	})

	remountTmpfs(t, dir, "64m")
	grown := time.Now()
	pollFor(t, "the node to write again by itself", func() bool {
		s, err := scrape(p.url)
		return err == nil && s["batchpilot_sink_disk_full"] == 0 && s[`batchpilot_breaker_state{state="closed"}`] == 1 &&
			s["batchpilot_records_written_total"] > full["batchpilot_records_written_total"]+500
	})
	t.Logf("%s: writing again, %s after the filesystem grew", time.Since(start).Round(time.Millisecond), time.Since(grown).Round(time.Millisecond))
	rep := load.stop(t)
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	out, err := runVerifyCmd(t, load.acked, dir)
	tot := rep.Totals
	t.Logf("loadgen: %d sent, %d acknowledged, %d failed, %d retries, errors %v; verify: %s",
		tot.Sent, tot.Acked, tot.Failed, tot.Retries, tot.Errors, out)
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
	if tot.Errors["503"]+tot.Errors["507"] == 0 {
		t.Errorf("the generator saw no 503: the full disk did not refuse ingest")
	}
	// Every segment reads to its end: whole JSON lines, a newline last.
	segs, _ := filepath.Glob(filepath.Join(dir, "sink", "segment-*.ndjson"))
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s does not end in a whole line", seg)
		}
	}
	lines := 0
	if err := sink.ReadSegments(filepath.Join(dir, "sink"), func(line []byte) error {
		lines++
		if !json.Valid(line) {
			return fmt.Errorf("not JSON: %.200q", line)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The Raft state is whole: a restart on the same data dir leads again
	// with the limit committed while the disk was full.
	p2 := startProc(t, dir)
	var lim struct {
		MaxBatchSize int `json:"max_batch_size"`
	}
	pollFor(t, "the restarted node to apply the limit committed on the full disk (max_batch_size=4321)", func() bool {
		return getJSON(p2.url+"/api/v1/limits", &lim) == nil && lim.MaxBatchSize == 4321
	})

	// Someone else fills the filesystem to the last byte: Raft's own
	// writes fail (its leader steps down and is elected again), limit
	// changes are refused, the node stays up, and once the space is freed
	// a change commits.
	t.Logf("%s: restarted with the Raft state whole", time.Since(start).Round(time.Millisecond))
	filler := fillFilesystem(t, dir)
	tries, refused := 0, 0
	for ; tries < 100 && refused == 0; tries++ {
		_, _, code := runCLI(t, nil, "limits", "set", "--addr", p2.url, "--timeout", "2s", fmt.Sprintf("max_batch_size=%d", 5000+tries))
		if code != 0 {
			refused++
		}
	}
	if refused == 0 {
		t.Logf("Raft's store took 100 changes on a full filesystem (bolt reused its free pages)")
	}
	t.Logf("%s: filesystem filled; %d change(s) tried, %d refused", time.Since(start).Round(time.Millisecond), tries, refused)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	pollFor(t, "a limit change to commit once the space is freed", func() bool {
		_, _, code := runCLI(t, nil, "limits", "set", "--addr", p2.url, "--timeout", "5s", "max_batch_size=4322")
		return code == 0
	})
	t.Logf("%s: a change committed once the space was freed", time.Since(start).Round(time.Millisecond))
	if err := p2.stop(t); err != nil {
		t.Fatalf("restarted agent exit: %v", err)
	}
	t.Logf("%d segments, %d lines, all whole JSON; Raft refused %d change(s) while the filesystem was filled to the last byte", len(segs), lines, refused)
}

// fillFilesystem writes a file in dir until the filesystem is full and
// returns its path.
func fillFilesystem(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			break
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last partial blocks
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return path
}
