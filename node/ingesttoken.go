package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// RequireIngestToken guards an HTTP ingest path (POST /v1/logs, OTLP, the
// bulk API): with a token set, a request must carry it either as
// "Authorization: Bearer <token>" or as the password of HTTP basic auth
// with any user name (many Elasticsearch outputs speak only basic auth).
// Anything else is answered 401 with a WWW-Authenticate challenge for both
// schemes, and counted as rejected with reason "unauthorized". Both sides
// are hashed before a constant-time compare, so neither the token nor its
// length leaks through the answer's timing. An empty token lets every
// request through. The token is separate from the API token.
func RequireIngestToken(token string, rejected func(reason string, count int), next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if given, ok := ingestCredential(r); ok {
			got := sha256.Sum256([]byte(given))
			if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
				next.ServeHTTP(w, r)
				return
			}
		}
		if rejected != nil {
			rejected("unauthorized", 1)
		}
		w.Header().Add("WWW-Authenticate", `Bearer realm="batchpilot ingest"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="batchpilot ingest"`)
		writeError(w, http.StatusUnauthorized,
			"ingest needs the ingest token: send Authorization: Bearer <token>, or the token as the basic-auth password", 0)
	})
}

// ingestCredential is the token a request carries: a bearer token or a
// basic-auth password.
func ingestCredential(r *http.Request) (string, bool) {
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, pass != ""
	}
	scheme, given, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	given = strings.TrimSpace(given)
	return given, given != ""
}
