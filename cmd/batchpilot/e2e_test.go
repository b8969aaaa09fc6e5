package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
	"github.com/batchpilot/batchpilot/node/sink"
)

// The end-to-end tests build the real binary and run it as a separate
// process on 127.0.0.1 with ports chosen by the kernel.

var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	if run := flag.Lookup("test.run"); run != nil && run.Value.String() == "^$" {
		// No test runs (a fuzz target or a benchmark alone, as .ci/fuzz.sh
		// runs them, in every fuzz worker too): nothing needs the binary.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "batchpilot-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "batchpilot")
	build := exec.Command("go", "build", "-race", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build batchpilot:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running batchpilot agent.
type proc struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:PORT
	syslog string // 127.0.0.1:PORT
	bulk   string // 127.0.0.1:PORT of --bulk-addr, "" when off
	sysTLS string // 127.0.0.1:PORT of --syslog-tls-addr, "" when off
	mu     sync.Mutex
	log    bytes.Buffer
	exited chan error
}

var listeningRE = regexp.MustCompile(`listening http=(\S+) syslog=(\S*) .* bulk=(\S*) syslog_tls=(\S*)`)

// spawnProc starts argv with its stderr kept in the proc's log; the first
// stderr line that re matches is sent on found (submatches), and the exit
// on p.exited. The caller registers its own cleanup.
func spawnProc(t testing.TB, argv []string, re *regexp.Regexp) (p *proc, found <-chan []string) {
	t.Helper()
	p = &proc{cmd: exec.Command(argv[0], argv[1:]...), exited: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				select {
				case ch <- m:
				default:
				}
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	return p, ch
}

// startProc runs `batchpilot agent` on free ports and waits until it says
// where it listens.
func startProc(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	full := append([]string{"agent", "--node-name", "e2e", "--data-dir", dataDir,
		"--http-addr", "127.0.0.1:0", "--syslog-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--bootstrap-expect", "1", "--max-linger", "20ms"}, args...)
	p, found := spawnProc(t, append([]string{binPath}, full...), listeningRE)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", p.logs())
		}
	})
	select {
	case m := <-found:
		p.url, p.syslog, p.bulk, p.sysTLS = m[1], m[2], m[3], m[4]
	case err := <-p.exited:
		t.Fatalf("agent exited before listening: %v\n%s", err, p.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("agent did not start listening within 60s\n%s", p.logs())
	}
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("agent did not exit within 60s of SIGTERM\n%s", p.logs())
		return nil
	}
}

