package main

import (
	"context"
	"flag"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/otlp"
	"github.com/batchpilot/batchpilot/node/syslog"
)

// registerIngest defines the flags of the intakes beyond plain HTTP and
// syslog: the ingest token, the bulk API and syslog over TLS.
func (c *agentConfig) registerIngest(fs *flag.FlagSet) {
	fs.StringVar(&c.IngestToken, "ingest-token", "", "token every HTTP ingest request needs when set (POST /v1/logs, OTLP, the bulk API):\nas \"Authorization: Bearer <token>\" or as the basic-auth password with any user name;\nseparate from --api-token")
}

// ingestHandler serves POST /v1/logs behind the ingest token: OTLP/HTTP
// logs and the native formats, and exports the OTLP intake's counters.
func (a *agent) ingestHandler() http.Handler {
	in := otlp.New(a.node, a.cfg.MaxLineBytes)
	registerOTLPMetrics(a.node.Registry(), in)
	return node.RequireIngestToken(a.cfg.IngestToken, a.node.Rejected, a.node.LogsHandler(in))
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
