package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// DefaultTLSPort is the port RFC 5425 assigns to syslog over TLS.
const DefaultTLSPort = 6514

// HandshakeTimeout bounds a TLS handshake: a peer that connects and stays
// silent does not hold a connection slot for the whole idle timeout.
const HandshakeTimeout = 10 * time.Second

// ListenTLS binds Config.Addr for syslog over TLS (RFC 5425): TCP only, no
// UDP, and every connection a TLS server connection with config. Messages
// are framed as on plain TCP: RFC 5425 octet counting, and newline framing
// for senders that use it anyway, detected per connection.
//
// config is used for every handshake, so a config whose GetCertificate (or
// GetConfigForClient) returns the current certificate serves a reloaded
// certificate to new connections without a restart. Require client
// certificates with ClientAuth and ClientCAs. Serve it with ServeTLS.
func (s *Server) ListenTLS(config *tls.Config) error {
	if config == nil || (len(config.Certificates) == 0 && config.GetCertificate == nil && config.GetConfigForClient == nil) {
		return errors.New("syslog tls: no certificate configured")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.canListen("syslog tls"); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("syslog tls: listen tcp %s: %w", s.cfg.Addr, err)
	}
	s.tcp = &tlsListener{Listener: ln, config: config, s: s}
	return nil
}

// ServeTLS accepts TLS connections on the listener of ListenTLS until ctx
// is done or Close is called; then it closes every connection, waits for
// running Handler calls and returns nil. Each connection is served as a
// plain TCP one is, with the same limits and backpressure.
func (s *Server) ServeTLS(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrServerClosed
	case s.serving:
		s.mu.Unlock()
		return errors.New("syslog tls: ServeTLS called twice")
	case s.tcp == nil:
		s.mu.Unlock()
		return errors.New("syslog tls: ServeTLS before ListenTLS")
	}
	s.serving = true
	ln := s.tcp
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	s.log.Info("syslog over TLS listening", "tcp", ln.Addr().String())
	s.acceptLoop(ln, "syslog tls")
	return nil
}

// HandshakeFailures counts TLS handshakes that failed: a client that does
// not trust our certificate, sends no or a wrong client certificate, or
// speaks plain TCP to the TLS port.
func (s *Server) HandshakeFailures() uint64 { return s.handshakes.Load() }

// tlsListener makes every accepted connection a TLS server connection.
type tlsListener struct {
	net.Listener
	config *tls.Config
	s      *Server
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.config), s: l.s}, nil
}

// tlsConn completes the handshake on its first Read, within
// HandshakeTimeout, and counts it when it fails. It is read by one
// goroutine, the connection's reader.
type tlsConn struct {
	*tls.Conn
	s         *Server
	handshook bool
}

func (c *tlsConn) Read(p []byte) (int, error) {
	if !c.handshook {
		c.handshook = true
		ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
		err := c.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.s.handshakes.Add(1)
			c.s.warn(reasonRead, "syslog tls: handshake failed", slog.String("remote", c.RemoteAddr().String()),
				slog.String("error", err.Error()))
			return 0, fmt.Errorf("tls handshake: %w", err)
		}
	}
	return c.Conn.Read(p)
}
