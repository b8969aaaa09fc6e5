// Package bulk takes logs as the Elasticsearch bulk API: the subset that
// shippers use (Filebeat, Logstash, Fluent Bit, Vector, rsyslog's
// omelasticsearch).
//
// Parse is the pure core: an NDJSON body of action and document lines in,
// one Item per action out. It checks the whole body before anything is
// written: a line that is not JSON, an unknown action or a missing document
// fails the request with its line number, and nothing of it is stored.
// "index" and "create" store their document; "delete" and "update" are
// answered per item as not supported, and the rest of the request is
// stored. Metadata that older shippers send ("_type", "pipeline",
// "routing", ...) is accepted and ignored.
//
// API is the HTTP edge, served on its own listener (--bulk-addr): POST and
// PUT /_bulk, /{index}/_bulk and /{index}/{type}/_bulk; GET and HEAD / with
// the version document shippers check; GET /_cat/health and /_license,
// which some of them ask for. Every stored document is handed to a
// node.Receiver in one Ingest call per request, and the answer (per-item
// results and the "errors" flag) is sent only once all are durable.
package bulk
