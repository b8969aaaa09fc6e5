package cluster

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
)

func newTestTransport(t *testing.T) *transport {
	t.Helper()
	tr, err := newTransport("127.0.0.1", 0, clustertest.Logger(t))
	if err != nil {
		t.Fatalf("new transport: %v", err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

func addrOf(tr *transport) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.Port())) }

func recvPacket(t *testing.T, tr *transport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(waitTimeout):
		t.Fatalf("no packet within %s", waitTimeout)
		return nil
	}
}

// Packets arrive whole, each in a buffer of its own length, from the
// sender's address: a packet kept by memberlist (queued for its handler)
// is not overwritten by the ones read after it, although the reader reuses
// one buffer.
func TestTransportDeliversEachPacketInItsOwnBuffer(t *testing.T) {
	a, b := newTestTransport(t), newTestTransport(t)
	packets := []struct {
		name string
		body []byte
	}{
		{"one byte", []byte{7}},
		{"a gossip message", bytes.Repeat([]byte("alive "), 50)},
		{"shorter than the one before", []byte("suspect")},
		{"a large packet", bytes.Repeat([]byte{0xab}, 60000)},
		{"a short one after the large one", []byte("ack")},
	}
	var got []*memberlist.Packet
	for _, p := range packets {
		// By name and by address, as memberlist's two write paths.
		if _, err := a.WriteToAddress(p.body, memberlist.Address{Addr: addrOf(b), Name: "b"}); err != nil {
			t.Fatalf("%s: write: %v", p.name, err)
		}
		got = append(got, recvPacket(t, b))
	}
	for i, p := range packets {
		g := got[i]
		if !bytes.Equal(g.Buf, p.body) {
			t.Errorf("%s: received %d bytes %.20q, want %d bytes %.20q", p.name, len(g.Buf), g.Buf, len(p.body), p.body)
		}
		if cap(g.Buf) != len(p.body) {
			t.Errorf("%s: buffer capacity %d for a %d-byte packet: it holds more than the packet", p.name, cap(g.Buf), len(p.body))
		}
		if g.From.String() != addrOf(a) {
			t.Errorf("%s: from %s, want %s", p.name, g.From, addrOf(a))
		}
		if g.Timestamp.IsZero() {
			t.Errorf("%s: no timestamp", p.name)
		}
	}
	// The other write path, an address string.
	if _, err := a.WriteTo([]byte("ping"), addrOf(b)); err != nil {
		t.Fatalf("write by address string: %v", err)
	}
	if p := recvPacket(t, b); string(p.Buf) != "ping" {
		t.Errorf("write by address string: received %q, want ping", p.Buf)
	}
}

// A stream dialled to the transport is handed to memberlist, and carries
// bytes both ways.
func TestTransportCarriesStreams(t *testing.T) {
	a, b := newTestTransport(t), newTestTransport(t)
	conn, err := a.DialAddressTimeout(memberlist.Address{Addr: addrOf(b), Name: "b"}, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	var in net.Conn
	select {
	case in = <-b.StreamCh():
	case <-time.After(waitTimeout):
		t.Fatalf("no stream within %s", waitTimeout)
	}
	defer in.Close()
	if _, err := conn.Write([]byte("push-pull")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("push-pull"))
	if _, err := io.ReadFull(in, got); err != nil || string(got) != "push-pull" {
		t.Fatalf("read %q, %v; want push-pull", got, err)
	}
	if _, err := in.Write([]byte("state")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len("state"))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "state" {
		t.Fatalf("read back %q, %v; want state", got, err)
	}
}

func TestTransportAdvertisesAddresses(t *testing.T) {
	tr := newTestTransport(t)
	tests := []struct {
		name     string
		ip       string
		port     int
		wantIP   string
		wantPort int
		wantErr  bool
	}{
		{"the bound address when none is given", "", 0, "127.0.0.1", tr.Port(), false},
		{"the given address and port", "10.1.2.3", 7946, "10.1.2.3", 7946, false},
		{"an IPv6 address", "fd00::1", 7000, "fd00::1", 7000, false},
		{"a name is refused", "gossip.example", 7946, "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip, port, err := tr.FinalAdvertiseAddr(tt.ip, tt.port)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %s:%d, want an error", ip, port)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ip.String() != tt.wantIP || port != tt.wantPort {
				t.Errorf("got %s:%d, want %s:%d", ip, port, tt.wantIP, tt.wantPort)
			}
		})
	}
}

// Shutdown stops the readers even when nobody takes what they read, and
// frees the port; a second Shutdown is harmless.
func TestTransportShutdownFreesThePort(t *testing.T) {
	tr, err := newTransport("127.0.0.1", 0, clustertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	port := tr.Port()
	// A packet nobody reads: the UDP reader is blocked handing it over.
	if _, err := tr.WriteTo([]byte("unread"), addrOf(tr)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	again, err := newTransport("127.0.0.1", port, clustertest.Logger(t))
	if err != nil {
		t.Fatalf("bind the freed port %d again: %v", port, err)
	}
	again.Shutdown()
}

func TestTransportRefusesABindAddressThatIsNotAnIP(t *testing.T) {
	if tr, err := newTransport("localhost", 0, clustertest.Logger(t)); err == nil {
		tr.Shutdown()
		t.Fatal("bound to a host name, want an error")
	}
}
