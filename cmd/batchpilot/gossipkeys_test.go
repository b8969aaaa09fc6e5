package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestGossipKeyRotationUnderLoad rotates the gossip key of a running
// server and worker under load, in the three steps docs/cluster.md gives,
// each a rewrite of --encrypt-file and a SIGHUP: install the new key beside
// the old, encrypt with the new, drop the old. Neither process restarts,
// both stay alive in each other's view, a node that knows only the new key
// joins afterwards, and no acknowledged record is lost.
func TestGossipKeyRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	oldKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	newKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	keyFile := func(name string) string { return filepath.Join(dir, name+".keys") }
	writeKeys := func(name string, keys ...string) {
		replaceFile(t, keyFile(name), []byte(strings.Join(keys, "\n")+"\n"))
	}
	writeKeys("s1", oldKey)
	writeKeys("w1", oldKey)
	s1 := launchMember(t, t, nil, "s1", filepath.Join(dir, "s1"), "--http-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--server", "--bootstrap-expect", "1",
		"--encrypt-file", keyFile("s1"))
	w1 := launchMember(t, t, nil, "w1", filepath.Join(dir, "w1"), "--http-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--join", s1.gossip, "--encrypt-file", keyFile("w1"))
	nodes := []*member{s1, w1}
	anyRole := func(string) bool { return true }
	waitSeen(t, nodes, []string{"s1", "w1"}, "alive", anyRole)
	load := startLoad(t, []string{s1.url, w1.url}, 1000)
	waitWritten(t, 300, nodes...)

	reloaded := func(m *member) float64 {
		s, err := scrape(m.url)
		if err != nil {
			return -1
		}
		return s[`batchpilot_reloads_total{result="ok"}`]
	}
	for step, keys := range [][]string{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, m := range nodes {
			writeKeys(m.name, keys...)
			if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		pollFor(t, fmt.Sprintf("step %d of the rotation to be reloaded on both nodes", step+1), func() bool {
			return reloaded(s1) >= float64(step+1) && reloaded(w1) >= float64(step+1)
		})
		waitSeen(t, nodes, []string{"s1", "w1"}, "alive", anyRole)
	}
	writeKeys("w2", newKey)
	w2 := launchMember(t, t, nil, "w2", filepath.Join(dir, "w2"), "--http-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--join", w1.gossip, "--encrypt-file", keyFile("w2"))
	waitSeen(t, []*member{s1}, []string{"w2"}, "alive", anyRole)
	waitWritten(t, 300, nodes...)

	for _, m := range nodes {
		select {
		case err := <-m.exited:
			t.Fatalf("%s exited during the rotation: %v", m.name, err)
		default:
		}
	}
	rep := load.stop(t)
	for _, m := range append(nodes, w2) {
		if err := sigterm(t, m); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", m.name, err)
		}
	}
	out, err := runVerifyCmd(t, load.acked, s1.dir, w1.dir)
	tot := rep.Totals
	t.Logf("gossip key rotated in 3 SIGHUPs under load: loadgen %d acknowledged, %d failed, %d retries; verify: %s",
		tot.Acked, tot.Failed, tot.Retries, out)
	if err != nil || !strings.HasPrefix(out, "lost 0 ") {
		t.Fatalf("verify: %q %v; want lost 0", out, err)
	}
	if tot.Failed != 0 {
		t.Errorf("%d records failed across the rotation", tot.Failed)
	}
}
