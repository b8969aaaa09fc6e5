package cluster

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// NodeIDFile is the name of the file in the data dir that keeps the node's id.
const NodeIDFile = "node-id"

// LoadOrCreateNodeID returns the node id stored in dataDir/node-id, creating
// the directory and a new random id (a UUID) the first time. The id survives
// restarts, so a restarted node is the same Raft server as before.
func LoadOrCreateNodeID(dataDir string) (string, error) {
	if dataDir == "" {
		return "", errors.New("node id: no data dir given")
	}
	path := filepath.Join(dataDir, NodeIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if err := validateNodeID(id); err != nil {
			return "", fmt.Errorf("node id file %s: %w", path, err)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read node id: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	id := newUUID()
	if err := writeFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}

// validateNodeID accepts ids that fit in gossip meta and read well in logs
// and URLs: letters, digits, '-', '_' and '.', at most 64 bytes.
func validateNodeID(id string) error {
	if id == "" {
		return errors.New("node id is empty")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("node id %q is longer than %d bytes", id, maxIDLen)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("node id %q has the character %q; use letters, digits, '-', '_' or '.'", id, r)
		}
	}
	return nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it
// over path, so a crash never leaves a half-written id.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
