// Package otlp takes OTLP/HTTP logs on POST /v1/logs: a protobuf
// (application/x-protobuf) or JSON (a "resourceLogs" object) export request,
// decoded with the OpenTelemetry Collector's pdata package, never by hand.
//
// ToRecords is the pure core: an export request in, one JSON record per
// log record out, keeping the resource and scope attributes, severity,
// trace and span ids. Intake is the HTTP edge: it shares /v1/logs with the
// native formats as a node.BodyIntake, hands the records to a node.Receiver
// and answers as the OTLP specification says: an ExportLogsServiceResponse
// (with partial_success when some records were refused) in the request's
// encoding, or a google.rpc.Status with 400, 429 or 503 (Retry-After).
package otlp
