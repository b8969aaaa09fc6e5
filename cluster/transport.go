package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

const (
	// maxPacketSize is the largest UDP payload the reader accepts: a UDP
	// datagram's limit, as memberlist's own transport reads.
	maxPacketSize = 65536
	// udpRecvBufSize is the socket receive buffer asked of the kernel (it
	// halves the request until one is accepted), as memberlist's.
	udpRecvBufSize = 2 << 20
)

// transport is memberlist's NetTransport (v0.6.0, net_transport.go) for one
// bind address, with one change: its UDP reader reads every packet into one
// reusable 64 KiB buffer and hands memberlist a copy of exactly the packet's
// length. NetTransport allocates a fresh 64 KiB buffer per packet read and
// hands memberlist a slice of it, so each queued gossip message of a few
// hundred bytes held 64 KiB: in the scale benchmark (300 members in one
// process) that was 58 % of all bytes allocated and 147 MB of heap held by
// packets waiting in memberlist's queues. Streams (TCP) are as NetTransport
// handles them.
type transport struct {
	log      *slog.Logger
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	tcp      *net.TCPListener
	udp      *net.UDPConn
	bindAddr string
	shutdown atomic.Bool
	stop     chan struct{} // closed by Shutdown: a reader never blocks it
	stopOnce sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport binds TCP and UDP on the same port of bindAddr (an IP
// address). With port 0 the kernel picks the TCP port and UDP binds the
// same; if that port is taken for UDP it tries again, up to 10 times, as
// memberlist does for its own transport.
func newTransport(bindAddr string, port int, log *slog.Logger) (*transport, error) {
	ip := net.ParseIP(bindAddr)
	if ip == nil {
		return nil, fmt.Errorf("cluster: transport: bind address %q is not an IP address", bindAddr)
	}
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var t *transport
		if t, err = listen(ip, port, log); err == nil {
			t.bindAddr = bindAddr
			t.wg.Add(2)
			go t.tcpListen()
			go t.udpListen()
			return t, nil
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, fmt.Errorf("cluster: transport: %w", err)
}

var errAddrInUse = errors.New("address already in use")

func listen(ip net.IP, port int, log *slog.Logger) (*transport, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, wrapListenErr("TCP", ip, port, err)
	}
	if port == 0 {
		port = tcp.Addr().(*net.TCPAddr).Port
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		tcp.Close()
		return nil, wrapListenErr("UDP", ip, port, err)
	}
	if err := setUDPRecvBuf(udp); err != nil {
		tcp.Close()
		udp.Close()
		return nil, fmt.Errorf("resize the UDP receive buffer: %w", err)
	}
	return &transport{
		log:      log,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		stop:     make(chan struct{}),
		tcp:      tcp,
		udp:      udp,
	}, nil
}

func wrapListenErr(proto string, ip net.IP, port int, err error) error {
	if strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("listen %s on %s port %d: %w (%w)", proto, ip, port, errAddrInUse, err)
	}
	return fmt.Errorf("listen %s on %s port %d: %w", proto, ip, port, err)
}

// setUDPRecvBuf asks for a large socket receive buffer, halving the request
// until the kernel accepts one.
func setUDPRecvBuf(c *net.UDPConn) error {
	var err error
	for size := udpRecvBufSize; size > 0; size /= 2 {
		if err = c.SetReadBuffer(size); err == nil {
			return nil
		}
	}
	return err
}

// Port is the bound port (the one chosen when the bind port was 0).
func (t *transport) Port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is the address memberlist advertises: the given one,
// or a private IP of this host when bound to 0.0.0.0, or else the bound one.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, 0, fmt.Errorf("cluster: transport: advertise address %q is not an IP address", ip)
		}
		if ip4 := addr.To4(); ip4 != nil {
			addr = ip4
		}
		return addr, port, nil
	}
	if t.bindAddr == "0.0.0.0" {
		private, err := sockaddr.GetPrivateIP()
		if err != nil {
			return nil, 0, fmt.Errorf("cluster: transport: find a private address to advertise: %w", err)
		}
		if private == "" {
			return nil, 0, errors.New("cluster: transport: bound to 0.0.0.0, no private IP address found, and no advertise address given")
		}
		addr := net.ParseIP(private)
		if addr == nil {
			return nil, 0, fmt.Errorf("cluster: transport: private address %q is not an IP address", private)
		}
		return addr, t.Port(), nil
	}
	return t.tcp.Addr().(*net.TCPAddr).IP, t.Port(), nil
}

// WriteTo sends one packet over UDP.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends one packet over UDP. An ip:port address (what
// memberlist always passes) is parsed without allocating; a host name is
// resolved.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	var err error
	if ap, perr := netip.ParseAddrPort(a.Addr); perr == nil {
		_, err = t.udp.WriteToUDPAddrPort(b, ap)
	} else {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", a.Addr); err == nil {
			_, err = t.udp.WriteTo(b, ua)
		}
	}
	// The time after the write, as NetTransport: it underestimates a
	// little but accounts for delays before the write.
	return time.Now(), err
}

// PacketCh delivers the packets read from UDP.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream (TCP) to addr.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream (TCP) to a.Addr.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

// StreamCh delivers the accepted TCP connections.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the listeners and waits for the readers to stop. Safe to
// call more than once.
func (t *transport) Shutdown() error {
	t.stopOnce.Do(func() {
		t.shutdown.Store(true)
		close(t.stop)
		t.tcp.Close()
		t.udp.Close()
	})
	t.wg.Wait()
	return nil
}

// tcpListen accepts connections and hands them to memberlist, backing off
// on accept errors (5 ms doubling to 1 s) as NetTransport does.
func (t *transport) tcpListen() {
	defer t.wg.Done()
	const baseDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, baseDelay), maxDelay)
			t.log.Error("gossip: accept TCP connection", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.streamCh <- conn:
		case <-t.stop:
			conn.Close()
			return
		}
	}
}

// udpListen reads packets into one buffer and hands memberlist a copy of
// each, exactly as long as the packet: memberlist may keep a packet queued
// (its handoff queue holds up to HandoffQueueDepth), so it cannot be given
// the reused buffer itself.
func (t *transport) udpListen() {
	defer t.wg.Done()
	buf := make([]byte, maxPacketSize)
	for {
		n, addr, err := t.udp.ReadFrom(buf)
		ts := time.Now() // as close to the read as possible: it times probes
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.log.Error("gossip: read UDP packet", "err", err)
			continue
		}
		if n < 1 {
			t.log.Error("gossip: UDP packet too short", "bytes", n, "from", addr.String())
			continue
		}
		pkt := make([]byte, n)
		copy(pkt, buf[:n])
		select {
		case t.packetCh <- &memberlist.Packet{Buf: pkt, From: addr, Timestamp: ts}:
		case <-t.stop:
			return
		}
	}
}
