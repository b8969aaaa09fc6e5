// Package web serves the HTTP API (Gin), the Server-Sent Events stream,
// /metrics, and the embedded React dashboard. It reads what it serves from
// the node, cluster and consensus packages and computes none of it.
package web
