package main

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/consensus/testpki"
)

// servedSerial is the serial number of the certificate a new TLS
// connection to addr is served.
func servedSerial(t *testing.T, addr string, ca *testpki.CA) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// replaceFile writes data to path the way deploy tools do: a new file
// renamed over the old one.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestTLSCertificateRotationUnderLoad serves HTTPS (and Raft over mutual
// TLS) under load, then replaces the certificate and key and sends SIGHUP:
// first with a broken certificate, which is refused while the old one stays
// in use, then with a good one, which new connections get at once. The
// process never restarts, the generator's requests all go through, and no
// acknowledged record is lost.
func TestTLSCertificateRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "batchpilot rotation CA")
	trustCA(t, ca)
	f := ca.WriteFiles(t, dir, "rot", loopbackIPs, "localhost")
	m := launchMember(t, t, nil, "rot", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--bootstrap-expect", "1",
		"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA, "--raft-tls")
	addr := strings.TrimPrefix(m.url, "https://")
	load := startLoad(t, []string{m.url}, 1000, "--tls-ca", f.CA)
	waitWritten(t, 500, m)
	first := servedSerial(t, addr, ca)
	reloads := func(result string) float64 {
		s, err := scrape(m.url)
		if err != nil {
			return -1
		}
		return s[`batchpilot_reloads_total{result="`+result+`"}`]
	}

	t.Run("a broken certificate is refused and the old one stays in use", func(t *testing.T) {
		replaceFile(t, f.Cert, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"))
		if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		pollFor(t, "the failed reload to be counted", func() bool { return reloads("error") == 1 })
		if got := servedSerial(t, addr, ca); got != first {
			t.Fatalf("after a refused reload the server presents serial %s, want the old %s", got, first)
		}
		if !strings.Contains(m.logs(), "reload failed; keeping what was in use") {
			t.Errorf("the log does not say the reload failed")
		}
	})
	t.Run("a new certificate is served to new connections without a restart", func(t *testing.T) {
		certPEM, keyPEM := ca.Issue(t, "rot", loopbackIPs, "localhost")
		replaceFile(t, f.Key, keyPEM)
		replaceFile(t, f.Cert, certPEM)
		if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		pollFor(t, "the successful reload to be counted", func() bool { return reloads("ok") == 1 })
		if got := servedSerial(t, addr, ca); got == first {
			t.Fatalf("after the reload the server still presents the old serial %s", got)
		}
		waitWritten(t, 500, m)
	})
	if t.Failed() {
		return
	}
	select {
	case err := <-m.exited:
		t.Fatalf("the agent exited during the rotation: %v", err)
	default:
	}
	rep := load.stop(t)
	if err := sigterm(t, m); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	out, err := runVerifyCmd(t, load.acked, m.dir)
	tot := rep.Totals
	t.Logf("loadgen: %d sent, %d acknowledged, %d failed, %d retries, errors %v; verify: %s",
		tot.Sent, tot.Acked, tot.Failed, tot.Retries, tot.Errors, out)
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
	if tot.Failed != 0 {
		t.Errorf("%d records failed across the rotation", tot.Failed)
	}
}
