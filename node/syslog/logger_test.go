package syslog

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestInteropWithUtilLinuxLogger sends messages with the logger(1) of
// util-linux, a sender we do not control, over every transport and framing it
// offers. Its remote modes need no extra flags (checked with 2.38.1): it
// exits 1 when a TCP connection fails, and UDP has nothing to report.
func TestInteropWithUtilLinuxLogger(t *testing.T) {
	const loggerPath = "/usr/bin/logger"
	if _, err := os.Stat(loggerPath); err != nil {
		t.Skipf("util-linux logger not installed: %v", err)
	}
	var c collector
	s := startServer(t, Config{Handler: c.handle})
	port := strconv.Itoa(s.TCPAddr().(*net.TCPAddr).Port)

	for i, tc := range []struct {
		name  string
		flags []string
		want  map[string]string // fields the record must have, besides the message
	}{
		{"tcp rfc5424 newline framing", []string{"--tcp", "--rfc5424"}, nil},
		{"udp rfc3164", []string{"--udp", "--rfc3164"}, map[string]string{"app_name": "batchpilot-test"}},
		{"tcp octet counting", []string{"--tcp", "--octet-count"}, nil},
		{"tcp rfc3164", []string{"--tcp", "--rfc3164"}, nil},
		{"udp rfc5424 with structured data id", []string{"--udp", "--rfc5424", "--sd-id", "loadgen@32473", "--sd-param", `id="lg-1-7"`, "--msgid", "M1"},
			map[string]string{"id": "lg-1-7", "msg_id": "M1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := fmt.Sprintf("interop %d %s: héllo \"quoted\" \\ world", i, tc.name)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"-n", "127.0.0.1", "-P", port, "-t", "batchpilot-test", "-p", "local3.warning"}, tc.flags...)
			out, err := exec.CommandContext(ctx, loggerPath, append(args, text)...).CombinedOutput()
			if err != nil {
				t.Fatalf("logger %v: %v: %s", tc.flags, err, out)
			}
			var rec map[string]any
			waitFor(t, "the logger's message", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				for _, r := range c.recs {
					if r["message"] == text {
						rec = r
						return true
					}
				}
				return false
			})
			// local3 is facility 19, warning is severity 4.
			if rec["facility"] != 19.0 || rec["severity"] != 4.0 {
				t.Errorf("facility/severity %v/%v, want 19/4: %v", rec["facility"], rec["severity"], rec)
			}
			if rec["app_name"] != "batchpilot-test" {
				t.Errorf("app_name %v, want batchpilot-test: %v", rec["app_name"], rec)
			}
			for k, v := range tc.want {
				if rec[k] != v {
					t.Errorf("%s = %v, want %q: %v", k, rec[k], v, rec)
				}
			}
		})
	}
	if st := s.Stats(); st.Malformed != 0 || st.TooLong != 0 {
		t.Errorf("stats %+v", st)
	}
}