func post(url, contentType, body string) (int, string, error) {
	resp, err := http.Post(url+"/v1/logs", contentType, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// sinkRecords reads every record the file sink under dataDir holds.
func sinkRecords(t *testing.T, dataDir string) []map[string]any {
	t.Helper()
	var out []map[string]any
	err := sink.ReadSegments(filepath.Join(dataDir, "sink"), func(line []byte) error {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("sink line is not JSON: %q: %w", line, err)
		}
		out = append(out, m)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// poll calls cond until it holds or the deadline passes.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !pollUntil(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// pollUntil calls cond until it holds (true) or a minute passes (false).
func pollUntil(cond func() bool) bool {
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func TestAgentWritesHTTPAndSyslogRecordsToTheFileSink(t *testing.T) {
	if _, err := exec.LookPath("logger"); err != nil {
		t.Fatalf("util-linux logger is needed for this test (.ci/run installs bsdutils): %v", err)
	}
	dir := t.TempDir()
	p := startProc(t, dir)

	// HTTP: the three body formats, one of them gzip.
	for i, tc := range []struct{ ct, body string }{
		{"application/x-ndjson", `{"id":"h1","msg":"a"}` + "\n" + `{"id":"h2","msg":"b"}` + "\n"},
		{"application/json", `[{"id":"h3"},{"id":"h4"}]`},
		{"text/plain", "plain-line-h5\n"},
	} {
		code, body, err := post(p.url, tc.ct, tc.body)
		if err != nil || code != 200 {
			t.Fatalf("request %d: %d %s %v", i, code, body, err)
		}
	}
	// Syslog through the real util-linux client, in each framing.
	port := p.syslog[strings.LastIndex(p.syslog, ":")+1:]
	for _, args := range [][]string{
		{"--tcp", "--rfc5424", "syslog-tcp-5424"},
		{"--udp", "--rfc3164", "syslog-udp-3164"},
		{"--tcp", "--octet-count", "--rfc5424", "syslog-tcp-octet"},
	} {
		cmd := exec.Command("logger", append([]string{"-n", "127.0.0.1", "-P", port, "-t", "e2e"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v %s", args, err, out)
		}
	}
	want := []string{"h1", "h2", "h3", "h4", "plain-line-h5", "syslog-tcp-5424", "syslog-udp-3164", "syslog-tcp-octet"}
	var recs []map[string]any
	poll(t, "every record in the sink", func() bool {
		recs = sinkRecords(t, dir)
		return len(missing(recs, want)) == 0
	})
	for _, r := range recs {
		if r["_node"] != "e2e" || r["_received_at"] == nil || r["_source"] == nil {
			t.Errorf("record without the node's fields: %v", r)
		}
		if r["_source"] == "syslog" && (r["app_name"] != "e2e" || r["facility"] == nil || r["timestamp"] == nil) {
			t.Errorf("syslog record without its syslog fields: %v", r)
		}
	}
	// The batcher counts a batch written once the sink's write returns, a
	// moment after the records are in the file: poll for the count.
	for path, want := range map[string]string{
		"/healthz": `"status":"ok"`,
		"/readyz":  `"status":"ready"`,
		"/metrics": "batchpilot_records_written_total 8\n",
	} {
		var code int
		var b []byte
		ok := pollUntil(func() bool {
			resp, err := http.Get(p.url + path)
			if err != nil {
				return false
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
			return code == 200 && strings.Contains(string(b), want)
		})
		if !ok {
			t.Errorf("GET %s: %d, want 200 with %q in:\n%.2000s", path, code, want, b)
		}
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
}

// missing returns the wanted ids or messages no record carries.
func missing(recs []map[string]any, want []string) []string {
	have := map[string]bool{}
	for _, r := range recs {
		for _, k := range []string{"id", "message"} {
			if s, ok := r[k].(string); ok {
				have[s] = true
			}
		}
	}
	var out []string
	for _, w := range want {
		if !have[w] {
			out = append(out, w)
		}
	}
	return out
}

func TestAgentRejectsBadInputAndKeepsWorking(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "--max-body-bytes", "4096", "--max-line-bytes", "512")

	for _, tc := range []struct {
		name, ct, body string
		status         int
		want           string
	}{
		{"malformed JSON names its line", "application/x-ndjson", "{\"id\":\"ok1\"}\n{\"id\": nope}\n", 400, `"line":2`},
		{"oversized body", "application/x-ndjson", strings.Repeat(`{"id":"big"}`+"\n", 400), 413, "over the limit"},
		{"over-long line", "application/x-ndjson", `{"x":"` + strings.Repeat("y", 600) + `"}`, 413, `"line":1`},
	} {
		code, body, err := post(p.url, tc.ct, tc.body)
		if err != nil || code != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: got %d %s %v, want %d with %s", tc.name, code, body, err, tc.status, tc.want)
		}
	}
	// A client that disconnects in the middle of its body.
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{\"id\":\"half")
	conn.Close()
	// Binary garbage on the syslog port, then a good message on a new connection.
	g, err := net.Dial("tcp", p.syslog)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = g.Write([]byte("\x00\xff\xfe garbage \x01\x02\n<<<>>>\n"))
	g.Close()
	s, err := net.Dial("tcp", p.syslog)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(s, "<14>1 2026-11-25T10:00:00Z host app - - - after-garbage\n")
	s.Close()
	if code, body, err := post(p.url, "application/x-ndjson", `{"id":"after-bad"}`+"\n"); err != nil || code != 200 {
		t.Fatalf("a good request after the bad ones: %d %s %v", code, body, err)
	}
	poll(t, "the good records", func() bool { return len(missing(sinkRecords(t, dir), []string{"after-bad", "after-garbage"})) == 0 })
	for _, r := range sinkRecords(t, dir) {
		if r["id"] == "ok1" || r["id"] == "big" || r["id"] == "half" {
			t.Errorf("a record of a refused request was written: %v", r)
		}
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
}

// sender posts requests of n records with unique ids until stopped, and
// appends the ids of every acknowledged request to acked.
type sender struct {
	mu      sync.Mutex
	acked   []string
	errors  int
	stopped chan struct{}
	done    chan struct{}
}

func startSender(url, prefix string, perRequest, workers int) *sender {
	s := &sender{stopped: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-s.stopped:
					return
				default:
				}
				var body strings.Builder
				ids := make([]string, perRequest)
				for i := range ids {
					ids[i] = fmt.Sprintf("%s-%d-%d-%d", prefix, w, seq, i)
					fmt.Fprintf(&body, `{"id":%q,"msg":"crash test record with some padding to look like a log line"}`+"\n", ids[i])
				}
				resp, err := client.Post(url+"/v1/logs", "application/x-ndjson", strings.NewReader(body.String()))
				if err != nil {
					s.mu.Lock()
					s.errors++
					s.mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				s.mu.Lock()
				if resp.StatusCode == 200 {
					s.acked = append(s.acked, ids...)
				} else {
					s.errors++
				}
				s.mu.Unlock()
			}
		}(w)
	}
	go func() { wg.Wait(); close(s.done) }()
	return s
}

func (s *sender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

func (s *sender) stop() []string {
	close(s.stopped)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

func writeIDs(t *testing.T, ids []string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "acked.txt")
	if err := os.WriteFile(f, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func runVerifyCmd(t *testing.T, ackedFile string, dirs ...string) (string, error) {
	t.Helper()
	args := []string{"verify", "--acked", ackedFile}
	for _, d := range dirs {
		args = append(args, "--data-dir", d)
	}
	out, err := exec.Command(binPath, args...).Output()
	return strings.TrimSpace(string(out)), err
}

func TestKill9LosesNoAcknowledgedRecord(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	s := startSender(p.url, "crash1", 50, 4)
	poll(t, "2000 acknowledged records", func() bool { return s.count() >= 2000 })
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	acked := s.stop()
	t.Logf("%d records acknowledged before kill -9", len(acked))

	// The restarted node repairs the torn tail and takes more records.
	p2 := startProc(t, dir)
	s2 := startSender(p2.url, "crash2", 50, 2)
	poll(t, "500 more acknowledged records", func() bool { return s2.count() >= 500 })
	acked = append(acked, s2.stop()...)
	if err := p2.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	out, err := runVerifyCmd(t, writeIDs(t, acked), dir)
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
	t.Logf("verify after kill -9 and restart: %s (%d acknowledged)", out, len(acked))
}

func TestSIGTERMDrainsAndAcknowledges(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "--max-linger", "200ms", "--batch-size", "5000", "--controller", "static")
	s := startSender(p.url, "drain", 100, 4)
	poll(t, "1000 acknowledged records", func() bool { return s.count() >= 1000 })
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v\n%s", err, p.logs())
	}
	acked := s.stop()
	out, err := runVerifyCmd(t, writeIDs(t, acked), dir)
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
}

func TestVerifyReportsLostRecords(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	if code, body, err := post(p.url, "application/x-ndjson", `{"id":"present"}`+"\n"); err != nil || code != 200 {
		t.Fatalf("%d %s %v", code, body, err)
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	out, err := runVerifyCmd(t, writeIDs(t, []string{"present", "absent"}), dir)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || out != "lost 1 duplicated 0" {
		t.Fatalf("verify = %q, %v; want %q and exit status 1", out, err, "lost 1 duplicated 0")
	}
}

// TestLoadgenAgainstARealAgent runs the bundled generator with a
// two-phase scenario (HTTP, then syslog over TCP) against a real agent and
// checks with verify that every acknowledged id is in the sink.
func TestLoadgenAgainstARealAgent(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	scenario := filepath.Join(t.TempDir(), "two-phases.json")
	if err := os.WriteFile(scenario, []byte(`{"name": "e2e", "phases": [
		{"name": "http", "pattern": "constant", "rate": 2000, "duration": "2s", "protocol": "http", "batch": 50},
		{"name": "syslog", "pattern": "ramp", "rate": 2000, "duration": "2s", "protocol": "tcp", "batch": 20}
	]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	acked := filepath.Join(t.TempDir(), "acked.txt")
	report := filepath.Join(t.TempDir(), "report.json")
	out, err := exec.Command(binPath, "loadgen", "--target", p.url+",tcp://"+p.syslog,
		"--scenario", scenario, "--acked", acked, "--report", report).CombinedOutput()
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out)
	}
	ids, err := os.ReadFile(acked)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(ids), "\n")
	if n < 4000 {
		t.Fatalf("only %d records acknowledged; want the two phases' ~6000\n%s", n, out)
	}
	// Syslog has no acknowledgement: its records count once written to
	// the socket, so stop the agent (it drains) before verifying.
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	res, err := runVerifyCmd(t, acked, dir)
	if err != nil || !strings.HasPrefix(res, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", res, err)
	}
	rep, err := os.ReadFile(report)
	if err != nil || !json.Valid(rep) {
		t.Fatalf("report: %v (valid JSON: %v)", err, json.Valid(rep))
	}
	t.Logf("loadgen → agent: %d acknowledged, verify: %s", n, res)
}

// TestHTTPSinkRetriesThenAnswers503AndRecovers points the agent's http sink
// at sinksim while sinksim answers every batch with 503: the sink retries,
// ingest answers 503, and once the downstream heals records are accepted
// again without a restart.
func TestHTTPSinkRetriesThenAnswers503AndRecovers(t *testing.T) {
	var down atomic.Bool
	sim := startSwitchedSinksim(t, &down)
	down.Store(true)
	p := startProc(t, t.TempDir(), "--sink", "http", "--sink-url", sim.URL()+"/bulk")

	code, body, err := post(p.url, "application/x-ndjson", `{"id":"during-outage"}`+"\n")
	if err != nil || code != 503 {
		t.Fatalf("during the outage: %d %s %v; want 503", code, body, err)
	}
	if got := sim.Stats().Requests; got < 2 {
		t.Fatalf("sinksim saw %d requests for one batch; want the first try and retries", got)
	}
	poll(t, "the sink's retries in /metrics", func() bool {
		m := metric(t, p.url, "batchpilot_sink_retries_total")
		return m >= 1
	})
	down.Store(false)
	poll(t, "a record accepted after the downstream healed", func() bool {
		code, _, err := post(p.url, "application/x-ndjson", `{"id":"after-outage"}`+"\n")
		return err == nil && code == 200
	})
	if !sim.HasID("after-outage") {
		t.Fatal("the acknowledged record is not at the downstream")
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
}

// startSwitchedSinksim runs sinksim keeping every id it accepts, answering
// every batch 503 (no Retry-After) while down is set and 200 otherwise
// (set it after the start: sinksim's phases count from then). It is closed
// when the test ends.
func startSwitchedSinksim(t *testing.T, down *atomic.Bool) *sinksim.Server {
	t.Helper()
	base := time.Now()
	one, none := 1.0, 0.0
	sim, err := sinksim.Start(sinksim.Config{
		Scenario: &sinksim.Scenario{Phases: []sinksim.Phase{
			{Name: "up", Duration: sinksim.Duration(time.Hour), ErrorRate: &none},
			{Name: "down", Duration: sinksim.Duration(time.Hour), ErrorRate: &one, ErrorKinds: []string{"503"}},
		}},
		RetryAfter: -1,
		KeepIDs:    true,
		// The switch moves sinksim's clock between its two phases.
		Now: func() time.Time {
			if down.Load() {
				return base.Add(90 * time.Minute)
			}
			return base
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// metric reads one unlabelled series from a node's /metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// TestAgentWritesToPostgres runs the agent with --sink postgres against the
// real server that .ci/run starts (BATCHPILOT_TEST_PG_DSN).
func TestAgentWritesToPostgres(t *testing.T) {
	dsn := os.Getenv("BATCHPILOT_TEST_PG_DSN")
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("BATCHPILOT_TEST_PG_DSN is not set: .ci/run starts PostgreSQL with .ci/postgres.sh")
		}
		t.Skip("BATCHPILOT_TEST_PG_DSN not set; eval \"$(.ci/postgres.sh start)\" to run this test")
	}
	table := fmt.Sprintf("e2e_%d", time.Now().UnixNano())
	p := startProc(t, t.TempDir(), "--sink", "postgres", "--sink-dsn", dsn, "--sink-table", table)
	code, body, err := post(p.url, "application/x-ndjson", `{"id":"pg-1","msg":"a"}`+"\n"+`{"id":"pg-2","msg":"b"}`+"\n")
	if err != nil || code != 200 {
		t.Fatalf("%d %s %v", code, body, err)
	}
	out, err := exec.Command("psql", dsn, "-At", "-c",
		"SELECT count(*), string_agg(record->>'id', ',' ORDER BY record->>'id') FROM "+table).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "2|pg-1,pg-2" {
		t.Fatalf("psql: %q %v; want both records once", out, err)
	}
	_ = exec.Command("psql", dsn, "-c", "DROP TABLE "+table).Run()
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
}
