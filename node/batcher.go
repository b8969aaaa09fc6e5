package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/batchpilot/batchpilot/node/sink"
)

// batchLoop forms batches and hands each to a flush goroutine. A batch is
// due when the queue holds the batch size, when its oldest record has waited
// MaxLinger, or at once while draining. At most FlushConcurrency batches are
// in flight, and never more bytes than the node's grant.
func (n *Node) batchLoop() {
	defer close(n.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		n.slots <- struct{}{}
		recs, ok := n.nextBatch(timer)
		if !ok {
			<-n.slots
			break
		}
		n.flushes.Add(1)
		go n.flush(recs)
	}
	n.flushes.Wait()
}

// nextBatch waits for the next due batch; false once the queue is closed
// and empty.
func (n *Node) nextBatch(timer *time.Timer) ([]Record, bool) {
	for {
		count, _, oldest, closed := n.queue.state()
		size := int(n.batchSize.Load())
		if count == 0 && closed {
			return nil, false
		}
		var wait time.Duration
		if count > 0 && count < size && !closed {
			wait = n.cfg.MaxLinger - time.Since(oldest)
		}
		if count > 0 && wait <= 0 {
			budget, idle, ok := n.byteBudget()
			if ok {
				recs := n.queue.take(getRecords(size), size, budget, idle)
				if len(recs) > 0 {
					// Count the batch in flight before the next one is
					// sized, so two batches cannot both fit one budget.
					n.inflightBytes.Add(rawBytes(recs))
					return recs, true
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
func (n *Node) flush(recs []Record) {
	defer n.flushes.Done()
	raw := rawBytes(recs) // counted in flight by nextBatch
	if err := n.write(recs); errors.Is(err, sink.ErrBadRecord) && !oneRequest(recs) {
		// The sink refused a record of the batch as data it can never
		// write (PostgreSQL's jsonb and \u0000, say). Write each request's
		// records on their own, so that only the request with the bad
		// record is refused and the others are not failed with it.
		for i := 0; i < len(recs); {
			j := runEnd(recs, i)
			_ = n.write(recs[i:j])
			i = j
		}
	}
	putRecords(recs)
	n.inflightBytes.Add(-raw)
	<-n.slots
	notify(n.flushed)
	notify(n.queue.ready)
}

// write processes recs, writes them as one batch, settles their
// acknowledgements with the outcome, accounts for it, and returns it.
func (n *Node) write(recs []Record) error {
	start := time.Now()
	b := encodeBatch(recs, n.cfg.Name, n.cfg.Processors)
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.FlushTimeout)
	err := n.sink.Write(ctx, &b.batch)
	cancel()
	end := time.Now()
	if errors.Is(err, sink.ErrBadRecord) && !oneRequest(recs) {
		// Not settled yet: flush writes the requests one by one.
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
