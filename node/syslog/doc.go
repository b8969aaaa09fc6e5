// Package syslog ingests syslog messages (RFC 5424 and RFC 3164) over TCP and
// UDP and turns each one into the JSON record the node stores.
//
// Parse is the pure core: one message in, one JSON object out, with the clock
// passed as a value. Server is the I/O edge: it binds one TCP and one UDP
// socket on the same port, splits TCP streams into messages (RFC 6587
// octet counting or non-transparent framing, detected per connection), parses
// each message and hands the record to a Handler.
//
// Backpressure follows the transport: a TCP connection is not read while its
// Handler call blocks, so a full node queue slows the sender down; a UDP
// datagram that the Handler cannot take at once is dropped and counted.
package syslog
