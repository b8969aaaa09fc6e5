// Package loadgen is the bundled traffic generator (patterns, scenarios,
// HTTP and syslog senders, the report) and the downstream simulator sinksim.
// It talks to nodes only over the wire.
package loadgen
