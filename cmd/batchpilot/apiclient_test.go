package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/consensus"
)

// fakeAPI answers the cluster and limits endpoints in the shapes of
// contract.md, and records what it was asked.
type fakeAPI struct {
	mu       sync.Mutex
	limits   consensus.Limits
	token    string
	requests []fakeRequest
	// failPuts answers this many PUTs with 503 before committing.
	failPuts int
	// answer, when set, replaces every answer with this status and body.
	answer     int
	answerBody string
}

type fakeRequest struct {
	method, path, auth, requestID, body string
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{limits: consensus.DefaultLimits()}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, fakeRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Request-ID"), string(body)})
	w.Header().Set("Content-Type", "application/json")
	reply := func(status int, v any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if f.answer != 0 {
		w.WriteHeader(f.answer)
		io.WriteString(w, f.answerBody)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/cluster":
		reply(200, fakeStatus(f.limits))
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/limits":
		reply(200, f.limits)
	case r.Method == http.MethodPut && r.URL.Path == "/api/v1/limits":
		if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
			reply(401, map[string]string{"error": "this call needs the API token"})
			return
		}
		if f.failPuts > 0 {
			f.failPuts--
			w.Header().Set("Retry-After", "0")
			reply(503, map[string]string{"error": "no leader is known"})
			return
		}
		var p consensus.LimitsPatch
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			reply(400, map[string]string{"error": err.Error()})
			return
		}
		next := p.Apply(f.limits)
		if err := next.Validate(); err != nil {
			reply(400, map[string]string{"error": err.Error()})
			return
		}
		f.limits = next
		reply(200, f.limits)
	default:
		reply(404, map[string]string{"error": "no such path: " + r.URL.Path})
	}
}

