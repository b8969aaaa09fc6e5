package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/batchpilot/batchpilot/node/sink"
)

func init() {
	register("verify", "check that every acknowledged record id is in the file sinks (or a downstream's id list)", runVerify)
}

// multiFlag collects a flag given several times.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runVerify(ctx context.Context, args []string) error {
	fs := newFlagSet("verify", "verify --acked FILE --data-dir D [--data-dir D2 ...] [--delivered FILE ...]\n\n"+
		"Counts how often each acknowledged id is found in the file sinks under the data dirs and in\n"+
		"the delivered-id files (for nodes with the http sink: sinksim --ids-file writes one). Prints\n"+
		"'lost N duplicated M' and exits 1 if any acknowledged id is found nowhere.")
	acked := fs.String("acked", "", "file of acknowledged record ids, one per line (loadgen --acked writes it)")
	var dirs, delivered multiFlag
	fs.Var(&dirs, "data-dir", "a node's data dir to search (repeat for several nodes, or separate with commas)")
	fs.Var(&delivered, "delivered", "a file of ids a downstream received, one per line (repeat for several)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *acked == "" || len(dirs)+len(delivered) == 0 {
		fs.Usage()
		return fmt.Errorf("verify needs --acked and at least one --data-dir or --delivered")
	}
	var all []string
	for _, d := range dirs {
		all = append(all, strings.Split(d, ",")...)
	}
	res, err := verify(*acked, all, delivered)
	if err != nil {
		return err
	}
	fmt.Printf("lost %d duplicated %d\n", res.lost, res.duplicated)
	fmt.Fprintf(os.Stderr, "acknowledged %d, found %d of them, %d records scanned\n", res.acked, res.acked-res.lost, res.scanned)
	for i, id := range res.lostIDs {
		if i == 10 {
			fmt.Fprintf(os.Stderr, "... and %d more\n", len(res.lostIDs)-10)
			break
		}
		fmt.Fprintf(os.Stderr, "lost: %s\n", id)
	}
	if res.lost > 0 {
		return exitCode(1)
	}
	return nil
}

type verifyResult struct {
	acked, lost, duplicated int
	scanned                 int64
	lostIDs                 []string
}

// verify counts how often each acknowledged id occurs in the sink segments
// under the data dirs and in the delivered-id files.
func verify(ackedFile string, dataDirs, deliveredFiles []string) (verifyResult, error) {
	var res verifyResult
	seen := map[string]int{}
	if err := readIDs(ackedFile, func(id string) {
		if _, dup := seen[id]; !dup {
			seen[id] = 0
			res.acked++
		}
	}); err != nil {
		return res, fmt.Errorf("read acked ids: %w", err)
	}
	for _, d := range dataDirs {
		dir := filepath.Join(d, "sink")
		if _, err := os.Stat(dir); err != nil {
			return res, fmt.Errorf("data dir %s has no sink directory: %w", d, err)
		}
		err := sink.ReadSegments(dir, func(line []byte) error {
			res.scanned++
			var rec struct {
				ID json.RawMessage `json:"id"`
			}
			if json.Unmarshal(line, &rec) != nil || len(rec.ID) == 0 {
				return nil
			}
			id := string(rec.ID)
			var s string
			if json.Unmarshal(rec.ID, &s) == nil {
				id = s
			}
			if c, ok := seen[id]; ok {
				seen[id] = c + 1
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("read sink under %s: %w", d, err)
		}
	}
	for _, p := range deliveredFiles {
		if err := readIDs(p, func(id string) {
			res.scanned++
			if c, ok := seen[id]; ok {
				seen[id] = c + 1
			}
		}); err != nil {
			return res, fmt.Errorf("read delivered ids: %w", err)
		}
	}
	for id, c := range seen {
		switch {
		case c == 0:
			res.lost++
			res.lostIDs = append(res.lostIDs, id)
		case c > 1:
			res.duplicated++
		}
	}
	return res, nil
}

// readIDs calls each with every non-blank line of the file at path, trimmed.
func readIDs(path string, each func(id string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			each(id)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
