package syslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Handler takes one record (the JSON object Parse makes) from the server.
//
// It is called from one goroutine per TCP connection and one for UDP, so
// calls run concurrently; calls for one connection are sequential and in the
// order the messages arrived. The handler owns rec: the server never touches
// it again.
//
// block tells the handler how to behave when it cannot take the record now:
//   - block=true (TCP): wait until it can. The server does not read from that
//     connection meanwhile, so the sender's writes stall: backpressure.
//   - block=false (UDP): return an error at once. The server counts the
//     record as dropped.
//
// Any error returned counts the record as dropped and the server goes on with
// the next message. Close waits for running calls, so a blocking handler must
// return once the node stops.
type Handler func(rec []byte, block bool) error

// Config configures a Server. Zero values take the defaults.
type Config struct {
	// Addr is host:port for both the TCP and the UDP listener. Port 0 picks a
	// free port (the same number for both).
	Addr string
	// Handler receives every well-formed record. Required.
	Handler Handler
	// MaxMessageBytes is the longest message accepted, without its framing.
	// Default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// MaxConnections is the most TCP connections served at once; more are
	// closed as soon as they are accepted. Default DefaultMaxConnections.
	MaxConnections int
	// IdleTimeout closes a TCP connection that sends nothing for this long.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// FrameTimeout closes a TCP connection that has begun a message and
	// not finished it within this much time spent waiting for its bytes (a
	// sender that stops, or trickles, mid-frame). Time the server itself
	// does not read (backpressure) does not count. Default
	// DefaultFrameTimeout.
	FrameTimeout time.Duration
	// Logger receives problems (rate-limited to one line per second per
	// reason) and, at debug level, connection events. Default slog.Default().
	Logger *slog.Logger
}

// Defaults for Config.
const (
	DefaultMaxMessageBytes = 64 << 10
	DefaultMaxConnections  = 1024
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultFrameTimeout    = 30 * time.Second
)

// ErrServerClosed is returned by Listen and Serve once Close has been called.
var ErrServerClosed = errors.New("syslog: server closed")

// Stats are the server's counters since it was created.
type Stats struct {
	// Received counts well-formed messages handed to the Handler (including
	// those it then refused).
	Received uint64
	// Malformed counts messages that did not parse, octet-counting frames
	// that could not be read, and streams that ended inside a message.
	Malformed uint64
	// TooLong counts messages longer than MaxMessageBytes.
	TooLong uint64
	// Dropped counts records the Handler refused with an error.
	Dropped uint64
	// Connections is the number of TCP connections open now.
	Connections uint64
	// Refused counts TCP connections closed at once because MaxConnections
	// were already open.
	Refused uint64
}

// Server receives syslog over TCP and UDP on one port. Create it with
// NewServer, then call Listen (optional) and Serve; Close stops it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	limiter logLimiter

	mu      sync.Mutex
	tcp     net.Listener
	udp     *net.UDPConn
	conns   map[net.Conn]struct{}
	serving bool
	closed  bool
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup

	received    atomic.Uint64
	malformed   atomic.Uint64
	tooLong     atomic.Uint64
	dropped     atomic.Uint64
	connections atomic.Uint64
	refused     atomic.Uint64
	handshakes  atomic.Uint64 // failed TLS handshakes (tls.go)
}

// NewServer returns a server for cfg, with defaults filled in. It does not
// bind anything yet.
func NewServer(cfg Config) *Server {
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = DefaultFrameTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		limiter: logLimiter{interval: time.Second},
		conns:   make(map[net.Conn]struct{}),
		done:    make(chan struct{}),
	}
}

// Listen binds the TCP and the UDP socket. With port 0 it binds TCP on a free
// port first and then UDP on the same number, retrying with another port if
// that one is taken for UDP.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.canListen("syslog"); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("syslog: listen address %q: %w", s.cfg.Addr, err)
	}
	attempts := 1
	if port == "0" {
		attempts = 20
	}
	var lc net.ListenConfig
	for i := 1; ; i++ {
		tl, err := lc.Listen(context.Background(), "tcp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("syslog: listen tcp %s: %w", s.cfg.Addr, err)
		}
		udpAddr := net.JoinHostPort(host, strconv.Itoa(tl.Addr().(*net.TCPAddr).Port))
		pc, err := lc.ListenPacket(context.Background(), "udp", udpAddr)
		if err != nil {
			tl.Close()
			if i < attempts {
				continue
			}
			return fmt.Errorf("syslog: listen udp %s: %w", udpAddr, err)
		}
		udp := pc.(*net.UDPConn)
		// A larger socket buffer absorbs bursts while the handler is busy;
		// the kernel caps it at its own maximum, so failure is harmless.
		_ = udp.SetReadBuffer(4 << 20)
		s.tcp, s.udp = tl, udp
		return nil
	}
}

