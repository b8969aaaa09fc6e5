package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen"
)

// acceptedConns counts the TCP connections on port that process pid holds:
// established, with a socket among the process's open files (a connection
// still in the listen backlog has none).
func acceptedConns(t *testing.T, pid int, port string) int {
	t.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("list the agent's files: %v", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	hexPort := fmt.Sprintf(":%04X", p)
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && strings.HasSuffix(f[1], hexPort) && f[3] == "01" && mine[f[9]] {
				n++
			}
		}
	}
	return n
}

// loadUntilDone runs loadgen for count records at rate and returns its
// report once it has finished by itself.
func loadUntilDone(t *testing.T, url string, rate, count int) (loadgen.Report, string) {
	t.Helper()
	l := startLoad(t, []string{url}, rate, "--count", strconv.Itoa(count))
	select {
	case err := <-l.exited:
		l.exited <- err // for stop, which reads it again
	case <-time.After(clusterWait):
		t.Fatalf("loadgen did not finish %d records within %s", count, clusterWait)
	}
	return l.stop(t), l.acked
}

// TestSlowAndHostileClientsHoldOnlyTheirLimits runs the generator against an
// agent twice, alone and then beside hostile clients: thousands of idle
// HTTP connections, clients sending their bodies a byte a second, event
// stream clients that never read, and syslog senders that stop in the
// middle of a message. Each is held only as far as its limit allows (the
// body read deadline cuts the slow bodies; the connection cap bounds the
// connections served), no request of the generator fails, no acknowledged
// record is lost, and both runs' p99 latencies are reported side by side.
func TestSlowAndHostileClientsHoldOnlyTheirLimits(t *testing.T) {
	const maxConns, idle, slowBodies, sseReaders, syslogStuck = 1200, 1000, 20, 5, 20
	start := time.Now()
	phase := func(what string) { t.Logf("%s: %s", time.Since(start).Round(time.Millisecond), what) }
	dir := t.TempDir()
	p := startProc(t, dir, "--max-conns", strconv.Itoa(maxConns), "--body-read-timeout", "5s",
		"--initial-limits", "cpu_limit_percent=100,mem_limit_percent=100")
	host := strings.TrimPrefix(p.url, "http://")
	_, port, _ := net.SplitHostPort(host)

	calm, calmAcked := loadUntilDone(t, p.url, 1000, 3000)
	phase("undisturbed run done")

	var conns []net.Conn
	var connsMu sync.Mutex
	keep := func(c net.Conn) {
		connsMu.Lock()
		conns = append(conns, c)
		connsMu.Unlock()
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	dial := func(addr string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		keep(c)
		return c
	}
	// Idle HTTP connections: connected, never a byte.
	for range idle {
		dial(host)
	}
	// Bodies at a byte a second: each ends with a 400 or a closed
	// connection once the body read deadline passes.
	var cut atomic.Int32
	for range slowBodies {
		c := dial(host)
		fmt.Fprintf(c, "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{")
		go func() {
			answered := make(chan struct{})
			go func() {
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil || resp.StatusCode == http.StatusBadRequest {
					cut.Add(1)
				}
				close(answered)
			}()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-answered:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						<-answered
						return
					}
				}
			}
		}()
	}
	// Event streams that are never read, with a small receive buffer.
	var streams []net.Conn
	for range sseReaders {
		c := dial(host)
		streams = append(streams, c)
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	// Syslog senders that stop inside a message.
	for range syslogStuck {
		c := dial(p.syslog)
		fmt.Fprintf(c, "300 <13>1 2026-11-25T10:00:00Z host app - - - half a mess")
	}
	pollFor(t, "the agent to serve the idle connections", func() bool { return acceptedConns(t, p.cmd.Process.Pid, port) >= idle })

	phase("hostile clients in place")
	hostile, hostileAcked := loadUntilDone(t, p.url, 1000, 3000)
	phase("run beside them done")
	pollFor(t, "every slow body to be cut off by the read deadline", func() bool { return cut.Load() == slowBodies })
	s, err := scrape(p.url)
	if err != nil {
		t.Fatal(err)
	}
	stuck := s["batchpilot_syslog_connections"]

	// Past the cap: the connections beyond it wait in the listen backlog,
	// not in the agent.
	for range maxConns + 300 - acceptedConns(t, p.cmd.Process.Pid, port) {
		dial(host)
	}
	over := 0
	pollFor(t, fmt.Sprintf("the agent to fill its --max-conns %d with %d connections open", maxConns, maxConns+300), func() bool {
		n := acceptedConns(t, p.cmd.Process.Pid, port)
		over = max(over, n)
		return n >= maxConns
	})
	for range 20 { // and to stay there
		over = max(over, acceptedConns(t, p.cmd.Process.Pid, port))
	}
	// The cap is a semaphore released when a connection is closed; Go
	// closes the descriptor itself a moment later, once no read is in
	// flight on it, so a sample may see a few closing ones beside the cap.
	const closing = 16
	if over > maxConns+closing {
		t.Errorf("the agent held %d HTTP connections at once, over --max-conns %d (+%d closing)", over, maxConns, closing)
	}
	phase("over the cap")
	// The event streams stay open through the shutdown below: it must not
	// wait on them. The rest go now (a connection accepted under 5 s ago
	// is not yet idle to http.Server.Shutdown, which would wait for it).
	for _, c := range conns {
		if !slices.Contains(streams, c) {
			c.Close()
		}
	}

	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	for _, run := range []struct {
		name  string
		rep   loadgen.Report
		acked string
	}{{"alone", calm, calmAcked}, {"beside the hostile clients", hostile, hostileAcked}} {
		out, err := runVerifyCmd(t, run.acked, dir)
		tot := run.rep.Totals
		t.Logf("loadgen %s: %d acknowledged, %d failed, %d retries, errors %v, p50 %.1f ms, p99 %.1f ms; verify: %s",
			run.name, tot.Acked, tot.Failed, tot.Retries, tot.Errors, tot.Latency.P50, tot.Latency.P99, out)
		if err != nil || !strings.HasPrefix(out, "lost 0 ") {
			t.Errorf("verify %s: %q %v; want lost 0", run.name, out, err)
		}
		if tot.Failed != 0 || tot.Acked != 3000 {
			t.Errorf("loadgen %s: %d acknowledged, %d failed; want all 3000 acknowledged", run.name, tot.Acked, tot.Failed)
		}
	}
	t.Logf("p99 beside the hostile clients / alone: %.2f (%.1f ms / %.1f ms); held: %d idle HTTP connections, %d slow bodies cut by the deadline, "+
		"%d unread event streams, %.0f syslog connections stopped mid-message; at most %d connections held with %d open (cap %d; a few may be closing)",
		hostile.Totals.Latency.P99/max(calm.Totals.Latency.P99, 0.001), hostile.Totals.Latency.P99, calm.Totals.Latency.P99,
		idle, cut.Load(), sseReaders, stuck, over, maxConns+300, maxConns)
}
