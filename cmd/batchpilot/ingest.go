package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/bulk"
	"github.com/batchpilot/batchpilot/node/otlp"
	"github.com/batchpilot/batchpilot/node/syslog"
)

// registerIngest defines the flags of the intakes beyond plain HTTP and
// syslog: the ingest token, the bulk API and syslog over TLS.
func (c *agentConfig) registerIngest(fs *flag.FlagSet) {
	fs.StringVar(&c.BulkAddr, "bulk-addr", "", "address for the Elasticsearch bulk API (POST /_bulk, POST /{index}/_bulk, GET /),\nconventionally port 9200; HTTPS with --tls-cert; empty disables")
	fs.StringVar(&c.SyslogTLSAddr, "syslog-tls-addr", "", "address for syslog over TLS (RFC 5425, octet-counted; conventionally port 6514) with the\nnode's certificate (--tls-cert and --tls-key); empty disables")
	fs.StringVar(&c.SyslogTLSClientCA, "syslog-tls-client-ca", "", "PEM CA bundle: when set, syslog over TLS requires a client certificate issued by it")
	fs.StringVar(&c.IngestToken, "ingest-token", "", "token every HTTP ingest request needs when set (POST /v1/logs, OTLP, the bulk API):\nas \"Authorization: Bearer <token>\" or as the basic-auth password with any user name;\nseparate from --api-token")
}

// validateIngest checks the intake flags, before any file is read.
func (c *agentConfig) validateIngest() []string {
	var errs []string
	for flagName, addr := range map[string]string{"--bulk-addr": c.BulkAddr, "--syslog-tls-addr": c.SyslogTLSAddr} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: want HOST:PORT", flagName, addr))
		}
	}
	if c.SyslogTLSAddr != "" && (c.TLSCert == "" || c.TLSKey == "") {
		errs = append(errs, "--syslog-tls-addr serves the node's certificate: it needs --tls-cert and --tls-key")
	}
	if c.SyslogTLSClientCA != "" && c.SyslogTLSAddr == "" {
		errs = append(errs, "--syslog-tls-client-ca applies to syslog over TLS: it needs --syslog-tls-addr")
	}
	return errs
}

// intakes are the listeners beyond --http-addr and --syslog-addr.
type intakes struct {
	bulk      *http.Server
	bulkLn    net.Listener
	bulkAPI   *bulk.API
	syslogTLS *syslog.Server
}

// listenIntakes binds the bulk API and syslog over TLS where configured.
// On error nothing of them is left open.
func (a *agent) listenIntakes() error {
	cfg := a.cfg
	if cfg.BulkAddr != "" {
		ln, err := net.Listen("tcp", cfg.BulkAddr)
		if err != nil {
			return fmt.Errorf("listen on --bulk-addr %s: %w", cfg.BulkAddr, err)
		}
		a.intakes.bulkLn = netutil.LimitListener(ln, cfg.MaxConns)
		a.intakes.bulkAPI = bulk.New(bulk.Config{Receiver: a.node, NodeName: cfg.NodeName, Ready: a.node.Ready,
			MaxBodyBytes: cfg.MaxBodyBytes, MaxDocBytes: cfg.MaxLineBytes, Logger: a.log})
		a.intakes.bulk = &http.Server{
			Handler:           node.RequireIngestToken(cfg.IngestToken, a.node.Rejected, a.intakes.bulkAPI),
			ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			IdleTimeout:       2 * time.Minute,
			TLSConfig:         a.tls.server,
		}
		if a.tls.server != nil {
			a.intakes.bulk.ErrorLog = newHTTPErrorLog(a.log)
		}
		registerBulkMetrics(a.node.Registry(), a.intakes.bulkAPI)
	}
	if cfg.SyslogTLSAddr != "" {
		tcfg, err := a.syslogTLSConfig()
		if err != nil {
			a.closeIntakes()
			return err
		}
		a.intakes.syslogTLS = syslog.NewServer(syslog.Config{
			Addr:            cfg.SyslogTLSAddr,
			MaxMessageBytes: cfg.MaxLineBytes,
			MaxConnections:  cfg.MaxConns,
			Logger:          a.log.With("listener", "syslog-tls"),
			Handler:         syslogHandler(a.node),
		})
		if err := a.intakes.syslogTLS.ListenTLS(tcfg); err != nil {
			a.intakes.syslogTLS = nil
			a.closeIntakes()
			return fmt.Errorf("listen on --syslog-tls-addr %s: %w", cfg.SyslogTLSAddr, err)
		}
		registerSyslogTLSMetrics(a.node.Registry(), a.intakes.syslogTLS)
	}
	return nil
}

// syslogTLSConfig is the TLS configuration of syslog over TLS: the HTTPS
// configuration's clone, so whatever serves its certificate (Certificates,
// or a GetCertificate that reloads it) serves syslog too; with
// --syslog-tls-client-ca, client certificates are required and verified.
func (a *agent) syslogTLSConfig() (*tls.Config, error) {
	tcfg := a.tls.server.Clone()
	if a.cfg.SyslogTLSClientCA != "" {
		pool, err := loadCA(a.cfg.SyslogTLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--syslog-tls-client-ca: %w", err)
		}
		tcfg.ClientAuth = tls.RequireAndVerifyClientCert
		tcfg.ClientCAs = pool
	}
	return tcfg, nil
}

