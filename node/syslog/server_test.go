package syslog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing the test after a generous
// deadline: busy CI machines are slow, but a broken server never gets there.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// collector is a Handler that keeps every record.
type collector struct {
	mu   sync.Mutex
	recs []map[string]any
	raw  [][]byte
}

func (c *collector) handle(rec []byte, block bool) error {
	var m map[string]any
	if err := json.Unmarshal(rec, &m); err != nil {
		return fmt.Errorf("record is not JSON: %v: %s", err, rec)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, m)
	c.raw = append(c.raw, rec)
	return nil
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

// messages returns the "message" field of every record, in arrival order.
func (c *collector) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.recs))
	for i, r := range c.recs {
		out[i], _ = r["message"].(string)
	}
	return out
}

func (c *collector) waitMessages(t *testing.T, want ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d records", len(want)), func() bool { return c.len() >= len(want) })
	if got := c.messages(); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("messages:\n got %q\nwant %q", got, want)
	}
}

// testLogger writes the server's log lines to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startServer starts a server on 127.0.0.1:0 and stops it when the test ends.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s := NewServer(cfg)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func dial(t *testing.T, network string, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial(network, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t *testing.T, c net.Conn, data string) {
	t.Helper()
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// waitClosedByServer reads until the server closes c (EOF or reset).
func waitClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		t.Fatal("server did not close the connection")
	}
}

func msg5424(text string) string { return "<13>1 2026-11-25T10:00:00Z host app - - - " + text }

func octet(msg string) string { return strconv.Itoa(len(msg)) + " " + msg }

func TestListenSharesOnePortForTCPAndUDP(t *testing.T) {
	s := startServer(t, Config{Handler: func([]byte, bool) error { return nil }})
	tcp, udp := s.TCPAddr().(*net.TCPAddr), s.UDPAddr().(*net.UDPAddr)
	if tcp.Port == 0 || tcp.Port != udp.Port {
		t.Fatalf("tcp %v and udp %v, want one nonzero port", tcp, udp)
	}
	if s.Addr() != tcp.String() {
		t.Fatalf("Addr() = %q, want %q", s.Addr(), tcp.String())
	}
}

func TestTCPOctetCounting(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle})
	conn := dial(t, "tcp", s)
	// Embedded newlines are fine with octet counting.
	write(t, conn, octet(msg5424("one"))+octet(msg5424("two\nlines"))+octet("<34>Oct 11 22:14:15 mymachine su: three"))
	c.waitMessages(t, "one", "two\nlines", "three")
	if st := s.Stats(); st.Received != 3 || st.Malformed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTCPNewlineFraming(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle})
	conn := dial(t, "tcp", s)
	write(t, conn, msg5424("one")+"\n"+msg5424("two")+"\r\n\n"+"<34>Oct 11 22:14:15 mymachine su: three\x00")
	c.waitMessages(t, "one", "two", "three")
}

