package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/batchpilot/batchpilot/node"
)

// getCluster serves GET /api/v1/cluster: the leader's view of the cluster
// (it has every node's health and lease, from the lease requests), which
// other nodes keep a copy of; or this node's own view when it has no fresh
// copy ("view": "local").
func (a *api) getCluster(c *gin.Context) {
	c.JSON(http.StatusOK, a.raft.Status(time.Now()))
}

// NodeView is the body of GET /api/v1/nodes/{name}: one node's health now
// and its recent history, oldest first, one entry per control interval.
type NodeView struct {
	Name       string        `json:"name"`
	ID         string        `json:"id"`
	Controller string        `json:"controller"`
	Time       time.Time     `json:"time"`
	IntervalMS int64         `json:"interval_ms"`
	Health     node.Health   `json:"health"`
	History    []node.Health `json:"history"`
}

// getNode serves GET /api/v1/nodes/{name}. This node answers for itself;
// any other member is asked over HTTP, since only it keeps its history.
func (a *api) getNode(c *gin.Context) {
	name := c.Param("name")
	if name == a.node.Name() {
		c.JSON(http.StatusOK, a.localView())
		return
	}
	m, ok := a.peerToAsk(c, name, "its history is kept only on that node")
	if !ok {
		return
	}
	var v NodeView
	err := a.peers.getJSON(c.Request.Context(), m.HTTPAddr, "/api/v1/nodes/"+url.PathEscape(name), nil, &v)
	if err != nil {
		a.peerFailed(c, name, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (a *api) localView() NodeView {
	cfg := a.node.Config()
	v := NodeView{
		Name:       a.node.Name(),
		ID:         a.gossip.ID(),
		Time:       time.Now(),
		IntervalMS: cfg.ControlInterval.Milliseconds(),
		Health:     a.node.Health(),
		History:    a.node.History(),
	}
	if cfg.Controller != nil {
		v.Controller = cfg.Controller.Name()
	}
	if v.History == nil {
		v.History = []node.Health{}
	}
	return v
}

// memberByName finds a member in gossip.
// peerToAsk finds the member named name, to be asked over HTTP for what
// only it keeps. A name no member has, or a request that was already
// forwarded once, is answered 404; a member that cannot be reached, 503
// with why it must be that member.
func (a *api) peerToAsk(c *gin.Context, name, why string) (cluster.Member, bool) {
	m, ok := a.memberByName(name)
	if !ok || isForwarded(c) {
		jsonError(c, http.StatusNotFound, "no member named "+quote(name))
		return m, false
	}
	if !reachable(m) {
		jsonError(c, http.StatusServiceUnavailable, "node "+quote(name)+" is "+string(m.Status)+"; "+why)
		return m, false
	}
	return m, true
}

func (a *api) memberByName(name string) (cluster.Member, bool) {
	for _, m := range a.gossip.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// peerFailed answers a failed request to another node: its own error
// status when it answered one, 504 when it did not answer in time, 502
// otherwise.
func (a *api) peerFailed(c *gin.Context, name string, err error) {
	var pe *peerError
	switch {
	case errors.As(err, &pe):
		jsonError(c, pe.Status, "node "+quote(name)+" answered: "+pe.Msg)
	case errors.Is(err, context.DeadlineExceeded):
		jsonError(c, http.StatusGatewayTimeout, "node "+quote(name)+" did not answer within "+a.cfg.PeerTimeout.String())
	default:
		jsonError(c, http.StatusBadGateway, "node "+quote(name)+" could not be reached: "+err.Error())
	}
}

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strconv.Quote(s)
}
