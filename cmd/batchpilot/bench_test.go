package main

import (
	"context"
	"errors"
	"testing"
)

func TestBenchRefusesFlagsThatDoNotGoTogether(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"--suite with a scenario", []string{"--suite", "--scenario", "shifting"}},
		{"--suite with a scenario file", []string{"--suite", "--scenario-file", "x.json"}},
		{"--suite with an SVG", []string{"--suite", "--svg", "x.svg"}},
		{"no seeds", []string{"--seeds", "0"}},
		{"too many seeds", []string{"--suite", "--seeds", "101"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := runBench(context.Background(), tc.args); !errors.Is(err, errUsage) {
				t.Errorf("bench %v: %v, want a usage error", tc.args, err)
			}
		})
	}
}
