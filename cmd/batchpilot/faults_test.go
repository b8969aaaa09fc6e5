package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

// The fault tests run real agents as separate processes under load from
// the bundled generator (`batchpilot loadgen`, a separate process too, with
// --acked), break something, and check with `batchpilot verify` that every
// record the generator saw acknowledged is in a sink. docs/reliability.md
// has their figures.

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// loadRun is `batchpilot loadgen` sending until it is stopped (or its
// --duration bound, far beyond any test, ends it).
type loadRun struct {
	cmd           *exec.Cmd
	acked, report string
	out           syncBuffer
	exited        chan error
}

// startLoad sends rate records/s in requests of 50 to the targets, with
// loadgen's failover and enough retries to ride out a node's restart.
func startLoad(t *testing.T, targets []string, rate int, extra ...string) *loadRun {
	t.Helper()
	dir := t.TempDir()
	l := &loadRun{acked: filepath.Join(dir, "acked.txt"), report: filepath.Join(dir, "report.json"), exited: make(chan error, 1)}
	args := append([]string{"loadgen", "--target", strings.Join(targets, ","),
		"--rate", strconv.Itoa(rate), "--batch", "50", "--duration", "10m", "--concurrency", "16",
		"--retries", "30", "--max-retry-wait", "1s", "--timeout", "10s", "--drain-timeout", "30s",
		"--acked", l.acked, "--report", l.report, "--progress-interval", "5s"}, extra...)
	l.cmd = exec.Command(binPath, args...)
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.out
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.exited <- l.cmd.Wait() }()
	t.Cleanup(func() {
		_ = l.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("loadgen output:\n%s", tail(l.out.String(), 8000))
		}
	})
	return l
}

// stop interrupts the generator (it drains its requests in flight and
// writes --acked and --report) and returns its report.
func (l *loadRun) stop(t *testing.T) loadgen.Report {
	t.Helper()
	_ = l.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-l.exited:
		if err != nil {
			t.Fatalf("loadgen: %v\n%s", err, tail(l.out.String(), 8000))
		}
	case <-time.After(clusterWait):
		t.Fatalf("loadgen did not stop within %s of SIGINT", clusterWait)
	}
	var rep loadgen.Report
	b, err := os.ReadFile(l.report)
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err != nil {
		t.Fatalf("loadgen report: %v", err)
	}
	return rep
}

// written is a node's batchpilot_records_written_total (-1 if it does not
// answer).
func written(m *member) float64 {
	s, err := scrape(m.url)
	if err != nil {
		return -1
	}
	return s["batchpilot_records_written_total"]
}

// waitWritten polls until each of ms has written at least n more records
// than it had when called: the load reaches it.
func waitWritten(t *testing.T, n float64, ms ...*member) {
	t.Helper()
	from := make([]float64, len(ms))
	for i, m := range ms {
		from[i] = max(0, written(m))
	}
	pollFor(t, fmt.Sprintf("%s to write %.0f more records", names(ms), n), func() bool {
		for i, m := range ms {
			if written(m) < from[i]+n {
				return false
			}
		}
		return true
	})
}

// restart runs m again on the same data dir and the same addresses (the
// generator's targets and the cluster's Raft configuration name them),
// joining through via.
func restart(t, owner *testing.T, m *member, via *member) *member {
	t.Helper()
	f := addrsRE.FindStringSubmatch(m.logs())
	if f == nil {
		t.Fatalf("%s never said where it listens", m.name)
	}
	hostport := func(u string) string { return u[strings.Index(u, "://")+3:] }
	return launchMember(t, owner, nil, m.name, m.dir, "--http-addr", hostport(f[1]), "--gossip-addr", f[3],
		"--raft-addr", f[4], "--bootstrap-expect", "3", "--join", via.gossip)
}

// startCluster runs three agents on 127.0.0.1, named prefix1 to prefix3,
// that bootstrap one cluster together, and waits until all three are
// voters with a leader. extra goes to every agent.
func startCluster(t *testing.T, prefix string, extra ...string) []*member {
	t.Helper()
	base := t.TempDir()
	args := append([]string{"--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--bootstrap-expect", "3"}, extra...)
	var ms []*member
	var names []string
	for i := 1; i <= 3; i++ {
		a := args
		if i > 1 {
			a = append(slices.Clone(args), "--join", ms[0].gossip)
		}
		name := fmt.Sprintf("%s%d", prefix, i)
		names = append(names, name)
		ms = append(ms, launchMember(t, t, nil, name, filepath.Join(base, name), a...))
	}
	waitSeen(t, ms, names, "alive", func(r string) bool { return r == "leader" || r == "voter" })
	waitLeader(t, ms...)
	return ms
}

