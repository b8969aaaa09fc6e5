package consensus

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
	"github.com/batchpilot/batchpilot/consensus/testpki"
)

var loopbackIP = []net.IP{net.ParseIP("127.0.0.1")}

// raftTLS is the Raft TLS configuration of a node whose certificate is
// issued by issuer and which trusts trust.
func raftTLS(t *testing.T, issuer, trust *testpki.CA, name string) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{issuer.TLSCertificate(t, name, loopbackIP)}, RootCAs: trust.Pool()}
}

func listenTLSLayer(t *testing.T, cfg *tls.Config) *tlsStreamLayer {
	t.Helper()
	l, err := newTLSStreamLayer("127.0.0.1:0", nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestTLSStreamLayerConnectsOnlyNodesOfTheClusterCA(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	other := testpki.NewCA(t, "another CA")
	dialWith := func(cfg *tls.Config) func(addr string) (net.Conn, error) {
		return func(addr string) (net.Conn, error) {
			return listenTLSLayer(t, cfg).Dial(raft.ServerAddress(addr), 5*time.Second)
		}
	}
	for _, tc := range []struct {
		name   string
		server *tls.Config
		dial   func(addr string) (net.Conn, error)
		// wantServerErr and wantClientErr are parts of the errors each end
		// must see; both empty: the ends exchange a line.
		wantServerErr, wantClientErr string
	}{
		{
			name:   "two nodes with certificates of the cluster CA connect",
			server: raftTLS(t, ca, ca, "server"),
			dial:   dialWith(raftTLS(t, ca, ca, "client")),
		},
		{
			name:          "a node refuses to dial a server whose certificate is of another CA",
			server:        raftTLS(t, other, ca, "impostor"),
			dial:          dialWith(raftTLS(t, ca, ca, "client")),
			wantServerErr: "tls: bad certificate",
			wantClientErr: "certificate signed by unknown authority",
		},
		{
			name: "a node refuses to dial a server whose certificate of the cluster CA names another address",
			server: &tls.Config{Certificates: []tls.Certificate{ca.TLSCertificate(t, "elsewhere", []net.IP{net.ParseIP("10.9.9.9")})},
				RootCAs: ca.Pool()},
			dial:          dialWith(raftTLS(t, ca, ca, "client")),
			wantServerErr: "tls: bad certificate",
			wantClientErr: "does not name it",
		},
		{
			name:          "a node refuses a client whose certificate is of another CA",
			server:        raftTLS(t, ca, ca, "server"),
			dial:          dialWith(raftTLS(t, other, ca, "impostor")),
			wantServerErr: "certificate signed by unknown authority",
			wantClientErr: "tls:",
		},
		{
			name:   "a node refuses a client without a certificate",
			server: raftTLS(t, ca, ca, "server"),
			dial: func(addr string) (net.Conn, error) {
				return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
					&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
			},
			wantServerErr: "didn't provide a certificate",
			wantClientErr: "tls:",
		},
		{
			name:   "a node refuses plain TCP",
			server: raftTLS(t, ca, ca, "server"),
			dial: func(addr string) (net.Conn, error) {
				return net.DialTimeout("tcp", addr, 5*time.Second)
			},
			wantServerErr: "first record does not look like a TLS handshake",
			wantClientErr: "EOF",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := listenTLSLayer(t, tc.server)
			serverErr := make(chan error, 1)
			go func() {
				c, err := srv.Accept()
				if err != nil {
					serverErr <- err
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitTimeout))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					_, err = c.Write([]byte("pong " + line))
				}
				serverErr <- err
			}()

			var reply string
			c, clientErr := tc.dial(srv.Addr().String())
			if clientErr == nil {
				_ = c.SetDeadline(time.Now().Add(waitTimeout))
				if _, clientErr = c.Write([]byte("ping\n")); clientErr == nil {
					reply, clientErr = bufio.NewReader(c).ReadString('\n')
				}
				c.Close()
			}
			var sErr error
			select {
			case sErr = <-serverErr:
			case <-time.After(waitTimeout):
				t.Fatal("the server end neither failed nor answered")
			}

			check := func(end string, err error, want string) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v, want a connection", end, err)
				case want != "" && err == nil:
					t.Errorf("%s: connected, want an error with %q", end, want)
				case want != "" && !strings.Contains(err.Error(), want):
					t.Errorf("%s: %v, want an error with %q", end, err, want)
				}
			}
			check("dialing end", clientErr, tc.wantClientErr)
			check("accepting end", sErr, tc.wantServerErr)
			if tc.wantClientErr == "" && reply != "pong ping\n" {
				t.Errorf("reply %q, want %q", reply, "pong ping\n")
			}
		})
	}
}

// TestTLSTransportCarriesRaftRPCs runs raft's own network transport over
// the stream layer, as Server does with Config.TLS.
func TestTLSTransportCarriesRaftRPCs(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	other := testpki.NewCA(t, "another CA")
	rlog := newRaftLogger(clustertest.Logger(t))
	transport := func(cfg *tls.Config) *raft.NetworkTransport {
		l, err := newTLSStreamLayer("127.0.0.1:0", nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		tr := raft.NewNetworkTransportWithLogger(l, 2, 5*time.Second, rlog)
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	follower := transport(raftTLS(t, ca, ca, "follower"))
	go func() {
		for rpc := range follower.Consumer() {
			req, ok := rpc.Command.(*raft.AppendEntriesRequest)
			if !ok {
				rpc.Respond(nil, nil)
				continue
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
		}
	}()

	leader := transport(raftTLS(t, ca, ca, "leader"))
	var resp raft.AppendEntriesResponse
	if err := leader.AppendEntries("follower", follower.LocalAddr(), &raft.AppendEntriesRequest{Term: 7}, &resp); err != nil {
		t.Fatalf("append entries over TLS: %v", err)
	}
	if !resp.Success || resp.Term != 7 {
		t.Fatalf("answer %+v, want success in term 7", resp)
	}

	impostor := transport(raftTLS(t, other, ca, "impostor"))
	err := impostor.AppendEntries("follower", follower.LocalAddr(), &raft.AppendEntriesRequest{Term: 8}, &resp)
	if err == nil {
		t.Fatal("a server with a certificate of another CA got an answer")
	}
	t.Logf("refused as it should be: %v", err)
}

func TestTLSStreamLayerRefusesWhatItCannotUse(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	good := raftTLS(t, ca, ca, "node")
	for _, tc := range []struct {
		name string
		bind string
		cfg  *tls.Config
		want string
	}{
		{"no CA to verify the others with", "127.0.0.1:0", &tls.Config{Certificates: good.Certificates}, "no CA"},
		{"no certificate", "127.0.0.1:0", &tls.Config{RootCAs: ca.Pool()}, "no certificate"},
		{"all interfaces and no advertise address", "0.0.0.0:0", good, "give an advertise address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := newTLSStreamLayer(tc.bind, nil, tc.cfg)
			if err == nil {
				l.Close()
				t.Fatalf("listening worked, want an error with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error with %q", err, tc.want)
			}
		})
	}
}
