package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/batchpilot/batchpilot/consensus/testpki"
)

// The intakes beyond plain HTTP and syslog, each with a real client, against
// one agent that requires an ingest token.

const e2eIngestToken = "e2e-ingest-token"

// collected keeps what the OpenTelemetry SDK emits, so the test can export
// it itself and know which records were acknowledged.
type collected struct{ recs []sdklog.Record }

func (c *collected) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *collected) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *collected) Shutdown(context.Context) error                         { return nil }
func (c *collected) ForceFlush(context.Context) error                       { return nil }

// sendOTLP logs n records through the OpenTelemetry Go SDK and exports
// them with the official OTLP/HTTP exporter, in batches; it returns the ids
// of the batches the agent acknowledged.
func sendOTLP(t *testing.T, url string, n, batch int) []string {
	t.Helper()
	col := &collected{}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(col),
		sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", "e2e-otlp"))))
	logger := lp.Logger("batchpilot.e2e", otellog.WithInstrumentationVersion("1.0"))
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("otlp-%d", i)
		var r otellog.Record
		r.SetTimestamp(time.Now())
		r.SetSeverity(otellog.SeverityInfo)
		r.SetSeverityText("INFO")
		r.SetBody(attribute.StringValue("order placed"))
		r.AddAttributes(attribute.String("id", ids[i]), attribute.Int("items", i%7))
		logger.Emit(ctx, r)
	}
	exp, err := otlploghttp.New(context.Background(), otlploghttp.WithEndpointURL(url+"/v1/logs"),
		otlploghttp.WithCompression(otlploghttp.GzipCompression),
		otlploghttp.WithHeaders(map[string]string{"Authorization": "Bearer " + e2eIngestToken}),
		otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: true, InitialInterval: 50 * time.Millisecond,
			MaxInterval: time.Second, MaxElapsedTime: 30 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	var acked []string
	for i := 0; i < n; i += batch {
		j := min(i+batch, n)
		if err := exp.Export(context.Background(), col.recs[i:j]); err != nil {
			t.Errorf("OTLP export of records %d-%d: %v", i, j, err)
			continue
		}
		acked = append(acked, ids[i:j]...)
	}
	return acked
}

func TestIntakesWithRealClients(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "--ingest-token", e2eIngestToken, "--bulk-addr", "127.0.0.1:0")

	// Without the token, every HTTP ingest path is 401.
	if status, body, err := post(p.url, "application/x-ndjson", `{"id":"no-token"}`); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("ingest without the token: %d %s %v; want 401", status, body, err)
	}
	// With it, as curl sends it (the README's example).
	req, _ := http.NewRequest("POST", p.url+"/v1/logs", strings.NewReader(`{"id":"curl-1","message":"hi"}`+"\n"))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+e2eIngestToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest with the token: %v %v", resp, err)
	}
	resp.Body.Close()
	acked := []string{"curl-1"}

	acked = append(acked, sendOTLP(t, p.url, 600, 200)...)
	if got := metric(t, p.url, `batchpilot_otlp_log_records_total{result="accepted"}`); got != 600 {
		t.Errorf("batchpilot_otlp_log_records_total{accepted} = %v, want 600", got)
	}

	// rsyslog's omelasticsearch in bulk mode, with the token as its
	// basic-auth password. It has no acknowledgement to report to us: it
	// retries until the bulk API answers, so every line must arrive.
	bulkIDs := make([]string, 300)
	for i := range bulkIDs {
		bulkIDs[i] = fmt.Sprintf("es-%d", i)
	}
	if resp, err := http.Post("http://"+p.bulk+"/_bulk", "application/x-ndjson",
		strings.NewReader("{\"index\":{}}\n{\"id\":\"no-token\"}\n")); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bulk without the token: %v %v; want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	_, bulkPort, _ := net.SplitHostPort(p.bulk)
	rs := runRsyslog(t, bulkIDs, `module(load="omelasticsearch")
template(name="doc" type="string" string="{\"id\":\"%msg:::json%\",\"app\":\"%app-name:::json%\"}")`,
		fmt.Sprintf(`action(type="omelasticsearch" server="127.0.0.1" serverport="%s" searchIndex="rsyslog-e2e" bulkmode="on"
       template="doc" uid="elastic" pwd="%s" action.resumeRetryCount="-1")`, bulkPort, e2eIngestToken))
	poll(t, "every line rsyslog read in the sink", func() bool {
		rs.check(t)
		return metric(t, p.url, `batchpilot_bulk_items_total{result="created"}`) >= float64(len(bulkIDs))
	})
	acked = append(acked, bulkIDs...)
	lintIntakeMetrics(t, p.url)

	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	out, err := runVerifyCmd(t, writeIDs(t, acked), dir)
	if err != nil || !strings.HasPrefix(out, "lost 0 duplicated 0") {
		t.Fatalf("verify: %q %v; want lost 0 duplicated 0", out, err)
	}
	t.Logf("verify: %s (%d acknowledged)", out, len(acked))
	found := false
	for _, r := range sinkRecords(t, dir) {
		switch r["id"] {
		case "no-token":
			t.Fatalf("a request refused with 401 was written: %v", r)
		case "otlp-3":
			found = true
			res, _ := r["resource"].(map[string]any)
			attrs, _ := res["attributes"].(map[string]any)
			if r["_source"] != "otlp" || r["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || r["span_id"] != "00f067aa0ba902b7" ||
				r["severity_text"] != "INFO" || attrs["service.name"] != "e2e-otlp" || r["message"] != "order placed" {
				t.Fatalf("OTLP record lost a field: %v", r)
			}
		}
	}
	if !found {
		t.Fatal("record otlp-3 is not in the sink")
	}
}

