package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	stdlog "log"
	"log/slog"
	"os"
	"strings"
)

// agentTLS is what the agent's --tls-* flags load: nil fields are off.
type agentTLS struct {
	// server is the HTTPS configuration of --http-addr.
	server *tls.Config
	// peer is the client configuration for requests to other nodes' APIs.
	peer *tls.Config
	// raft is this node's certificate and the CA, for Raft's mutual TLS.
	raft *tls.Config
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
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return agentTLS{}, fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	pool, err := loadCA(c.TLSCA) // nil without --tls-ca: the system roots
	if err != nil {
		return agentTLS{}, err
	}
	t := agentTLS{
		server: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		peer:   &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
	}
	if c.RaftTLS {
		t.raft = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool}
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
