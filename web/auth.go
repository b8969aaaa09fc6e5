package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// requireToken guards a mutating route: with a token configured, the request
// needs "Authorization: Bearer <token>". A missing or malformed header is
// 401, a wrong token 403. The comparison takes the same time whatever the
// token given (both sides are hashed first, so even the length leaks
// nothing). With no token configured every request passes.
func requireToken(token string) gin.HandlerFunc {
	if token == "" {
		return func(c *gin.Context) { c.Next() }
	}
	want := sha256.Sum256([]byte(token))
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		scheme, given, ok := strings.Cut(strings.TrimSpace(h), " ")
		if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(given) == "" {
			c.Header("WWW-Authenticate", `Bearer realm="batchpilot"`)
			jsonError(c, http.StatusUnauthorized, "this call needs the API token: send Authorization: Bearer <token>")
			return
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(given)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			jsonError(c, http.StatusForbidden, "the API token is not valid")
			return
		}
		c.Next()
	}
}
