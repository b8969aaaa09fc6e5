package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // BENCH_SCALE_PPROF
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/consensus"
)

// TestClusterBenchScale is `make bench-scale`: three real servers (separate
// processes of the real binary, built without -race) and N workers in this
// process, each a real memberlist member on its own loopback port and a
// real lease client asking the servers over HTTP every 2 s (a 6 s lease).
// For N in BENCH_SCALE_WORKERS (default 100,300,1000) it measures:
//   - how long after the last worker joined every server sees every
//     member alive;
//   - the lease RPC's round trip at the workers (p50, p99, max) over a
//     30 s window, and its errors;
//   - the leader's CPU per 1,000 lease requests it answered in the window,
//     and the CPU of the three servers;
//   - the memory (RSS) of this process per worker.
//
// It runs only when BATCHPILOT_BENCH_SCALE names a file for its figures.
func TestClusterBenchScale(t *testing.T) {
	out := os.Getenv("BATCHPILOT_BENCH_SCALE")
	if out == "" {
		t.Skip("a benchmark: set BATCHPILOT_BENCH_SCALE=FILE (make bench-scale) to run it")
	}
	if addr := os.Getenv("BENCH_SCALE_PPROF"); addr != "" {
		// net/http/pprof on this process (the workers' host), to profile
		// it while a size runs: go tool pprof http://ADDR/debug/pprof/profile
		runtime.SetMutexProfileFraction(5)
		runtime.SetBlockProfileRate(int(time.Millisecond))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("pprof listener: %v", err)
		}
		t.Logf("pprof of the workers' process on http://%s/debug/pprof/", ln.Addr())
		go func() { _ = http.Serve(ln, nil) }()
		t.Cleanup(func() { ln.Close() })
	}
	if v := os.Getenv("BENCH_SCALE_GOGC"); v != "" {
		// The workers' process only (the servers keep the default): its
		// heap holds n members' views of n members, and its collector's
		// share of the CPU is what n separate hosts would each pay for
		// one member.
		pct, err := strconv.Atoi(v)
		if err != nil || pct <= 0 {
			t.Fatalf("BENCH_SCALE_GOGC=%q: want a positive percentage (GOGC's meaning)", v)
		}
		t.Logf("workers' process: GOGC=%d (was %d)", pct, debug.SetGCPercent(pct))
	}
	bin := filepath.Join(t.TempDir(), "batchpilot")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	var runs []scaleRun
	for _, f := range strings.Split(envOr("BENCH_SCALE_WORKERS", "100,300,1000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		var r scaleRun
		// A subtest per size, so that its servers stop before the next.
		t.Run(fmt.Sprintf("%d workers", n), func(t *testing.T) { r = runScale(t, bin, n) })
		runs = append(runs, r)
		t.Logf("%4d workers: all alive %.2fs after the last join (joins took %.1fs); lease RPC p50 %.1fms p99 %.1fms max %.1fms, %d errors in %d; leader %.0f ms CPU per 1,000 refreshes (%.0f refreshes/s); servers %.2f cores; %.0f KiB RSS (%.0f KiB live heap) per worker; workers' process %.2f cores joining (%.0f joins/s asked, via %s), %.2f in the window; worker gossip %s; window opened after %.0fs of settling below %.2f cores; load average %s %s",
			r.Workers, r.AllAliveS, r.JoinS, r.LeaseP50ms, r.LeaseP99ms, r.LeaseMaxMS, r.LeaseErrors, r.LeaseRequests,
			r.LeaderCPUmsPer1000, r.LeaderRefreshesPerS, r.ServersCPUCores, r.RSSKiBPerWorker, r.HeapKiBPerWorker,
			r.WorkersCPUJoinCores, r.JoinRate, r.JoinVia, r.WorkersCPUCores, r.WorkerGossip, r.SettleS, r.SettleCores, r.LoadAverage, r.Note)
	}
	mergeBenchFile(t, out, "scale", runs)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type scaleRun struct {
	Workers             int     `json:"workers"`
	JoinS               float64 `json:"join_s"`
	AllAliveS           float64 `json:"all_alive_after_last_join_s"`
	LeaseRequests       int     `json:"lease_requests"`
	LeaseErrors         int     `json:"lease_errors"`
	LeaseP50ms          float64 `json:"lease_rtt_p50_ms"`
	LeaseP99ms          float64 `json:"lease_rtt_p99_ms"`
	LeaseMaxMS          float64 `json:"lease_rtt_max_ms"`
	LeaderCPUmsPer1000  float64 `json:"leader_cpu_ms_per_1000_refreshes"`
	LeaderRefreshesPerS float64 `json:"leader_refreshes_per_s"`
	ServersCPUCores     float64 `json:"servers_cpu_cores"`
	RSSKiBPerWorker     float64 `json:"rss_kib_per_worker"`
	// HeapKiBPerWorker is the live heap after a collection, per worker:
	// RSS also holds garbage not yet returned to the system.
	HeapKiBPerWorker float64 `json:"heap_kib_per_worker"`
	// JoinRate is the pace of the joins (BENCH_SCALE_JOIN_RATE, workers
	// started a second; 0: as fast as 16 at a time go).
	JoinRate float64 `json:"join_rate_per_s"`
	// The CPU of this process (the workers) while they joined, and in the
	// measuring window, in cores.
	WorkersCPUJoinCores float64 `json:"workers_cpu_cores_joining"`
	WorkersCPUCores     float64 `json:"workers_cpu_cores"`
	// LoadAverage is the machine's /proc/loadavg (1, 5, 15 min) at the
	// end of the window: the machine is shared.
	LoadAverage string `json:"load_average"`
	// GOGC is the workers' process's (BENCH_SCALE_GOGC; default 100).
	GOGC int `json:"gogc"`
	// WorkerGossip is the simulated workers' gossip tuning
	// (BENCH_SCALE_WORKER_GOSSIP; "lan": memberlist's LAN defaults, as
	// the servers and every agent run).
	WorkerGossip string `json:"worker_gossip"`
	// SettleCores is BENCH_SCALE_SETTLE_CORES, SettleS how long after
	// the workers held fresh leases their process took to fall below it
	// (the window opens then).
	SettleCores float64 `json:"settle_below_cores"`
	SettleS     float64 `json:"settle_s"`
	// JoinVia is "all" when each worker's join names the three servers
	// (its --join listing them), "one" when it names one of them.
	JoinVia string `json:"join_via"`
	Note    string `json:"note,omitempty"`
}

// scaleServer is one server process of the benchmark.
type scaleServer struct {
	cmd         *exec.Cmd
	url, gossip string
	name        string
	logMu       sync.Mutex
	log         strings.Builder
	exited      chan struct{}
}

func startScaleServer(t *testing.T, bin, dir, name string, join string) *scaleServer {
	t.Helper()
	args := []string{"agent", "--server", "--bootstrap-expect", "3", "--node-name", name, "--data-dir", filepath.Join(dir, name),
		"--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--syslog-addr", "",
		"--log-level", "warn", "--max-conns", "8192", "--gossip-lan-timings", "--initial-limits", "lease_ttl_ms=6000,epoch_ms=2000"}
	if join != "" {
		args = append(args, "--join", join)
	}
	s := &scaleServer{cmd: exec.Command(bin, args...), name: name, exited: make(chan struct{})}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.logMu.Lock()
			if s.log.Len() < 1<<20 {
				s.log.WriteString(sc.Text() + "\n")
			}
			s.logMu.Unlock()
			if m := addrsRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
		_ = s.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			s.logMu.Lock()
			t.Logf("%s log:\n%s", name, tail(s.log.String(), 8000))
			s.logMu.Unlock()
		}
	})
	select {
	case m := <-found:
		s.url, s.gossip = m[1], m[3]
	case <-s.exited:
		t.Fatalf("%s exited before listening", name)
	case <-time.After(time.Minute):
		t.Fatalf("%s did not start listening", name)
	}
	return s
}

