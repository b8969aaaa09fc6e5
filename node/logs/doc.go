// Package logs decodes the native body formats of POST /v1/logs: NDJSON,
// a JSON array or object, and plain text lines. Decode is pure: a body in,
// the records (each one JSON object) out, or a DecodeError naming the line
// that was wrong; it checks every record before returning any, so a request
// with one bad record writes nothing. The HTTP edge that reads the body and
// hands the records to the node is node.Node.IngestHandler.
package logs
