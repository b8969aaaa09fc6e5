package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
	"github.com/batchpilot/batchpilot/consensus"
	"github.com/batchpilot/batchpilot/tuner"
)

func TestClusterDescribesTheLeaderMembersAndLimits(t *testing.T) {
	tn := startSingle(t, "")
	r := get(t, tn.url+"/api/v1/cluster")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var st consensus.Status
	r.json(t, &st)
	if st.ClusterID == "" || st.Leader.Name != "solo" || st.Leader.HTTPAddr != tn.addr || st.Term == 0 {
		t.Fatalf("cluster = %+v, want solo leading with its HTTP address", st)
	}
	if len(st.Members) != 1 || st.Members[0].Status != "alive" || st.Members[0].RaftRole != "leader" {
		t.Fatalf("members = %+v, want solo alive and leader", st.Members)
	}
	if st.Limits.EpochMS != 200 {
		t.Fatalf("limits = %+v, want the initial ones", st.Limits)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store", cc)
	}
}

func TestNodeShowsHealthAndOneSecondHistory(t *testing.T) {
	tn := startSingle(t, "")
	var v NodeView
	clustertest.WaitFor(t, "three intervals of history", func() bool {
		r := get(t, tn.url+"/api/v1/nodes/solo")
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		r.json(t, &v)
		return len(v.History) >= 3
	})
	if v.Name != "solo" || v.ID == "" || v.Controller != "flipper" || v.IntervalMS != 100 {
		t.Fatalf("node = %+v", v)
	}
	for i := 1; i < len(v.History); i++ {
		if !v.History[i].Time.After(v.History[i-1].Time) {
			t.Fatalf("history is not oldest first at %d: %v then %v", i, v.History[i-1].Time, v.History[i].Time)
		}
	}
	if v.Health.Time.IsZero() || (v.Health.BatchSize != 100 && v.Health.BatchSize != 200) {
		t.Fatalf("health now = %+v", v.Health)
	}

	r := get(t, tn.url+"/api/v1/nodes/nobody")
	if r.status != http.StatusNotFound || !strings.Contains(r.errorText(t), `"nobody"`) {
		t.Fatalf("unknown node: %d %s", r.status, r.body)
	}
}

// TestHistoryHoldsFiveMinutes fills the node's history ring quickly (a 5 ms
// control interval) and checks that the API serves 300 entries: five
// minutes at the default one-second interval.
func TestHistoryHoldsFiveMinutes(t *testing.T) {
	tn := startNode(t, "quick", nodeOptions{expect: 1, interval: 5 * time.Millisecond})
	var v NodeView
	clustertest.WaitFor(t, "300 entries of history", func() bool {
		get(t, tn.url+"/api/v1/nodes/quick").json(t, &v)
		return len(v.History) >= 300
	})
	// The ring keeps its size as it turns.
	clustertest.WaitFor(t, "the ring to turn", func() bool {
		var w NodeView
		get(t, tn.url+"/api/v1/nodes/quick").json(t, &w)
		if len(w.History) != 300 {
			t.Fatalf("history has %d entries, want 300", len(w.History))
		}
		return w.History[0].Time.After(v.History[0].Time)
	})
}

func TestDecisionsNewestFirstWithLimitAndSince(t *testing.T) {
	tn := startSingle(t, "")
	var v DecisionsView
	clustertest.WaitFor(t, "five decisions", func() bool {
		r := get(t, tn.url+"/api/v1/decisions")
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		r.json(t, &v)
		return len(v.Decisions) >= 5
	})
	checkNewestFirst(t, v.Decisions)
	d := v.Decisions[0]
	if d.Node != "solo" || d.Controller != "flipper" || !strings.HasPrefix(d.Reason, "test:") || d.OldSize == d.NewSize {
		t.Fatalf("decision = %+v", d)
	}
	if len(v.Unreachable) != 0 {
		t.Fatalf("unreachable = %+v on a one-node cluster", v.Unreachable)
	}

	var two DecisionsView
	get(t, tn.url+"/api/v1/decisions?limit=2&node=solo").json(t, &two)
	if len(two.Decisions) != 2 {
		t.Fatalf("limit=2 gave %d decisions", len(two.Decisions))
	}
	since := v.Decisions[2].Time
	var after DecisionsView
	get(t, tn.url+"/api/v1/decisions?since="+url.QueryEscape(since.Format(time.RFC3339Nano))).json(t, &after)
	if len(after.Decisions) < 2 {
		t.Fatalf("since the third newest: %d decisions", len(after.Decisions))
	}
	for _, d := range after.Decisions {
		if !d.Time.After(since) {
			t.Fatalf("decision at %v is not after since %v", d.Time, since)
		}
	}
}

