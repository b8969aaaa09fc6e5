package cluster

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		return Config{NodeName: "n1", NodeID: "id-1", BindAddr: "127.0.0.1:0", Logger: testLogger(t)}
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