// canListen says why the server cannot bind now, naming what in its errors
// ("syslog", "syslog tls"); the caller holds s.mu.
func (s *Server) canListen(what string) error {
	switch {
	case s.closed:
		return ErrServerClosed
	case s.tcp != nil:
		return errors.New(what + ": already listening")
	case s.cfg.Handler == nil:
		return errors.New(what + ": Config.Handler is nil")
	}
	return nil
}

// Addr returns the address the server listens on (TCP and UDP share the
// port), or Config.Addr before Listen.
func (s *Server) Addr() string {
	if a := s.TCPAddr(); a != nil {
		return a.String()
	}
	return s.cfg.Addr
}

// TCPAddr returns the TCP listener's address, or nil before Listen.
func (s *Server) TCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// UDPAddr returns the UDP socket's address, or nil before Listen.
func (s *Server) UDPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// Stats returns the counters. It is safe to call at any time.
func (s *Server) Stats() Stats {
	return Stats{
		Received:    s.received.Load(),
		Malformed:   s.malformed.Load(),
		TooLong:     s.tooLong.Load(),
		Dropped:     s.dropped.Load(),
		Connections: s.connections.Load(),
		Refused:     s.refused.Load(),
	}
}

// Serve accepts TCP connections and reads UDP datagrams until ctx is done or
// Close is called; then it closes everything, waits for running Handler calls
// and returns nil. It calls Listen first if that has not been done. It
// returns ErrServerClosed if the server was already closed.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrServerClosed
	case s.serving:
		s.mu.Unlock()
		return errors.New("syslog: Serve called twice")
	}
	s.serving = true
	listening := s.tcp != nil
	s.mu.Unlock()
	if !listening {
		if err := s.Listen(); err != nil {
			s.mu.Lock()
			s.serving = false
			s.mu.Unlock()
			return err
		}
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	tl, udp := s.tcp, s.udp
	s.wg.Add(1)
	s.mu.Unlock()
	go s.serveUDP(udp)

	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()

	s.log.Info("syslog listening", "tcp", tl.Addr().String(), "udp", udp.LocalAddr().String())
	s.acceptLoop(tl, "syslog")
	return nil
}

// acceptLoop hands every connection ln accepts to track until the server
// closes, then waits for the running handlers.
func (s *Server) acceptLoop(ln net.Listener, what string) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				s.wg.Wait()
				return
			}
			// Running out of file descriptors and the like passes: wait a
			// little, as net/http does, instead of giving up the listener.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.warn(reasonAccept, what+": accept failed, retrying", slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
			if !s.pause(backoff) {
				s.wg.Wait()
				return
			}
			continue
		}
		backoff = 0
		s.track(c)
	}
}

// Close stops accepting, closes the sockets and every connection, and waits
// until running Handler calls have returned. It is safe to call more than
// once and from any goroutine.
func (s *Server) Close() error {
	var errs []error
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		if s.tcp != nil {
			errs = append(errs, s.tcp.Close())
		}
		if s.udp != nil {
			errs = append(errs, s.udp.Close())
		}
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// pause waits for d, or less if the server closes; it reports whether the
// server is still open.
func (s *Server) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// track starts serving c, or refuses it when the server is full or closed.
func (s *Server) track(c net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	if len(s.conns) >= s.cfg.MaxConnections {
		s.mu.Unlock()
		// Counted before the close, so that whoever sees the connection
		// closed sees it counted.
		s.refused.Add(1)
		c.Close()
		s.warn(reasonRefused, "syslog: connection refused: too many connections",
			slog.String("remote", c.RemoteAddr().String()), slog.Int("max_connections", s.cfg.MaxConnections))
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.connections.Add(1)
	go s.serveConn(c)
}

// serveConn reads messages from one TCP connection until it ends.
func (s *Server) serveConn(c net.Conn) {
	remote := c.RemoteAddr().String()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connections.Add(^uint64(0))
		s.wg.Done()
	}()
	s.log.Debug("syslog connection opened", "remote", remote)

	ir := &idleReader{conn: c, timeout: s.cfg.IdleTimeout, frameTimeout: s.cfg.FrameTimeout}
	fr := newFrameReader(ir, s.cfg.MaxMessageBytes)
	ir.partial = fr.buffered
	pipe := s.newConnPipeline(remote)
	defer pipe.close()
	for {
		msg, err := fr.next()
		if err == nil {
			pipe.add(msg, fr.buffered() > 0)
			continue
		}
		pipe.submit()
		switch {
		case errors.Is(err, errTooLong):
			s.tooLong.Add(1)
			if fr.Mode() == framingNonTransparent {
				s.warn(reasonTooLong, "syslog: message too long, skipped",
					slog.String("remote", remote), slog.String("error", err.Error()))
				continue
			}
			s.warn(reasonTooLong, "syslog: message too long, closing connection (octet counting cannot skip it)",
				slog.String("remote", remote), slog.String("error", err.Error()))
		case errors.Is(err, errBadFrame):
			s.malformed.Add(1)
			s.warn(reasonBadFrame, "syslog: invalid frame, closing connection",
				slog.String("remote", remote), slog.String("error", err.Error()))
		case errors.Is(err, errTruncated):
			s.malformed.Add(1)
			s.warn(reasonTruncated, "syslog: connection closed inside a message",
				slog.String("remote", remote), slog.String("framing", fr.Mode().String()), slog.String("error", err.Error()))
		case err == io.EOF || s.isClosed():
			s.log.Debug("syslog connection closed", "remote", remote)
		case isTimeout(err) && fr.buffered() > 0:
			s.malformed.Add(1)
			s.warn(reasonTruncated, "syslog: sender stopped inside a message, closing connection",
				slog.String("remote", remote), slog.Int("bytes", fr.buffered()), slog.Duration("frame_timeout", s.cfg.FrameTimeout))
		case isTimeout(err):
			s.log.Debug("syslog connection idle, closing", "remote", remote, "idle_timeout", s.cfg.IdleTimeout)
		default:
			s.log.Debug("syslog connection read failed", "remote", remote, "error", err)
		}
		return
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveUDP reads datagrams, one message each, until the socket is closed.
func (s *Server) serveUDP(conn *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, 1<<16) // larger than any UDP payload
	h := s.newHandling(false)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.warn(reasonRead, "syslog: udp read failed", slog.String("error", err.Error()))
			if !s.pause(10 * time.Millisecond) {
				return
			}
			continue
		}
		if n > s.cfg.MaxMessageBytes {
			s.tooLong.Add(1)
			s.warn(reasonTooLong, "syslog: datagram too long, dropped",
				slog.String("remote", from.String()), slog.Int("bytes", n), slog.Int("limit", s.cfg.MaxMessageBytes))
			continue
		}
		h.from = from
		h.handle(buf[:n])
	}
}