func checkNewestFirst(t *testing.T, recs []tuner.DecisionRecord) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Time.After(recs[i-1].Time) {
			t.Fatalf("decisions not newest first at %d: %v then %v", i, recs[i-1].Time, recs[i].Time)
		}
	}
}

func TestBadQueriesAreJSONErrorsNever500(t *testing.T) {
	tn := startSingle(t, "")
	for _, tc := range []struct {
		name, method, path string
		body               string
		status             int
		says               string
	}{
		{"limit zero", "GET", "/api/v1/decisions?limit=0", "", 400, "limit"},
		{"limit negative", "GET", "/api/v1/decisions?limit=-5", "", 400, "limit"},
		{"limit not a number", "GET", "/api/v1/decisions?limit=ten", "", 400, "limit"},
		{"limit too large", "GET", "/api/v1/decisions?limit=1001", "", 400, "limit"},
		{"since not a time", "GET", "/api/v1/decisions?since=yesterday", "", 400, "since"},
		{"unknown node's decisions", "GET", "/api/v1/decisions?node=ghost", "", 404, "ghost"},
		{"over-long node name", "GET", "/api/v1/decisions?node=" + strings.Repeat("x", 300), "", 400, "node"},
		{"unknown node", "GET", "/api/v1/nodes/ghost", "", 404, "ghost"},
		{"escaped odd node name", "GET", "/api/v1/nodes/%00%ff", "", 404, "member"},
		{"unknown API path", "GET", "/api/v1/nope", "", 404, "no such path"},
		{"wrong method", "POST", "/api/v1/cluster", "{}", 405, "not allowed"},
		{"delete limits", "DELETE", "/api/v1/limits", "", 405, "not allowed"},
		{"unknown asset", "GET", "/assets/nope.js", "", 404, "asset"},
		{"asset path escape", "GET", "/assets/../../server.go", "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, tn.url+tc.path, tc.body, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if msg := r.errorText(t); !strings.Contains(msg, tc.says) {
				t.Fatalf("error %q does not mention %q", msg, tc.says)
			}
		})
	}
}

func TestLimitsPutNeedsTheToken(t *testing.T) {
	tn := startSingle(t, "s3cret")
	body := `{"max_batch_size": 4321}`
	for _, tc := range []struct {
		name   string
		auth   string
		status int
	}{
		{"no header", "", 401},
		{"not bearer", "Basic czNjcmV0", 401},
		{"empty bearer", "Bearer ", 401},
		{"wrong token", "Bearer guess", 403},
		{"prefix of the token", "Bearer s3cre", 403},
		{"token with a suffix", "Bearer s3cret!", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Type": "application/json"}
			if tc.auth != "" {
				hdr["Authorization"] = tc.auth
			}
			r := do(t, "PUT", tn.url+"/api/v1/limits", body, hdr)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			r.errorText(t)
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without a Bearer challenge: %v", r.header)
			}
		})
	}
	if got := tn.raft.Limits().MaxBatchSize; got == 4321 {
		t.Fatal("a refused request changed the limits")
	}
	r := do(t, "PUT", tn.url+"/api/v1/limits", body, map[string]string{"Authorization": "Bearer s3cret"})
	if r.status != http.StatusOK {
		t.Fatalf("with the token: %d %s", r.status, r.body)
	}
	var l consensus.Limits
	r.json(t, &l)
	if l.MaxBatchSize != 4321 || l.EpochMS != 200 {
		t.Fatalf("committed limits = %+v, want max_batch_size 4321 and the rest kept", l)
	}
	if r.header.Get(requestIDHeader) == "" {
		t.Fatal("no request id in the answer")
	}
	get(t, tn.url+"/api/v1/limits").json(t, &l)
	if l.MaxBatchSize != 4321 {
		t.Fatalf("GET after PUT: %+v", l)
	}
}