// TestFaultsUnderLoad runs a three-node cluster under a steady load sent
// to all three nodes, kills a follower with SIGKILL and restarts it, then
// does the same to the leader, and checks that no acknowledged record was
// lost and that the generator failed over instead of failing requests.
func TestFaultsUnderLoad(t *testing.T) {
	top := t
	ms := startCluster(t, "f")
	urls := []string{ms[0].url, ms[1].url, ms[2].url}
	load := startLoad(t, urls, 1500)
	waitWritten(t, 500, ms...)

	// others are the members other than m.
	others := func(m *member) []*member {
		var out []*member
		for _, o := range ms {
			if o != m {
				out = append(out, o)
			}
		}
		return out
	}
	kill := func(t *testing.T, victim *member) time.Time {
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = victim.waitExit(t)
		return time.Now()
	}
	// replace puts the restarted member where the killed one was.
	replace := func(old, by *member) {
		for i, m := range ms {
			if m == old {
				ms[i] = by
			}
		}
	}

	t.Run("kill -9 of a follower under load, and its restart", func(t *testing.T) {
		leader := waitLeader(t, ms...)
		var victim *member
		for _, m := range ms {
			if m != leader {
				victim = m
			}
		}
		killed := kill(t, victim)
		rest := others(victim)
		// The generator fails over: the survivors take the load.
		waitWritten(t, 1500, rest...)
		back := restart(t, top, victim, rest[0])
		replace(victim, back)
		waitSeen(t, ms, []string{"f1", "f2", "f3"}, "alive", inRaft)
		// The generator tries the node again and it writes once more.
		waitWritten(t, 300, back)
		t.Logf("%s killed; back in the cluster and writing %s later", victim.name, time.Since(killed).Round(time.Millisecond))
	})
	t.Run("kill -9 of the leader under load, and its restart", func(t *testing.T) {
		old := waitLeader(t, ms...)
		killed := kill(t, old)
		rest := others(old)
		leader := waitLeader(t, rest...)
		elected := time.Since(killed)
		waitWritten(t, 1500, rest...)
		back := restart(t, top, old, leader)
		replace(old, back)
		waitSeen(t, ms, []string{"f1", "f2", "f3"}, "alive", inRaft)
		waitWritten(t, 300, back)
		t.Logf("leader %s killed; %s led after %s; %s back and writing %s after the kill",
			old.name, leader.name, elected.Round(time.Millisecond), old.name, time.Since(killed).Round(time.Millisecond))
	})
	if t.Failed() {
		return
	}

	rep := load.stop(t)
	var dirs []string
	for _, m := range ms {
		if err := sigterm(t, m); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", m.name, err)
		}
		dirs = append(dirs, m.dir)
	}
	tot := rep.Totals
	out, err := runVerifyCmd(t, load.acked, dirs...)
	t.Logf("loadgen: %d records sent, %d acknowledged, %d failed, %d canceled at the stop, %d retries, errors %v; verify: %s",
		tot.Sent, tot.Acked, tot.Failed, tot.Canceled, tot.Retries, tot.Errors, out)
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
	if tot.Failed != 0 {
		t.Errorf("%d records failed: the generator should have failed over to a live node", tot.Failed)
	}
	if tot.Retries == 0 {
		t.Errorf("no retries: the kills did not hit the load")
	}
}

// TestSinkOutageOpensTheBreakerAndRecovers runs an agent with the http sink
// in front of a downstream that answers every batch 503 for 30 seconds,
// under load: the breaker opens, ingest answers 503 (so nothing is
// acknowledged that was not written), and when the downstream comes back
// the node recovers by itself, with no acknowledged record lost.
func TestSinkOutageOpensTheBreakerAndRecovers(t *testing.T) {
	// Mostly waits out a fault of fixed length (30-40 s): it runs beside
	// the other such tests, after the package's sequential ones.
	t.Parallel()
	const outage = 30 * time.Second
	var down atomic.Bool
	sim := startSwitchedSinksim(t, &down)
	dir := t.TempDir()
	// Host limits the breaker cannot trip on a busy test machine: the
	// sink's errors alone must open it.
	p := startProc(t, dir, "--sink", "http", "--sink-url", sim.URL()+"/bulk",
		"--initial-limits", "cpu_limit_percent=100,mem_limit_percent=100")
	m := &member{proc: p, name: "e2e", dir: dir}
	load := startLoad(t, []string{p.url}, 500)
	waitWritten(t, 500, m)

	down.Store(true)
	start := time.Now()
	var seen metrics
	pollFor(t, "the breaker to open and ingest to answer 503", func() bool {
		s, err := scrape(p.url)
		seen = s
		return err == nil && s[`batchpilot_breaker_state{state="open"}`] == 1 &&
			s[`batchpilot_records_rejected_total{reason="breaker_open"}`] > 0
	})
	opened := time.Since(start)
	// Hold the outage for its full length (the fault, not a wait for the
	// node): the breaker keeps probing half-open and opening again.
	for time.Since(start) < outage {
		time.Sleep(100 * time.Millisecond)
	}
	down.Store(false)
	healed := time.Now()
	pollFor(t, "the breaker to close", func() bool {
		s, err := scrape(p.url)
		return err == nil && s[`batchpilot_breaker_state{state="closed"}`] == 1
	})
	closed := time.Since(healed)
	waitWritten(t, 1000, m)
	recovered := time.Since(healed)

	rep := load.stop(t)
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	delivered := writeIDs(t, sim.IDs())
	out, err := exec.Command(binPath, "verify", "--acked", load.acked, "--delivered", delivered).Output()
	res := strings.TrimSpace(string(out))
	tot := rep.Totals
	st := sim.Stats()
	t.Logf("outage %s: breaker open after %s (rejected by the breaker then: %.0f); closed %s after the heal, 1000 more written after %s; "+
		"loadgen: %d sent, %d acknowledged, %d failed, %d retries, errors %v; downstream: %d requests, rejected %v; verify: %s",
		outage, opened.Round(time.Millisecond), seen[`batchpilot_records_rejected_total{reason="breaker_open"}`],
		closed.Round(time.Millisecond), recovered.Round(time.Millisecond),
		tot.Sent, tot.Acked, tot.Failed, tot.Retries, tot.Errors, st.Requests, st.Rejected, res)
	if err != nil || !strings.HasPrefix(res, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", res, err)
	}
	if tot.Errors["503"] == 0 {
		t.Errorf("the generator saw no 503: ingest did not refuse during the outage")
	}
}