func TestTCPMalformedMessagesDoNotLoseTheGoodOnes(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle})
	conn := dial(t, "tcp", s)
	write(t, conn, strings.Join([]string{
		msg5424("good 1"),
		"no priority at all",
		msg5424("good 2"),
		"<13>1 not-a-timestamp host app - - - bad header",
		`<13>1 - h a - - [sd@1 k="v" unterminated`,
		msg5424("good 3"),
		"<999>1 - - - - - - bad priority",
		msg5424("good 4"),
	}, "\n")+"\n")
	c.waitMessages(t, "good 1", "good 2", "good 3", "good 4")
	waitFor(t, "malformed count", func() bool { return s.Stats().Malformed == 4 })
	if st := s.Stats(); st.Received != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTCPOverlongLineIsSkipped(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle, MaxMessageBytes: 256})
	conn := dial(t, "tcp", s)
	write(t, conn, msg5424("before")+"\n"+msg5424(strings.Repeat("x", 100_000))+"\n"+msg5424("after")+"\n")
	c.waitMessages(t, "before", "after")
	if st := s.Stats(); st.TooLong != 1 || st.Malformed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTCPBinaryGarbageThenValid(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle, MaxMessageBytes: 1024})
	conn := dial(t, "tcp", s)
	garbage := make([]byte, 10_000)
	x := uint32(2463534242)
	for i := range garbage { // xorshift: deterministic noise, including LF and NUL
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		garbage[i] = byte(x)
	}
	garbage[0] = 0xff // not a digit, so newline framing
	write(t, conn, string(garbage)+"\n"+msg5424("valid after garbage")+"\n")
	waitFor(t, "the valid message", func() bool {
		m := c.messages()
		return len(m) > 0 && m[len(m)-1] == "valid after garbage"
	})
	st := s.Stats()
	if st.Malformed+st.TooLong == 0 {
		t.Fatalf("garbage not counted: %+v", st)
	}
	// The listener is still healthy.
	write(t, conn, msg5424("and more")+"\n")
	waitFor(t, "the next message", func() bool {
		m := c.messages()
		return m[len(m)-1] == "and more"
	})
}

func TestTCPOctetCountingBadLengthClosesConnection(t *testing.T) {
	for _, tc := range []struct{ name, tail string }{
		{"length that is not a number", "12x <13>1 - - -"},
		{"length over the limit", "99999 <13>1 - - -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c collector
			s := startServer(t, Config{Handler: c.handle, MaxMessageBytes: 1024})
			conn := dial(t, "tcp", s)
			write(t, conn, octet(msg5424("kept"))+tc.tail)
			waitClosedByServer(t, conn)
			c.waitMessages(t, "kept")
			waitFor(t, "connection gone", func() bool { return s.Stats().Connections == 0 })
			if st := s.Stats(); st.Malformed+st.TooLong != 1 {
				t.Fatalf("stats %+v", st)
			}
			// Other connections are unaffected.
			write(t, dial(t, "tcp", s), octet(msg5424("next connection")))
			c.waitMessages(t, "kept", "next connection")
		})
	}
}

func TestTCPClientDisconnectMidMessage(t *testing.T) {
	t.Run("octet counting: the cut frame is counted as malformed", func(t *testing.T) {
		var c collector
		s := startServer(t, Config{Handler: c.handle})
		conn := dial(t, "tcp", s)
		write(t, conn, octet(msg5424("whole"))+"80 <13>1 - - - cut sho")
		conn.Close()
		c.waitMessages(t, "whole")
		waitFor(t, "truncated frame counted and connection gone", func() bool {
			st := s.Stats()
			return st.Malformed == 1 && st.Connections == 0
		})
	})
	t.Run("newline framing: the unterminated last line is delivered", func(t *testing.T) {
		var c collector
		s := startServer(t, Config{Handler: c.handle})
		conn := dial(t, "tcp", s)
		write(t, conn, msg5424("whole")+"\n"+msg5424("no newline"))
		conn.Close()
		c.waitMessages(t, "whole", "no newline")
		waitFor(t, "connection gone", func() bool { return s.Stats().Connections == 0 })
	})
}