func TestLimitsPutRejectsBadInputAndChangesNothing(t *testing.T) {
	tn := startSingle(t, "")
	before := tn.raft.Limits()
	for _, tc := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		says   string
	}{
		{"out of range", `{"max_batch_size": 0}`, nil, 400, "max_batch_size must be between"},
		{"two out of range", `{"slo_ms": -1, "cpu_limit_percent": 101}`, nil, 400, "cpu_limit_percent"},
		{"lease shorter than two epochs", `{"lease_ttl_ms": 300}`, nil, 400, "lease_ttl_ms"},
		{"unknown limit", `{"max_batch": 10}`, nil, 400, `unknown limit "max_batch"`},
		{"string for a number", `{"max_batch_size": "10"}`, nil, 400, "max_batch_size"},
		{"fraction for a whole number", `{"max_batch_size": 10.5}`, nil, 400, "max_batch_size"},
		{"overflow", `{"max_batch_size": 1e40}`, nil, 400, "max_batch_size"},
		{"empty object", `{}`, nil, 400, "no limit to change"},
		{"only nulls", `{"slo_ms": null}`, nil, 400, "no limit to change"},
		{"no body", ``, nil, 400, "JSON object"},
		{"an array", `[{"slo_ms": 100}]`, nil, 400, "JSON object"},
		{"not JSON", `slo_ms=100`, nil, 400, "JSON object"},
		{"broken JSON", `{"slo_ms": 100,,}`, nil, 400, "not valid JSON"},
		{"cut short", `{"slo_ms": 100`, nil, 400, "cut short"},
		{"trailing data", `{"slo_ms": 100} {"slo_ms": 200}`, nil, 400, "nothing after"},
		{"form content type", `{"slo_ms": 100}`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"},
		{"bad request id", `{"slo_ms": 100}`, map[string]string{requestIDHeader: "a b"}, 400, requestIDHeader},
		{"too large", `{"slo_ms": 100, "x": "` + strings.Repeat("x", 70<<10) + `"}`, nil, 413, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "PUT", tn.url+"/api/v1/limits", tc.body, tc.hdr)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if msg := r.errorText(t); !strings.Contains(msg, tc.says) {
				t.Fatalf("error %q does not say %q", msg, tc.says)
			}
		})
	}
	if after := tn.raft.Limits(); after != before {
		t.Fatalf("bad input changed the limits: %+v → %+v", before, after)
	}
}

func TestLimitsPutIsIdempotentByRequestID(t *testing.T) {
	tn := startSingle(t, "")
	hdr := map[string]string{requestIDHeader: "retry-1", "Content-Type": "application/json; charset=utf-8"}
	for i := 0; i < 2; i++ {
		r := do(t, "PUT", tn.url+"/api/v1/limits", `{"slo_ms": 750}`, hdr)
		if r.status != http.StatusOK || r.header.Get(requestIDHeader) != "retry-1" {
			t.Fatalf("attempt %d: %d %v %s", i, r.status, r.header, r.body)
		}
	}
	if l := tn.raft.Limits(); l.SLOms != 750 {
		t.Fatalf("slo_ms = %d", l.SLOms)
	}
}

