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
	register("verify", "check that every acknowledged record id is in the file sinks", runVerify)
}

// multiFlag collects a flag given several times.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runVerify(ctx context.Context, args []string) error {
	fs := newFlagSet("verify", "verify --acked FILE --data-dir D [--data-dir D2 ...]")
	acked := fs.String("acked", "", "file of acknowledged record ids, one per line (loadgen --acked writes it)")
	var dirs multiFlag
	fs.Var(&dirs, "data-dir", "a node's data dir to search (repeat for several nodes, or separate with commas)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *acked == "" || len(dirs) == 0 {
		fs.Usage()
		return fmt.Errorf("verify needs --acked and at least one --data-dir")
	}
	var all []string
	for _, d := range dirs {
		all = append(all, strings.Split(d, ",")...)
	}
	res, err := verify(*acked, all)
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
// under the data dirs.
func verify(ackedFile string, dataDirs []string) (verifyResult, error) {
	var res verifyResult
	seen := map[string]int{}
	f, err := os.Open(ackedFile)
	if err != nil {
		return res, fmt.Errorf("open acked ids: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			if _, dup := seen[id]; !dup {
				seen[id] = 0
				res.acked++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("read %s: %w", ackedFile, err)
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
