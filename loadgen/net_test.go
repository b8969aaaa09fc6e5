package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startSinksim(t *testing.T, cfg sinksim.Config) *sinksim.Server {
	t.Helper()
	s, err := sinksim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ackedIDs(t *testing.T, b []byte) []string {
	t.Helper()
	ids := strings.Fields(string(b))
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %s acknowledged twice", id)
		}
		seen[id] = true
	}
	return ids
}

// A real receiver on 127.0.0.1 that stalls for a second: every record it
// held shows a latency of at least the time from its intended send time to
// the end of the stall (lower bounds only: a busy machine can only add).
func TestHTTPStallShowsInLatency(t *testing.T) {
	var (
		mu       sync.Mutex
		stallEnd time.Time
		held     = map[string]bool{}
	)
	idRE := regexp.MustCompile(`"id":"([^"]+)"`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := string(idRE.FindSubmatch(body)[1])
		seq, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
		mu.Lock()
		if stallEnd.IsZero() && seq >= 200 { // the record due at 1s begins the stall
			stallEnd = time.Now().Add(time.Second)
		}
		end := stallEnd
		if time.Now().Before(end) {
			held[id] = true
		}
		mu.Unlock()
		if d := time.Until(end); d > 0 {
			time.Sleep(d) // the receiver's stall, not the test waiting
		}
		w.Write([]byte(`{"accepted":1}`))
	}))
	defer srv.Close()

	var obs observed
	rep := mustRun(t, context.Background(), Config{
		Targets: []string{srv.URL}, RunID: "stall", Concurrency: 8, observe: obs.hook,
		Defaults: Phase{Rate: 200, Batch: 1, Duration: Duration(3 * time.Second)},
	})
	if rep.Totals.Delivered != 600 {
		t.Fatalf("delivered %d of 600", rep.Totals.Delivered)
	}
	mu.Lock()
	defer mu.Unlock()
	checked := 0
	for _, b := range obs.batches {
		id := "stall-" + strconv.FormatInt(b.c.seq, 10)
		if !held[id] {
			continue
		}
		checked++
		if want := stallEnd.Sub(b.c.due); b.latency < want {
			t.Errorf("%s was held until the stall ended, %v after its intended time, but shows %v", id, want, b.latency)
		}
	}
	if checked == 0 {
		t.Fatal("no record was held by the stall")
	}
	if rep.Series[1].Max < 1000 {
		t.Errorf("second 1 shows max %.0fms, want the 1s stall", rep.Series[1].Max)
	}
}

// Every id in --acked was accepted by the target (here sinksim keeping
// ids), and every accepted record is acknowledged.
func TestAckedIDsReachedTheTarget(t *testing.T) {
	s := startSinksim(t, sinksim.Config{KeepIDs: true, Cost: sinksim.Cost{PerRequest: time.Millisecond}})
	var acked bytes.Buffer
	gz := true
	rep := mustRun(t, context.Background(), Config{
		Targets: []string{s.URL()}, Acked: &acked, Count: 1000,
		Defaults: Phase{Rate: 5000, Batch: 50, Gzip: &gz, RecordSize: Size{Dist: "uniform", Min: 100, Max: 900}},
	})
	ids := ackedIDs(t, acked.Bytes())
	if len(ids) != 1000 || rep.Totals.Acked != 1000 {
		t.Fatalf("%d ids acknowledged, report says %d; want 1000", len(ids), rep.Totals.Acked)
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, rep.RunID+"-") || !s.HasID(id) {
			t.Fatalf("acknowledged id %s is not at the target", id)
		}
	}
	if st := s.Stats(); st.Records != 1000 || st.Duplicates != 0 || st.WireBytes >= st.Bytes {
		t.Errorf("target stats %+v: want 1000 records, no duplicates, gzip on the wire", st)
	}
}