// TestAnyNodeAnswersForTheCluster runs two nodes: the second is not the
// leader, so it forwards limits changes to the first and asks it for its
// history and decisions.
func TestAnyNodeAnswersForTheCluster(t *testing.T) {
	a := startSingle(t, "tok")
	b := startNode(t, "second", nodeOptions{join: []string{a.gossip.Addr()}, token: "tok"})
	clustertest.WaitFor(t, "the second node in Raft and knowing the leader", func() bool {
		return a.raft.Role(b.raft.ID()) != "none" && b.raft.LeaderHTTPAddr() == a.addr
	})
	if b.raft.IsLeader() {
		t.Fatal("the joining node leads")
	}

	t.Run("limits change on a follower is committed by the leader", func(t *testing.T) {
		// The token is not forwarded over plain HTTP: the follower names
		// the leader, and the client sends the change there.
		r := do(t, "PUT", b.url+"/api/v1/limits", `{"max_growing_nodes": 7}`,
			map[string]string{"Authorization": "Bearer tok", requestIDHeader: "from-b"})
		var hint struct {
			Leader consensus.LeaderInfo `json:"leader"`
		}
		r.json(t, &hint)
		if r.status != http.StatusServiceUnavailable || hint.Leader.HTTPAddr != a.addr {
			t.Fatalf("PUT with a token on the follower over plain HTTP: %d %s; want 503 naming the leader", r.status, r.body)
		}
		r = do(t, "PUT", "http://"+hint.Leader.HTTPAddr+"/api/v1/limits", `{"max_growing_nodes": 7}`,
			map[string]string{"Authorization": "Bearer tok", requestIDHeader: "from-b"})
		if r.status != http.StatusOK {
			t.Fatalf("PUT on the follower: %d %s", r.status, r.body)
		}
		var l consensus.Limits
		r.json(t, &l)
		if l.MaxGrowingNodes != 7 || r.header.Get(requestIDHeader) != "from-b" {
			t.Fatalf("answer %+v %v", l, r.header)
		}
		if a.raft.Limits().MaxGrowingNodes != 7 {
			t.Fatal("the leader does not have the change it answered")
		}
		clustertest.WaitFor(t, "the follower to apply the change", func() bool {
			var l consensus.Limits
			get(t, b.url+"/api/v1/limits").json(t, &l)
			return l.MaxGrowingNodes == 7
		})
	})

	t.Run("the token is checked before forwarding", func(t *testing.T) {
		r := do(t, "PUT", b.url+"/api/v1/limits", `{"max_growing_nodes": 8}`, map[string]string{"Authorization": "Bearer nope"})
		if r.status != http.StatusForbidden {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})

	t.Run("bad input is refused on the follower", func(t *testing.T) {
		r := do(t, "PUT", b.url+"/api/v1/limits", `{"max_growing_nodes": 0}`, map[string]string{"Authorization": "Bearer tok"})
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "max_growing_nodes") {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})

	t.Run("a forwarded change that reaches a follower is not forwarded again", func(t *testing.T) {
		r := do(t, "PUT", b.url+"/api/v1/limits", `{"max_growing_nodes": 9}`,
			map[string]string{"Authorization": "Bearer tok", forwardedHeader: "elsewhere"})
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("status %d %v: %s", r.status, r.header, r.body)
		}
	})

	t.Run("another node's history is fetched from it", func(t *testing.T) {
		var v NodeView
		r := get(t, b.url+"/api/v1/nodes/solo")
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		r.json(t, &v)
		if v.Name != "solo" || len(v.History) == 0 || v.ID != a.raft.ID() {
			t.Fatalf("node view from the peer = %+v", v)
		}
	})

	t.Run("decisions of every member, merged newest first", func(t *testing.T) {
		clustertest.WaitFor(t, "decisions of both nodes", func() bool {
			var v DecisionsView
			get(t, b.url+"/api/v1/decisions?limit=1000").json(t, &v)
			checkNewestFirst(t, v.Decisions)
			seen := map[string]bool{}
			for _, d := range v.Decisions {
				seen[d.Node] = true
			}
			return seen["solo"] && seen["second"] && len(v.Unreachable) == 0
		})
		var v DecisionsView
		get(t, b.url+"/api/v1/decisions?node=solo&limit=5").json(t, &v)
		if len(v.Decisions) != 5 {
			t.Fatalf("node=solo limit=5 gave %d", len(v.Decisions))
		}
		for _, d := range v.Decisions {
			if d.Node != "solo" {
				t.Fatalf("node=solo gave a decision of %s", d.Node)
			}
		}
	})

	t.Run("a member that is down is reported, not waited for", func(t *testing.T) {
		b.stop()
		var v DecisionsView
		clustertest.WaitFor(t, "the stopped node to be reported unreachable", func() bool {
			r := get(t, a.url+"/api/v1/decisions")
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			r.json(t, &v)
			return len(v.Unreachable) == 1 && v.Unreachable[0].Node == "second"
		})
		r := get(t, a.url+"/api/v1/nodes/second")
		if r.status < 500 || r.status > 504 {
			t.Fatalf("history of a stopped node: %d %s", r.status, r.body)
		}
		r.errorText(t)
	})
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	tn := startSingle(t, "")
	r := get(t, tn.url+"/api/v1/openapi.json")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	r.json(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q", doc.OpenAPI)
	}
	for _, rt := range tn.router.Routes() {
		if strings.HasPrefix(rt.Path, "/assets/") || rt.Method == http.MethodHead {
			continue
		}
		p := rt.Path
		if i := strings.Index(p, "/:"); i >= 0 {
			p = p[:i] + "/{" + p[i+2:] + "}"
		}
		op, ok := doc.Paths[p][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("%s %s is not in the OpenAPI document", rt.Method, p)
			continue
		}
		if _, ok := op["responses"]; !ok {
			t.Errorf("%s %s has no responses", rt.Method, p)
		}
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			found := false
			for _, rt := range tn.router.Routes() {
				rp := rt.Path
				if i := strings.Index(rp, "/:"); i >= 0 {
					rp = rp[:i] + "/{" + rp[i+2:] + "}"
				}
				if rp == p && strings.EqualFold(rt.Method, m) {
					found = true
				}
			}
			if !found {
				t.Errorf("the document has %s %s, which the server does not serve", strings.ToUpper(m), p)
			}
		}
	}
}

