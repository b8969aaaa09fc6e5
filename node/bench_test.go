package node_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/node/syslog"
	"github.com/batchpilot/batchpilot/tuner"
)

// benchNode starts a node writing to a real file sink in a temp dir, with a
// fixed batch size so the figures compare like with like.
func benchNode(b *testing.B, batch int) *node.Node {
	b.Helper()
	fs, err := sink.NewFile(sink.FileConfig{Dir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	n, err := node.New(node.Config{Name: "bench", Sink: fs, InitialBatchSize: batch,
		Controller: &tuner.Static{Size: batch}, MaxLinger: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	n.Start()
	b.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	return n
}

var quiet = slog.New(slog.DiscardHandler)

// record200 is a ~200-byte log record.
func record200(id int) string {
	return fmt.Sprintf(`{"id":"bench-%010d","level":"info","service":"checkout","msg":"order placed","user":"u-12345","latency_ms":42,"path":"/api/v1/orders","status":200,"padding":"xxxxxxxxxxxxxxxxxxxxxxxxxx"}`, id)
}

// BenchmarkHTTPIngestFileSink measures records per second through one node
// into the file sink over real HTTP on 127.0.0.1: requests of 1,000 records
// of ~200 bytes from 8 concurrent clients, each answered after fsync.
func BenchmarkHTTPIngestFileSink(b *testing.B) {
	n := benchNode(b, 4000)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: n.IngestHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/logs"

	const perRequest = 1000
	var body bytes.Buffer
	for i := 0; i < perRequest; i++ {
		body.WriteString(record200(i))
		body.WriteByte('\n')
	}
	payload := body.Bytes()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				resp, err := client.Post(url, "application/x-ndjson", bytes.NewReader(payload))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*perRequest)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkSyslogTCPFileSink measures RFC 5424 lines of ~200 bytes per
// second over one TCP connection into the file sink (fsync per batch of 256).
func BenchmarkSyslogTCPFileSink(b *testing.B) {
	n := benchNode(b, 256)
	srv := syslog.NewServer(syslog.Config{Addr: "127.0.0.1:0", Logger: quiet, Handler: func(rec []byte, block bool) error {
		return n.Offer(context.Background(), rec, node.SourceSyslog, block)
	}})
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	go srv.Serve(context.Background())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(conn, 256<<10)
	line := []byte("<134>1 2026-11-25T10:00:00.123456Z web-01 checkout 4242 ORD [meta@32473 id=\"x\"] order placed for user u-12345 in 42ms path=/api/v1/orders status=200 xxxxxxxxxxxxxxxxx\n")
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	conn.Close()
	// Wait until the server has handed every line to the node, then drain
	// the node so that every line is written.
	for srv.Stats().Received < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
