//go:build !linux

package bench

import "time"

// threadCPU has no per-thread clock here: burn spins on wall time instead.
func threadCPU() (time.Duration, bool) { return 0, false }
