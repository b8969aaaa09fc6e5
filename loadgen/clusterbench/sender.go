package clusterbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

// outcome is one request the load offered to a node.
type outcome struct {
	node    int
	sent    time.Duration // since the start of the load
	records int
	latency time.Duration // the timeout when it failed
	ok      bool
}

// body is Batch NDJSON records of about RecordSize bytes each; the node
// keeps every record's fields, the downstream pays for every byte.
func body(sc *Scenario, node int) []byte {
	var b bytes.Buffer
	for i := range sc.Batch {
		line := fmt.Sprintf(`{"id":"n%d-%d","msg":"`, node+1, i)
		b.WriteString(line)
		b.WriteString(strings.Repeat("x", max(sc.RecordSize-len(line)-3, 0)))
		b.WriteString("\"}\n")
	}
	return b.Bytes()
}

// offer sends node i its load, open loop: requests of Batch records at the
// phase's rate, at most Senders in flight; a request due while all are busy
// is offered and fails at once. It returns every request's outcome.
func offer(ctx context.Context, sc *Scenario, i int, url string, start time.Time) []outcome {
	client := &http.Client{Timeout: time.Duration(sc.Timeout), Transport: &http.Transport{
		MaxIdleConnsPerHost: sc.Senders, MaxConnsPerHost: sc.Senders, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	payload := body(sc, i)
	slots := make(chan struct{}, sc.Senders)
	var (
		mu   sync.Mutex
		outs []outcome
		wg   sync.WaitGroup
	)
	record := func(o outcome) {
		mu.Lock()
		outs = append(outs, o)
		mu.Unlock()
	}
	var phaseStart time.Duration
	for _, p := range sc.Phases {
		// The phase's requests, evenly spaced: exactly rate × duration
		// records (rounded to whole requests).
		pd := time.Duration(p.Duration)
		count := int64(math.Round(p.rateOf(i) * pd.Seconds() / float64(sc.Batch)))
		end := phaseStart + pd
		for k := range count {
			at := phaseStart + time.Duration(float64(pd)*float64(k)/float64(count))
			if wait := time.Until(start.Add(at)); wait > 0 {
				select {
				case <-ctx.Done():
					wg.Wait()
					return outs
				case <-time.After(wait):
				}
			}
			select {
			case slots <- struct{}{}:
			default:
				record(outcome{node: i, sent: at, records: sc.Batch, latency: time.Duration(sc.Timeout)})
				continue
			}
			wg.Add(1)
			go func(at time.Duration) {
				defer wg.Done()
				defer func() { <-slots }()
				began := time.Now()
				ok := post(ctx, client, url+"/v1/logs", payload)
				lat := time.Since(began)
				if !ok {
					lat = time.Duration(sc.Timeout)
				}
				record(outcome{node: i, sent: at, records: sc.Batch, latency: lat, ok: ok})
			}(at)
		}
		phaseStart = end
	}
	wg.Wait()
	return outs
}

func post(ctx context.Context, client *http.Client, url string, payload []byte) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
