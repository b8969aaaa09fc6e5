package web

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/consensus/testpki"
)

// TestPeerClientOverTLS checks the scheme and the certificate check of the
// requests one node makes to another: with PeerTLS they go over https and
// trust the configured CA only.
func TestPeerClientOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	other := testpki.NewCA(t, "another CA")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(forwardedHeader) == "" {
			http.Error(w, `{"error":"not forwarded"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"tls":true}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.TLSCertificate(t, "peer", []net.IP{net.ParseIP("127.0.0.1")})}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	for _, tc := range []struct {
		name    string
		tls     *tls.Config
		wantErr string // "" : the answer is read
	}{
		{"a peer with a certificate of the configured CA is asked over https", &tls.Config{RootCAs: ca.Pool()}, ""},
		{"a peer whose certificate is of another CA is refused", &tls.Config{RootCAs: other.Pool()}, "certificate signed by unknown authority"},
		{"without PeerTLS the client speaks plain http, which a TLS peer refuses", nil, "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeerClient("self", 5*time.Second, tc.tls)
			var out struct {
				TLS bool `json:"tls"`
			}
			err := p.getJSON(context.Background(), addr, "/x", nil, &out)
			switch {
			case tc.wantErr == "" && (err != nil || !out.TLS):
				t.Fatalf("getJSON: %v, answer %+v", err, out)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("getJSON: %v, want an error with %q", err, tc.wantErr)
			}
			if tc.tls != nil && !strings.HasPrefix(p.baseURL(addr), "https://") {
				t.Fatalf("base URL %s, want https", p.baseURL(addr))
			}
		})
	}
}