// rsyslogProc is a running rsyslogd.
type rsyslogProc struct {
	exited chan struct{}
	out    *strings.Builder
}

// check fails the test if rsyslogd has exited (a configuration it refused).
func (r *rsyslogProc) check(t *testing.T) {
	t.Helper()
	select {
	case <-r.exited:
		t.Fatalf("rsyslogd exited:\n%s", r.out.String())
	default:
	}
}

// runRsyslog runs Debian's rsyslogd in the foreground with imfile reading
// one line per id into a ruleset of the action given, until the test ends;
// preamble (modules, templates, globals) goes before the ruleset.
func runRsyslog(t *testing.T, ids []string, preamble, action string) *rsyslogProc {
	t.Helper()
	if _, err := exec.LookPath("rsyslogd"); err != nil {
		t.Fatalf("rsyslogd is needed for this test (.ci/run installs rsyslog, rsyslog-elasticsearch, rsyslog-gnutls): %v", err)
	}
	dir := t.TempDir()
	input := filepath.Join(dir, "input.log")
	if err := os.WriteFile(input, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "rsyslog.conf")
	text := fmt.Sprintf(`global(workDirectory="%s")
module(load="imfile")
%s
ruleset(name="out") {
%s
}
input(type="imfile" file="%s" tag="e2e" ruleset="out")
`, dir, preamble, action, input)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("rsyslogd", "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	rs := &rsyslogProc{exited: make(chan struct{}), out: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = rs.out, rs.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(rs.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-rs.exited
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", rs.out.String())
		}
	})
	return rs
}

// TestSyslogOverTLSFromRsyslog: Debian's rsyslog-gnutls forwards
// octet-counted syslog over TLS with a client certificate, and the agent
// requires one.
func TestSyslogOverTLSFromRsyslog(t *testing.T) {
	serverCA, clientCA := testpki.NewCA(t, "e2e-server-ca"), testpki.NewCA(t, "e2e-client-ca")
	srvDir, cliDir := t.TempDir(), t.TempDir()
	srv := serverCA.WriteFiles(t, srvDir, "node", []net.IP{net.IPv4(127, 0, 0, 1)}, "batchpilot-node")
	cli := clientCA.WriteFiles(t, cliDir, "sender", nil, "sender")

	dir := t.TempDir()
	p := startProc(t, dir, "--tls-cert", srv.Cert, "--tls-key", srv.Key,
		"--syslog-tls-addr", "127.0.0.1:0", "--syslog-tls-client-ca", cli.CA)
	_, port, _ := net.SplitHostPort(p.sysTLS)
	lines := make([]string, 200)
	for i := range lines {
		lines[i] = fmt.Sprintf("tls-%d", i)
	}
	rs := runRsyslog(t, lines, fmt.Sprintf(`global(defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="%s"
       defaultNetstreamDriverCertFile="%s" defaultNetstreamDriverKeyFile="%s")`, srv.CA, cli.Cert, cli.Key),
		fmt.Sprintf(`action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp" tcp_framing="octet-counted"
       streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/name"
       streamDriverPermittedPeers="batchpilot-node" template="RSYSLOG_SyslogProtocol23Format"
       action.resumeRetryCount="-1")`, port))
	want := map[string]bool{}
	for _, l := range lines {
		want[l] = true
	}
	poll(t, "every line rsyslog forwarded over TLS in the sink", func() bool {
		rs.check(t)
		got := 0
		for _, r := range sinkRecords(t, dir) {
			if m, _ := r["message"].(string); want[m] && r["_source"] == "syslog" && r["app_name"] == "e2e" {
				got++
			}
		}
		return got >= len(lines)
	})
	if err := p.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
}

// lintIntakeMetrics checks the intakes' series on /metrics with promlint,
// the linter promtool check metrics runs.
func lintIntakeMetrics(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	problems, err := promlint.New(resp.Body).Lint()
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "batchpilot_otlp_") || strings.HasPrefix(p.Metric, "batchpilot_bulk_") {
			t.Errorf("/metrics: %s: %s", p.Metric, p.Text)
		}
	}
}
