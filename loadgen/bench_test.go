package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// discardHTTP is the cheapest HTTP/1.1 receiver there is: it reads each
// request, skips its body by Content-Length and answers 200 at once, so the
// generator, not the receiver, sets the pace.
func discardHTTP(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				for {
					length := -1
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
						if k := bytes.IndexByte(line, ':'); k > 0 && bytes.EqualFold(line[:k], []byte("Content-Length")) {
							length, _ = strconv.Atoi(string(bytes.TrimSpace(line[k+1:])))
						}
					}
					if length < 0 {
						return
					}
					if _, err := br.Discard(length); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// discardNetHTTP is a net/http server that reads and discards.
func discardNetHTTP(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// discardTCP reads and drops a syslog stream.
func discardTCP(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

// BenchmarkCeiling is the generator's own limit: closed loop against
// receivers that discard, on the same machine (the receiver takes its share
// of the CPU, so these are lower bounds). One op is one request.
func BenchmarkCeiling(b *testing.B) {
	gz := true
	for _, tc := range []struct {
		name        string
		target      func(*testing.B) string
		batch       int
		concurrency int
		gzip        *bool
	}{
		{"http/batch=1/raw", discardHTTP, 1, 8, nil},
		{"http/batch=100/raw", discardHTTP, 100, 4, nil},
		{"http/batch=100/gzip/raw", discardHTTP, 100, 4, &gz},
		{"http/batch=1000/raw", discardHTTP, 1000, 4, nil},
		{"http/batch=100/net-http", discardNetHTTP, 100, 4, nil},
		{"tcp/batch=100", discardTCP, 100, 4, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			target := tc.target(b)
			b.ResetTimer()
			rep, err := Run(context.Background(), Config{
				Targets: []string{target}, Concurrency: tc.concurrency, Count: int64(b.N * tc.batch),
				Defaults: Phase{Batch: tc.batch, Gzip: tc.gzip, RecordSize: Size{Mean: 256}},
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if rep.Totals.Delivered != int64(b.N*tc.batch) {
				b.Fatalf("delivered %d of %d: %v", rep.Totals.Delivered, b.N*tc.batch, rep.Totals.Errors)
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(rep.Totals.Delivered)/secs, "records/s")
			b.ReportMetric(float64(rep.Totals.Requests)/secs, "requests/s")
			b.ReportMetric(float64(rep.Totals.Bytes)/secs/1e6, "MB/s")
		})
	}
}

// BenchmarkOpenLoopKeepsUp offers a fixed rate for two seconds against the
// raw receiver and reports what was achieved and how many requests left
// late: the open loop's usable ceiling.
func BenchmarkOpenLoopKeepsUp(b *testing.B) {
	for _, rate := range []float64{200_000, 500_000, 1_000_000} {
		b.Run(strconv.FormatFloat(rate, 'f', 0, 64), func(b *testing.B) {
			target := discardHTTP(b)
			var achieved, late, p99 float64
			for b.Loop() {
				rep, err := Run(context.Background(), Config{
					Targets: []string{target}, Concurrency: 8,
					Defaults: Phase{Rate: rate, Batch: 100, Duration: Duration(2 * time.Second)},
				})
				if err != nil {
					b.Fatal(err)
				}
				achieved += rep.Totals.AchievedRPS
				late += float64(rep.Totals.Late) / float64(max(rep.Totals.Requests, 1))
				p99 += rep.Totals.Latency.P99
			}
			n := float64(b.N)
			b.ReportMetric(achieved/n, "achieved-records/s")
			b.ReportMetric(late/n, "late-fraction")
			b.ReportMetric(p99/n, "p99-ms")
		})
	}
}
