package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigFile feeds any bytes to --config as the agent reads it: the file
// is outside input, so whatever it holds is either applied or refused with
// an error that names the file, and never a panic.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"http-addr: 127.0.0.1:8480\nserver: true\nbootstrap-expect: 1\n",
		"join: [10.0.0.1:7946, 10.0.0.2:7946]\nmax-linger: 200ms\n",
		"queue-records: 200000\nlatency-slo: 500ms\ningest-token: \"t\"\n",
		"- not a mapping\n",
		"join: [[a, b]]\n",
		"http-addr: {a: b}\n",
		"config: other.yaml\n",
		"no-such-flag: 1\n",
		"batch-size: 1\nbatch-size: 2\n",
		"---\n# only a comment\n",
		"\t: :\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "batchpilot.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := newFlagSet("agent", "agent [flags]")
		var cfg agentConfig
		cfg.register(fs)
		if err := applyConfigFile(fs, path); err != nil && !strings.Contains(err.Error(), path) {
			t.Errorf("the error does not name the file %s: %v", path, err)
		}
	})
}
