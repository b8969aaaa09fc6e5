package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/consensus"
)

func TestLeaseEndpoint(t *testing.T) {
	tn := startSingle(t, "tok")
	auth := map[string]string{"Authorization": "Bearer tok"}
	waitFor(t, "the leader's lease table (after learning mode)", func() bool {
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
