package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
)

// forwardedHeader marks a request one node sends to another on a client's
// behalf; its value is the sending node's name. The receiver answers it
// from what it has and never forwards it again, so requests cannot loop.
const forwardedHeader = "X-Batchpilot-Forwarded-By"

// requestIDHeader carries a limits change's request id; retrying with the
// same id is safe (the change is applied once).
const requestIDHeader = "X-Request-ID"

// maxPeerBody bounds what is read from another node's answer.
const maxPeerBody = 8 << 20

// peerClient asks other nodes' APIs for what only they have.
type peerClient struct {
	self    string
	scheme  string // http, or https when the cluster serves TLS
	timeout time.Duration
	http    *http.Client
}

// newPeerClient asks peers over http, or over https with tlsConfig when it
// is not nil.
func newPeerClient(self string, timeout time.Duration, tlsConfig *tls.Config) *peerClient {
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		tlsConfig = tlsConfig.Clone()
	}
	tr := &http.Transport{
		TLSClientConfig:       tlsConfig,
		Proxy:                 nil, // peers are reached directly
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 0, // bounded by each request's context
	}
	return &peerClient{self: self, scheme: scheme, timeout: timeout, http: &http.Client{Transport: tr}}
}

// peerError is a peer's answer other than 2xx: its status and message.
type peerError struct {
	Status int
	Msg    string
}

func (e *peerError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Msg) }

// baseURL turns an advertised HTTP address (host:port) into a URL.
func (p *peerClient) baseURL(httpAddr string) string { return p.scheme + "://" + httpAddr }

// getJSON GETs path (with query) from the member at httpAddr into out,
// within the client's timeout.
func (p *peerClient) getJSON(ctx context.Context, httpAddr, path string, query url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	u := p.baseURL(httpAddr) + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request to %s: %w", httpAddr, err)
	}
	req.Header.Set(forwardedHeader, p.self)
	req.Header.Set("Accept", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", httpAddr, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerBody))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", httpAddr, err)
	}
	if resp.StatusCode/100 != 2 {
		return &peerError{Status: resp.StatusCode, Msg: errorMessage(body)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", httpAddr, err)
	}
	return nil
}

// forward sends a request with a JSON body and the headers in hdr to the
// member at httpAddr and returns its answer as is.
func (p *peerClient) forward(ctx context.Context, method, httpAddr, path string, body []byte, hdr http.Header) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.baseURL(httpAddr)+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("build request to %s: %w", httpAddr, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set(forwardedHeader, p.self)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("forward to %s: %w", httpAddr, unwrapURLError(err))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer of %s: %w", httpAddr, err)
	}
	return resp.StatusCode, resp.Header, out, nil
}

// errorMessage is the "error" of a JSON error body, or the body's start.
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(bytes.TrimSpace(body))
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// reachable reports whether a member is worth asking: it has an HTTP
// address and gossip does not hold it dead or gone.
func reachable(m cluster.Member) bool {
	return m.HTTPAddr != "" && (m.Status == cluster.StatusAlive || m.Status == cluster.StatusSuspect)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
