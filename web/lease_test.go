package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
	"github.com/batchpilot/batchpilot/consensus"
)

func TestLeaseEndpoint(t *testing.T) {
	tn := startSingle(t, "tok")
	auth := map[string]string{"Authorization": "Bearer tok"}
	clustertest.WaitFor(t, "the leader's lease table (after learning mode)", func() bool {
		return !tn.raft.Learning(time.Now())
	})
	for _, tc := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		want   string
	}{
		{"a lease request is answered with a grant and its terms", `{"id":"w1","want":1048576,"has":0,"health":{"batch_size":10}}`, auth, 200, `"ttl_ms"`},
		{"without the token it is refused", `{"id":"w1","want":1}`, nil, 401, "token"},
		{"an empty id is a clear 400", `{"want":1}`, auth, 400, "id must be"},
		{"an unknown field is a clear 400", `{"id":"w1","wants":1}`, auth, 400, "unknown field"},
		{"a negative want is a clear 400", `{"id":"w1","want":-1}`, auth, 400, "negative"},
		{"trailing data is a clear 400", `{"id":"w1"} {}`, auth, 400, "nothing after"},
		{"the downstream's figures are taken", `{"id":"w1","want":1,"downstream":{"interval_ms":2000,"goodput_rps":900,"writes_per_s":20,"pushback_per_s":1,"too_large_per_s":0,"errors_per_s":1,"write_ms":12.5}}`, auth, 200, `"budget"`},
		{"a negative downstream rate is a clear 400", `{"id":"w1","downstream":{"pushback_per_s":-1}}`, auth, 400, "downstream figures"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", tn.url+"/api/v1/lease", tc.body, tc.hdr)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("%d %s; want %d with %q", r.status, r.body, tc.status, tc.want)
			}
		})
	}
	var ans consensus.LeaseAnswer
	do(t, "POST", tn.url+"/api/v1/lease", `{"id":"w2","want":1048576}`, auth).json(t, &ans)
	if ans.Grant < ans.Baseline || ans.Leader.HTTPAddr != tn.addr || ans.Epoch == 0 {
		t.Fatalf("answer %+v", ans)
	}
	var st consensus.RaftStats
	r := get(t, tn.url+"/api/v1/raft/stats")
	r.json(t, &st)
	if r.status != http.StatusOK || st.LastIndex == 0 {
		t.Fatalf("raft stats: %d %s", r.status, r.body)
	}
}

func FuzzDecodeLeaseRequest(f *testing.F) {
	f.Add([]byte(`{"id":"w1","want":1048576,"has":0,"health":{"batch_size":10,"breaker":"closed"}}`))
	f.Add([]byte(`{"id":""}`))
	f.Add([]byte(`{"id":"w1","downstream":{"interval_ms":2000,"writes_per_s":20,"pushback_per_s":1e300}}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeLeaseRequest(b)
		if err != nil {
			return
		}
		if req.Validate() != nil || req.ID == "" || req.Want < 0 || req.Has < 0 {
			t.Fatalf("an invalid request was accepted: %+v", req)
		}
	})
}

func TestBudgetDecisionsEndpoint(t *testing.T) {
	tn := startSingle(t, "")
	var view BudgetDecisionsView
	clustertest.WaitFor(t, "the leader's first budget decision", func() bool {
		r := get(t, tn.url+"/api/v1/budget/decisions")
		if r.status != http.StatusOK {
			return false
		}
		r.json(t, &view)
		return len(view.Decisions) > 0
	})
	last := view.Decisions[len(view.Decisions)-1]
	if last.Reason != consensus.BudgetReasonStart || view.Mode != consensus.BudgetLearned ||
		view.CeilingBytes != tn.raft.Limits().ClusterBudgetBytes || view.BudgetBytes > view.CeilingBytes || view.Leader.HTTPAddr != tn.addr {
		t.Fatalf("view %+v: want a learned budget within the ceiling, the first decision a start", view)
	}
	if last.New < last.Floor || last.New > last.Ceiling || last.Time.IsZero() {
		t.Fatalf("first decision %+v is outside its floor and ceiling", last)
	}
	for _, tc := range []struct {
		name, query string
		status      int
		want        string
	}{
		{"a limit of zero is a clear 400", "?limit=0", 400, "limit"},
		{"since that is not a time is a clear 400", "?since=yesterday", 400, "since"},
		{"since in the future lists nothing", "?since=2999-01-01T00:00:00Z", 200, `"decisions":[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, tn.url+"/api/v1/budget/decisions"+tc.query)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("%d %s; want %d with %q", r.status, r.body, tc.status, tc.want)
			}
		})
	}
}