// Injected 429s and 503s reach the generator as errors it retries until the
// batch is accepted.
func TestInjectedErrorsShowAsRetries(t *testing.T) {
	s := startSinksim(t, sinksim.Config{ErrorRate: 0.3, ErrorKinds: []string{"429", "503"}, RetryAfter: 0, Seed: 9})
	rep := mustRun(t, context.Background(), Config{
		Targets: []string{s.URL()}, Count: 400, Concurrency: 4, Retries: 30,
		Defaults: Phase{Batch: 10},
	})
	tot := rep.Totals
	if tot.Delivered != 400 || tot.Failed != 0 {
		t.Fatalf("delivered %d failed %d, want 400 and 0", tot.Delivered, tot.Failed)
	}
	if tot.Retries == 0 || tot.Errors["429"] == 0 || tot.Errors["503"] == 0 {
		t.Errorf("retries %d errors %v, want retries of both kinds", tot.Retries, tot.Errors)
	}
	if tot.Retries != tot.Errors["429"]+tot.Errors["503"] || tot.Requests != 40+tot.Retries {
		t.Errorf("retries %d, errors %v, requests %d: every error should be one retry", tot.Retries, tot.Errors, tot.Requests)
	}
	if st := s.Stats(); st.Records != 400 || st.Rejected["429"]+st.Rejected["503"] != tot.Retries {
		t.Errorf("target accepted %d records and rejected %v; the generator retried %d", st.Records, st.Rejected, tot.Retries)
	}
}

func TestInjectedTimeoutsShowAsRetries(t *testing.T) {
	s := startSinksim(t, sinksim.Config{ErrorRate: 0.2, ErrorKinds: []string{"timeout"}, Seed: 4})
	rep := mustRun(t, context.Background(), Config{
		Targets: []string{s.URL()}, Count: 200, Concurrency: 4, Retries: 20, Timeout: 200 * time.Millisecond,
		Defaults: Phase{Batch: 10},
	})
	if rep.Totals.Delivered != 200 || rep.Totals.Errors["timeout"] == 0 || rep.Totals.Retries < rep.Totals.Errors["timeout"] {
		t.Errorf("delivered %d, errors %v, retries %d: want all delivered after timeouts and retries",
			rep.Totals.Delivered, rep.Totals.Errors, rep.Totals.Retries)
	}
}

// refusingAddr is a loopback address nothing listens on.
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFailoverToALiveTarget(t *testing.T) {
	s := startSinksim(t, sinksim.Config{})
	rep := mustRun(t, context.Background(), Config{
		Targets: []string{"http://" + refusingAddr(t), s.URL()}, Count: 500, Concurrency: 2,
		Defaults: Phase{Batch: 10},
	})
	if rep.Totals.Delivered != 500 || rep.Totals.Errors["conn"] == 0 {
		t.Errorf("delivered %d errors %v: want all 500 delivered after connection errors", rep.Totals.Delivered, rep.Totals.Errors)
	}
	// Failover keeps the dead target out after it fails: only a few tries.
	if n := rep.Totals.Errors["conn"]; n > 10 {
		t.Errorf("%d connection errors: the dead target kept being tried", n)
	}
	if st := s.Stats(); st.Records != 500 {
		t.Errorf("live target got %d records, want 500", st.Records)
	}
}

// syslogMsg is what an RFC 5424 message from loadgen looks like.
var syslogMsg = regexp.MustCompile(`^<(\d+)>1 \S+ \S+ loadgen \d+ - \[loadgen@32473 id="([^"]+)"( f\d+="[^"]*")*\] \S.*$`)

// syslogReceiver collects the ids of the messages it gets.
type syslogReceiver struct {
	mu  sync.Mutex
	ids map[string]int
	bad []string
}

func (r *syslogReceiver) add(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := syslogMsg.FindStringSubmatch(msg)
	if m == nil {
		r.bad = append(r.bad, msg)
		return
	}
	r.ids[m[2]]++
}

func (r *syslogReceiver) has(ids []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if r.ids[id] == 0 {
			return false
		}
	}
	return true
}

