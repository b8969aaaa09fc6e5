//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sink

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens dir/.lock. Without flock there is no cross-process lock
// here; the file only marks the directory as a sink's.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}
