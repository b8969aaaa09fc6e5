package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"

	"github.com/batchpilot/batchpilot/node/jsonstr"
)

// Body formats accepted by POST /v1/logs.
const (
	FormatNDJSON = "ndjson" // one JSON object per line
	FormatJSON   = "json"   // a JSON array of objects, or one object
	FormatText   = "text"   // one record per line: {"message": "<line>"}
)

// DecodeError says which record of a request body was wrong and why. Line
// is 1-based: the line of the body where the bad record starts.
type DecodeError struct {
	Line   int
	Reason string
	// TooLong marks a record over the line limit (answered 413, not 400).
	TooLong bool
}

func (e *DecodeError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// FormatFor maps a request's Content-Type to a body format. An empty or
// unknown type is sniffed from the body: '[' is JSON, anything else NDJSON.
func FormatFor(contentType string, body []byte) (string, error) {
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return "", fmt.Errorf("bad Content-Type %q: %v", contentType, err)
		}
		switch mt {
		case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
			return FormatNDJSON, nil
		case "application/json":
			return FormatJSON, nil
		case "text/plain":
			return FormatText, nil
		case "application/octet-stream", "application/x-www-form-urlencoded":
			// curl's -d default and unlabelled bodies: sniff.
		default:
			return "", fmt.Errorf("unsupported Content-Type %q: use application/x-ndjson, application/json or text/plain", mt)
		}
	}
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) > 0 && b[0] == '[' {
		return FormatJSON, nil
	}
	return FormatNDJSON, nil
}

// Decode splits a request body into records, each a JSON object. It checks
// every record before returning any, so that a request with one bad record
// writes nothing. maxLine bounds one record's size in bytes (0: no bound).
// The returned records may share memory with body.
func Decode(format string, body []byte, maxLine int) ([][]byte, error) {
	switch format {
	case FormatNDJSON:
		return decodeNDJSON(body, maxLine)
	case FormatJSON:
		return decodeJSON(body, maxLine)
	case FormatText:
		return decodeText(body, maxLine)
	}
	return nil, fmt.Errorf("unknown body format %q", format)
}

// forEachLine calls fn with each line of body (without its '\n' and a
// trailing '\r') and its 1-based number.
func forEachLine(body []byte, fn func(line []byte, n int) error) error {
	n := 0
	for len(body) > 0 {
		n++
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		if err := fn(bytes.TrimSuffix(line, []byte{'\r'}), n); err != nil {
			return err
		}
	}
	return nil
}

func tooLong(n, size, maxLine int) error {
	return &DecodeError{Line: n, TooLong: true,
		Reason: fmt.Sprintf("record of %d bytes is over the limit of %d bytes", size, maxLine)}
}

func decodeNDJSON(body []byte, maxLine int) ([][]byte, error) {
	recs := make([][]byte, 0, bytes.Count(body, []byte{'\n'})+1)
	err := forEachLine(body, func(line []byte, n int) error {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			return nil
		}
		if maxLine > 0 && len(line) > maxLine {
			return tooLong(n, len(line), maxLine)
		}
		if err := checkObject(line); err != nil {
			return &DecodeError{Line: n, Reason: err.Error()}
		}
		recs = append(recs, line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

func decodeJSON(body []byte, maxLine int) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] == '{' {
		if maxLine > 0 && len(trimmed) > maxLine {
			return nil, tooLong(1, len(trimmed), maxLine)
		}
		if err := checkObject(trimmed); err != nil {
			return nil, &DecodeError{Line: lineAt(body, 0), Reason: err.Error()}
		}
		return [][]byte{jsonstr.OneLine(trimmed)}, nil
	}
	if trimmed[0] != '[' {
		return nil, &DecodeError{Line: 1, Reason: "body is neither a JSON array nor a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, &DecodeError{Line: 1, Reason: "invalid JSON: " + err.Error()}
	}
	var recs [][]byte
	for dec.More() {
		start := int(dec.InputOffset())
		line := lineAt(body, start+leadingSpace(body[start:]))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &DecodeError{Line: line, Reason: "invalid JSON: " + jsonReason(err)}
		}
		if maxLine > 0 && len(raw) > maxLine {
			return nil, tooLong(line, len(raw), maxLine)
		}
		if len(raw) == 0 || raw[0] != '{' {
			return nil, &DecodeError{Line: line, Reason: "record is not a JSON object"}
		}
		recs = append(recs, jsonstr.OneLine(raw))
	}
	if _, err := dec.Token(); err != nil {
		return nil, &DecodeError{Line: lineAt(body, int(dec.InputOffset())), Reason: "invalid JSON: " + jsonReason(err)}
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		return nil, &DecodeError{Line: lineAt(body, int(dec.InputOffset())), Reason: "unexpected data after the JSON array"}
	}
	return recs, nil
}

func decodeText(body []byte, maxLine int) ([][]byte, error) {
	var recs [][]byte
	err := forEachLine(body, func(line []byte, n int) error {
		if len(bytes.TrimSpace(line)) == 0 {
			return nil
		}
		if maxLine > 0 && len(line) > maxLine {
			return tooLong(n, len(line), maxLine)
		}
		rec := make([]byte, 0, len(line)+16)
		rec = append(rec, `{"message":`...)
		rec = jsonstr.Append(rec, line)
		rec = append(rec, '}')
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// checkObject reports why b is not one JSON object, or nil.
func checkObject(b []byte) error {
	if b[0] != '{' {
		if json.Valid(b) {
			return errors.New("record is not a JSON object")
		}
		return errors.New("invalid JSON")
	}
	if !json.Valid(b) {
		var v json.RawMessage
		err := json.Unmarshal(b, &v)
		if err == nil {
			return errors.New("invalid JSON")
		}
		return errors.New("invalid JSON: " + jsonReason(err))
	}
	return nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " at byte " + strconv.FormatInt(se.Offset, 10)
	}
	return err.Error()
}

func lineAt(body []byte, off int) int {
	if off > len(body) {
		off = len(body)
	}
	return bytes.Count(body[:off], []byte{'\n'}) + 1
}

func leadingSpace(b []byte) int {
	return len(b) - len(bytes.TrimLeft(b, " \t\r\n,"))
}
