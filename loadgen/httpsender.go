package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// newHTTPClient returns the client all HTTP senders of a run share: one
// keep-alive connection per sender and target, no proxy, no transparent
// compression (the sender sets Content-Encoding itself). tlsConfig is for
// https targets; nil takes the defaults.
func newHTTPClient(conns int, tlsConfig *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tlsConfig,
		DialContext:         d.DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      8 << 10,
	}}
}

// SentHeader carries, on every HTTP attempt loadgen makes, the time the
// attempt was sent (Unix nanoseconds): a retry carries its own. The bench
// reads it to time the attempt a node accepted (loadgen/bench). Receivers
// ignore it.
const SentHeader = "X-Loadgen-Sent"

// AttemptHeader carries the number of the attempt: 1, then 2 for the
// first retry. A batchpilot node leaves a retry's records out of the
// arrival rate its controllers see (node/admission_arrival.go): a retry is
// not new demand.
const AttemptHeader = "X-Attempt-Count"

// ParseSentHeader reads a SentHeader value; ok is false for anything but a
// positive decimal integer.
func ParseSentHeader(v string) (t time.Time, ok bool) {
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ns <= 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

var (
	ndjsonType = []string{"application/x-ndjson"}
	gzipEnc    = []string{"gzip"}
)

// httpSender POSTs NDJSON to a node's /v1/logs.
type httpSender struct {
	client  *http.Client
	timeout time.Duration
	ack     [512]byte
}

func (s *httpSender) send(ctx context.Context, t *target, wire []byte, pl *payload) attempt {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(wire))
	if err != nil {
		return attempt{kind: "other"}
	}
	req.Header["Content-Type"] = ndjsonType
	req.Header[SentHeader] = []string{strconv.FormatInt(time.Now().UnixNano(), 10)}
	req.Header[AttemptHeader] = []string{strconv.Itoa(max(1, pl.attempt))}
	if pl.gzip {
		req.Header["Content-Encoding"] = gzipEnc
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return classify(err)
	}
	n, _ := io.ReadFull(resp.Body, s.ack[:])
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a := statusAttempt(resp)
	if a.acked {
		if err != nil {
			return classify(err)
		}
		if !ackMatches(s.ack[:n], pl.n) {
			return attempt{kind: "bad_ack"}
		}
	}
	return a
}

// ackMatches checks {"accepted": N} against the records sent; an empty or
// different body (a plain receiver) is taken as an acknowledgement.
func ackMatches(body []byte, n int) bool {
	if !bytes.Contains(body, []byte(`"accepted"`)) {
		return true
	}
	var a struct {
		Accepted *int `json:"accepted"`
	}
	if json.Unmarshal(body, &a) != nil || a.Accepted == nil {
		return true
	}
	return *a.Accepted == n
}

func (s *httpSender) close() {}