// maxKeptScratch bounds the record buffer a connection keeps between
// messages.
const maxKeptScratch = 64 << 10

// handling parses messages of one connection (or of the UDP socket) and
// passes the records on. It is used by one goroutine.
type handling struct {
	s       *Server
	p       *parser
	scratch []byte
	block   bool
	remote  string         // TCP: the peer
	from    netip.AddrPort // UDP: the sender of the current datagram
}

func (s *Server) newHandling(block bool) *handling {
	return &handling{s: s, p: newParser(), block: block}
}

// handle parses msg and hands its record to the Handler. Blank messages
// (only trailer bytes, such as keep-alive newlines) are skipped.
func (h *handling) handle(msg []byte) {
	if len(trimTrailer(msg)) == 0 {
		return
	}
	s := h.s
	out, err := h.p.appendRecord(h.scratch[:0], msg, time.Now())
	if cap(out) <= maxKeptScratch {
		h.scratch = out[:0]
	} else {
		h.scratch = nil // one huge record should not pin memory for the connection's life
	}
	if err != nil {
		s.malformed.Add(1)
		s.warn(reasonMalformed, "syslog: malformed message", h.remoteAttr(),
			slog.String("error", err.Error()), slog.String("sample", string(head(msg))))
		return
	}
	rec := make([]byte, len(out))
	copy(rec, out)
	s.received.Add(1)
	if err := s.cfg.Handler(rec, h.block); err != nil {
		s.dropped.Add(1)
		s.warn(reasonDropped, "syslog: record dropped", h.remoteAttr(), slog.String("error", err.Error()))
	}
}

// remoteAttr is the sender's address for a log line.
func (h *handling) remoteAttr() slog.Attr {
	if h.remote != "" {
		return slog.String("remote", h.remote)
	}
	return slog.String("remote", h.from.String())
}

// warn logs a problem, at most once per second per reason; the line carries
// how many were held back since the previous one.
func (s *Server) warn(r reason, msg string, attrs ...slog.Attr) {
	ok, suppressed := s.limiter.allow(r, time.Now())
	if !ok {
		return
	}
	level := slog.LevelWarn
	if r == reasonAccept {
		level = slog.LevelError
	}
	attrs = append(attrs, slog.String("reason", r.String()), slog.Uint64("suppressed", suppressed))
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// idleReader reads from a connection with a read deadline IdleTimeout
// ahead, or nearer while a message is unfinished: the time spent waiting
// for one message's bytes adds up to at most frameTimeout.
type idleReader struct {
	conn         net.Conn
	timeout      time.Duration
	frameTimeout time.Duration
	partial      func() int    // bytes of an unfinished message, buffered
	waited       time.Duration // waiting for the unfinished message so far
}

func (r *idleReader) Read(p []byte) (int, error) {
	now := time.Now()
	wait := r.timeout
	inFrame := r.partial != nil && r.partial() > 0
	if inFrame {
		wait = min(wait, max(0, r.frameTimeout-r.waited))
	} else {
		r.waited = 0 // the wait for a message to begin is idle time
	}
	if err := r.conn.SetReadDeadline(now.Add(wait)); err != nil {
		return 0, err
	}
	n, err := r.conn.Read(p)
	if inFrame {
		r.waited += time.Since(now)
	}
	return n, err
}
