package web

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

// The dashboard's built bundle (make ui writes it from web/ui). Vite names
// every asset by its content hash, so assets are cached for good and only
// index.html is revalidated.
//
//go:embed all:ui/dist
var distFS embed.FS

var dashboardFS = mustSub(distFS, "ui/dist")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// contentSecurityPolicy lets the page load only its own scripts and talk
// only to its own node.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func serveDashboard(r *gin.Engine) {
	r.GET("/", serveIndex)
	r.HEAD("/", serveIndex)
	r.GET("/assets/*file", serveAsset)
	r.HEAD("/assets/*file", serveAsset)
}

func serveIndex(c *gin.Context) {
	b, err := fs.ReadFile(dashboardFS, "index.html")
	if err != nil {
		jsonError(c, http.StatusNotFound, "the dashboard is not built into this binary (run make ui)")
		return
	}
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	c.Data(http.StatusOK, "text/html; charset=utf-8", b)
}

func serveAsset(c *gin.Context) {
	name := path.Clean("assets/" + strings.TrimPrefix(c.Param("file"), "/"))
	if !strings.HasPrefix(name, "assets/") {
		jsonError(c, http.StatusNotFound, "no such asset")
		return
	}
	b, err := fs.ReadFile(dashboardFS, name)
	if err != nil {
		jsonError(c, http.StatusNotFound, "no such asset: "+c.Param("file"))
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := c.Writer.Header()
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, ct, b)
}

// dashboardRoute serves index.html for a browser's GET of a path the API
// does not own, so that the dashboard's own links load it; it reports
// whether it answered.
func dashboardRoute(c *gin.Context) bool {
	p := c.Request.URL.Path
	if (c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead) ||
		strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/assets/") ||
		!strings.Contains(c.GetHeader("Accept"), "text/html") {
		return false
	}
	serveIndex(c)
	return true
}
