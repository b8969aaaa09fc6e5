package loadgen

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// target is one place records go: a node's HTTP ingest or syslog listener.
type target struct {
	raw   string // as given
	proto string // http, tcp or udp
	addr  string // host:port
	url   string // http: where to POST
	// downUntil (unix ns) keeps failover away from a target that just failed.
	downUntil atomic.Int64
}

// parseTarget reads http://HOST:PORT[/path] (POSTs to /v1/logs unless a
// path is given; https works too), tcp://HOST:PORT or udp://HOST:PORT.
func parseTarget(s string) (*target, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", s, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("target %q: want SCHEME://HOST:PORT", s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return nil, fmt.Errorf("target %q: %w", s, err)
	}
	t := &target{raw: s, addr: u.Host}
	switch u.Scheme {
	case "http", "https":
		t.proto = "http"
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/logs"
		}
		t.url = u.String()
	case "tcp", "udp":
		t.proto = u.Scheme
	default:
		return nil, fmt.Errorf("target %q: unknown scheme %q (want http, tcp, udp)", s, u.Scheme)
	}
	return t, nil
}

// targetSet is the targets of one protocol, taken in turn.
type targetSet struct {
	ts   []*target
	next atomic.Uint64
}

// pick returns the next target in round-robin order that is not marked
// down; when all are down, the next one anyway.
func (s *targetSet) pick(now time.Time) *target {
	n := uint64(len(s.ts))
	start := s.next.Add(1) - 1
	for i := range n {
		t := s.ts[(start+i)%n]
		if t.downUntil.Load() <= now.UnixNano() {
			if i > 0 {
				s.next.Store(start + i + 1)
			}
			return t
		}
	}
	return s.ts[start%n]
}

// markDown sends traffic elsewhere until until.
func (s *targetSet) markDown(t *target, until time.Time) {
	if len(s.ts) > 1 {
		t.downUntil.Store(until.UnixNano())
	}
}

// targetSets groups targets by protocol.
func targetSets(list []string) (map[string]*targetSet, string, error) {
	sets := map[string]*targetSet{}
	first := ""
	for _, s := range list {
		if strings.TrimSpace(s) == "" {
			continue
		}
		t, err := parseTarget(s)
		if err != nil {
			return nil, "", err
		}
		if first == "" {
			first = t.proto
		}
		if sets[t.proto] == nil {
			sets[t.proto] = &targetSet{}
		}
		sets[t.proto].ts = append(sets[t.proto].ts, t)
	}
	if len(sets) == 0 {
		return nil, "", fmt.Errorf("no target: give --target http://HOST:PORT, tcp://HOST:PORT or udp://HOST:PORT")
	}
	return sets, first, nil
}
