package main

import (
	"strings"
	"testing"
)

func TestValidateIngestFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // "" for valid
	}{
		{name: "the intakes are off by default", args: nil},
		{name: "a bulk address without a port is refused", args: []string{"--bulk-addr", "localhost"}, wantErr: "--bulk-addr"},
		{name: "syslog over TLS needs the node's certificate", args: []string{"--syslog-tls-addr", "127.0.0.1:6514"},
			wantErr: "needs --tls-cert and --tls-key"},
		{name: "a client CA without syslog over TLS is refused", args: []string{"--syslog-tls-client-ca", "ca.pem"},
			wantErr: "needs --syslog-tls-addr"},
		{name: "syslog over TLS with a certificate is valid",
			args: []string{"--syslog-tls-addr", "127.0.0.1:6514", "--tls-cert", "c.pem", "--tls-key", "k.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, fs := agentFlags()
			if err := parseFlags(fs, tc.args); err != nil {
				t.Fatal(err)
			}
			err := cfg.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validate: %v; want an error with %q", err, tc.wantErr)
			}
		})
	}
}
