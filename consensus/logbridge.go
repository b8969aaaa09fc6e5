package consensus

import (
	"context"
	"log/slog"

	"github.com/hashicorp/go-hclog"

	"github.com/batchpilot/batchpilot/cluster"
)

// newRaftLogger returns an hclog.Logger for raft that sends each line to
// logger at raft's level for it, so raft's chatter follows the agent's slog
// level (warn in tests).
func newRaftLogger(logger *slog.Logger) hclog.Logger {
	level := hclog.Error
	for _, l := range []struct {
		slog  slog.Level
		hclog hclog.Level
	}{{slog.LevelWarn, hclog.Warn}, {slog.LevelInfo, hclog.Info}, {slog.LevelDebug, hclog.Debug}} {
		if logger.Enabled(context.Background(), l.slog) {
			level = l.hclog
		}
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       level,
		Output:      cluster.LibraryLogWriter(logger, "raft"),
		DisableTime: true,
	})
}
