package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/batchpilot/batchpilot/consensus"
)

// getLimits serves GET /api/v1/limits: the limits in this node's FSM.
func (a *api) getLimits(c *gin.Context) {
	c.JSON(http.StatusOK, a.raft.Limits())
}

// putLimits serves PUT /api/v1/limits: a JSON object of the limits to
// change. It is validated here, proposed to Raft on the leader (forwarded
// there, with the same request id, from any other node), and answered with
// the limits as committed. 400 says what is wrong with the input; 503 with
// Retry-After means the outcome is unknown or there is no leader, and the
// same request (same X-Request-ID) may be sent again safely.
func (a *api) putLimits(c *gin.Context) {
	body, ok := readBody(c)
	if !ok {
		return
	}
	if ct := c.GetHeader("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			jsonError(c, http.StatusUnsupportedMediaType, "send the limits as application/json, got "+quote(ct))
			return
		}
	}
	patch, err := decodeLimitsPatch(body)
	if err != nil {
		jsonError(c, http.StatusBadRequest, err.Error())
		return
	}
	reqID := c.GetHeader(requestIDHeader)
	if reqID == "" {
		reqID = consensus.NewRequestID()
	} else if !validRequestID(reqID) {
		jsonError(c, http.StatusBadRequest, requestIDHeader+" must be 1 to 128 letters, digits or . _ : -")
		return
	}
	c.Header(requestIDHeader, reqID)

	ctx, cancel := context.WithTimeout(c.Request.Context(), a.cfg.ForwardTimeout)
	defer cancel()
	limits, err := a.raft.SetLimits(ctx, patch, reqID)
	switch {
	case err == nil:
		a.log.Info("limits changed", "request_id", reqID, "by", c.GetHeader(forwardedHeader))
		c.JSON(http.StatusOK, limits)
	case errors.Is(err, consensus.ErrInvalidLimits):
		jsonError(c, http.StatusBadRequest, err.Error())
	case errors.Is(err, consensus.ErrNotLeader):
		a.forwardLimits(ctx, c, body, reqID, err)
	case errors.Is(err, consensus.ErrOutcomeUnknown):
		retryLater(c, err.Error()+" (request id "+reqID+")")
	default:
		retryLater(c, "the change could not be committed: "+err.Error()+"; retry with "+requestIDHeader+": "+reqID)
	}
}

// forwardLimits sends a limits change to the leader, with the same request
// id, and relays its answer (see forwardToLeader).
func (a *api) forwardLimits(_ context.Context, c *gin.Context, body []byte, reqID string, notLeader error) {
	a.forwardToLeader(c, http.MethodPut, "/api/v1/limits", body, http.Header{requestIDHeader: {reqID}},
		fmt.Errorf("%w (retry with %s: %s)", notLeader, requestIDHeader, reqID))
}

// retryLater answers 503 with a Retry-After hint.
func retryLater(c *gin.Context, msg string) {
	c.Header("Retry-After", "1")
	jsonError(c, http.StatusServiceUnavailable, msg)
}

// decodeLimitsPatch reads a PUT /api/v1/limits body: one JSON object whose
// keys are limit names. Unknown names, wrong types and trailing data are
// errors that say which.
func decodeLimitsPatch(body []byte) (consensus.LimitsPatch, error) {
	var p consensus.LimitsPatch
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return p, fmt.Errorf(`the body must be a JSON object of the limits to change, such as {"max_batch_size": 5000}; known limits: %s`, strings.Join(consensus.LimitNames(), ", "))
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return p, fmt.Errorf("%s: want %s, got a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		case errors.As(err, &se):
			return p, fmt.Errorf("the body is not valid JSON at byte %d: %v", se.Offset, se)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.TrimPrefix(err.Error(), "json: unknown field ")
			return p, fmt.Errorf("unknown limit %s (known: %s)", field, strings.Join(consensus.LimitNames(), ", "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return p, errors.New("the body is cut short: the JSON object is not closed")
		default:
			return p, fmt.Errorf("the body is not a valid limits object: %v", err)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return p, errors.New("the body must hold one JSON object and nothing after it")
	}
	if p.IsEmpty() {
		return p, fmt.Errorf("no limit to change; known limits: %s", strings.Join(consensus.LimitNames(), ", "))
	}
	return p, nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64":
		return "a whole number"
	case "float64":
		return "a number"
	}
	return goKind
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == ':', r == '-':
		default:
			return false
		}
	}
	return true
}