// serveIntakes serves what listenIntakes bound; a listener's failure is
// reported on a.served.
func (a *agent) serveIntakes() {
	if s := a.intakes.bulk; s != nil {
		if a.tls.server != nil {
			go func() { a.served <- s.ServeTLS(a.intakes.bulkLn, "", "") }()
		} else {
			go func() { a.served <- s.Serve(a.intakes.bulkLn) }()
		}
	}
	if s := a.intakes.syslogTLS; s != nil {
		go func() { a.served <- s.ServeTLS(context.Background()) }()
	}
}

// closeIntakes closes the listeners of listenIntakes before they serve.
func (a *agent) closeIntakes() {
	if a.intakes.bulkLn != nil {
		a.intakes.bulkLn.Close()
	}
	if a.intakes.syslogTLS != nil {
		a.intakes.syslogTLS.Close()
	}
}

// stopIntakes stops syslog over TLS at once and the bulk API once its
// requests in flight are answered (they wait for their acknowledgements,
// as the node drains).
func (a *agent) stopIntakes(ctx context.Context) error {
	if a.intakes.syslogTLS != nil {
		_ = a.intakes.syslogTLS.Close()
	}
	if a.intakes.bulk != nil {
		return a.intakes.bulk.Shutdown(ctx)
	}
	return nil
}

// intakeAddrs is the listening line's part for these intakes.
func (a *agent) intakeAddrs() string {
	b, s := "", ""
	if a.intakes.bulkLn != nil {
		b = a.intakes.bulkLn.Addr().String()
	}
	if a.intakes.syslogTLS != nil {
		s = a.intakes.syslogTLS.Addr()
	}
	return "bulk=" + b + " syslog_tls=" + s
}

// ingestHandler serves POST /v1/logs behind the ingest token: OTLP/HTTP
// logs and the native formats, and exports the OTLP intake's counters.
func (a *agent) ingestHandler() http.Handler {
	in := otlp.New(a.node, a.cfg.MaxLineBytes)
	registerOTLPMetrics(a.node.Registry(), in)
	return node.RequireIngestToken(a.cfg.IngestToken, a.node.Rejected, a.node.LogsHandler(in))
}

// registerBulkMetrics exports the bulk API's counters.
func registerBulkMetrics(reg prometheus.Registerer, api *bulk.API) {
	req := func(result string, f func(bulk.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_bulk_requests_total", Help: "Bulk API requests by result: ok (200), malformed (400), too_large (413), refused (429 or 503).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(f(api.Stats())) })
	}
	items := func(result string, f func(bulk.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_bulk_items_total", Help: "Bulk API items by result: created (stored and acknowledged), failed (an action not supported).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(f(api.Stats())) })
	}
	reg.MustRegister(
		req("ok", func(s bulk.Stats) uint64 { return s.Requests }),
		req("malformed", func(s bulk.Stats) uint64 { return s.Malformed }),
		req("too_large", func(s bulk.Stats) uint64 { return s.TooLarge }),
		req("refused", func(s bulk.Stats) uint64 { return s.Refused }),
		items("created", func(s bulk.Stats) uint64 { return s.Created }),
		items("failed", func(s bulk.Stats) uint64 { return s.Failed }),
	)
}

// registerSyslogTLSMetrics exports the counters of syslog over TLS.
func registerSyslogTLSMetrics(reg prometheus.Registerer, s *syslog.Server) {
	reg.MustRegister(append(syslogCollectors(s, "batchpilot_syslog_tls", "Syslog over TLS", "over TLS connections"),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_syslog_tls_handshake_failures_total", Help: "TLS handshakes on the syslog over TLS listener that failed (untrusted or missing certificates, plain TCP).",
		}, func() float64 { return float64(s.HandshakeFailures()) }),
	)...)
}

// registerOTLPMetrics exports the OTLP intake's counters.
func registerOTLPMetrics(reg prometheus.Registerer, in *otlp.Intake) {
	req := func(result string, f func(otlp.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_otlp_requests_total", Help: "OTLP/HTTP export requests by result: ok (200, partial successes included), malformed (400), refused (429 or 503).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(f(in.Stats())) })
	}
	recs := func(result string, f func(otlp.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_otlp_log_records_total", Help: "OTLP log records by result: accepted (acknowledged), rejected (refused in a partial success).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(f(in.Stats())) })
	}
	reg.MustRegister(
		req("ok", func(s otlp.Stats) uint64 { return s.Requests }),
		req("malformed", func(s otlp.Stats) uint64 { return s.Malformed }),
		req("refused", func(s otlp.Stats) uint64 { return s.Refused }),
		recs("accepted", func(s otlp.Stats) uint64 { return s.Accepted }),
		recs("rejected", func(s otlp.Stats) uint64 { return s.Rejected }),
	)
}

// syslogHandler hands syslog records (TCP, UDP and TLS) to the node through
// its Receiver: syslog has no acknowledgement, so Offer, blocking on
// streams for backpressure.
func syslogHandler(recv node.Receiver) syslog.Handler {
	return func(rec []byte, block bool) error {
		return recv.Offer(context.Background(), rec, node.SourceSyslog, block)
	}
}
