package bulk

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/batchpilot/batchpilot/node"
)

// Version is the Elasticsearch version GET / reports. Shippers check it to
// pick their request format: 8.x means no "_type" and the current bulk
// API, which every shipper of the last years speaks.
const Version = "8.15.0"

// Config configures an API. Zero values take the defaults.
type Config struct {
	Receiver node.Receiver // required
	NodeName string        // reported as the node's name
	// Ready, when set, says whether the node takes records (GET
	// /_cat/health answers red when it does not).
	Ready func(context.Context) error
	// MaxBodyBytes bounds a request body after decompression (413 above);
	// MaxDocBytes one document. Defaults 16 MiB and 1 MiB.
	MaxBodyBytes int64
	MaxDocBytes  int
	Logger       *slog.Logger
}

// Stats are an API's counters since it was created.
type Stats struct {
	Requests  uint64 // bulk requests answered 200
	Malformed uint64 // bulk requests answered 400
	TooLarge  uint64 // bulk requests answered 413
	Refused   uint64 // bulk requests answered 429 or 503 by the node
	Created   uint64 // documents stored (acknowledged)
	Failed    uint64 // items answered with an error (delete, update)
}

// API serves the bulk API. It is safe for concurrent use: each request is
// parsed on its own goroutine and handed to the Receiver in one call.
type API struct {
	cfg Config
	mux *http.ServeMux

	requests, malformed, tooLarge, refused, created, failed atomic.Uint64
}

// New returns the bulk API for cfg.
func New(cfg Config) *API {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.MaxDocBytes <= 0 {
		cfg.MaxDocBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /_bulk", a.serveBulk)
	a.mux.HandleFunc("PUT /_bulk", a.serveBulk)
	a.mux.HandleFunc("POST /{index}/_bulk", a.serveBulk)
	a.mux.HandleFunc("PUT /{index}/_bulk", a.serveBulk)
	a.mux.HandleFunc("POST /{index}/{type}/_bulk", a.serveBulk)
	a.mux.HandleFunc("PUT /{index}/{type}/_bulk", a.serveBulk)
	a.mux.HandleFunc("GET /{$}", a.serveRoot)
	a.mux.HandleFunc("HEAD /{$}", a.serveRoot)
	a.mux.HandleFunc("GET /_cat/health", a.serveHealth)
	a.mux.HandleFunc("GET /_license", a.serveLicense)
	a.mux.HandleFunc("/", a.serveUnknown)
	return a
}

// Stats returns the counters; safe to call at any time.
func (a *API) Stats() Stats {
	return Stats{Requests: a.requests.Load(), Malformed: a.malformed.Load(), TooLarge: a.tooLarge.Load(),
		Refused: a.refused.Load(), Created: a.created.Load(), Failed: a.failed.Load()}
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Elasticsearch's clients since 7.14 refuse a server without it.
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	a.mux.ServeHTTP(w, r)
}

func (a *API) serveRoot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"name":         a.cfg.NodeName,
		"cluster_name": "batchpilot",
		"cluster_uuid": "batchpilot",
		"version": map[string]any{
			"number": Version, "build_flavor": "default", "build_type": "batchpilot",
			"build_snapshot": false, "lucene_version": "9.11.1",
			"minimum_wire_compatibility_version":  "7.17.0",
			"minimum_index_compatibility_version": "7.0.0",
		},
		"tagline": "You Know, for Search",
	})
}

// serveHealth answers rsyslog's omelasticsearch, which checks a server
// with GET /_cat/health before it sends to it again.
func (a *API) serveHealth(w http.ResponseWriter, r *http.Request) {
	status := "green"
	if a.cfg.Ready != nil && a.cfg.Ready(r.Context()) != nil {
		status = "red"
	}
	now := time.Now()
	if r.URL.Query().Has("format") {
		writeJSON(w, http.StatusOK, []map[string]any{{"epoch": strconv.FormatInt(now.Unix(), 10), "cluster": "batchpilot", "status": status}})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	_, _ = w.Write([]byte(strconv.FormatInt(now.Unix(), 10) + " " + now.UTC().Format("15:04:05") + " batchpilot " + status + " 1 1 0 0 0 0 0 0 - 100.0%\n"))
}

// serveLicense answers Beats, which ask for the license before they send.
func (a *API) serveLicense(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"license": map[string]any{
		"status": "active", "uid": "batchpilot", "type": "basic", "mode": "basic"}})
}

