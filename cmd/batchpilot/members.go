package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/consensus"
)

func init() {
	register("members", "list the cluster's members: status, Raft role, health and budget (GET /api/v1/cluster)", runMembers)
}

// apiClient is a thin client of one node's HTTP API: the members and
// limits commands.
type apiClient struct {
	base  string // http://host:port, no trailing slash
	token string
	http  *http.Client
}

// apiFlags are the flags every API client command takes.
type apiFlags struct {
	addr    string
	token   string
	json    bool
	timeout time.Duration
	tlsCA   string
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "http://127.0.0.1:8480", "HTTP address of any node (its --http-addr)")
	fs.StringVar(&f.token, "token", "", "API token (the agents' --api-token), sent as a bearer token")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON answer instead of a table")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the answer, retries included")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM CA bundle to verify an https:// node's certificate with (the agents' --tls-ca);\ndefault the system's roots")
}

func (f *apiFlags) client() (*apiClient, error) {
	base, err := normalizeAddr(f.addr)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := clientTLS(f.tlsCA)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: f.timeout}
	if tlsCfg != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		hc.Transport = tr
	}
	return &apiClient{base: base, token: f.token, http: hc}, nil
}

// get sends GET path to the node the flags name and returns the answer's body.
func (f *apiFlags) get(ctx context.Context, path string) ([]byte, error) {
	c, err := f.client()
	if err != nil {
		return nil, err
	}
	return c.do(ctx, http.MethodGet, path, nil, nil)
}

// normalizeAddr accepts http://host:port, https://host:port or host:port.
func normalizeAddr(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("--addr is empty: give a node's HTTP address, e.g. http://127.0.0.1:8480")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--addr %q: want http://HOST:PORT", addr)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}

// apiError is a non-2xx answer.
type apiError struct {
	method, path string
	status       int
	msg          string
	retryAfter   time.Duration
	// leader is the leader's HTTP address when a node answered that it
	// does not forward the request there itself (see the API).
	leader string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.method, e.path, e.status, http.StatusText(e.status), e.msg)
}

// do sends one request and returns the body of a 2xx answer.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, hdr http.Header) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return nil, fmt.Errorf("cannot reach a node at %s (is the agent running? see --addr): %w", c.base, err)
		}
		return nil, fmt.Errorf("%s %s%s: %w", method, c.base, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: read answer: %w", method, c.base, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{method: method, path: path, status: resp.StatusCode, msg: errorMessage(out)}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			e.retryAfter = time.Duration(s) * time.Second
		}
		var hint struct {
			Leader struct {
				HTTPAddr string `json:"http_addr"`
			} `json:"leader"`
		}
		if json.Unmarshal(out, &hint) == nil {
			e.leader = hint.Leader.HTTPAddr
		}
		if resp.StatusCode == http.StatusNotFound && !json.Valid(out) {
			e.msg = "no such API here: is " + c.base + " a batchpilot node?"
		}
		return nil, e
	}
	return out, nil
}

// errorMessage is the "error" of a JSON error body, or the body itself.
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		s = "(no message)"
	}
	return s
}

func runMembers(ctx context.Context, args []string) error {
	var f apiFlags
	fs := newFlagSet("members", "members [--addr URL] [--token T] [--json]")
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "members takes no arguments, got %q\n", fs.Args())
		return errUsage
	}
	body, err := f.get(ctx, "/api/v1/cluster")
	if err != nil {
		return err
	}
	if f.json {
		return writeJSON(os.Stdout, body)
	}
	var st consensus.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("GET /api/v1/cluster: the answer is not a cluster status: %w", err)
	}
	return printMembers(os.Stdout, st)
}

// writeJSON prints a JSON answer indented, as it came otherwise.
func writeJSON(w io.Writer, body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		_, err = w.Write(body)
		return err
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

// printMembers writes the cluster summary and one row per member.
func printMembers(w io.Writer, st consensus.Status) error {
	leader := st.Leader.Name
	if leader == "" {
		leader = st.Leader.ID
	}
	if leader == "" {
		leader = "(none)"
	}
	learning := ""
	if st.Learning {
		learning = " (learning)"
	}
	budget, learned := st.Limits.ClusterBudgetBytes, ""
	if st.BudgetBytes > 0 && st.BudgetMode == consensus.BudgetLearned && st.BudgetBytes != st.CeilingBytes {
		budget, learned = st.BudgetBytes, " (learned; ceiling "+formatBytes(st.CeilingBytes)+")"
	}
	fmt.Fprintf(w, "cluster %s  leader %s  term %d  epoch %d%s  granted %s of %s%s\n\n",
		orDash(st.ClusterID), leader, st.Term, st.Epoch, learning,
		formatBytes(st.GrantedBytes), formatBytes(budget), learned)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tRAFT\tHTTP\tBATCH\tTHROUGHPUT\tP99\tBREAKER\tGRANT")
	for _, m := range st.Members {
		name := m.Name
		if name == "" {
			name = "(id " + m.ID + ")"
		}
		grant := formatBytes(m.Budget.GrantBytes)
		if l := m.Budget.Lease; l != nil && !l.Fresh {
			grant = formatBytes(l.GrantBytes) + " (stale lease)"
		}
		batch, rate, p99, breaker := strconv.Itoa(m.Health.BatchSize), formatRate(m.Health.ThroughputRPS),
			formatMS(m.Health.P99ms), orDash(string(m.Health.Breaker))
		if m.Status == cluster.StatusDead || m.Status == cluster.StatusLeft {
			// Its last gossiped health is history, not its state.
			batch, rate, p99, breaker = "-", "-", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			name, m.Status, orDash(m.RaftRole), orDash(m.HTTPAddr), batch, rate, p99, breaker, grant)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatBytes writes n in binary units: 512 B, 4.0 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func formatRate(rps float64) string {
	switch {
	case rps >= 10000:
		return fmt.Sprintf("%.0fk/s", rps/1000)
	case rps >= 1000:
		return fmt.Sprintf("%.1fk/s", rps/1000)
	default:
		return fmt.Sprintf("%.0f/s", rps)
	}
}

func formatMS(ms float64) string {
	if ms >= 100 || ms == 0 {
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.1fms", ms)
}
