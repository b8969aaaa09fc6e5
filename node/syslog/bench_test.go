package syslog

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// typical5424 is a 200-byte RFC 5424 message like the load generator's.
const typical5424 = `<165>1 2026-11-25T19:19:14.129111Z web-07.example.org checkout 4211 ORDER [loadgen@32473 id="lg-0001-000000000042" seq="42"] user 1832 placed order 99128 total=12.50 EUR items=3 latency_ms=87 state=ok`

func TestTypicalMessageIs200Bytes(t *testing.T) {
	if len(typical5424) != 200 {
		t.Fatalf("typical5424 is %d bytes", len(typical5424))
	}
}

func BenchmarkParse5424(b *testing.B) {
	msg := []byte(typical5424)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Parse(msg, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkParse3164(b *testing.B) {
	msg := []byte(`<34>Nov 25 19:19:14 web-07 checkout[4211]: user 1832 placed order 99128 total=12.50 EUR items=3 latency_ms=87 ok`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Parse(msg, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkTCPServe measures the whole path over one loopback connection:
// newline framing, parsing, JSON and the record copy, with a handler that
// only counts. The sender runs on the same two cores.
func BenchmarkTCPServe(b *testing.B) {
	var got atomic.Int64
	var target atomic.Int64
	done := make(chan struct{}, 1)
	s := NewServer(Config{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		Handler: func(rec []byte, block bool) error {
			if got.Add(1) == target.Load() {
				done <- struct{}{}
			}
			return nil
		},
	})
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	defer func() {
		cancel()
		<-served
	}()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	line := []byte(typical5424 + "\n")
	const perChunk = 256
	chunk := bytes.Repeat(line, perChunk)

	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	target.Store(int64(b.N))
	for sent := 0; sent < b.N; {
		n := min(perChunk, b.N-sent)
		if _, err := conn.Write(chunk[:n*len(line)]); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if st := s.Stats(); st.Received != uint64(b.N) || st.Malformed != 0 {
		b.Fatalf("stats %+v after %d messages", st, b.N)
	}
}
