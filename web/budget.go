package web

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/batchpilot/batchpilot/consensus"
)

// BudgetDecisionsView is the body of GET /api/v1/budget/decisions.
type BudgetDecisionsView struct {
	// Leader is the server that made the decisions (only the leader runs
	// the budget controller).
	Leader consensus.LeaderInfo `json:"leader"`
	// Mode is the limit budget_mode; BudgetBytes the budget in force and
	// CeilingBytes the limit cluster_budget_bytes.
	Mode         string `json:"budget_mode"`
	BudgetBytes  int64  `json:"budget_bytes"`
	CeilingBytes int64  `json:"ceiling_bytes"`
	// Decisions, newest first: the decisions that changed the budget or
	// its reason.
	Decisions []consensus.BudgetDecision `json:"decisions"`
}

// getBudgetDecisions serves GET /api/v1/budget/decisions?limit=&since=: the
// leader's budget decisions, newest first. Another node asks the leader
// (the request carries no token, so it may cross any connection).
func (a *api) getBudgetDecisions(c *gin.Context) {
	q := c.Request.URL.Query()
	limit, since, ok := decisionWindow(c, q)
	if !ok {
		return
	}
	ds, err := a.raft.BudgetDecisions(limit, since)
	if errors.Is(err, consensus.ErrNotLeader) {
		a.budgetDecisionsOfLeader(c, q)
		return
	}
	if err != nil {
		retryLater(c, "the budget decisions could not be read: "+err.Error())
		return
	}
	st := a.raft.Status(time.Now())
	c.JSON(http.StatusOK, BudgetDecisionsView{
		Leader: st.Leader, Mode: st.BudgetMode, BudgetBytes: st.BudgetBytes, CeilingBytes: st.CeilingBytes, Decisions: ds,
	})
}

// budgetDecisionsOfLeader relays the leader's answer to GET
// /api/v1/budget/decisions, with the same query.
func (a *api) budgetDecisionsOfLeader(c *gin.Context, q url.Values) {
	leader := a.leaderInfo()
	switch {
	case isForwarded(c):
		leaderUnavailable(c, leader, "this server is not the leader (leadership moved); retry")
		return
	case leader.HTTPAddr == "":
		leaderUnavailable(c, leader, "no leader is known (an election may be under way); retry")
		return
	}
	path := "/api/v1/budget/decisions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	a.relayFromLeader(c, leader, http.MethodGet, path, nil, nil, false)
}
