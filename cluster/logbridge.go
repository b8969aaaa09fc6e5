package cluster

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
)

// newLibraryLogger returns a *log.Logger for memberlist that sends each line
// to logger at the level memberlist wrote in front of it ("[WARN] ..."), so
// the library's chatter follows the level of the agent's slog handler.
func newLibraryLogger(logger *slog.Logger, component string) *log.Logger {
	return log.New(LibraryLogWriter(logger, component), "", 0)
}

// LibraryLogWriter returns a writer for a library that logs lines with a
// level in front ("[WARN] memberlist: ...", hclog's "[WARN]  raft: ..."):
// each line goes to logger, tagged with component, at that level. memberlist
// and raft (package consensus) share it.
func LibraryLogWriter(logger *slog.Logger, component string) io.Writer {
	return &levelWriter{logger: logger.With("component", component)}
}

type levelWriter struct {
	logger *slog.Logger
}

func (w *levelWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		level, msg := parseLevel(string(line))
		if w.logger.Enabled(context.Background(), level) {
			w.logger.Log(context.Background(), level, msg)
		}
	}
	return len(p), nil
}

// parseLevel splits "[WARN] memberlist: text" into slog.LevelWarn and
// "memberlist: text". A line without a known prefix is logged at info.
func parseLevel(line string) (slog.Level, string) {
	for _, p := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[TRACE]", slog.LevelDebug - 4},
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	} {
		if rest, ok := strings.CutPrefix(line, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return slog.LevelInfo, strings.TrimSpace(line)
}
