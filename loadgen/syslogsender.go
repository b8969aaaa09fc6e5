package loadgen

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// tcpSender writes syslog messages over one TCP connection per target. A
// batch counts as acknowledged once it is written to the socket: syslog has
// no acknowledgement, so a node that dies with the bytes in its buffers can
// lose records loadgen counted.
type tcpSender struct {
	timeout time.Duration
	conns   map[*target]*tcpConn
}

type tcpConn struct {
	net.Conn
	// gone is set by the reader when the peer closes or resets the
	// connection, so the next batch redials instead of writing into a dead
	// socket.
	gone atomic.Bool
}

func (s *tcpSender) send(ctx context.Context, t *target, wire []byte, _ *payload) attempt {
	c := s.conns[t]
	if c != nil && c.gone.Load() {
		c.Close()
		c, s.conns[t] = nil, nil
	}
	if c == nil {
		d := net.Dialer{Timeout: min(s.timeout, 5*time.Second)}
		nc, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return classify(err)
		}
		c = &tcpConn{Conn: nc}
		go func() {
			// The node never writes; a read returns only when the connection ends.
			io.Copy(io.Discard, nc)
			c.gone.Store(true)
		}()
		if s.conns == nil {
			s.conns = map[*target]*tcpConn{}
		}
		s.conns[t] = c
	}
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetWriteDeadline(deadline)
	if _, err := c.Write(wire); err != nil {
		c.Close()
		delete(s.conns, t)
		if ctx.Err() != nil {
			return attempt{kind: "canceled"}
		}
		return classify(err)
	}
	return attempt{acked: true}
}

func (s *tcpSender) close() {
	for _, c := range s.conns {
		c.Close()
	}
}

// udpSender sends each syslog message as one datagram. Nothing is ever
// acknowledged.
type udpSender struct {
	conns map[*target]net.Conn
}

func (s *udpSender) send(ctx context.Context, t *target, wire []byte, pl *payload) attempt {
	c := s.conns[t]
	if c == nil {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "udp", t.addr)
		if err != nil {
			return classify(err)
		}
		if s.conns == nil {
			s.conns = map[*target]net.Conn{}
		}
		s.conns[t], c = nc, nc
	}
	start := 0
	for _, end := range pl.ends {
		if _, err := c.Write(wire[start:end]); err != nil {
			c.Close()
			delete(s.conns, t)
			return classify(err)
		}
		start = end
	}
	return attempt{}
}

func (s *udpSender) close() {
	for _, c := range s.conns {
		c.Close()
	}
}
