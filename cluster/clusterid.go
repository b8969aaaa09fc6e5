package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// clusterIDFile is the file under the data dir that keeps the cluster id a
// node belongs to, so that after a restart it still refuses other clusters.
const clusterIDFile = "cluster-id"

// loadClusterID reads DataDir/cluster-id; "" when there is none yet.
func loadClusterID(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, clusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if len(id) > maxIDLen {
		return "", fmt.Errorf("cluster id in %s is longer than %d bytes", filepath.Join(dataDir, clusterIDFile), maxIDLen)
	}
	return id, nil
}

// storeClusterID writes DataDir/cluster-id atomically.
func storeClusterID(dataDir, id string) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dataDir, clusterIDFile), []byte(id+"\n")); err != nil {
		return fmt.Errorf("store cluster id: %w", err)
	}
	return nil
}