// set changes the fake under its lock: the handler runs on the server's
// goroutines.
func (f *fakeAPI) set(change func(f *fakeAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeAPI) seen() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

func fakeStatus(l consensus.Limits) consensus.Status {
	lease := consensus.LeaseInfo{Epoch: 41, GrantBytes: 1 << 20, Fresh: false, Baseline: 1 << 20, AgeMS: 9000}
	return consensus.Status{
		ClusterID: "c0ffee", Term: 7, Epoch: 42, Limits: l, BudgetBytes: l.ClusterBudgetBytes, GrantedBytes: 12 << 20,
		Leader: consensus.LeaderInfo{ID: "id-1", Name: "node-1", HTTPAddr: "127.0.0.1:8480"},
		Members: []consensus.MemberStatus{
			{ID: "id-1", Name: "node-1", Status: cluster.StatusAlive, RaftRole: "leader", HTTPAddr: "127.0.0.1:8480",
				Health: cluster.Health{BatchSize: 800, ThroughputRPS: 12345, P99ms: 42.5, Breaker: cluster.BreakerClosed},
				Budget: consensus.MemberBudget{GrantBytes: 8 << 20}},
			{ID: "id-2", Name: "node-2", Status: cluster.StatusSuspect, RaftRole: "nonvoter", HTTPAddr: "127.0.0.1:8481",
				Health: cluster.Health{BatchSize: 50, ThroughputRPS: 10, P99ms: 3, Breaker: cluster.BreakerOpen},
				Budget: consensus.MemberBudget{GrantBytes: 4 << 20, Lease: &lease}},
			{ID: "id-3", Status: cluster.StatusDead, RaftRole: "voter"},
		},
	}
}

// runCLI runs the built binary and returns its stdout, stderr and exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestMembersPrintsOneRowPerMember(t *testing.T) {
	_, srv := newFakeAPI(t)
	out, errOut, code := runCLI(t, nil, "members", "--addr", srv.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"cluster c0ffee  leader node-1  term 7  epoch 42  granted 12.0 MiB of 256.0 MiB",
		"NAME", "STATUS", "RAFT", "HTTP", "BATCH", "THROUGHPUT", "P99", "BREAKER", "GRANT",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	for name, want := range map[string]string{
		"node-1": "node-1 alive leader 127.0.0.1:8480 800 12k/s 42.5ms closed 8.0 MiB",
		"node-2": "node-2 suspect nonvoter 127.0.0.1:8481 50 10/s 3.0ms open 1.0 MiB (stale lease)",
		"(id":    "(id id-3) dead voter - - - - - 0 B",
	} {
		if got := strings.Join(rows[name], " "); got != want {
			t.Errorf("row %s = %q, want %q", name, got, want)
		}
	}
}

func TestMembersJSONIsTheAPIAnswer(t *testing.T) {
	f, srv := newFakeAPI(t)
	out, errOut, code := runCLI(t, []string{"BATCHPILOT_ADDR=" + srv.URL, "BATCHPILOT_TOKEN=s3cret"}, "members", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got consensus.Status
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output is not a cluster status: %v\n%s", err, out)
	}
	if got.ClusterID != "c0ffee" || len(got.Members) != 3 || got.Members[1].Budget.Lease == nil {
		t.Errorf("--json lost content: %+v", got)
	}
	if r := f.seen(); len(r) != 1 || r[0].auth != "Bearer s3cret" {
		t.Errorf("requests = %+v, want one GET with the token from BATCHPILOT_TOKEN", r)
	}
}

func TestAPIClientErrorsSayWhatWentWrong(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.set(func(f *fakeAPI) {
		f.answer, f.answerBody = 503, `{"error":"no leader is known (an election may be under way)"}`
	})
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"an error answer is shown with its status", []string{"members", "--addr", srv.URL}, 1, "503 Service Unavailable: no leader is known"},
		{"a node that is not there", []string{"members", "--addr", "127.0.0.1:1"}, 1, "cannot reach a node at http://127.0.0.1:1"},
		{"a bad address", []string{"limits", "get", "--addr", "ftp://x"}, 1, `want http://HOST:PORT`},
		{"members takes no arguments", []string{"members", "extra"}, 2, "members takes no arguments"},
		{"loadgen takes flags only", []string{"loadgen", "extra"}, 2, "unexpected arguments: [extra]"},
		{"sinksim takes flags only", []string{"sinksim", "extra"}, 2, "unexpected arguments: [extra]"},
		{"bench takes flags only", []string{"bench", "--quick", "extra"}, 2, "unexpected arguments: [extra]"},
		{"limits needs a subcommand", []string{"limits", "frob"}, 2, `unknown subcommand "frob"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
}

func TestLimitsGetPrintsEveryLimit(t *testing.T) {
	_, srv := newFakeAPI(t)
	out, errOut, code := runCLI(t, nil, "limits", "get", "--addr", srv.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, name := range consensus.LimitNames() {
		if !strings.Contains(out, name+" ") {
			t.Errorf("limits get lacks %s:\n%s", name, out)
		}
	}
	if !strings.Contains(out, "cluster_budget_bytes  268435456  (256.0 MiB)") {
		t.Errorf("budget line missing or unformatted:\n%s", out)
	}
}

func TestLimitsSetPutsThePatchAndPrintsTheCommittedLimits(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.set(func(f *fakeAPI) {
		f.token = "s3cret"
		f.failPuts = 2 // an election under way: the same request is sent again
	})
	out, errOut, code := runCLI(t, nil, "limits", "set", "max_batch_size=5000", "--addr", srv.URL, "slo_ms=250", "--token", "s3cret")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "committed:") || !strings.Contains(out, "max_batch_size        5000") || !strings.Contains(out, "slo_ms                250") {
		t.Errorf("output does not show the committed limits:\n%s", out)
	}
	var puts []fakeRequest
	for _, r := range f.seen() {
		if r.method == http.MethodPut {
			puts = append(puts, r)
		}
	}
	if len(puts) != 3 {
		t.Fatalf("%d PUTs, want 3 (two answered 503, then committed)", len(puts))
	}
	for _, p := range puts {
		if p.body != `{"max_batch_size":5000,"slo_ms":250}` || p.auth != "Bearer s3cret" || p.requestID == "" || p.requestID != puts[0].requestID {
			t.Errorf("PUT %+v: want the JSON patch, the bearer token and one request id for every retry", p)
		}
	}
}

func TestLimitsSetRefusesBadInputBeforeChangingAnything(t *testing.T) {
	f, srv := newFakeAPI(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown limit", []string{"nope=1"}, `unknown limit "nope" (known: budget_mode, cluster_budget_bytes, `},
		{"not a number", []string{"max_batch_size=lots"}, `max_batch_size: "lots" is not a whole number`},
		{"not KEY=VALUE", []string{"max_batch_size"}, `"max_batch_size" is not KEY=VALUE`},
		{"nothing to set", nil, "limits set needs at least one KEY=VALUE"},
		{"out of range", []string{"max_batch_size=0"}, "nothing changed: invalid limits: max_batch_size must be between 1 and 10000000, got 0"},
		{"lease shorter than two epochs", []string{"epoch_ms=5000"}, "lease_ttl_ms must be at least twice epoch_ms (10000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, nil, append([]string{"limits", "set", "--addr", srv.URL}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, errOut, tc.want)
			}
		})
	}
	for _, r := range f.seen() {
		if r.method != http.MethodGet {
			t.Errorf("a bad change reached the API: %+v", r)
		}
	}
	f.set(func(f *fakeAPI) {
		if f.limits != consensus.DefaultLimits() {
			t.Errorf("limits changed: %+v", f.limits)
		}
	})
}

func TestLimitsSetShowsTheServersRefusal(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.set(func(f *fakeAPI) { f.token = "s3cret" })
	_, errOut, code := runCLI(t, nil, "limits", "set", "--addr", srv.URL, "slo_ms=100")
	if code != 1 || !strings.Contains(errOut, "PUT /api/v1/limits: 401 Unauthorized: this call needs the API token") {
		t.Errorf("exit %d, stderr %q; want exit 1 and the 401's message", code, errOut)
	}
}

func TestMembersShowsTheLearnedBudgetBesideItsCeiling(t *testing.T) {
	l := consensus.DefaultLimits()
	for _, tc := range []struct {
		name         string
		mode         string
		budget, ceil int64
		want         string
	}{
		{"a learned budget below the ceiling is shown with it", consensus.BudgetLearned, 32 << 20, 256 << 20, "granted 12.0 MiB of 32.0 MiB (learned; ceiling 256.0 MiB)"},
		{"a learned budget at the ceiling is shown as the ceiling", consensus.BudgetLearned, 256 << 20, 256 << 20, "granted 12.0 MiB of 256.0 MiB\n"},
		{"a fixed budget is the limit", consensus.BudgetFixed, 256 << 20, 256 << 20, "granted 12.0 MiB of 256.0 MiB\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := fakeStatus(l)
			st.BudgetMode, st.BudgetBytes, st.CeilingBytes = tc.mode, tc.budget, tc.ceil
			var b bytes.Buffer
			if err := printMembers(&b, st); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, b.String())
			}
		})
	}
}
