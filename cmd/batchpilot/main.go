// Command batchpilot is a log-processing node and cluster that tunes its own
// batch sizes. Run "batchpilot --help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run gets the arguments after the command's name
// and a context that is cancelled on SIGINT or SIGTERM.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

// commands is filled by the init functions of the files named after each
// command (agent.go, verify.go, loadgen.go, ...).
var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stderr))
}

func runMain(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "batchpilot: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		fmt.Fprintf(stderr, "batchpilot %s: %v\n", args[0], err)
		return 1
	}
}

// errUsage is returned by a command whose flags were wrong; the flag package
// has already printed what was wrong.
var errUsage = errors.New("usage")

// exitCode lets a command choose its exit status after printing its own
// message (verify exits 1 when records are lost).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "batchpilot: a log-processing cluster that tunes its own batching.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: batchpilot COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'batchpilot COMMAND --help' for a command's flags. Every flag can also be")
	fmt.Fprintln(w, "set by an environment variable BATCHPILOT_<FLAG_NAME>, e.g. BATCHPILOT_HTTP_ADDR.")
}
