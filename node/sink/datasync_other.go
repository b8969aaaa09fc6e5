//go:build !linux

package sink

import "os"

// datasync flushes f to stable storage. Outside Linux it is File.Sync, which
// on macOS asks the drive itself to flush (F_FULLFSYNC).
func datasync(f *os.File) error { return f.Sync() }
