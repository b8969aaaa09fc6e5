package sink

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkFileWrite measures durable throughput: batches of 256 records of
// about 200 bytes, each Write waiting for its fsync, from 1, 4 and 16
// concurrent writers. batches/fsync shows how much group commit shares.
// Set BATCHPILOT_BENCH_DIR to measure a particular disk (the default temp
// directory may be a tmpfs, where fsync costs nothing).
func BenchmarkFileWrite(b *testing.B) {
	const records, recordSize = 256, 200
	batch := &Batch{}
	for i := range records {
		head := fmt.Sprintf(`{"id":"bench-%06d","level":"info","msg":"`, i)
		r := []byte(head + strings.Repeat("m", recordSize-len(head)-2) + `"}`)
		batch.Records = append(batch.Records, r)
		batch.Bytes += len(r)
	}
	for _, writers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			dir, err := os.MkdirTemp(os.Getenv("BATCHPILOT_BENCH_DIR"), "filesink-bench-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			f, err := NewFile(FileConfig{Dir: dir, Logger: discardLogger})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(ndjsonSize(batch)))
			b.ReportAllocs()
			b.ResetTimer()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if err := f.Write(context.Background(), batch); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			st := f.Stats()
			b.ReportMetric(float64(b.N)*records/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(st.Batches)/float64(max(st.Syncs, 1)), "batches/fsync")
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
