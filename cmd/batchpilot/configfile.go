package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// configFlag is the flag every command has: a YAML file that sets any of
// the command's flags by name.
const configFlag = "config"

// configPath is the --config a command line or the environment gives, ""
// for none. The command line wins, as it does for every flag.
func configPath(args []string) string {
	path, _ := os.LookupEnv(envName(configFlag))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != configFlag {
			continue
		}
		if hasValue {
			path = value
		} else if i+1 < len(args) {
			path = args[i+1]
			i++
		}
	}
	return path
}

// configValue is one key of a configuration file: a flag's name, the
// value to set it to, and where it was written.
type configValue struct {
	key, value string
	line       int
}

// readConfigFile reads a YAML configuration file: one mapping whose keys
// are flag names (http-addr, ingest-token, ...) and whose values are what
// the flag takes. A list is joined with commas (join, data-dir). Its error
// names the file, the line and what was wrong.
func readConfigFile(path string) ([]configValue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --config: %w", err)
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %s", path, strings.TrimSpace(yaml.FormatError(err, false, true)))
	}
	var out []configValue
	for _, doc := range file.Docs {
		body := doc.Body
		if body == nil {
			continue // an empty file, or only comments
		}
		var values []*ast.MappingValueNode
		switch n := body.(type) {
		case *ast.MappingNode:
			values = n.Values
		case *ast.MappingValueNode:
			values = []*ast.MappingValueNode{n}
		default:
			return nil, fmt.Errorf("--config %s: line %d: want a mapping of flag names to values, found a %s",
				path, body.GetToken().Position.Line, body.Type())
		}
		for _, mv := range values {
			key := mv.Key.String()
			line := mv.Key.GetToken().Position.Line
			var v any
			if err := yaml.NodeToValue(mv.Value, &v); err != nil {
				return nil, fmt.Errorf("--config %s: line %d: %s: %v", path, line, key, err)
			}
			s, err := configString(v)
			if err != nil {
				return nil, fmt.Errorf("--config %s: line %d: %s: %v", path, line, key, err)
			}
			out = append(out, configValue{key: key, value: s, line: line})
		}
	}
	return out, nil
}

// configString is a YAML value as a flag takes it.
func configString(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, err := configString(e)
			if err != nil {
				return "", err
			}
			if _, isList := e.([]any); isList {
				return "", errors.New("want a value or a list of values, found a nested list")
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("want a value or a list of values, found %T", v)
	}
}

// applyConfigFile sets fs's flags from the file at path. A key that is no
// flag of this command is an error that names it; so is a value the flag
// refuses.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	values, err := readConfigFile(path)
	if err != nil {
		return err
	}
	seen := map[string]int{}
	for _, v := range values {
		f := fs.Lookup(v.key)
		switch {
		case v.key == configFlag:
			return fmt.Errorf("--config %s: line %d: a configuration file cannot name another one", path, v.line)
		case f == nil:
			return fmt.Errorf("--config %s: line %d: unknown key %q: no flag --%s for batchpilot %s (keys are flag names, see --help)",
				path, v.line, v.key, v.key, fs.Name())
		}
		if prev, dup := seen[v.key]; dup {
			return fmt.Errorf("--config %s: line %d: key %q already set on line %d", path, v.line, v.key, prev)
		}
		seen[v.key] = v.line
		if err := f.Value.Set(v.value); err != nil {
			return fmt.Errorf("--config %s: line %d: invalid value %q for %s: %w", path, v.line, v.value, v.key, err)
		}
	}
	return nil
}