func (a *API) serveUnknown(w http.ResponseWriter, r *http.Request) {
	a.cfg.Logger.Debug("bulk api: unsupported request", "method", r.Method, "path", r.URL.Path)
	writeESError(w, http.StatusNotFound, "unsupported_operation_exception",
		r.Method+" "+r.URL.Path+" is not served: this endpoint takes POST /_bulk, POST /{index}/_bulk and GET /")
}

func (a *API) serveBulk(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, status, err := node.ReadBody(r, a.cfg.MaxBodyBytes)
	if err != nil {
		a.refuse(w, status, err.Error())
		return
	}
	items, err := Parse(body, r.PathValue("index"), a.cfg.MaxDocBytes)
	if err != nil {
		status := http.StatusBadRequest
		var pe *ParseError
		if errors.As(err, &pe) && pe.TooLong {
			status = http.StatusRequestEntityTooLarge
		}
		a.refuse(w, status, err.Error())
		return
	}
	recs := make([][]byte, 0, len(items))
	for _, it := range items {
		if it.Record != nil {
			recs = append(recs, it.Record)
		}
	}
	if err := a.cfg.Receiver.Ingest(r.Context(), recs, node.SourceBulk); err != nil {
		if r.Context().Err() != nil && !errors.Is(err, node.ErrQueueFull) {
			return // the client went away; nobody reads the answer
		}
		a.refused.Add(1)
		status, msg := node.IngestStatus(err)
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(a.cfg.Receiver.RetryAfter()))
		}
		typ := "es_rejected_execution_exception"
		if status != http.StatusTooManyRequests {
			typ = "unavailable_shards_exception"
		}
		writeESError(w, status, typ, msg)
		return
	}
	a.requests.Add(1)
	a.created.Add(uint64(len(recs)))
	resp := bulkResponse{Took: time.Since(start).Milliseconds(), Items: make([]map[string]itemResult, len(items))}
	for i, it := range items {
		res := itemResult{Index: it.Index, ID: it.ID}
		if res.ID == "" {
			res.ID = newID()
		}
		if it.Err != "" {
			resp.Errors = true
			a.failed.Add(1)
			res.Status = http.StatusBadRequest
			res.Error = &esError{Type: "illegal_argument_exception", Reason: it.Err}
		} else {
			res.Status, res.Result, res.Version = http.StatusCreated, "created", 1
			res.Shards = &shards{Total: 1, Successful: 1}
			res.PrimaryTerm = 1
			res.SeqNo = new(int64)
		}
		resp.Items[i] = map[string]itemResult{it.Action: res}
	}
	writeJSON(w, http.StatusOK, resp)
}

// refuse answers a bulk request that wrote nothing: 400, 413 or 415.
func (a *API) refuse(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusRequestEntityTooLarge {
		a.tooLarge.Add(1)
		a.cfg.Receiver.Rejected("too_large", 1)
	} else {
		a.malformed.Add(1)
		a.cfg.Receiver.Rejected("malformed", 1)
	}
	typ := "illegal_argument_exception"
	if status == http.StatusRequestEntityTooLarge {
		typ = "content_too_long_exception"
	}
	writeESError(w, status, typ, msg)
}

type bulkResponse struct {
	Took   int64                   `json:"took"`
	Errors bool                    `json:"errors"`
	Items  []map[string]itemResult `json:"items"`
}

type itemResult struct {
	Index       string   `json:"_index"`
	ID          string   `json:"_id"`
	Version     int      `json:"_version,omitempty"`
	Result      string   `json:"result,omitempty"`
	Shards      *shards  `json:"_shards,omitempty"`
	SeqNo       *int64   `json:"_seq_no,omitempty"`
	PrimaryTerm int      `json:"_primary_term,omitempty"`
	Status      int      `json:"status"`
	Error       *esError `json:"error,omitempty"`
}

type shards struct {
	Total      int `json:"total"`
	Successful int `json:"successful"`
	Failed     int `json:"failed"`
}

type esError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// writeESError answers an error as Elasticsearch does:
// {"error": {"type", "reason"}, "status"}.
func writeESError(w http.ResponseWriter, status int, typ, reason string) {
	writeJSON(w, status, map[string]any{
		"error":  map[string]any{"type": typ, "reason": reason, "root_cause": []esError{{Type: typ, Reason: reason}}},
		"status": status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newID is a random document id in Elasticsearch's style (20 characters).
func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return strings.TrimRight(base64.URLEncoding.EncodeToString(b[:]), "=")
}
