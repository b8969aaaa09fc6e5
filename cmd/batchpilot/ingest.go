package main

import (
	"context"
	"flag"
	"net/http"

	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/syslog"
)

// registerIngest defines the flags of the intakes beyond plain HTTP and
// syslog: the ingest token, the bulk API and syslog over TLS.
func (c *agentConfig) registerIngest(fs *flag.FlagSet) {
	fs.StringVar(&c.IngestToken, "ingest-token", "", "token every HTTP ingest request needs when set (POST /v1/logs, OTLP, the bulk API):\nas \"Authorization: Bearer <token>\" or as the basic-auth password with any user name;\nseparate from --api-token")
}

// ingestHandler serves POST /v1/logs behind the ingest token.
func (a *agent) ingestHandler() http.Handler {
	return node.RequireIngestToken(a.cfg.IngestToken, a.node.Rejected, a.node.IngestHandler())
}

// syslogHandler hands syslog records (TCP, UDP and TLS) to the node through
// its Receiver: syslog has no acknowledgement, so Offer, blocking on
// streams for backpressure.
func syslogHandler(recv node.Receiver) syslog.Handler {
	return func(rec []byte, block bool) error {
		return recv.Offer(context.Background(), rec, node.SourceSyslog, block)
	}
}