func TestDashboardIsServedWithCacheHeaders(t *testing.T) {
	tn := startSingle(t, "")
	r := get(t, tn.url+"/")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %v", r.status, r.header)
	}
	if r.header.Get("Cache-Control") != "no-cache" || r.header.Get("Content-Security-Policy") == "" {
		t.Fatalf("index headers: %v", r.header)
	}
	page := string(r.body)
	i := strings.Index(page, "/assets/")
	if i < 0 {
		t.Fatalf("the page names no asset:\n%s", page)
	}
	asset := page[i : i+strings.IndexAny(page[i:], `"'`)]
	a := get(t, tn.url+asset)
	if a.status != http.StatusOK || !strings.Contains(a.header.Get("Cache-Control"), "immutable") {
		t.Fatalf("GET %s: %d %v", asset, a.status, a.header)
	}
	if ct := a.header.Get("Content-Type"); !strings.Contains(ct, "javascript") && !strings.Contains(ct, "css") {
		t.Fatalf("GET %s: Content-Type %q", asset, ct)
	}
	spa := do(t, "GET", tn.url+"/nodes/solo", "", map[string]string{"Accept": "text/html,*/*"})
	if spa.status != http.StatusOK || string(spa.body) != string(r.body) {
		t.Fatalf("a dashboard path does not load the page: %d", spa.status)
	}
	api := do(t, "GET", tn.url+"/nodes/solo", "", map[string]string{"Accept": "application/json"})
	if api.status != http.StatusNotFound {
		t.Fatalf("a non-browser GET of an unknown path: %d", api.status)
	}
	api.errorText(t)
}

func TestExistingRoutesStillServe(t *testing.T) {
	tn := startSingle(t, "")
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := get(t, tn.url+p); r.status != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	r := do(t, "POST", tn.url+"/v1/logs", `{"id":"a"}`+"\n", map[string]string{"Content-Type": "application/x-ndjson"})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"accepted":1`) {
		t.Fatalf("ingest: %d %s", r.status, r.body)
	}
}

func FuzzDecodeLimitsPatch(f *testing.F) {
	for _, s := range []string{`{"max_batch_size": 10}`, `{}`, `[]`, `{"slo_ms": "x"}`, `{"cpu_limit_percent": 1e400}`, "", `{"a":1}`, `{"slo_ms":1} x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeLimitsPatch(body)
		if err == nil && p.IsEmpty() {
			t.Fatalf("%q: no error and an empty patch", body)
		}
		if err != nil && err.Error() == "" {
			t.Fatalf("%q: an empty error", body)
		}
		_ = fmt.Sprint(p)
	})
}
