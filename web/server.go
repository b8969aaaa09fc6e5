package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/consensus"
	"github.com/batchpilot/batchpilot/node"
)

// Config is what the HTTP front of one node serves.
type Config struct {
	Node   *node.Node
	Raft   *consensus.Server // the cluster state: leader, members, limits, budgets
	Gossip *cluster.Cluster  // membership, and each member's HTTP address
	// APIToken, when set, is the bearer token every mutating call needs.
	APIToken string
	// Gatherer serves /metrics; default the node's own registry.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
}

func init() { gin.SetMode(gin.ReleaseMode) }

// New returns the handler for a node's --http-addr: ingest, health, metrics
// and the API.
func New(cfg Config) http.Handler {
	if cfg.Gatherer == nil {
		cfg.Gatherer = cfg.Node.Registry()
	}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		if cfg.Logger != nil {
			cfg.Logger.Error("handler panic", "path", c.Request.URL.Path, "err", err)
		}
		jsonError(c, http.StatusInternalServerError, "internal error")
	}))
	n := cfg.Node
	r.POST("/v1/logs", gin.WrapH(n.IngestHandler()))
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok", "node": n.Name()}) })
	r.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := n.Ready(ctx); err != nil {
			jsonError(c, http.StatusServiceUnavailable, err.Error())
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready", "node": n.Name()})
	})
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	r.NoRoute(func(c *gin.Context) { jsonError(c, http.StatusNotFound, "no such path: "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		jsonError(c, http.StatusMethodNotAllowed, c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	return r
}

func jsonError(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}
