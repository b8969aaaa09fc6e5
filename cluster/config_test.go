package cluster

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
)

func TestDecodeEncryptKey(t *testing.T) {
	key := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for _, tc := range []struct {
		name    string
		key     string
		wantErr string
	}{
		{"16 bytes is AES-128", key(16), ""},
		{"24 bytes is AES-192", key(24), ""},
		{"32 bytes is AES-256", key(32), ""},
		{"15 bytes is refused with the size", key(15), "got 15 bytes"},
		{"33 bytes is refused with the size", key(33), "got 33 bytes"},
		{"not base64 is refused", "not base64!", "not valid base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEncryptKey(tc.key)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	base := func() Config {
		return Config{NodeName: "n1", NodeID: "id-1", BindAddr: "127.0.0.1:0", Logger: clustertest.Logger(t)}
	}
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"empty node name", func(c *Config) { c.NodeName = "" }, "node name is empty"},
		{"bind address without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "bind address"},
		{"bind address with a host name", func(c *Config) { c.BindAddr = "localhost:0" }, "must be an IP"},
		{"short encrypt key", func(c *Config) { c.EncryptKey = base64.StdEncoding.EncodeToString([]byte("short")) }, "16, 24 or 32 bytes"},
		{"node id with a slash", func(c *Config) { c.NodeID = "a/b" }, "character"},
		{"label too long", func(c *Config) { c.Label = strings.Repeat("l", 300) }, "label"},
		{"negative tuned probe interval", func(c *Config) { c.Tuning = &GossipTuning{ProbeInterval: -time.Second} }, "probe interval"},
		{"negative tuned retransmit mult", func(c *Config) { c.Tuning = &GossipTuning{RetransmitMult: -1} }, "retransmit mult"},
		{"tuned probe timeout not under the interval", func(c *Config) { c.Tuning = &GossipTuning{ProbeTimeout: 2 * time.Second} }, "shorter than the probe interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mutate(&cfg)
			c, err := New(cfg)
			if err == nil {
				c.Shutdown()
				t.Fatalf("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestNodeIDIsCreatedOnceAndKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id, err := LoadOrCreateNodeID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateNodeID(id); err != nil {
		t.Fatalf("created id %q is invalid: %v", id, err)
	}
	again, err := LoadOrCreateNodeID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again != id {
		t.Fatalf("id changed across loads: %q then %q", id, again)
	}
	if err := os.WriteFile(filepath.Join(dir, NodeIDFile), []byte("bad id!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateNodeID(dir); err == nil || !strings.Contains(err.Error(), NodeIDFile) {
		t.Fatalf("a malformed id file gave err = %v, want one naming the file", err)
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		line, msg string
		level     string
	}{
		{"[WARN] memberlist: Refuting a suspect message", "memberlist: Refuting a suspect message", "WARN"},
		{"[ERR] memberlist: Failed", "memberlist: Failed", "ERROR"},
		{"[DEBUG] memberlist: Stream connection", "memberlist: Stream connection", "DEBUG"},
		{"no prefix at all", "no prefix at all", "INFO"},
	} {
		level, msg := parseLevel(tc.line)
		if level.String() != tc.level || msg != tc.msg {
			t.Errorf("parseLevel(%q) = %v %q, want %v %q", tc.line, level, msg, tc.level, tc.msg)
		}
	}
}

func TestGossipTuningOverridesOnlyWhatItSets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tuning *GossipTuning
		check  func(t *testing.T, got, lan *memberlist.Config)
	}{
		{"nil keeps the LAN defaults", nil, func(t *testing.T, got, lan *memberlist.Config) {
			if got.ProbeInterval != lan.ProbeInterval || got.RetransmitMult != lan.RetransmitMult || got.GossipInterval != lan.GossipInterval {
				t.Fatalf("got probe %v retransmit %d gossip %v, want the LAN defaults", got.ProbeInterval, got.RetransmitMult, got.GossipInterval)
			}
		}},
		{"set fields replace the defaults", &GossipTuning{ProbeInterval: 5 * time.Second, ProbeTimeout: 3 * time.Second, RetransmitMult: 2, PushPullInterval: time.Minute},
			func(t *testing.T, got, lan *memberlist.Config) {
				if got.ProbeInterval != 5*time.Second || got.ProbeTimeout != 3*time.Second || got.RetransmitMult != 2 || got.PushPullInterval != time.Minute {
					t.Fatalf("got probe %v/%v retransmit %d push-pull %v, want 5s/3s 2 1m", got.ProbeInterval, got.ProbeTimeout, got.RetransmitMult, got.PushPullInterval)
				}
			}},
		{"zero fields keep the defaults", &GossipTuning{GossipNodes: 4}, func(t *testing.T, got, lan *memberlist.Config) {
			if got.GossipNodes != 4 || got.SuspicionMult != lan.SuspicionMult || got.GossipInterval != lan.GossipInterval {
				t.Fatalf("got gossip nodes %d suspicion %d gossip %v, want 4 and the LAN defaults", got.GossipNodes, got.SuspicionMult, got.GossipInterval)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{NodeName: "n1", NodeID: "id-1", BindAddr: "127.0.0.1:0", LANTimings: true, Tuning: tc.tuning}
			cfg.setDefaults()
			got, err := cfg.memberlistConfig()
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, got, memberlist.DefaultLANConfig())
		})
	}
}
