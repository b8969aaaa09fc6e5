package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// verify counts an acknowledged id found in a delivered-id file (what
// sinksim --ids-file writes) like one found in a file sink, and reports
// the ones found nowhere.
func TestVerifyReadsDeliveredIDs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	acked := write("acked", "a\nb\n\nc\nd\na\n")
	one := write("one", "a\nb\n")
	two := write("two", " b \nc\nnot-acked\n")
	res, err := verify(acked, nil, []string{one, two})
	if err != nil {
		t.Fatal(err)
	}
	if res.acked != 4 || res.lost != 1 || res.duplicated != 1 || !slices.Equal(res.lostIDs, []string{"d"}) {
		t.Fatalf("got acked %d lost %d %v duplicated %d; want 4 acked, d lost, b duplicated", res.acked, res.lost, res.lostIDs, res.duplicated)
	}
	if _, err := verify(acked, nil, []string{filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("a missing delivered file was not an error")
	}
}