func (r *syslogReceiver) serveTCP(t *testing.T, octet bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if !octet {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						r.add(strings.TrimSuffix(line, "\n"))
						continue
					}
					lenStr, err := br.ReadString(' ')
					if err != nil {
						return
					}
					n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
					if err != nil {
						r.add("bad octet count " + lenStr)
						return
					}
					msg := make([]byte, n)
					if _, err := io.ReadFull(br, msg); err != nil {
						return
					}
					r.add(string(msg))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSyslogOverTCP(t *testing.T) {
	for _, framing := range []string{"octet", "newline"} {
		t.Run(framing, func(t *testing.T) {
			rcv := &syslogReceiver{ids: map[string]int{}}
			addr := rcv.serveTCP(t, framing == "octet")
			var acked bytes.Buffer
			rep := mustRun(t, context.Background(), Config{
				Targets: []string{"tcp://" + addr}, Count: 1000, Acked: &acked,
				Defaults: Phase{Rate: 10_000, Batch: 25, Framing: framing, RecordSize: Size{Dist: "normal", Mean: 300, StdDev: 80, Min: 120}},
			})
			ids := ackedIDs(t, acked.Bytes())
			if len(ids) != 1000 || rep.Totals.Acked != 1000 {
				t.Fatalf("%d ids acknowledged (written), report %d; want 1000", len(ids), rep.Totals.Acked)
			}
			waitFor(t, "the receiver to read every written message", func() bool { return rcv.has(ids) })
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if len(rcv.bad) > 0 {
				t.Errorf("%d malformed messages, first %q", len(rcv.bad), rcv.bad[0])
			}
			if len(rcv.ids) != 1000 {
				t.Errorf("receiver has %d ids, want 1000", len(rcv.ids))
			}
		})
	}
}

func TestSyslogOverUDPIsNeverAcknowledged(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rcv := &syslogReceiver{ids: map[string]int{}}
	go func() {
		buf := make([]byte, 70_000)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			rcv.add(string(buf[:n]))
		}
	}()
	var acked bytes.Buffer
	rep := mustRun(t, context.Background(), Config{
		Targets: []string{"udp://" + pc.LocalAddr().String()}, Count: 200, Acked: &acked,
		Defaults: Phase{Rate: 2000, Batch: 10},
	})
	if rep.Totals.Delivered != 200 || rep.Totals.Acked != 0 || acked.Len() != 0 {
		t.Errorf("delivered %d acked %d (%d bytes of ids): want 200 sent, none acknowledged",
			rep.Totals.Delivered, rep.Totals.Acked, acked.Len())
	}
	waitFor(t, "a datagram", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.ids) > 0
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) > 0 {
		t.Errorf("malformed datagram %q (one message per datagram, no framing)", rcv.bad[0])
	}
}

// A scenario may move from HTTP to syslog: each phase goes to the targets
// of its protocol.
func TestPhasesPickTargetsByProtocol(t *testing.T) {
	s := startSinksim(t, sinksim.Config{KeepIDs: true})
	rcv := &syslogReceiver{ids: map[string]int{}}
	addr := rcv.serveTCP(t, true)
	sc, err := ParseScenario([]byte(`{"phases": [
		{"name": "http", "protocol": "http", "rate": 1000, "count": 300},
		{"name": "syslog", "protocol": "tcp", "rate": 1000, "count": 200}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var acked bytes.Buffer
	rep := mustRun(t, context.Background(), Config{Targets: []string{s.URL(), "tcp://" + addr}, Scenario: sc, Acked: &acked})
	ids := ackedIDs(t, acked.Bytes())
	if len(ids) != 500 {
		t.Fatalf("%d acknowledged, want 500", len(ids))
	}
	if s.Stats().Records != 300 {
		t.Errorf("HTTP target got %d records, want 300", s.Stats().Records)
	}
	waitFor(t, "the syslog receiver to get 200 messages", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.ids) == 200
	})
	if rep.Phases[1].Protocol != "tcp" || rep.Phases[1].Acked != 200 {
		t.Errorf("phase 2: %+v", rep.Phases[1])
	}
}
