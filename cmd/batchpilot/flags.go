package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// newFlagSet returns a FlagSet whose --help lists every flag with its
// environment variable. Define the flags, then call parseFlags.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.String(configFlag, "", "a YAML `file` that sets any of these flags, one key per flag name (http-addr: 127.0.0.1:8480);\nthe environment and the command line override it (see docs/configuration.md)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: batchpilot %s\n\n", synopsis)
		fmt.Fprintln(w, "Flags (each also read from the environment variable shown):")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  --%s %s\n", f.Name, name)
			fmt.Fprintf(w, "        %s", strings.ReplaceAll(usage, "\n", "\n        "))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, " [$%s]\n", envName(f.Name))
		})
	}
	return fs
}

// envName is the environment variable that sets a flag: BATCHPILOT_ and the
// flag's name in upper case with dashes as underscores.
func envName(flagName string) string {
	return "BATCHPILOT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags applies the configuration file (--config) first, the
// environment second and the command line last, so a flag given on the
// command line wins over its variable, and both over the file.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if path := configPath(args); path != "" {
		if err := applyConfigFile(fs, path); err != nil {
			fmt.Fprintln(fs.Output(), err)
			return errUsage
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s: %w", v, envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintln(fs.Output(), envErr)
		return errUsage
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return errUsage
	}
	return nil
}

// parseFlagsOnly is parseFlags for a command that takes flags alone: a
// positional argument is a usage error.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return errUsage
	}
	return nil
}
