package syslog

import (
	"log/slog"
	"time"
)

// A TCP connection's messages are parsed in parallel but delivered in
// order. The connection's reader frames messages into chunks; each chunk is
// parsed by a goroutine of its own (parsing is most of the cost of a
// message, and one reader could otherwise use only one core); a delivering
// goroutine hands the records to the Handler in arrival order. The channel
// between reader and deliverer is short, so when the Handler blocks (the
// node's queue is full) the reader stops reading: backpressure still
// reaches the sender.

const (
	chunkMessages = 256       // messages per chunk at most
	chunkBytes    = 256 << 10 // bytes per chunk at most (one message may exceed it)
	chunksAhead   = 2         // chunks parsed ahead of delivery per connection
)

// chunk is a run of messages from one connection.
type chunk struct {
	remote string
	data   []byte   // the messages, back to back
	ends   []int    // where each message ends in data
	recs   [][]byte // the parsed records in order; nil for a malformed message
	done   chan struct{}
}

func newChunk(remote string) *chunk {
	return &chunk{remote: remote, done: make(chan struct{})}
}

func (c *chunk) add(msg []byte) {
	c.data = append(c.data, msg...)
	c.ends = append(c.ends, len(c.data))
}

func (c *chunk) full() bool { return len(c.ends) >= chunkMessages || len(c.data) >= chunkBytes }

// parse turns every message of c into a record. The records share one
// buffer, so a chunk costs one allocation however many messages it holds.
func (s *Server) parse(c *chunk) {
	defer close(c.done)
	p := parserPool.Get().(*parser)
	defer parserPool.Put(p)
	now := time.Now()
	out := make([]byte, 0, len(c.data)+len(c.data)/2+64*len(c.ends))
	offs := make([]int, 0, len(c.ends)+1)
	start := 0
	c.recs = make([][]byte, len(c.ends))
	ok := make([]bool, len(c.ends))
	for i, end := range c.ends {
		msg := c.data[start:end]
		start = end
		before := len(out)
		var err error
		out, err = p.appendRecord(out, msg, now)
		if err != nil {
			out = out[:before]
			s.malformed.Add(1)
			s.warn(reasonMalformed, "syslog: malformed message", slog.String("remote", c.remote),
				slog.String("error", err.Error()), slog.String("sample", string(head(msg))))
		} else {
			ok[i] = true
		}
		offs = append(offs, before)
	}
	offs = append(offs, len(out))
	// Slice only once out has stopped growing.
	for i := range c.ends {
		if ok[i] {
			c.recs[i] = out[offs[i]:offs[i+1]:offs[i+1]]
		}
	}
	c.data, c.ends = nil, nil
}

// deliver hands c's records to the Handler, in order.
func (s *Server) deliver(c *chunk) {
	<-c.done
	for _, rec := range c.recs {
		if rec == nil {
			continue
		}
		s.received.Add(1)
		if err := s.cfg.Handler(rec, true); err != nil {
			s.dropped.Add(1)
			s.warn(reasonDropped, "syslog: record dropped", slog.String("remote", c.remote), slog.String("error", err.Error()))
		}
	}
}

// connPipeline is one connection's chunking, parsing and delivery.
type connPipeline struct {
	s       *Server
	remote  string
	cur     *chunk
	ordered chan *chunk
	done    chan struct{}
}

func (s *Server) newConnPipeline(remote string) *connPipeline {
	p := &connPipeline{s: s, remote: remote, cur: newChunk(remote),
		ordered: make(chan *chunk, chunksAhead), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for c := range p.ordered {
			s.deliver(c)
		}
	}()
	return p
}

// add queues one message; flush submits the chunk when more is not
// already waiting in the reader's buffer (so a quiet connection's message
// is not held back for company) or when the chunk is full.
func (p *connPipeline) add(msg []byte, moreBuffered bool) {
	if len(trimTrailer(msg)) == 0 {
		return // a keep-alive newline
	}
	p.cur.add(msg)
	if !moreBuffered || p.cur.full() {
		p.submit()
	}
}

func (p *connPipeline) submit() {
	if len(p.cur.ends) == 0 {
		return
	}
	c := p.cur
	p.cur = newChunk(p.remote)
	go p.s.parse(c)
	p.ordered <- c // blocks while delivery is behind: backpressure
}

// close submits what is left and waits until it has been delivered.
func (p *connPipeline) close() {
	p.submit()
	close(p.ordered)
	<-p.done
}
