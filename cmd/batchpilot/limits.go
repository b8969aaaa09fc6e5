package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batchpilot/batchpilot/consensus"
)

func init() {
	register("limits", "read or change the cluster's global limits: limits get, limits set KEY=VALUE ...", runLimits)
}

const limitsSynopsis = `limits get [--addr URL] [--json]
       batchpilot limits set [--addr URL] [--token T] KEY=VALUE [KEY=VALUE ...]

Limits: ` + "%s"

func runLimits(ctx context.Context, args []string) error {
	usage := fmt.Sprintf(limitsSynopsis, strings.Join(consensus.LimitNames(), ", "))
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fs := newFlagSet("limits", usage)
		var f apiFlags
		f.register(fs)
		fs.SetOutput(os.Stderr)
		fs.Usage()
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "get":
		return runLimitsGet(ctx, args[1:], usage)
	case "set":
		return runLimitsSet(ctx, args[1:], usage)
	default:
		fmt.Fprintf(os.Stderr, "batchpilot limits: unknown subcommand %q: want get or set\n", args[0])
		return errUsage
	}
}

func runLimitsGet(ctx context.Context, args []string, usage string) error {
	var f apiFlags
	fs := newFlagSet("limits get", usage)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "limits get takes no arguments, got %q (to change limits: limits set KEY=VALUE)\n", fs.Args())
		return errUsage
	}
	body, err := f.get(ctx, "/api/v1/limits")
	if err != nil {
		return err
	}
	return printLimitsAnswer(os.Stdout, body, f.json)
}

func runLimitsSet(ctx context.Context, args []string, usage string) error {
	var f apiFlags
	fs := newFlagSet("limits set", usage)
	f.register(fs)
	pairs, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pairs) == 0 {
		fmt.Fprintf(fs.Output(), "limits set needs at least one KEY=VALUE; limits: %s\n", strings.Join(consensus.LimitNames(), ", "))
		return errUsage
	}
	patch, err := consensus.ParseLimitsPatch(pairs)
	if err != nil {
		fmt.Fprintf(fs.Output(), "batchpilot limits set: %v\n", err)
		return errUsage
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()

	// Check the change against the limits in force first, so that a value
	// out of range (or a lease shorter than two epochs) is reported before
	// anything is sent to the leader. The leader checks again on commit.
	cur, err := c.do(ctx, http.MethodGet, "/api/v1/limits", nil, nil)
	if err != nil {
		return err
	}
	var current consensus.Limits
	if err := json.Unmarshal(cur, &current); err != nil {
		return fmt.Errorf("GET /api/v1/limits: the answer is not a limits object: %w", err)
	}
	if err := patch.Apply(current).Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "batchpilot limits set: nothing changed: %v\n", err)
		return exitCode(2)
	}

	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	committed, err := c.putLimits(ctx, body)
	if err != nil {
		return err
	}
	if !f.json {
		fmt.Println("committed:")
	}
	return printLimitsAnswer(os.Stdout, committed, f.json)
}

// putLimits sends the patch and returns the committed limits. An answer of
// 503 (no leader yet, or the outcome was lost with the leadership) is retried
// with the same request id, which the cluster applies at most once, until
// the client's timeout. A node that will not forward the API token over a
// connection that is not verified TLS names the leader; the retry goes
// there directly.
func (c *apiClient) putLimits(ctx context.Context, body []byte) ([]byte, error) {
	hdr := http.Header{"X-Request-Id": {consensus.NewRequestID()}}
	for {
		out, err := c.do(ctx, http.MethodPut, "/api/v1/limits", body, hdr)
		var ae *apiError
		if err == nil || !errors.As(err, &ae) || ae.status != http.StatusServiceUnavailable {
			return out, err
		}
		if ae.leader != "" {
			if base := c.base[:strings.Index(c.base, "://")+3] + ae.leader; base != c.base {
				fmt.Fprintf(os.Stderr, "batchpilot limits set: sending the change to the leader at %s\n", base)
				c.base = base
				continue
			}
		}
		wait := min(max(ae.retryAfter, 200*time.Millisecond), 5*time.Second)
		fmt.Fprintf(os.Stderr, "batchpilot limits set: %s; retrying in %s\n", ae.msg, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments (KEY=VALUE pairs never start with a dash) and
// returns the positional ones. The environment is applied once, first.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	var pos []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		pos = append(pos, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
	}
	return pos, nil
}

func printLimitsAnswer(w io.Writer, body []byte, raw bool) error {
	if raw {
		return writeJSON(w, body)
	}
	var l consensus.Limits
	if err := json.Unmarshal(body, &l); err != nil {
		return fmt.Errorf("the answer is not a limits object: %w", err)
	}
	return printLimits(w, l)
}

// printLimits writes one limit a line, by the names `limits set` takes.
func printLimits(w io.Writer, l consensus.Limits) error {
	var m map[string]any
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range consensus.LimitNames() {
		v, ok := m[name]
		if !ok {
			continue
		}
		extra := ""
		if n, ok := v.(json.Number); ok && strings.HasSuffix(name, "_bytes") {
			if i, err := n.Int64(); err == nil && i >= 1024 {
				extra = "  (" + formatBytes(i) + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%v%s\n", name, v, extra)
	}
	return tw.Flush()
}
