package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/tuner"
)

// flow is the batcher's state beside the batch size: how many batches are
// in flight and the limit a controller may set on them (at most
// FlushConcurrency), the bound on a batch's bytes, and the sink's attempts
// of the current control interval, which the control loop hands to the
// controller.
type flow struct {
	inFlight   atomic.Int32
	limit      atomic.Int32 // 0: FlushConcurrency
	batchBytes atomic.Int64 // 0: no bound

	mu       sync.Mutex
	attempts []tuner.Attempt
	dropped  int
}

// record keeps one attempt for the control interval.
func (f *flow) record(a tuner.Attempt) {
	f.mu.Lock()
	if len(f.attempts) < tuner.MaxAttempts {
		f.attempts = append(f.attempts, a)
	} else {
		f.dropped++
	}
	f.mu.Unlock()
}

// observeFlow hands the interval's attempts and the flow's limits to obs
// and starts a new interval; the control loop calls it once an interval.
func (n *Node) observeFlow(obs *tuner.Observation) {
	f := &n.flow
	f.mu.Lock()
	obs.Attempts, obs.AttemptsDropped = f.attempts, f.dropped
	f.attempts, f.dropped = nil, 0
	f.mu.Unlock()
	obs.FlushLimit = n.flushLimit()
	obs.BatchBytes = int(f.batchBytes.Load())
}

// applyFlow carries out a decision's flush concurrency and byte bound
// (0 leaves each as it is; tuner.LiftByteBound goes back to the
// configured byte bound).
func (n *Node) applyFlow(d tuner.Decision) {
	if d.FlushConcurrency > 0 {
		n.flow.limit.Store(int32(min(d.FlushConcurrency, n.cfg.FlushConcurrency)))
		notify(n.flushed) // a raised limit may let the batcher go on
	}
	switch {
	case d.BatchBytes >= tuner.LiftByteBound:
		n.flow.batchBytes.Store(max(0, n.cfg.MaxBatchBytes))
	case d.BatchBytes > 0:
		b := int64(d.BatchBytes)
		if n.cfg.MaxBatchBytes > 0 {
			b = min(b, n.cfg.MaxBatchBytes)
		}
		n.flow.batchBytes.Store(b)
	}
}

// flushLimit is how many batches may be in flight at once now.
func (n *Node) flushLimit() int {
	if l := int(n.flow.limit.Load()); l > 0 {
		return l
	}
	return n.cfg.FlushConcurrency
}

// enrichOverhead is an upper bound on the bytes the node adds to a record
// as the sink writes it (its fields and the NDJSON newline), to bound a
// batch's bytes as written from the bytes as received.
func enrichOverhead(node string) int64 { return int64(len(node)) + 96 }

// batchLoop forms batches and hands each to a flush goroutine. A batch is
// due when the queue holds the batch size (or the byte bound's worth),
// when its oldest record has waited MaxLinger, or at once while draining.
// At most FlushConcurrency batches are in flight (fewer when a controller
// set a lower limit), and never more bytes than the node's grant.
func (n *Node) batchLoop() {
	defer close(n.done)
	// The configured bound, unless a first decision already set one.
	n.flow.batchBytes.CompareAndSwap(0, max(0, n.cfg.MaxBatchBytes))
	if fc, ok := n.cfg.Controller.(tuner.FlowController); ok {
		conc, bytes := fc.InitialFlow()
		n.applyFlow(tuner.Decision{FlushConcurrency: conc, BatchBytes: bytes})
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		n.slots <- struct{}{}
		n.waitFlushLimit()
		recs, full, ok := n.nextBatch(timer)
		if !ok {
			<-n.slots
			break
		}
		n.flushes.Add(1)
		inFlight := int(n.flow.inFlight.Add(1))
		go n.flush(recs, batchInfo{inFlight: inFlight, full: full})
	}
	n.flushes.Wait()
}

