package bulk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/batchpilot/batchpilot/node/jsonstr"
)

// Item is one action of a bulk request.
type Item struct {
	Action string // index, create, delete, update
	Index  string // "" when neither the line nor the URL names one
	ID     string // "" when the action line gives none
	// Record is the document to store, with "_index" and "_id" added as
	// its first keys where known; nil when the action is not stored.
	Record []byte
	// Err says why an action that is not stored was refused.
	Err string
}

// ParseError says which line of a bulk body was wrong. TooLong marks a
// document over the size limit (answered 413, not 400).
type ParseError struct {
	Line    int
	Reason  string
	TooLong bool
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// actionMeta is the metadata object of an action line.
type actionMeta struct {
	Index *string         `json:"_index"`
	ID    json.RawMessage `json:"_id"`
}

// Parse splits an NDJSON bulk body into items. defaultIndex is the index
// of the URL (/{index}/_bulk), used where an action names none. maxDoc
// bounds one document in bytes (0: no bound). The records may share no
// memory with body.
func Parse(body []byte, defaultIndex string, maxDoc int) ([]Item, error) {
	var items []Item
	line := 0
	for len(body) > 0 {
		var action []byte
		action, body = nextLine(body)
		line++
		action = bytes.TrimSpace(action)
		if len(action) == 0 {
			continue
		}
		name, meta, err := parseAction(action)
		if err != nil {
			return nil, &ParseError{Line: line, Reason: err.Error()}
		}
		it := Item{Action: name, Index: defaultIndex}
		if meta.Index != nil && *meta.Index != "" {
			it.Index = *meta.Index
		}
		if len(meta.ID) > 0 && string(meta.ID) != "null" {
			var s string
			if json.Unmarshal(meta.ID, &s) == nil {
				it.ID = s
			} else {
				it.ID = string(meta.ID) // a number, as older shippers send
			}
		}
		if name == "delete" {
			it.Err = "the delete action is not supported: this endpoint only takes logs"
			items = append(items, it)
			continue
		}
		actionLine := line
		var doc []byte
		for {
			if len(body) == 0 {
				return nil, &ParseError{Line: actionLine, Reason: fmt.Sprintf("the %s action has no document line after it", name)}
			}
			doc, body = nextLine(body)
			line++
			if doc = bytes.TrimSpace(doc); len(doc) > 0 {
				break
			}
		}
		if name == "update" {
			it.Err = "the update action is not supported: this endpoint only takes logs"
			items = append(items, it)
			continue
		}
		if maxDoc > 0 && len(doc) > maxDoc {
			return nil, &ParseError{Line: line, TooLong: true,
				Reason: fmt.Sprintf("document of %d bytes is over the limit of %d bytes", len(doc), maxDoc)}
		}
		if doc[0] != '{' || !json.Valid(doc) {
			return nil, &ParseError{Line: line, Reason: "document is not a JSON object"}
		}
		it.Record = buildRecord(doc, it.Index, it.ID)
		items = append(items, it)
	}
	return items, nil
}

// actionLine is an action line's one key, decoded without a map.
type actionLine struct {
	Index  *actionMeta `json:"index"`
	Create *actionMeta `json:"create"`
	Delete *actionMeta `json:"delete"`
	Update *actionMeta `json:"update"`
}

// parseAction reads an action line: one object with one key, the action.
func parseAction(b []byte) (string, actionMeta, error) {
	if b[0] != '{' {
		return "", actionMeta{}, errors.New("action line is not a JSON object")
	}
	var al actionLine
	if err := json.Unmarshal(b, &al); err == nil {
		name, meta, n := "", (*actionMeta)(nil), 0
		for _, c := range []struct {
			name string
			meta *actionMeta
		}{{"index", al.Index}, {"create", al.Create}, {"delete", al.Delete}, {"update", al.Update}} {
			if c.meta != nil {
				name, meta, n = c.name, c.meta, n+1
			}
		}
		// encoding/json matches keys regardless of case: the one key must
		// be the action as written.
		if n == 1 && topLevelKeys(b) == 1 &&
			bytes.HasPrefix(bytes.TrimLeft(b[1:], " \t\r"), []byte(`"`+name+`"`)) {
			return name, *meta, nil
		}
	}
	return parseActionSlow(b)
}

// parseActionSlow is parseAction through a map: slower, and it says
// exactly what is wrong with a line.
func parseActionSlow(b []byte) (string, actionMeta, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return "", actionMeta{}, errors.New("action line is not a JSON object")
	}
	if len(m) != 1 {
		return "", actionMeta{}, fmt.Errorf("action line has %d keys, want one action (index, create, delete or update)", len(m))
	}
	for name, raw := range m {
		switch name {
		case "index", "create", "delete", "update":
		default:
			return "", actionMeta{}, fmt.Errorf("unknown action %q: want index, create, delete or update", name)
		}
		var meta actionMeta
		if err := json.Unmarshal(raw, &meta); err != nil {
			return "", actionMeta{}, fmt.Errorf("the %s action's metadata is not an object with string _index: %v", name, err)
		}
		return name, meta, nil
	}
	panic("unreachable")
}

// topLevelKeys counts the keys of the JSON object b (valid JSON), by
// scanning for the commas at depth one outside strings.
func topLevelKeys(b []byte) int {
	depth, keys, inString, escaped, empty := 0, 0, false, false, true
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		case c == '"':
			inString = true
			if depth == 1 && empty {
				keys, empty = 1, false
			}
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ',' && depth == 1:
			keys++
		}
	}
	return keys
}

// buildRecord is doc with "_index" and "_id" as its first keys, where known
// and where the document does not carry them itself.
func buildRecord(doc []byte, index, id string) []byte {
	rec := make([]byte, 0, len(doc)+len(index)+len(id)+24)
	rec = append(rec, '{')
	if index != "" && !bytes.Contains(doc, []byte(`"_index"`)) {
		rec = append(rec, `"_index":`...)
		rec = jsonstr.Append(rec, index)
		rec = append(rec, ',')
	}
	if id != "" && !bytes.Contains(doc, []byte(`"_id"`)) {
		rec = append(rec, `"_id":`...)
		rec = jsonstr.Append(rec, id)
		rec = append(rec, ',')
	}
	inner := bytes.TrimSpace(doc[1:])
	if len(inner) > 0 && inner[0] == '}' { // an empty document
		if rec[len(rec)-1] == ',' {
			rec = rec[:len(rec)-1]
		}
		rec = append(rec, '}')
	} else {
		rec = append(rec, inner...)
	}
	return jsonstr.OneLine(rec)
}

func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}
