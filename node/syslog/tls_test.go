package syslog

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/batchpilot/batchpilot/consensus/testpki"
)

var loopback = []net.IP{net.IPv4(127, 0, 0, 1)}

// startTLSServer serves syslog over TLS on a free port with a certificate
// of ca; with clientCA set, client certificates are required.
func startTLSServer(t *testing.T, ca, clientCA *testpki.CA, c *collector) *Server {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{ca.TLSCertificate(t, "syslog-node", loopback)}}
	if clientCA != nil {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = clientCA.Pool()
	}
	s := NewServer(Config{Addr: "127.0.0.1:0", Handler: c.handle, Logger: testLogger(t)})
	if err := s.ListenTLS(cfg); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeTLS(context.Background()) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-served; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	return s
}

func TestTLS(t *testing.T) {
	ca := testpki.NewCA(t, "server-ca")
	clientCA := testpki.NewCA(t, "client-ca")
	otherCA := testpki.NewCA(t, "other-ca")
	for _, tc := range []struct {
		name           string
		requireClient  bool
		clientCert     *testpki.CA // nil: no client certificate
		trustServer    bool
		wantDelivered  bool
		wantHandshakes uint64 // failed handshakes counted
	}{
		{name: "octet-counted messages over TLS are delivered", trustServer: true, wantDelivered: true},
		{name: "a client certificate of the client CA is accepted when required", requireClient: true,
			clientCert: clientCA, trustServer: true, wantDelivered: true},
		{name: "a missing client certificate is refused when required", requireClient: true,
			trustServer: true, wantHandshakes: 1},
		{name: "a client certificate of another CA is refused", requireClient: true,
			clientCert: otherCA, trustServer: true, wantHandshakes: 1},
		{name: "a client that does not trust the server's certificate delivers nothing",
			trustServer: false, wantHandshakes: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &collector{}
			var req *testpki.CA
			if tc.requireClient {
				req = clientCA
			}
			s := startTLSServer(t, ca, req, c)
			ccfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
			if !tc.trustServer {
				ccfg.RootCAs = otherCA.Pool()
			}
			if tc.clientCert != nil {
				ccfg.Certificates = []tls.Certificate{tc.clientCert.TLSCertificate(t, "sender", nil, "sender")}
			}
			conn, err := tls.Dial("tcp", s.Addr(), ccfg)
			if err == nil {
				// TLS 1.3: a refused client certificate shows on the first read.
				_, err = conn.Write([]byte(octet(msg5424("one")) + octet(msg5424("two"))))
				if err == nil && !tc.wantDelivered {
					_, err = conn.Read(make([]byte, 1))
				}
				defer conn.Close()
			}
			if tc.wantDelivered {
				if err != nil {
					t.Fatalf("send: %v", err)
				}
				c.waitMessages(t, "one", "two")
				return
			}
			if err == nil {
				t.Fatal("the connection was not refused")
			}
			waitFor(t, "the failed handshake counted", func() bool { return s.HandshakeFailures() == tc.wantHandshakes })
			if c.len() != 0 {
				t.Fatalf("%d records delivered over a refused connection", c.len())
			}
		})
	}
}

func TestListenTLSNeedsACertificate(t *testing.T) {
	s := NewServer(Config{Addr: "127.0.0.1:0", Handler: (&collector{}).handle})
	if err := s.ListenTLS(&tls.Config{}); err == nil {
		t.Fatal("ListenTLS without a certificate: no error")
	}
}
