package otlp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/batchpilot/batchpilot/node"
)

// Stats are an Intake's counters since it was created.
type Stats struct {
	Requests  uint64 // export requests answered 200 (partial successes included)
	Malformed uint64 // requests answered 400: not a valid export request
	Refused   uint64 // requests answered 429, 503 or 422 by the node
	Accepted  uint64 // log records acknowledged
	Rejected  uint64 // log records refused in a partial success (over the record limit)
}

// Intake serves OTLP/HTTP logs as a node.BodyIntake of POST /v1/logs.
// It is safe for concurrent use.
type Intake struct {
	recv    node.Receiver
	maxLine int

	requests, malformed, refused, accepted, rejected atomic.Uint64
}

// New returns an intake that hands records to recv; maxLine bounds one
// stored record in bytes (0: no bound).
func New(recv node.Receiver, maxLine int) *Intake {
	return &Intake{recv: recv, maxLine: maxLine}
}

// Stats returns the counters; safe to call at any time.
func (in *Intake) Stats() Stats {
	return Stats{Requests: in.requests.Load(), Malformed: in.malformed.Load(), Refused: in.refused.Load(),
		Accepted: in.accepted.Load(), Rejected: in.rejected.Load()}
}

// rpcCode is a google.rpc.Code, the code of a google.rpc.Status.
type rpcCode int32

// The codes OTLP/HTTP answers carry (google/rpc/code.proto).
const (
	codeInvalidArgument   rpcCode = 3
	codeResourceExhausted rpcCode = 8
	codeUnavailable       rpcCode = 14
)

// encoding is how a request (and so its answer) is encoded.
type encoding int

const (
	encProto encoding = iota
	encJSON
)

// Claims takes protobuf bodies, and JSON bodies that are one object with a
// top-level "resourceLogs" key (a native record with such a key would be
// taken for OTLP: send those as NDJSON).
func (in *Intake) Claims(contentType string, body []byte) bool {
	_, ok := requestEncoding(contentType, body)
	return ok
}

func requestEncoding(contentType string, body []byte) (encoding, bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, false
	}
	switch mt {
	case "application/x-protobuf", "application/protobuf":
		return encProto, true
	case "application/json":
		return encJSON, hasResourceLogs(body)
	}
	return 0, false
}

// hasResourceLogs reports whether body is a JSON object with a top-level
// "resourceLogs" (or "resource_logs") key.
func hasResourceLogs(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 || b[0] != '{' || !bytes.Contains(b, []byte("esource")) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if k, _ := tok.(string); k == "resourceLogs" || k == "resource_logs" {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// ServeBody implements node.BodyIntake.
func (in *Intake) ServeBody(w http.ResponseWriter, r *http.Request, body []byte) {
	enc, _ := requestEncoding(r.Header.Get("Content-Type"), body)
	req := plogotlp.NewExportRequest()
	var err error
	if enc == encProto {
		err = req.UnmarshalProto(body)
	} else {
		err = req.UnmarshalJSON(body)
	}
	if err != nil {
		in.malformed.Add(1)
		in.recv.Rejected("malformed", 1)
		in.writeStatus(w, enc, http.StatusBadRequest, codeInvalidArgument, "invalid OTLP export request: "+err.Error())
		return
	}
	recs, rejected := ToRecords(req.Logs(), in.maxLine)
	if len(rejected) > 0 {
		in.rejected.Add(uint64(len(rejected)))
		in.recv.Rejected("too_large", len(rejected))
	}
	if err := in.recv.Ingest(r.Context(), recs, node.SourceOTLP); err != nil {
		if r.Context().Err() != nil && !errors.Is(err, node.ErrQueueFull) {
			return // the client went away; nobody reads the answer
		}
		in.refused.Add(1)
		status, msg := node.IngestStatus(err)
		code := codeUnavailable
		switch status {
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", strconv.Itoa(in.recv.RetryAfter()))
			code = codeResourceExhausted
		case http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", strconv.Itoa(in.recv.RetryAfter()))
		case http.StatusUnprocessableEntity:
			// Not retryable: OTLP clients retry only 429, 502, 503, 504.
			status, code = http.StatusBadRequest, codeInvalidArgument
		}
		in.writeStatus(w, enc, status, code, msg)
		return
	}
	in.requests.Add(1)
	in.accepted.Add(uint64(len(recs)))
	resp := plogotlp.NewExportResponse()
	if len(rejected) > 0 {
		ps := resp.PartialSuccess()
		ps.SetRejectedLogRecords(int64(len(rejected)))
		ps.SetErrorMessage(rejectedMessage(rejected))
	}
	var out []byte
	if enc == encProto {
		out, err = resp.MarshalProto()
	} else {
		out, err = resp.MarshalJSON()
	}
	if err != nil { // cannot happen for a response we built; answer plainly
		out = nil
	}
	w.Header().Set("Content-Type", contentType(enc))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// WriteBodyError implements node.BodyErrorWriter: a protobuf request whose
// body could not be read is answered with a google.rpc.Status.
func (in *Intake) WriteBodyError(w http.ResponseWriter, r *http.Request, status int, msg string) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-protobuf" && mt != "application/protobuf" {
		return false
	}
	in.malformed.Add(1)
	in.writeStatus(w, encProto, status, codeInvalidArgument, msg)
	return true
}

var _ node.BodyErrorWriter = (*Intake)(nil)

// rejectedMessage names the first refused records.
func rejectedMessage(rejected []Rejected) string {
	const show = 3
	var b strings.Builder
	fmt.Fprintf(&b, "%d log records refused: ", len(rejected))
	for i, r := range rejected {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(rejected)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.String())
	}
	return b.String()
}

func contentType(enc encoding) string {
	if enc == encProto {
		return "application/x-protobuf"
	}
	return "application/json"
}

// writeStatus answers a failed export with a google.rpc.Status in the
// request's encoding, as OTLP/HTTP asks.
func (in *Intake) writeStatus(w http.ResponseWriter, enc encoding, status int, code rpcCode, msg string) {
	st := &spb.Status{Code: int32(code), Message: msg}
	var out []byte
	var err error
	if enc == encProto {
		out, err = proto.Marshal(st)
	} else {
		out, err = protojson.Marshal(st)
	}
	if err != nil {
		out = nil
	}
	w.Header().Set("Content-Type", contentType(enc))
	w.WriteHeader(status)
	_, _ = w.Write(out)
}
