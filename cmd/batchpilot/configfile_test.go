package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "batchpilot.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func agentFlags() (*agentConfig, *flag.FlagSet) {
	var cfg agentConfig
	fs := newFlagSet("agent", "agent [flags]")
	cfg.register(fs)
	fs.SetOutput(new(bytes.Buffer))
	return &cfg, fs
}

func TestConfigFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		env     map[string]string
		args    []string
		check   func(t *testing.T, c *agentConfig)
		wantErr string
	}{
		{name: "the file sets flags by name",
			file: "http-addr: 127.0.0.1:9000\nbulk-addr: 127.0.0.1:9200\nmax-linger: 50ms\nbatch-size: 7\nraft-tls: false\njoin: [10.0.0.1:7946, 10.0.0.2:7946]\n",
			check: func(t *testing.T, c *agentConfig) {
				if c.HTTPAddr != "127.0.0.1:9000" || c.BulkAddr != "127.0.0.1:9200" || c.MaxLinger != 50*time.Millisecond ||
					c.BatchSize != 7 || c.Join != "10.0.0.1:7946,10.0.0.2:7946" {
					t.Fatalf("config not applied: %+v", c)
				}
			}},
		{name: "the environment overrides the file",
			file: "http-addr: 127.0.0.1:9000\n", env: map[string]string{"BATCHPILOT_HTTP_ADDR": "127.0.0.1:9001"},
			check: func(t *testing.T, c *agentConfig) {
				if c.HTTPAddr != "127.0.0.1:9001" {
					t.Fatalf("http-addr %q, want the environment's", c.HTTPAddr)
				}
			}},
		{name: "the command line overrides the environment and the file",
			file: "http-addr: 127.0.0.1:9000\n", env: map[string]string{"BATCHPILOT_HTTP_ADDR": "127.0.0.1:9001"},
			args: []string{"--http-addr", "127.0.0.1:9002"},
			check: func(t *testing.T, c *agentConfig) {
				if c.HTTPAddr != "127.0.0.1:9002" {
					t.Fatalf("http-addr %q, want the command line's", c.HTTPAddr)
				}
			}},
		{name: "an empty file changes nothing", file: "# nothing yet\n",
			check: func(t *testing.T, c *agentConfig) {
				if c.HTTPAddr != "127.0.0.1:8480" {
					t.Fatalf("http-addr %q, want the default", c.HTTPAddr)
				}
			}},
		{name: "an unknown key is an error that names it and its line",
			file: "http-addr: 127.0.0.1:9000\nhttp_adr: x\n", wantErr: `line 2: unknown key "http_adr"`},
		{name: "a value the flag refuses names the key", file: "batch-size: lots\n", wantErr: `line 1: invalid value "lots" for batch-size`},
		{name: "a mapping value is refused", file: "sink:\n  kind: file\n", wantErr: "line 1: sink: want a value"},
		{name: "a key set twice is refused", file: "sink: file\nsink: http\n", wantErr: "\"sink\" already defined"},
		{name: "a file that is not a mapping is refused", file: "- http-addr\n", wantErr: "want a mapping"},
		{name: "invalid YAML is refused", file: "http-addr: [\n", wantErr: "--config"},
		{name: "a file cannot name another", file: "config: other.yaml\n", wantErr: "cannot name another"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, fs := agentFlags()
			args := append([]string{"--config", writeConfig(t, tc.file)}, tc.args...)
			err := parseFlags(fs, args)
			out := fs.Output().(*bytes.Buffer).String()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(out, tc.wantErr) {
					t.Fatalf("err %v, output %q; want an error with %q", err, out, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags: %v: %s", err, out)
			}
			tc.check(t, cfg)
		})
	}
}

// TestConfigFileHasAKeyForEveryFlag writes every agent flag, with its
// default, into a file and reads it back; docs/configuration.md's example
// must parse too.
func TestConfigFileHasAKeyForEveryFlag(t *testing.T) {
	_, fs := agentFlags()
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != configFlag {
			fmt.Fprintf(&b, "%s: %q\n", f.Name, f.DefValue)
		}
	})
	_, fs = agentFlags()
	if err := applyConfigFile(fs, writeConfig(t, b.String())); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(example, "```")
	if !ok || !ok2 {
		t.Fatal("docs/configuration.md has no ```yaml example")
	}
	cfg, fs := agentFlags()
	if err := applyConfigFile(fs, writeConfig(t, example)); err != nil {
		t.Fatalf("docs/configuration.md's example: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(example, "\n") {
		if k, _, ok := strings.Cut(strings.TrimPrefix(line, "# "), ":"); ok && !strings.HasPrefix(k, " ") {
			seen[k] = true
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != configFlag && !seen[f.Name] {
			t.Errorf("docs/configuration.md's example does not show --%s", f.Name)
		}
	})
	if err := cfg.validate(); err != nil {
		t.Errorf("docs/configuration.md's example does not validate: %v", err)
	}
}

// TestAgentRefusesAnUnknownConfigKey runs the real binary: it exits 2
// before starting anything and names the key.
func TestAgentRefusesAnUnknownConfigKey(t *testing.T) {
	path := writeConfig(t, "http-addr: 127.0.0.1:0\ningest_token: x\n")
	cmd := exec.Command(binPath, "agent", "--config", path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), `line 2: unknown key "ingest_token"`) {
		t.Fatalf("exit %v, output %q; want exit 2 naming the key and its line", err, out)
	}
}