// waitFlushLimit waits until fewer batches than the flush limit are in
// flight.
func (n *Node) waitFlushLimit() {
	for int(n.flow.inFlight.Load()) >= n.flushLimit() {
		<-n.flushed
	}
}

// batchInfo is what the batcher knew of a batch when it cut it.
type batchInfo struct {
	inFlight int  // batches in flight with it, itself included
	full     bool // cut at its bound rather than by the linger
}

// nextBatch waits for the next due batch; false once the queue is closed
// and empty. full says the batch was due for its size (in records or in
// bytes), not for its linger.
func (n *Node) nextBatch(timer *time.Timer) ([]Record, bool, bool) {
	for {
		count, qbytes, oldest, closed := n.queue.state()
		size := int(n.batchSize.Load())
		if count == 0 && closed {
			return nil, false, false
		}
		// A byte bound caps the records of a batch at what fits in it at
		// the queue's mean record size; the raw bytes left for them are the
		// bound less the node's additions, so that the batch as written
		// stays within the bound whatever the records' sizes.
		byteCap := int64(1) << 62
		if lim := n.flow.batchBytes.Load(); lim > 0 && count > 0 {
			over := enrichOverhead(n.cfg.Name)
			fit := max(1, int(lim/(qbytes/int64(count)+over)))
			size = min(size, fit)
			byteCap = max(1, lim-int64(size)*over)
		}
		var wait time.Duration
		if count > 0 && count < size && !closed {
			wait = n.cfg.MaxLinger - time.Since(oldest)
		}
		if count > 0 && wait <= 0 {
			budget, idle, ok := n.byteBudget()
			if ok {
				recs := n.queue.take(getRecords(size), size, min(budget, byteCap), idle)
				if len(recs) > 0 {
					// Count the batch in flight before the next one is
					// sized, so two batches cannot both fit one budget.
					n.inflightBytes.Add(rawBytes(recs))
					return recs, count >= size, true
				}
				putRecords(recs)
			}
			// Over the grant: wait for a flush in progress to end.
			select {
			case <-n.flushed:
			case <-n.queue.ready:
			}
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-n.queue.ready:
				if !timer.Stop() {
					<-timer.C
				}
			case <-timer.C:
			}
			continue
		}
		<-n.queue.ready
	}
}

// byteBudget is how many bytes the next batch may hold under the node's
// grant, and whether nothing is in flight; false when nothing may start
// until a flush ends. With nothing in flight a batch of one record may
// always start, even one larger than the grant, so that a grant smaller
// than a record cannot stall the node.
func (n *Node) byteBudget() (budget int64, idle, ok bool) {
	const unlimited = int64(1) << 62
	inflight := n.inflightBytes.Load()
	grant := n.grantBytes.Load()
	if grant <= 0 {
		return unlimited, inflight == 0, true
	}
	left := grant - inflight
	if left <= 0 {
		return 0, inflight == 0, inflight == 0
	}
	return left, inflight == 0, true
}

func rawBytes(recs []Record) int64 {
	var b int64
	for i := range recs {
		b += int64(len(recs[i].Data))
	}
	return b
}

var recordPool = sync.Pool{New: func() any { return new([]Record) }}

func getRecords(size int) []Record {
	p := recordPool.Get().(*[]Record)
	if cap(*p) < size {
		return make([]Record, 0, size)
	}
	return (*p)[:0]
}

func putRecords(recs []Record) {
	clear(recs)
	recs = recs[:0]
	recordPool.Put(&recs)
}

// flush processes and writes one batch, then settles its acknowledgements.
func (n *Node) flush(recs []Record, info batchInfo) {
	defer n.flushes.Done()
	raw := rawBytes(recs) // counted in flight by nextBatch
	n.writeAll(recs, info)
	putRecords(recs)
	n.inflightBytes.Add(-raw)
	n.flow.inFlight.Add(-1)
	<-n.slots
	notify(n.flushed)
	notify(n.queue.ready)
}

