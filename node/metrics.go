package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/batchpilot/batchpilot/tuner"
)

// metrics are the node's Prometheus series. Each node has its own registry,
// so several nodes can run in one process (batchpilot dev).
type metrics struct {
	received   *prometheus.CounterVec // by source
	written    prometheus.Counter
	rejected   *prometheus.CounterVec // by reason
	batches    *prometheus.CounterVec // by result
	batchSize  prometheus.Gauge
	batchRecs  prometheus.Histogram
	batchTime  prometheus.Histogram
	e2e        prometheus.Histogram
	queueDepth prometheus.GaugeFunc
	queueBytes prometheus.GaugeFunc
	inflight   prometheus.GaugeFunc
	grant      prometheus.GaugeFunc
	breaker    *prometheus.GaugeVec   // by state, set by the control loop
	decisions  *prometheus.CounterVec // by reason

	// Admission (admission.go).
	admRefused *prometheus.CounterVec // requests refused at the queue, by why and source
	admPaused  *prometheus.CounterVec // blocking puts that waited for room, by source
	admBound   prometheus.GaugeFunc
	admDelay   prometheus.GaugeFunc
	admMax     prometheus.GaugeFunc
	admRate    prometheus.GaugeFunc
	pressure   *prometheus.GaugeVec // 1 for the resource under pressure, by why
}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batchpilot_records_received_total", Help: "Records accepted into the queue, by source.",
		}, []string{"source"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "batchpilot_records_written_total", Help: "Records durably written by the sink.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batchpilot_records_rejected_total", Help: "Records or requests refused, by reason (malformed, too_large, queue_full, draining, sink_error, bad_record, breaker_open, dropped, unauthorized).",
		}, []string{"reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batchpilot_batches_total", Help: "Batches flushed to the sink, by result: ok, error, or split (refused for their size, 413, and written in halves).",
		}, []string{"result"}),
		batchSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "batchpilot_batch_size", Help: "The batch size in force (records).",
		}),
		batchRecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "batchpilot_batch_records", Help: "Records per flushed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 16),
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "batchpilot_batch_duration_seconds", Help: "Time to process and write one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "batchpilot_end_to_end_latency_seconds", Help: "Time from a record's arrival to its durable write.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		queueDepth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "batchpilot_queue_depth", Help: "Records waiting in the queue.",
		}, func() float64 { d, _, _, _ := n.queue.state(); return float64(d) }),
		queueBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "batchpilot_queue_bytes", Help: "Bytes waiting in the queue.",
		}, func() float64 { _, b, _, _ := n.queue.state(); return float64(b) }),
		inflight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "batchpilot_inflight_bytes", Help: "Bytes of batches being written.",
		}, func() float64 { return float64(n.inflightBytes.Load()) }),
		grant: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "batchpilot_grant_bytes", Help: "The in-flight byte budget granted to this node (0: none).",
		}, func() float64 { return float64(n.grantBytes.Load()) }),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "batchpilot_breaker_state", Help: "The safety breaker's state: 1 on the series of the state it is in (closed, open, half-open), 0 on the others; its reason is in batchpilot_tuner_decisions_total.",
		}, []string{"state"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batchpilot_tuner_decisions_total", Help: "Batch size changes made by the tuner, by reason.",
		}, []string{"reason"}),
	}
	m.admRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "batchpilot_admission_refused_total",
		Help: "Requests (HTTP) and records (syslog UDP) refused at the queue, by why: delay (the expected wait, queue depth / drain rate, is over the delay bound), sojourn (the oldest queued record already waited past the latency budget), records or bytes (the queue's hard bounds), cpu or memory (the node's own CPU or memory is over its limit: every new request is refused until it clears).",
	}, []string{"why", "source"})
	m.admPaused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "batchpilot_admission_paused_total",
		Help: "Records from connections that are not read while the queue has no room (syslog TCP), by source: each had to wait.",
	}, []string{"source"})
	adm := n.queue.adm
	m.admBound = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "batchpilot_admission_delay_bound_seconds",
		Help: "The queue wait admission allows a new record: its share of the latency SLO less one batch's write time.",
	}, func() float64 { return adm.delayBound().Seconds() })
	m.admDelay = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "batchpilot_admission_expected_delay_seconds",
		Help: "The wait a record queued now can expect: queue depth / drain rate.",
	}, func() float64 {
		if r := adm.drainRate(); r > 0 {
			d, _, _, _ := n.queue.state()
			return float64(d) / r
		}
		return 0
	})
	m.admMax = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "batchpilot_admission_queue_limit_records",
		Help: "The queue depth admission holds the node to now (0: not measured yet; the hard bound holds).",
	}, func() float64 { return float64(adm.maxQueue()) })
	m.admRate = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "batchpilot_admission_drain_rate",
		Help: "The rate the queue drains at, as admission measures it (records/s).",
	}, func() float64 { return adm.drainRate() })
	m.pressure = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "batchpilot_admission_pressure",
		Help: "1 while the node's own CPU (why=cpu, of its allowance) or memory (why=memory) is over its limit and admission refuses every new request; 0 otherwise.",
	}, []string{"why"})
	adm.onRefuse = func(why string, src Source) { m.admRefused.WithLabelValues(why, string(src)).Inc() }
	adm.onPause = func(src Source) { m.admPaused.WithLabelValues(string(src)).Inc() }
	reg.MustRegister(m.received, m.written, m.rejected, m.batches, m.batchSize, m.batchRecs,
		m.batchTime, m.e2e, m.queueDepth, m.queueBytes, m.inflight, m.grant, m.breaker, m.decisions,
		m.admRefused, m.admPaused, m.admBound, m.admDelay, m.admMax, m.admRate, m.pressure)
	m.setBreaker(tuner.BreakerClosed)
	m.setPressure("")
	return m
}

// setPressure marks why ("cpu", "memory"; "" for none) as the pressure.
func (m *metrics) setPressure(why string) {
	for _, w := range []string{whyCPU, whyMemory} {
		v := 0.0
		if w == why {
			v = 1
		}
		m.pressure.WithLabelValues(w).Set(v)
	}
}

// setBreaker marks state as the breaker's state.
func (m *metrics) setBreaker(state string) {
	for _, s := range []string{tuner.BreakerClosed, tuner.BreakerOpen, tuner.BreakerHalfOpen} {
		v := 0.0
		if s == state {
			v = 1
		}
		m.breaker.WithLabelValues(s).Set(v)
	}
}
