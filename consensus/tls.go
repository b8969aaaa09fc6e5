package consensus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStreamLayer is a raft.StreamLayer over mutual TLS: every Raft
// connection, in either direction, presents this node's certificate and
// checks the other end's against the cluster's CA.
//
// A server that dials another checks that the other's certificate chains
// to the cluster's CA and names the server it dialed: the host of its Raft
// address (an IP SAN, or a DNS SAN for a name), as Consul does with
// verify_server_hostname. A certificate of the cluster's CA issued to
// another node is refused, so a node cannot stand in for a server by
// taking its address. A server that is dialed checks the chain of the
// dialer's certificate only (its source address is not its Raft address).
//
// Accept hands back connections whose handshake has not run yet: it runs
// on the connection's first read, in the transport's goroutine for that
// connection, so one slow or hostile client does not hold up the others.
// A failed handshake fails that read, and the transport drops the
// connection.
type tlsStreamLayer struct {
	advertise net.Addr
	tcp       net.Listener // for Addr and Close
	ln        net.Listener // tcp, with TLS server handshakes
	client    *tls.Config
}

// newTLSStreamLayer listens on bindAddr. cfg holds this node's certificate
// (Certificates) and the CA pool both sides verify against (RootCAs);
// advertise, when not nil, is the address the other servers dial. Like
// raft's TCP transport, it refuses an address the others cannot dial
// (0.0.0.0 without an advertise address).
func newTLSStreamLayer(bindAddr string, advertise net.Addr, cfg *tls.Config) (*tlsStreamLayer, error) {
	server, client, err := raftTLSConfigs(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, err
	}
	s := &tlsStreamLayer{advertise: advertise, tcp: ln, ln: tls.NewListener(ln, server), client: client}
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft address %s is not one the other servers can dial; give an advertise address", s.Addr())
	}
	return s, nil
}

// raftTLSConfigs derives the two ends' configurations from cfg: the server
// requires a client certificate from the CA; the client checks the server's
// chain against the CA (and Dial adds the name check; see tlsStreamLayer).
func raftTLSConfigs(cfg *tls.Config) (server, client *tls.Config, err error) {
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return nil, nil, errors.New("raft TLS: no certificate")
	}
	if cfg.RootCAs == nil {
		return nil, nil, errors.New("raft TLS: no CA to verify the other servers' certificates with")
	}
	minVersion := max(cfg.MinVersion, uint16(tls.VersionTLS12))

	server = cfg.Clone()
	server.MinVersion = minVersion
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.ClientCAs = cfg.RootCAs

	client = cfg.Clone()
	client.MinVersion = minVersion
	client.ServerName = ""
	// The standard check includes the host name, which an IP address
	// cannot meet in general; VerifyConnection does the chain check
	// instead, and runs although InsecureSkipVerify is set.
	client.InsecureSkipVerify = true
	client.VerifyConnection = verifyChain(cfg.RootCAs, x509.ExtKeyUsageServerAuth)
	// Present the certificate even when the server asks for another CA's:
	// the server's log then says the certificate is of the wrong CA rather
	// than that none was sent.
	if client.GetClientCertificate == nil && len(cfg.Certificates) > 0 {
		cert := &cfg.Certificates[0]
		client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return server, client, nil
}

// verifyChain checks that the peer's certificate chains to roots and may be
// used for usage.
func verifyChain(roots *x509.CertPool, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("raft TLS: the other server sent no certificate")
		}
		opts := x509.VerifyOptions{
			Roots:         roots,
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{usage},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("raft TLS: certificate of the server at %s: %w", cs.ServerName, err)
		}
		return nil
	}
}

// Dial connects to a Raft server and completes the handshake, all within
// timeout; the server's certificate must name the host it was dialed at.
func (s *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft TLS: server address %q: %w", address, err)
	}
	cfg := s.client.Clone()
	chain := s.client.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := chain(cs); err != nil {
			return err
		}
		if err := cs.PeerCertificates[0].VerifyHostname(host); err != nil {
			return fmt.Errorf("raft TLS: the certificate of the server at %s does not name it: %w", address, err)
		}
		return nil
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}

// Accept waits for the next connection; see tlsStreamLayer for when its
// handshake runs.
func (s *tlsStreamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }

// Close stops listening.
func (s *tlsStreamLayer) Close() error { return s.tcp.Close() }

// Addr is the address the other servers dial: the advertise address when
// one is given, else the bound one.
func (s *tlsStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.tcp.Addr()
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)
