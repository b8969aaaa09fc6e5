package cluster

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultLabel is the memberlist label used when Config.Label is empty.
// Gossip from a node with another label is dropped, so two clusters with
// different labels never merge.
const DefaultLabel = "batchpilot"

// Config configures one node's gossip membership.
type Config struct {
	// NodeName is the node's name in the cluster; it must be unique.
	NodeName string
	// NodeID is the node's stable id (also its Raft server id). When empty
	// it is loaded from, or created in, DataDir/node-id.
	NodeID string
	// DataDir holds the node-id and cluster-id files. Required when NodeID
	// is empty.
	DataDir string
	// Role is this node's role, gossiped to every member (default worker).
	Role Role
	// ClusterID is the cluster this node belongs to; when empty it is read
	// from DataDir/cluster-id, and otherwise learned (SetClusterID).
	ClusterID string
	// Version is the build's version, gossiped for operators.
	Version string

	// BindAddr is the gossip address, host:port, for both TCP and UDP.
	// Port 0 picks a free port that is free for both.
	BindAddr string
	// AdvertiseAddr is the address other nodes use to reach this one
	// (host or host:port); needed when BindAddr is 0.0.0.0 behind NAT.
	AdvertiseAddr string
	// HTTPAddr is the node's advertised HTTP API address, carried in its
	// meta so any node can forward to the leader's API.
	HTTPAddr string
	// Join lists gossip addresses (host:port) of members to join. Joining
	// is retried in the background until one answers.
	Join []string

	// Label is the memberlist label; DefaultLabel when empty.
	Label string
	// EncryptKey is an optional base64 key of 16, 24 or 32 bytes (AES-128,
	// -192 or -256) for gossip encryption: the key this node encrypts with.
	// Every member needs it among its keys.
	EncryptKey string
	// ExtraKeys are further base64 keys accepted on what is received, for a
	// rotation (see SetKeys). Ignored without EncryptKey.
	ExtraKeys []string

	// Logger receives the cluster's logs and memberlist's, at their levels.
	Logger *slog.Logger

	// LANTimings uses memberlist's LAN timings even when bound to
	// loopback, where it would otherwise use its faster local ones: for
	// many members packed into one host (the scale benchmark), whose
	// probes must tolerate a busy CPU as a LAN's tolerate the network.
	LANTimings bool
	// Tuning overrides some of memberlist's settings (nil: none). Agents
	// leave it nil; the scale benchmark sets it for its simulated workers.
	Tuning *GossipTuning

	// UpdateTimeout bounds the wait for a changed meta to be gossiped to
	// someone (default 1s).
	UpdateTimeout time.Duration
	// ForgetAfter is how long a dead or left member stays in Members
	// (default 1h).
	ForgetAfter time.Duration
	// RetryJoinInterval is the pause between join attempts (default 2s).
	RetryJoinInterval time.Duration
	// ReconnectInterval is how often the node may try to reach one member
	// it found dead (default 10s), until ForgetAfter: each round tries
	// with the probability dead/alive, as Serf, so that the cluster tries
	// each dead member about once per interval. memberlist stops
	// gossiping to a dead member after 30s (15s on loopback), so without
	// this the two sides of a partition that lasted longer would never
	// find each other again.
	ReconnectInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.Label == "" {
		c.Label = DefaultLabel
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.UpdateTimeout <= 0 {
		c.UpdateTimeout = time.Second
	}
	if c.Role == "" {
		c.Role = RoleWorker
	}
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = time.Hour
	}
	if c.RetryJoinInterval <= 0 {
		c.RetryJoinInterval = 2 * time.Second
	}
	if c.ReconnectInterval <= 0 {
		c.ReconnectInterval = 10 * time.Second
	}
}

// DecodeEncryptKey decodes a base64 gossip key and checks its length.
func DecodeEncryptKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("encrypt key is not valid base64: %w", err)
	}
	if l := len(key); l != 16 && l != 24 && l != 32 {
		return nil, fmt.Errorf("encrypt key must decode to 16, 24 or 32 bytes (AES-128, -192, -256), got %d bytes", l)
	}
	return key, nil
}

// memberlistConfig turns the Config into memberlist's, choosing timings for
// a loopback cluster when it binds to loopback and for a LAN otherwise.
func (c *Config) memberlistConfig() (*memberlist.Config, error) {
	if c.NodeName == "" {
		return nil, errors.New("cluster: node name is empty")
	}
	if len(c.NodeName) > 128 {
		return nil, fmt.Errorf("cluster: node name %q is longer than 128 bytes", c.NodeName)
	}
	host, port, err := splitHostPort(c.BindAddr, "bind address")
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("cluster: bind address %q: host must be an IP address", c.BindAddr)
	}
	var mc *memberlist.Config
	if ip.IsLoopback() && !c.LANTimings {
		mc = memberlist.DefaultLocalConfig()
	} else {
		mc = memberlist.DefaultLANConfig()
	}
	if err := c.Tuning.apply(mc); err != nil {
		return nil, err
	}
	mc.Name = c.NodeName
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port
	if c.AdvertiseAddr != "" {
		ahost, aport := c.AdvertiseAddr, port
		if h, p, err := net.SplitHostPort(c.AdvertiseAddr); err == nil {
			ahost = h
			if aport, err = strconv.Atoi(p); err != nil || aport < 0 || aport > 65535 {
				return nil, fmt.Errorf("cluster: advertise address %q: bad port", c.AdvertiseAddr)
			}
		}
		aip := net.ParseIP(ahost)
		if aip == nil {
			addrs, err := net.LookupIP(ahost)
			if err != nil || len(addrs) == 0 {
				return nil, fmt.Errorf("cluster: advertise address %q does not resolve: %v", c.AdvertiseAddr, err)
			}
			aip = addrs[0]
		}
		mc.AdvertiseAddr = aip.String()
		mc.AdvertisePort = aport
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		return nil, fmt.Errorf("cluster: label is %d bytes, at most %d", len(c.Label), memberlist.LabelMaxSize)
	}
	mc.Label = c.Label
	// No LZW compression of gossip: memberlist builds a new LZW writer
	// (a 64 KiB table) for every packet it sends, and a reader (about
	// 20 KiB) for every one it receives, to squeeze messages of a few
	// hundred bytes of static identity. In the scale benchmark's profile
	// (300 workers) that was a third of all bytes allocated and, with the
	// garbage collection it caused, the largest CPU cost of gossip. Members that still compress
	// are understood: decompression follows the message's type, not this
	// setting.
	mc.EnableCompression = false
	if c.EncryptKey != "" {
		key, err := DecodeEncryptKey(c.EncryptKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		var extra [][]byte
		for i, k := range c.ExtraKeys {
			b, err := DecodeEncryptKey(k)
			if err != nil {
				return nil, fmt.Errorf("cluster: extra key %d: %w", i+1, err)
			}
			extra = append(extra, b)
		}
		kr, err := memberlist.NewKeyring(extra, key)
		if err != nil {
			return nil, fmt.Errorf("cluster: keyring: %w", err)
		}
		mc.Keyring = kr
	}
	if c.Role != RoleServer && c.Role != RoleWorker {
		return nil, fmt.Errorf("cluster: role %q: want server or worker", c.Role)
	}
	mc.Logger = newLibraryLogger(c.Logger, "memberlist")
	return mc, nil
}

func splitHostPort(addr, what string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: %s %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("cluster: %s %q: port must be 0-65535", what, addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}