func TestUDP(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle, MaxMessageBytes: 512})
	conn := dial(t, "udp", s)
	// Loopback UDP can still drop under load; each datagram is sent once
	// and the test waits for it before sending the next.
	for _, tc := range []struct{ send, want string }{
		{msg5424("udp rfc5424"), "udp rfc5424"},
		{"<34>Oct 11 22:14:15 mymachine su: udp rfc3164\n", "udp rfc3164"},
	} {
		write(t, conn, tc.send)
		waitFor(t, tc.want, func() bool {
			m := c.messages()
			return len(m) > 0 && m[len(m)-1] == tc.want
		})
	}
	write(t, conn, "garbage")
	waitFor(t, "malformed datagram counted", func() bool { return s.Stats().Malformed == 1 })
	write(t, conn, msg5424(strings.Repeat("x", 600)))
	waitFor(t, "long datagram counted", func() bool { return s.Stats().TooLong == 1 })
	if st := s.Stats(); st.Received != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUDPRecordIsDroppedWhenHandlerIsFull(t *testing.T) {
	var blocks atomic.Int32
	full := errors.New("queue full")
	s := startServer(t, Config{Handler: func(rec []byte, block bool) error {
		if block {
			blocks.Add(1)
		}
		return full
	}})
	write(t, dial(t, "udp", s), msg5424("dropped"))
	waitFor(t, "drop counted", func() bool { return s.Stats().Dropped == 1 })
	if st := s.Stats(); st.Received != 1 || blocks.Load() != 0 {
		t.Fatalf("stats %+v, blocking calls %d; UDP must call with block=false", st, blocks.Load())
	}
}

// TestTCPBackpressure checks that a blocked Handler stops the server from
// reading: the sender's writes stall instead of the server buffering, and
// everything arrives once the handler is released.
func TestTCPBackpressure(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	var blockFlags atomic.Int64
	s := startServer(t, Config{Handler: func(rec []byte, block bool) error {
		if block {
			blockFlags.Add(1)
		}
		if calls.Add(1) == 1 {
			<-release
		}
		return nil
	}})
	conn := dial(t, "tcp", s).(*net.TCPConn)
	if err := conn.SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}

	// More than the kernel can buffer between the two ends.
	total := 2*maxSocketBuffer() + 4<<20
	line := []byte(msg5424(strings.Repeat("b", 8000)) + "\n")
	n := total/len(line) + 1
	var written atomic.Int64
	writeDone := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := conn.Write(line); err != nil {
				writeDone <- err
				return
			}
			written.Add(int64(len(line)))
		}
		writeDone <- nil
	}()

	waitFor(t, "the first record to reach the handler", func() bool { return calls.Load() == 1 })
	// Wait until the writer stalls: its progress stops changing.
	last, still := int64(-1), 0
	waitFor(t, "the writer to stall", func() bool {
		select {
		case err := <-writeDone:
			t.Fatalf("all %d bytes were written while the handler blocked (err %v): no backpressure", int64(n)*int64(len(line)), err)
		default:
		}
		w := written.Load()
		if w == last {
			still++
		} else {
			last, still = w, 0
		}
		return still >= 50
	})
	if got := calls.Load(); got != 1 {
		t.Fatalf("handler called %d times while blocked", got)
	}

	close(release)
	if err := <-writeDone; err != nil {
		t.Fatalf("write after release: %v", err)
	}
	waitFor(t, "every record", func() bool { return calls.Load() == int64(n) })
	if blockFlags.Load() != int64(n) {
		t.Fatalf("%d of %d calls had block=true", blockFlags.Load(), n)
	}
}

// maxSocketBuffer is the most one TCP socket may buffer in either direction.
func maxSocketBuffer() int {
	most := 8 << 20
	for _, f := range []string{"/proc/sys/net/ipv4/tcp_rmem", "/proc/sys/net/ipv4/tcp_wmem"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(b))
		if len(fields) == 3 {
			if v, err := strconv.Atoi(fields[2]); err == nil && v > most {
				most = v
			}
		}
	}
	return most
}

func TestMaxConnections(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle, MaxConnections: 1})
	first := dial(t, "tcp", s)
	write(t, first, msg5424("first")+"\n")
	c.waitMessages(t, "first")

	second := dial(t, "tcp", s)
	waitClosedByServer(t, second)
	if st := s.Stats(); st.Refused != 1 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}

	first.Close()
	waitFor(t, "first connection gone", func() bool { return s.Stats().Connections == 0 })
	write(t, dial(t, "tcp", s), msg5424("third")+"\n")
	c.waitMessages(t, "first", "third")
}

