package node

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRequireIngestToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		name   string
		token  string
		auth   func(r *http.Request)
		status int
	}{
		{name: "no token configured lets everything through", token: "", auth: func(*http.Request) {}, status: 204},
		{name: "missing credentials are 401", token: "s3cret", auth: func(*http.Request) {}, status: 401},
		{name: "the right bearer token passes", token: "s3cret",
			auth: func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, status: 204},
		{name: "the bearer scheme is case-insensitive", token: "s3cret",
			auth: func(r *http.Request) { r.Header.Set("Authorization", "bearer s3cret") }, status: 204},
		{name: "a wrong bearer token is 401", token: "s3cret",
			auth: func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cre") }, status: 401},
		{name: "the token as basic-auth password passes with any user", token: "s3cret",
			auth: func(r *http.Request) { r.SetBasicAuth("elastic", "s3cret") }, status: 204},
		{name: "the token as basic-auth user name is 401", token: "s3cret",
			auth: func(r *http.Request) { r.SetBasicAuth("s3cret", "") }, status: 401},
		{name: "a wrong basic-auth password is 401", token: "s3cret",
			auth: func(r *http.Request) { r.SetBasicAuth("elastic", "nope") }, status: 401},
		{name: "an empty bearer is 401", token: "s3cret",
			auth: func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }, status: 401},
		{name: "another scheme is 401", token: "s3cret",
			auth: func(r *http.Request) { r.Header.Set("Authorization", "Token s3cret") }, status: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rejected := 0
			h := RequireIngestToken(tc.token, func(reason string, n int) {
				if reason != "unauthorized" {
					t.Errorf("rejected reason %q, want unauthorized", reason)
				}
				rejected += n
			}, ok)
			req := httptest.NewRequest("POST", "/v1/logs", strings.NewReader("{}"))
			tc.auth(req)
			rr := httptest.NewRecorder()
			h.ServeHTTP(rr, req)
			if rr.Code != tc.status {
				t.Fatalf("status %d, want %d (%s)", rr.Code, tc.status, rr.Body)
			}
			if tc.status == 401 {
				if rejected != 1 {
					t.Errorf("rejected count %d, want 1", rejected)
				}
				if got := rr.Header().Values("WWW-Authenticate"); len(got) != 2 {
					t.Errorf("WWW-Authenticate %q, want a Bearer and a Basic challenge", got)
				}
				if !strings.Contains(rr.Body.String(), "ingest token") {
					t.Errorf("body %q does not say what is missing", rr.Body)
				}
			}
		})
	}
}
