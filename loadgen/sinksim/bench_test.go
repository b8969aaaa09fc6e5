package sinksim

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCostModel sends batches one at a time and reports the measured
// time per batch against the configured cost: measured/configured is the
// model's accuracy (1.00 to 1.10 is within 10 %).
func BenchmarkCostModel(b *testing.B) {
	for _, tc := range []struct {
		name    string
		cost    Cost
		records int
	}{
		{"5ms+20us/rec x100", Cost{PerRequest: 5 * time.Millisecond, PerRecord: 20 * time.Microsecond}, 100},
		{"1ms+5us/rec x1000", Cost{PerRequest: time.Millisecond, PerRecord: 5 * time.Microsecond}, 1000},
		{"15ms+50us/rec x100", Cost{PerRequest: 15 * time.Millisecond, PerRecord: 50 * time.Microsecond}, 100},
		{"knee 200 x400", Cost{PerRequest: 2 * time.Millisecond, PerRecord: 10 * time.Microsecond, KneeBatch: 200, KneeFactor: 5}, 400},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := Start(Config{Cost: tc.cost})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			body := ndjson(0, tc.records, 200)
			want := tc.cost.Of(tc.records, len(body))
			var total time.Duration
			for b.Loop() {
				began := time.Now()
				resp, err := post(context.Background(), s.URL(), body, false)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("post: %v", err)
				}
				total += time.Since(began)
			}
			n := b.N
			st := s.Stats()
			b.ReportMetric(float64(total)/float64(n)/float64(want), "measured/configured")
			b.ReportMetric(st.ServiceMS/st.CostMS, "service/cost")
		})
	}
}
