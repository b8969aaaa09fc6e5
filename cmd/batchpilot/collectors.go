package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/node/syslog"
)

// registerSyslogMetrics exports the syslog listener's counters.
func registerSyslogMetrics(reg prometheus.Registerer, s *syslog.Server) {
	reg.MustRegister(syslogCollectors(s, "batchpilot_syslog", "Syslog", "TCP connections")...)
}

// syslogCollectors are the counters every syslog listener has, named
// prefix_messages_total and prefix_connections.
func syslogCollectors(s *syslog.Server, prefix, what, conns string) []prometheus.Collector {
	counter := func(result string, f func(syslog.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        prefix + "_messages_total",
			Help:        what + " messages by result: received (parsed and queued), malformed, too_long, dropped (queue full, UDP).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(f(s.Stats())) })
	}
	return []prometheus.Collector{
		counter("received", func(st syslog.Stats) uint64 { return st.Received }),
		counter("malformed", func(st syslog.Stats) uint64 { return st.Malformed }),
		counter("too_long", func(st syslog.Stats) uint64 { return st.TooLong }),
		counter("dropped", func(st syslog.Stats) uint64 { return st.Dropped }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prefix + "_connections", Help: "Open syslog " + conns + ".",
		}, func() float64 { return float64(s.Stats().Connections) }),
	}
}

// registerSinkMetrics exports the sink's own counters, where it has them.
func registerSinkMetrics(reg prometheus.Registerer, s sink.Sink) {
	switch s := s.(type) {
	case *sink.File:
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_sink_fsyncs_total", Help: "fsyncs of the file sink; batches per fsync is the group-commit factor.",
		}, func() float64 { return float64(s.Stats().Syncs) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "batchpilot_sink_segments_total", Help: "Segment files the file sink has created.",
			}, func() float64 { return float64(s.Stats().Segments) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "batchpilot_sink_no_space_total", Help: "Batches the file sink refused for want of space (a full disk, or free space below --min-free-bytes).",
			}, func() float64 { return float64(s.Stats().NoSpace) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "batchpilot_sink_disk_full", Help: "1 while the file sink's last batch was refused for want of space and none has been written since.",
			}, func() float64 { return b2f(s.Stats().DiskFull) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "batchpilot_sink_free_bytes", Help: "Free space on the file sink's filesystem (-1: unknown).",
			}, func() float64 { return float64(s.FreeBytes()) }))
	case *sink.Postgres:
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_sink_requests_total", Help: "Transactions the postgres sink started, retries included.",
		}, func() float64 { return float64(s.Stats().Attempts) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "batchpilot_sink_retries_total", Help: "Transactions the postgres sink retried.",
			}, func() float64 { return float64(s.Stats().Retries) }))
	case *sink.HTTP:
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "batchpilot_sink_requests_total", Help: "POSTs the http sink sent, retries included.",
		}, func() float64 { return float64(s.Stats().Requests) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "batchpilot_sink_retries_total", Help: "POSTs the http sink retried.",
			}, func() float64 { return float64(s.Stats().Retries) }))
	}
}
