// Package bench runs batch-size controllers side by side on one seeded
// scenario, on a real node pipeline, and reports the comparison
// ("batchpilot bench"; see docs/bench.md).
//
// Every run is the same pipeline, started afresh on 127.0.0.1: loadgen sends
// the scenario's load open loop over real HTTP to a node (node.New with the
// controller under test and the safety breaker, wired as the agent wires
// them), whose http sink writes every batch to an in-process sinksim paying
// the scenario's cost phases. The node is reached over the wire like any
// other; the bench only builds it in-process, and reads its batch size once
// in a while, because a node is what it measures.
//
// Latency is loadgen's: per record, from the intended send time of its
// request (the due time of the request's last record on the open-loop
// schedule) to the node's acknowledgement, so a stalled node is charged for
// every record scheduled behind the stall. loadgen's report has no per-record
// figures, so the bench sits in front of the node's ingest handler, notes
// when each request's records were acknowledged, and recomputes each
// request's intended time from the schedule, which is a pure function of the
// scenario (loadgen.Due). The recomputed schedule is checked against
// loadgen's own counts, and loadgen's p99 is kept beside the bench's.
//
// The report (Report) is the contract's: goodput (records acknowledged within
// the SLO per second of the whole run), the fraction of 1-second windows
// whose p99 is within the SLO, per phase figures, the best static size in
// hindsight and the per-phase oracle, from a sweep of fixed sizes run on the
// same pipeline.
package bench