// writeAll writes recs as one batch and settles every acknowledgement,
// splitting the batch where the sink refused it whole for a reason that a
// part of it would not meet:
//
//   - refused for its size (413, sink.ErrBatchTooLarge): each half is
//     written on its own, and a half still too large is split again, down
//     to one record; as libbeat's Batch.SplitRetry does on a bulk payload
//     too large (elastic/beats#34911), and Graylog's Elasticsearch output.
//     A change of record size (200-byte lines, then 4 KiB traces) would
//     otherwise fail every record of the batches formed before the
//     controller learned the body limit, and their clients would resend
//     them after a Retry-After; the 413 still reaches the controllers as
//     an attempt (tuner.AttemptTooLarge), which is what they learn from.
//   - a record the sink can never write (sink.ErrBadRecord, PostgreSQL's
//     jsonb and \u0000, say): each request's records are written on their
//     own, so that only the request with the bad record is refused.
func (n *Node) writeAll(recs []Record, info batchInfo) {
	err := n.write(recs, info)
	switch {
	case errors.Is(err, sink.ErrBatchTooLarge) && len(recs) > 1:
		n.metrics.batches.WithLabelValues("split").Inc()
		mid := len(recs) / 2
		n.writeAll(recs[:mid], info)
		n.writeAll(recs[mid:], info)
	case errors.Is(err, sink.ErrBadRecord) && !oneRequest(recs):
		for i := 0; i < len(recs); {
			j := runEnd(recs, i)
			n.writeAll(recs[i:j], info)
			i = j
		}
	}
}