func TestIdleConnectionIsClosed(t *testing.T) {
	s := startServer(t, Config{Handler: func([]byte, bool) error { return nil }, IdleTimeout: 20 * time.Millisecond})
	waitClosedByServer(t, dial(t, "tcp", s))
	waitFor(t, "connection gone", func() bool { return s.Stats().Connections == 0 })
}

func TestCloseWaitsForHandlersAndStopsServe(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var returned atomic.Bool
	s := NewServer(Config{Addr: "127.0.0.1:0", Logger: testLogger(t), Handler: func([]byte, bool) error {
		close(entered)
		<-release
		returned.Store(true)
		return nil
	}})
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	waitFor(t, "listening", func() bool { return s.TCPAddr() != nil })
	write(t, dial(t, "tcp", s), msg5424("x")+"\n")
	<-entered

	// Close must not return before the handler does; record what it saw
	// at the moment it returned.
	handlerDoneAtClose := make(chan bool, 1)
	go func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		handlerDoneAtClose <- returned.Load()
	}()
	select {
	case <-handlerDoneAtClose:
		t.Fatal("Close returned while a handler was running")
	case <-served:
		t.Fatal("Serve returned while a handler was running")
	default:
	}
	close(release)
	if !<-handlerDoneAtClose {
		t.Fatal("Close returned before the handler")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := s.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v, want ErrServerClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestServeRequiresHandler(t *testing.T) {
	err := NewServer(Config{Addr: "127.0.0.1:0"}).Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Handler") {
		t.Fatalf("Serve without handler: %v", err)
	}
}

func TestRecordsHandedToHandlerAreNotReused(t *testing.T) {
	var c collector
	s := startServer(t, Config{Handler: c.handle})
	conn := dial(t, "tcp", s)
	var want []string
	var stream bytes.Buffer
	for i := 0; i < 200; i++ {
		m := fmt.Sprintf("message %d %s", i, strings.Repeat("p", i))
		want = append(want, m)
		stream.WriteString(msg5424(m) + "\n")
	}
	write(t, conn, stream.String())
	c.waitMessages(t, want...)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, raw := range c.raw {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil || m["message"] != want[i] {
			t.Fatalf("record %d changed after delivery: %s", i, raw)
		}
	}
}

func TestLogLimiterLetsOneLinePerReasonPerInterval(t *testing.T) {
	l := logLimiter{interval: time.Second}
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		r          reason
		at         time.Duration
		ok         bool
		suppressed uint64
	}{
		{reasonMalformed, 0, true, 0},
		{reasonMalformed, 100 * time.Millisecond, false, 0},
		{reasonMalformed, 900 * time.Millisecond, false, 0},
		{reasonTooLong, 900 * time.Millisecond, true, 0}, // reasons are limited apart
		{reasonMalformed, 1000 * time.Millisecond, true, 2},
		{reasonMalformed, 1500 * time.Millisecond, false, 0},
		{reasonMalformed, 5 * time.Second, true, 1},
	} {
		ok, n := l.allow(tc.r, t0.Add(tc.at))
		if ok != tc.ok || n != tc.suppressed {
			t.Fatalf("allow(%v, +%v) = %v, %d; want %v, %d", tc.r, tc.at, ok, n, tc.ok, tc.suppressed)
		}
	}
}

func TestTCPHandlerErrorDropsOnlyThatRecord(t *testing.T) {
	var c collector
	var calls atomic.Int32
	s := startServer(t, Config{Handler: func(rec []byte, block bool) error {
		if calls.Add(1) == 1 {
			return errors.New("node draining")
		}
		return c.handle(rec, block)
	}})
	write(t, dial(t, "tcp", s), msg5424("refused")+"\n"+msg5424("kept")+"\n")
	c.waitMessages(t, "kept")
	if st := s.Stats(); st.Dropped != 1 || st.Received != 2 {
		t.Fatalf("stats %+v", st)
	}
}
