package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/batchpilot/batchpilot/consensus"
)

// postLease serves POST /api/v1/lease: a node asks for its share of the
// cluster budget (consensus.LeaseRequest) and gets a grant with a TTL
// (consensus.LeaseAnswer). Only servers answer; one that is not the leader
// forwards the request to the leader, or, when that would send the API token
// over a connection that is not verified TLS, answers 503 naming the leader
// so that the node asks it directly.
func (a *api) postLease(c *gin.Context) {
	arrived := time.Now()
	body, ok := readBody(c)
	if !ok {
		return
	}
	req, err := decodeLeaseRequest(body)
	if err != nil {
		jsonError(c, http.StatusBadRequest, err.Error())
		return
	}
	if !a.raft.IsServer() {
		jsonError(c, http.StatusMisdirectedRequest, "this node is a worker: send lease requests to a server")
		return
	}
	ans, err := a.raft.RequestLease(arrived, req)
	switch {
	case err == nil:
		c.JSON(http.StatusOK, ans)
	case errors.Is(err, consensus.ErrInvalidLease):
		jsonError(c, http.StatusBadRequest, err.Error())
	case errors.Is(err, consensus.ErrNotLeader):
		a.forwardToLeader(c, http.MethodPost, consensus.LeasePath, body, nil, err)
	default:
		retryLater(c, "the lease could not be answered: "+err.Error())
	}
}

// decodeLeaseRequest reads a lease request body: one JSON object with the
// fields of consensus.LeaseRequest and nothing after it.
func decodeLeaseRequest(body []byte) (consensus.LeaseRequest, error) {
	var req consensus.LeaseRequest
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return req, errors.New(`the body must be a JSON object such as {"id": "...", "want": 1048576, "has": 0, "health": {}}`)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("the body is not a valid lease request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("the body must hold one JSON object and nothing after it")
	}
	if err := req.Validate(); err != nil {
		return req, err
	}
	return req, nil
}

// mayForwardToken reports whether a request carrying the API token may be
// forwarded to the leader: only over TLS whose certificate is verified (the
// leader's address comes from gossip), or when no token is configured.
func (a *api) mayForwardToken() bool { return a.cfg.APIToken == "" || a.cfg.PeerTLS != nil }

// forwardToLeader sends a request that must run on the leader there and
// relays the answer. A request that was itself forwarded is not forwarded
// again (leadership moved; the client retries). When the token may not be
// forwarded it answers 503 with the leader, for the client to ask it.
func (a *api) forwardToLeader(c *gin.Context, method, path string, body []byte, hdr http.Header, notLeader error) {
	leader := a.leaderInfo()
	switch {
	case isForwarded(c):
		leaderUnavailable(c, leader, notLeader.Error()+"; leadership moved, retry")
		return
	case leader.HTTPAddr == "":
		leaderUnavailable(c, leader, "no leader is known (an election may be under way); retry")
		return
	case !a.mayForwardToken():
		leaderUnavailable(c, leader, notLeader.Error()+"; not forwarded, since the API token would cross a connection that is not verified TLS: send it to the leader")
		return
	}
	if hdr == nil {
		hdr = http.Header{}
	}
	if auth := c.GetHeader("Authorization"); auth != "" {
		hdr.Set("Authorization", auth)
	}
	a.relayFromLeader(c, leader, method, path, body, hdr, true)
}

// leaderInfo is the leader as this server knows it (HTTPAddr empty when
// none is known).
func (a *api) leaderInfo() consensus.LeaderInfo {
	id, name, addr := a.raft.Leader()
	return consensus.LeaderInfo{ID: id, Name: name, HTTPAddr: addr}
}

// leaderUnavailable answers 503 with a Retry-After hint and the leader, for
// the client to retry or to ask the leader itself.
func leaderUnavailable(c *gin.Context, leader consensus.LeaderInfo, msg string) {
	c.Header("Retry-After", "1")
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": msg, "leader": leader})
}

// relayFromLeader sends the request to the leader and relays its JSON
// answer, with the leader's Retry-After when withRetryAfter. A leader that
// does not answer, or answers with a body that is not JSON, is a 503.
func (a *api) relayFromLeader(c *gin.Context, leader consensus.LeaderInfo, method, path string, body []byte, hdr http.Header, withRetryAfter bool) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.cfg.ForwardTimeout)
	defer cancel()
	status, rh, out, err := a.peers.forward(ctx, method, leader.HTTPAddr, path, body, hdr)
	if err != nil {
		leaderUnavailable(c, leader, fmt.Sprintf("the leader at %s did not answer: %v", leader.HTTPAddr, err))
		return
	}
	if !json.Valid(out) {
		leaderUnavailable(c, leader, fmt.Sprintf("the leader at %s answered %d with a body that is not JSON", leader.HTTPAddr, status))
		return
	}
	if ra := rh.Get("Retry-After"); withRetryAfter && ra != "" {
		c.Header("Retry-After", ra)
	}
	c.Data(status, "application/json; charset=utf-8", out)
}

// getRaftStats serves GET /api/v1/raft/stats: this server's Raft figures,
// which the leader's autopilot reads to judge its health.
func (a *api) getRaftStats(c *gin.Context) {
	st, err := a.raft.RaftStats()
	if err != nil {
		jsonError(c, http.StatusNotFound, err.Error())
		return
	}
	c.JSON(http.StatusOK, st)
}