// write processes recs, writes them as one batch, settles their
// acknowledgements with the outcome, accounts for it, and returns it. Every
// attempt the sink reports goes to the control interval's attempts; a sink
// that reports none gives one, timed around its write.
func (n *Node) write(recs []Record, info batchInfo) error {
	start := time.Now()
	b := encodeBatch(recs, n.cfg.Name, n.cfg.Processors)
	reported := false
	attempt := func(a tuner.Attempt) {
		reported = true
		a.Records, a.Bytes, a.InFlight, a.Full = len(recs), b.batch.Bytes, info.inFlight, info.full
		n.flow.record(a)
	}
	b.batch.OnAttempt = func(a sink.Attempt) {
		attempt(tuner.Attempt{End: a.Start.Add(a.RTT), RTT: a.RTT, N: a.N, RetryAfter: a.RetryAfter, Outcome: attemptOutcome(a.Outcome)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.FlushTimeout)
	sinkStart := time.Now()
	err := n.sink.Write(ctx, &b.batch)
	cancel()
	end := time.Now()
	if !reported {
		attempt(tuner.Attempt{End: end, RTT: end.Sub(sinkStart), RetryAfter: -1, Outcome: outcomeOfErr(err)})
	}
	if (errors.Is(err, sink.ErrBadRecord) && !oneRequest(recs)) || (errors.Is(err, sink.ErrBatchTooLarge) && len(recs) > 1) {
		// Not settled yet: writeAll writes the batch in parts.
		putEncoded(b)
		return err
	}
	// Settle acknowledgements, one call per run of records from the same
	// request.
	for i := 0; i < len(recs); {
		j := runEnd(recs, i)
		if a := recs[i].ack; a != nil {
			a.settle(j-i, err)
		}
		i = j
	}
	n.account(recs, b.batch.Bytes, start, end, end.Sub(start), err)
	putEncoded(b)
	return err
}

// runEnd is the end of the run of records from the same request as recs[i].
func runEnd(recs []Record, i int) int {
	j := i + 1
	for j < len(recs) && recs[j].ack == recs[i].ack {
		j++
	}
	return j
}

// oneRequest reports whether recs all come from one request (or all from
// sources without acknowledgement).
func oneRequest(recs []Record) bool { return len(recs) == 0 || runEnd(recs, 0) == len(recs) }

// account adds one flushed batch to the metrics and the control window.
func (n *Node) account(recs []Record, bytes int, start, end time.Time, batchTime time.Duration, err error) {
	m := n.metrics
	m.batchTime.Observe(batchTime.Seconds())
	m.batchRecs.Observe(float64(len(recs)))
	w := n.win
	w.mu.Lock()
	defer w.mu.Unlock()
	w.batches++
	w.batchTime += batchTime
	w.fill += int64(len(recs))
	if errors.Is(err, sink.ErrBadRecord) {
		// The sink is well; the records are not: no sink error for the
		// breaker, which would refuse everybody's records.
		m.batches.WithLabelValues("error").Inc()
		m.rejected.WithLabelValues("bad_record").Add(float64(len(recs)))
		n.log.Warn("sink refused a record", "records", len(recs), "err", err)
		return
	}
	if err != nil {
		w.sinkErrors++
		if isBackpressure(err) {
			w.backpressure++
		}
		if errors.Is(err, sink.ErrBatchTooLarge) {
			w.tooLarge++
		}
		m.batches.WithLabelValues("error").Inc()
		m.rejected.WithLabelValues("sink_error").Add(float64(len(recs)))
		n.log.Warn("batch write failed", "records", len(recs), "err", err)
		return
	}
	m.batches.WithLabelValues("ok").Inc()
	m.written.Add(float64(len(recs)))
	w.written += int64(len(recs))
	w.bytes += int64(bytes)
	slo := n.cfg.LatencySLO
	for i := range recs {
		lat := end.Sub(recs[i].Received)
		if lat <= slo {
			w.good++
		}
		m.e2e.Observe(lat.Seconds())
		_ = w.latency.RecordValue(int64(lat / time.Microsecond))
	}
}

// encoded is a batch in the sink's form, with the buffers behind it.
type encoded struct {
	batch sink.Batch
	buf   []byte
}

var encodedPool = sync.Pool{New: func() any { return new(encoded) }}

func putEncoded(e *encoded) {
	e.batch.OnAttempt = nil
	clear(e.batch.Records)
	e.batch.Records = e.batch.Records[:0]
	e.buf = e.buf[:0]
	encodedPool.Put(e)
}

// encodeBatch runs the processors over each record and appends the node's
// fields ("_node", "_received_at", "_source") to it.
func encodeBatch(recs []Record, node string, procs []Processor) *encoded {
	e := encodedPool.Get().(*encoded)
	need := 0
	for i := range recs {
		need += len(recs[i].Data) + len(node) + 96
	}
	if cap(e.buf) < need {
		e.buf = make([]byte, 0, need)
	}
	offsets := make([]int, 0, len(recs)+1)
	for i := range recs {
		r := recs[i]
		for _, p := range procs {
			p.Process(&r)
		}
		offsets = append(offsets, len(e.buf))
		e.buf = appendEnriched(e.buf, &r, node)
	}
	offsets = append(offsets, len(e.buf))
	// Slice only after the last append: e.buf may have moved while growing.
	for i := range recs {
		e.batch.Records = append(e.batch.Records, e.buf[offsets[i]:offsets[i+1]])
	}
	e.batch.Bytes = len(e.buf)
	return e
}

// attemptOutcome is a sink's attempt outcome for the tuner.
func attemptOutcome(o sink.Outcome) tuner.AttemptOutcome {
	switch o {
	case sink.OutcomeOK:
		return tuner.AttemptOK
	case sink.OutcomeBackpressure:
		return tuner.AttemptBackpressure
	case sink.OutcomeTooLarge:
		return tuner.AttemptTooLarge
	}
	return tuner.AttemptFailed
}

// outcomeOfErr sorts a whole write's error for a sink that reports no
// attempts.
func outcomeOfErr(err error) tuner.AttemptOutcome {
	switch {
	case err == nil:
		return tuner.AttemptOK
	case errors.Is(err, sink.ErrBatchTooLarge):
		return tuner.AttemptTooLarge
	case errors.Is(err, sink.ErrBackpressure):
		return tuner.AttemptBackpressure
	}
	return tuner.AttemptFailed
}
