package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	stdlog "log"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// agentTLS is what the agent's --tls-* flags load: nil fields are off.
type agentTLS struct {
	// server is the HTTPS configuration of --http-addr.
	server *tls.Config
	// peer is the client configuration for requests to other nodes' APIs.
	peer *tls.Config
	// raft is this node's certificate and the CA, for Raft's mutual TLS.
	raft *tls.Config
	// certs is the certificate server and raft present; its Reload
	// rereads the files (SIGHUP, see reload.go).
	certs *certStore
}

// certStore is this node's certificate and key as last read from
// --tls-cert and --tls-key. The HTTPS server and both ends of Raft's TLS
// ask it for the certificate at every handshake, so a Reload takes effect
// for the next connection; connections already open keep theirs.
type certStore struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func newCertStore(certFile, keyFile string) (*certStore, error) {
	s := &certStore{certFile: certFile, keyFile: keyFile}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload rereads the certificate and key. A pair that does not load, does
// not match, or has expired is refused and the one in use is kept.
func (s *certStore) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", s.certFile, s.keyFile, err)
	}
	if now := time.Now(); now.After(cert.Leaf.NotAfter) {
		return fmt.Errorf("--tls-cert %s expired at %s", s.certFile, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	s.cur.Store(&cert)
	return nil
}

// Serial is the serial number of the certificate in use, for the log.
func (s *certStore) Serial() string { return s.cur.Load().Leaf.SerialNumber.String() }

func (s *certStore) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

func (s *certStore) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// validateTLS checks the combinations of the TLS flags, before any file is
// read.
func (c *agentConfig) validateTLS() []string {
	var errs []string
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, "--tls-cert and --tls-key go together: give both (HTTPS) or neither (plain HTTP)")
	}
	if c.TLSCA != "" && c.TLSCert == "" && c.TLSKey == "" {
		errs = append(errs, "--tls-ca verifies the other nodes' certificates: it needs --tls-cert and --tls-key (every node of a cluster uses TLS, or none does)")
	}
	if c.RaftTLS {
		if c.TLSCert == "" || c.TLSKey == "" {
			errs = append(errs, "--raft-tls uses this node's certificate: it needs --tls-cert and --tls-key")
		}
		if c.TLSCA == "" {
			errs = append(errs, "--raft-tls needs --tls-ca: the CA that issued the nodes' certificates, which both ends of a Raft connection verify")
		}
	}
	return errs
}

// loadTLS reads the certificate, key and CA files. With no --tls-cert it
// returns a zero agentTLS: plain HTTP and plain Raft.
func (c *agentConfig) loadTLS() (agentTLS, error) {
	if c.TLSCert == "" {
		return agentTLS{}, nil
	}
	certs, err := newCertStore(c.TLSCert, c.TLSKey)
	if err != nil {
		return agentTLS{}, err
	}
	pool, err := loadCA(c.TLSCA) // nil without --tls-ca: the system roots
	if err != nil {
		return agentTLS{}, err
	}
	t := agentTLS{
		server: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.getCertificate},
		peer:   &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		certs:  certs,
	}
	if c.RaftTLS {
		t.raft = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool,
			GetCertificate: certs.getCertificate, GetClientCertificate: certs.getClientCertificate}
	}
	return t, nil
}

// loadCA reads a PEM bundle of CA certificates (--tls-ca); nil for "".
func loadCA(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read --tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// clientTLS is the TLS configuration of a command that talks to a node
// (members, limits, loadgen): the CA of --tls-ca, or nil for the defaults
// (the system roots).
func clientTLS(caFile string) (*tls.Config, error) {
	pool, err := loadCA(caFile)
	if err != nil || pool == nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// httpErrorLog sends the HTTP server's own log lines to slog: a failed TLS
// handshake (a plain-HTTP client, a client that does not trust our CA) at
// debug level, as it is the client's problem and the client is told; the
// rest at warn.
type httpErrorLog struct{ log *slog.Logger }

func newHTTPErrorLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(httpErrorLog{log: log}, "", 0)
}

func (w httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		w.log.Debug(msg)
	} else {
		w.log.Warn(msg)
	}
	return len(p), nil
}
