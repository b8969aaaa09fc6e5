package web

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
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
	// Ingest serves POST /v1/logs (the agent passes the native formats and
	// OTLP behind the ingest token); default the node's IngestHandler.
	Ingest http.Handler
	// Gatherer serves /metrics; default the node's own registry.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger

	// EventInterval is the period of the cluster snapshots on
	// /api/v1/events and of its poll for new decisions (default 1s).
	EventInterval time.Duration
	// PeerTimeout bounds one request to another node: a node's history, its
	// decisions (default 2s).
	PeerTimeout time.Duration
	// PeerTLS, when set, is the client TLS configuration for requests to
	// other nodes, which are then made over https: the whole cluster serves
	// its HTTP over TLS, or none of it does. RootCAs is the pool the other
	// nodes' certificates are verified against (nil: the system's).
	PeerTLS *tls.Config
	// ForwardTimeout bounds a limits change, forwarded to the leader or
	// proposed here, until it is committed (default 10s).
	ForwardTimeout time.Duration
	// Closing, when closed, ends every event stream, so that a graceful
	// shutdown (http.Server.RegisterOnShutdown) does not wait on them;
	// other requests finish as usual. Nil: streams end only with their
	// clients.
	Closing <-chan struct{}
}

func (c *Config) setDefaults() {
	if c.Gatherer == nil {
		c.Gatherer = c.Node.Registry()
	}
	if c.Ingest == nil {
		c.Ingest = c.Node.IngestHandler()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.EventInterval <= 0 {
		c.EventInterval = time.Second
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 2 * time.Second
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = 10 * time.Second
	}
}

// maxAPIBody is the largest request body the API reads (ingest has its own
// limit, --max-body-bytes).
const maxAPIBody = 64 << 10

func init() { gin.SetMode(gin.ReleaseMode) }

// api holds what the API handlers share.
type api struct {
	cfg    Config
	node   *node.Node
	raft   *consensus.Server
	gossip *cluster.Cluster
	log    *slog.Logger
	peers  *peerClient
	events *hub
}

// New returns the handler for a node's --http-addr: ingest, health, metrics,
// the API and the dashboard.
func New(cfg Config) http.Handler {
	_, r := build(cfg)
	return r
}

// build makes the router and the state its handlers share.
func build(cfg Config) (*api, *gin.Engine) {
	cfg.setDefaults()
	a := &api{
		cfg: cfg, node: cfg.Node, raft: cfg.Raft, gossip: cfg.Gossip, log: cfg.Logger,
		peers: newPeerClient(cfg.Node.Name(), cfg.PeerTimeout, cfg.PeerTLS),
	}
	a.events = newHub(a.produceEvents)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		cfg.Logger.Error("handler panic", "path", c.Request.URL.Path, "err", err)
		jsonError(c, http.StatusInternalServerError, "internal error")
	}))
	n := cfg.Node
	r.POST("/v1/logs", gin.WrapH(cfg.Ingest))
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

	v1 := r.Group("/api/v1", limitBody(maxAPIBody), noStore)
	v1.GET("/cluster", a.getCluster)
	v1.GET("/nodes/:name", a.getNode)
	v1.GET("/decisions", a.getDecisions)
	v1.GET("/budget/decisions", a.getBudgetDecisions)
	v1.GET("/limits", a.getLimits)
	v1.PUT("/limits", requireToken(cfg.APIToken), a.putLimits)
	v1.POST("/lease", requireToken(cfg.APIToken), a.postLease)
	v1.GET("/raft/stats", a.getRaftStats)
	v1.GET("/events", a.streamEvents)
	v1.GET("/openapi.json", serveOpenAPI)

	serveDashboard(r)
	r.NoRoute(func(c *gin.Context) {
		if dashboardRoute(c) {
			return
		}
		jsonError(c, http.StatusNotFound, "no such path: "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		jsonError(c, http.StatusMethodNotAllowed, c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	return a, r
}

// jsonError answers {"error": msg} with status and stops the chain.
func jsonError(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}

// readBody reads the whole request body, capped by limitBody. On failure it
// has answered (413 past the cap, 400 otherwise) and ok is false.
func readBody(c *gin.Context) (body []byte, ok bool) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			jsonError(c, http.StatusRequestEntityTooLarge, "request body is larger than the limit of "+itoa(mbe.Limit)+" bytes")
			return nil, false
		}
		jsonError(c, http.StatusBadRequest, "read request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// limitBody caps the request body at n bytes: reading past it fails and the
// handler answers 413.
func limitBody(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > n {
			jsonError(c, http.StatusRequestEntityTooLarge, "request body is larger than the limit of "+itoa(n)+" bytes")
			return
		}
		if c.Request.Body != nil {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		}
		c.Next()
	}
}

// noStore keeps API answers out of caches: they change every second.
func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Next()
}

// isForwarded reports whether another node sent this request on behalf of
// a client: such a request is answered here and never forwarded again.
func isForwarded(c *gin.Context) bool {
	return strings.TrimSpace(c.GetHeader(forwardedHeader)) != ""
}