// rtts collects the lease round trips of the workers.
type rtts struct {
	mu     sync.Mutex
	on     bool
	d      []time.Duration
	errors int
}

func (r *rtts) observe(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return
	}
	if err != nil {
		r.errors++
		return
	}
	r.d = append(r.d, d)
}

func runScale(t *testing.T, bin string, n int) scaleRun {
	r := scaleRun{Workers: n}
	dir := t.TempDir()
	s1 := startScaleServer(t, bin, dir, "s1", "")
	s2 := startScaleServer(t, bin, dir, "s2", s1.gossip)
	s3 := startScaleServer(t, bin, dir, "s3", s1.gossip)
	servers := []*scaleServer{s1, s2, s3}
	var leader *scaleServer
	pollFor(t, "a leader among the three servers", func() bool {
		for _, s := range servers {
			if m, err := scrape(s.url); err == nil && m["batchpilot_raft_leader"] == 1 && m["batchpilot_lease_fresh"] == 1 {
				leader = s
				return true
			}
		}
		return false
	})

	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConns: 4 * n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute}}
	var obs rtts
	type worker struct {
		g   *cluster.Cluster
		srv *consensus.Server
	}
	var workers []worker
	defer func() {
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Add(1)
			go func() { defer wg.Done(); _ = w.srv.Shutdown(); _ = w.g.Shutdown() }()
		}
		wg.Wait()
	}()
	runtime.GC()
	rss0 := procRSS(os.Getpid())
	heap0 := liveHeap()
	joins := []string{s1.gossip, s2.gossip, s3.gossip}
	r.JoinRate = scaleJoinRate(t)
	r.JoinVia = envOr("BENCH_SCALE_JOIN", "all")
	if r.JoinVia != "all" && r.JoinVia != "one" {
		t.Fatalf("BENCH_SCALE_JOIN=%q: want all (each worker joins via the three servers) or one", r.JoinVia)
	}
	r.WorkerGossip = envOr("BENCH_SCALE_WORKER_GOSSIP", defaultWorkerGossip)
	tuning, err := parseGossipTuning(r.WorkerGossip)
	if err != nil {
		t.Fatalf("BENCH_SCALE_WORKER_GOSSIP: %v", err)
	}
	r.GOGC = debug.SetGCPercent(-1)
	debug.SetGCPercent(r.GOGC)
	var pace <-chan time.Time
	if r.JoinRate > 0 {
		tick := time.NewTicker(time.Duration(float64(time.Second) / r.JoinRate))
		defer tick.Stop()
		pace = tick.C
	}
	cpuJoin0 := procCPU(os.Getpid())
	start := time.Now()
	// Workers start at most 16 at a time and at most JoinRate a second,
	// each joining one of the servers, as a worker's --join names them.
	var mu sync.Mutex
	var startErr error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		if pace != nil {
			<-pace
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			name := fmt.Sprintf("w%04d", i+1)
			join := joins
			if r.JoinVia == "one" {
				join = []string{joins[i%3]}
			}
			g, err := cluster.New(cluster.Config{
				NodeName: name, DataDir: filepath.Join(dir, name), Role: cluster.RoleWorker, Version: "bench",
				BindAddr: "127.0.0.1:0", Join: join, Logger: discard, LANTimings: true, Tuning: tuning,
			})
			if err != nil {
				mu.Lock()
				startErr = fmt.Errorf("worker %d: %w", i+1, err)
				mu.Unlock()
				return
			}
			srv, err := consensus.New(consensus.Config{
				Worker: true, Gossip: g, Logger: discard, HTTPClient: hc, LeaseObserver: obs.observe,
				Health: func() cluster.Health { return cluster.Health{BatchSize: 100, WantBytes: 1 << 20} },
			})
			if err != nil {
				g.Shutdown()
				mu.Lock()
				startErr = fmt.Errorf("worker %d: %w", i+1, err)
				mu.Unlock()
				return
			}
			srv.Start()
			mu.Lock()
			workers = append(workers, worker{g, srv})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if startErr != nil {
		r.Note = startErr.Error()
		return r
	}
	lastJoin := time.Now()
	r.JoinS = lastJoin.Sub(start).Seconds()
	r.WorkersCPUJoinCores = (procCPU(os.Getpid()) - cpuJoin0) / r.JoinS
	// Every server must see every member alive; a run where they do not
	// within 2 minutes says how far they got, and goes on to the leases,
	// which do not depend on gossip once a worker knows the leader.
	want := n + 3
	r.AllAliveS = -1
alive:
	for _, s := range servers {
		best := 0
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var st consensus.Status
			if getJSON(s.url+"/api/v1/cluster", &st) == nil {
				best = max(best, st.Servers+st.Workers)
				if st.Servers+st.Workers == want {
					break
				}
			}
			if time.Now().After(deadline) {
				r.Note = fmt.Sprintf("%s saw at most %d of %d members alive within 2 minutes", s.name, best, want)
				break alive
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if r.Note == "" {
		r.AllAliveS = time.Since(lastJoin).Seconds()
	}
	runtime.GC()
	r.RSSKiBPerWorker = (procRSS(os.Getpid()) - rss0) / 1024 / float64(n)
	r.HeapKiBPerWorker = (liveHeap() - heap0) / 1024 / float64(n)

	// Let the workers settle on their leases (at most a minute), then
	// measure for 30 s.
	fresh := 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		fresh = 0
		for _, w := range workers {
			if _, ok := w.srv.Grant(time.Now()); ok {
				fresh++
			}
		}
		if fresh == n {
			break
		}
	}
	if fresh < n {
		r.Note += fmt.Sprintf("; %d of %d workers on a fresh lease before the window", fresh, n)
	}
	// The joins' gossip goes on after the last join: each joiner
	// re-gossips every member its push-pull taught it, a ⌈log10(n+1)⌉
	// times each, for tens of seconds at 1,000. On separate hosts that
	// tail costs each worker little; here it shares the two cores with
	// every lease client. Wait (at most 2 minutes) until the workers'
	// process uses less than BENCH_SCALE_SETTLE_CORES over 5 s (default
	// 0.3; 0 measures at once), so that the window measures the steady
	// state, and say how long that took.
	settle := 0.3
	if v := os.Getenv("BENCH_SCALE_SETTLE_CORES"); v != "" {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || x < 0 {
			t.Fatalf("BENCH_SCALE_SETTLE_CORES=%q: want cores, 0 for no wait", v)
		}
		settle = x
	}
	r.SettleCores = settle
	settle0 := time.Now()
	for settle > 0 && time.Since(settle0) < 2*time.Minute {
		c0 := procCPU(os.Getpid())
		<-time.After(5 * time.Second) // one sample of the process's CPU
		if (procCPU(os.Getpid())-c0)/5 < settle {
			break
		}
	}
	r.SettleS = time.Since(settle0).Seconds()
	// The leader may have changed while the workers joined: measure the
	// one in office when the window opens, and say so if it changes.
	for _, s := range servers {
		if m := scrapeRetry(s.url); m["batchpilot_raft_leader"] == 1 {
			leader = s
		}
	}
	m0 := scrapeRetry(leader.url)
	cpu0 := procCPU(leader.cmd.Process.Pid)
	self0 := procCPU(os.Getpid())
	var all0 float64
	for _, s := range servers {
		all0 += procCPU(s.cmd.Process.Pid)
	}
	t.Logf("%d workers: all alive %.2fs after the last join; the 30 s measuring window opens %.0fs later", n, r.AllAliveS, time.Since(lastJoin).Seconds())
	obs.mu.Lock()
	obs.on = true
	obs.mu.Unlock()
	at0 := time.Now()
	<-time.After(30 * time.Second) // the measuring window
	secs := time.Since(at0).Seconds()
	obs.mu.Lock()
	obs.on = false
	d := slices.Clone(obs.d)
	r.LeaseErrors = obs.errors
	obs.mu.Unlock()
	cpu := procCPU(leader.cmd.Process.Pid) - cpu0
	r.WorkersCPUCores = (procCPU(os.Getpid()) - self0) / secs
	r.LoadAverage = loadAverage()
	var all1 float64
	for _, s := range servers {
		all1 += procCPU(s.cmd.Process.Pid)
	}
	r.ServersCPUCores = (all1 - all0) / secs
	if m1 := scrapeRetry(leader.url); m1 != nil && m1["batchpilot_raft_leader"] != 1 {
		r.Note += fmt.Sprintf("; %s lost the leadership during the window", leader.name)
	} else if m1 != nil && m0 != nil {
		reqs := m1["batchpilot_lease_requests_total"] - m0["batchpilot_lease_requests_total"]
		r.LeaderRefreshesPerS = reqs / secs
		if reqs > 0 {
			r.LeaderCPUmsPer1000 = cpu * 1000 / reqs * 1000
		}
	}
	slices.Sort(d)
	r.LeaseRequests = len(d)
	if len(d) > 0 {
		q := func(p float64) float64 {
			return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
		}
		r.LeaseP50ms, r.LeaseP99ms, r.LeaseMaxMS = q(0.5), q(0.99), float64(d[len(d)-1].Microseconds())/1000
	}
	return r
}

// defaultWorkerGossip is the simulated workers' gossip tuning when
// BENCH_SCALE_WORKER_GOSSIP is not set: a profile for 1,000 members on one
// 2-core host (memberlist's WAN probe and gossip timings, each broadcast
// sent ⌈log10(n+1)⌉ times by a member instead of 4 times that), where
// every member's gossip is paid by the same two cores. The servers keep
// the LAN defaults. docs/cluster.md ("Scale") says what each setting
// saves and what one worker on its own host would pay with the defaults.
const defaultWorkerGossip = "probe_interval=5s,probe_timeout=3s,gossip_interval=500ms,suspicion_mult=6,push_pull_interval=60s,retransmit_mult=1"

// parseGossipTuning reads BENCH_SCALE_WORKER_GOSSIP: "lan" (nil: the
// LAN defaults) or comma-separated key=value pairs of the fields of
// cluster.GossipTuning: probe_interval, probe_timeout, gossip_interval,
// push_pull_interval (durations), gossip_nodes, retransmit_mult,
// suspicion_mult, awareness_max (counts).
func parseGossipTuning(s string) (*cluster.GossipTuning, error) {
	if s == "lan" {
		return nil, nil
	}
	var t cluster.GossipTuning
	durs := map[string]*time.Duration{"probe_interval": &t.ProbeInterval, "probe_timeout": &t.ProbeTimeout,
		"gossip_interval": &t.GossipInterval, "push_pull_interval": &t.PushPullInterval}
	ints := map[string]*int{"gossip_nodes": &t.GossipNodes, "retransmit_mult": &t.RetransmitMult,
		"suspicion_mult": &t.SuspicionMult, "awareness_max": &t.AwarenessMaxMultiplier}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("%q: want key=value or lan", kv)
		}
		if d, ok := durs[k]; ok {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return nil, fmt.Errorf("%s=%q: want a positive duration", k, v)
			}
			*d = x
		} else if n, ok := ints[k]; ok {
			x, err := strconv.Atoi(v)
			if err != nil || x <= 0 {
				return nil, fmt.Errorf("%s=%q: want a positive count", k, v)
			}
			*n = x
		} else {
			return nil, fmt.Errorf("unknown key %q", k)
		}
	}
	return &t, nil
}

// scaleJoinRate is BENCH_SCALE_JOIN_RATE, workers started a second
// (default 0: as fast as 16 at a time go).
func scaleJoinRate(t *testing.T) float64 {
	v := os.Getenv("BENCH_SCALE_JOIN_RATE")
	if v == "" {
		return 0
	}
	rate, err := strconv.ParseFloat(v, 64)
	if err != nil || rate < 0 {
		t.Fatalf("BENCH_SCALE_JOIN_RATE=%q: want a number of joins a second, 0 for no pacing", v)
	}
	return rate
}

// liveHeap is the heap in use after a collection, in bytes.
func liveHeap() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc)
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// scrapeRetry reads a server's metrics, trying for up to 10 s: in a
// saturated benchmark process one scrape can time out, which would lose
// the leader's figures for the whole size.
func scrapeRetry(url string) metrics {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		m, err := scrape(url)
		if err == nil || time.Now().After(deadline) {
			return m
		}
	}
}
