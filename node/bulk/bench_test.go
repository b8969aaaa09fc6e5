package bulk

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParse parses a 1000-document Filebeat-shaped bulk body.
func BenchmarkParse(b *testing.B) {
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, "{\"create\":{\"_index\":\"filebeat-8.15.0\"}}\n{\"@timestamp\":\"2024-05-01T10:00:00.000Z\",\"message\":\"GET /api/orders/%d 200\",\"id\":\"fb-%d\",\"host\":{\"name\":\"web-1\"}}\n", i, i)
	}
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		items, err := Parse(body, "", 0)
		if err != nil || len(items) != 1000 {
			b.Fatal(err, len(items))
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "records/s")
}
