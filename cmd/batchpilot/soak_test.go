package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak runs a three-node cluster under a high steady load for a long
// time (BATCHPILOT_SOAK, e.g. 10m: `make soak`) and checks that memory
// stays flat and that no acknowledged record is lost. It is skipped unless
// BATCHPILOT_SOAK is set. The nodes run a build without -race, as users run
// them; BATCHPILOT_SOAK_RATE sets the load (records/s over all nodes,
// default 20000).
func TestSoak(t *testing.T) {
	env := os.Getenv("BATCHPILOT_SOAK")
	if env == "" {
		t.Skip("set BATCHPILOT_SOAK (e.g. 10m) to run the soak: make soak")
	}
	length, err := time.ParseDuration(env)
	if err != nil || length < time.Minute {
		t.Fatalf("BATCHPILOT_SOAK=%q: want a duration of at least 1m", env)
	}
	rate := 20000
	if r := os.Getenv("BATCHPILOT_SOAK_RATE"); r != "" {
		if rate, err = strconv.Atoi(r); err != nil || rate <= 0 {
			t.Fatalf("BATCHPILOT_SOAK_RATE=%q: want records/s", r)
		}
	}
	plain := filepath.Join(t.TempDir(), "batchpilot")
	if out, err := exec.Command("go", "build", "-o", plain, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	raceBin := binPath
	binPath = plain
	defer func() { binPath = raceBin }()

	// The default budget (not the tests' small one), and host limits the
	// breaker does not trip on: the generator shares the two cores.
	ms := startCluster(t, "s", "--max-linger", "200ms", "--initial-limits", "cpu_limit_percent=100,mem_limit_percent=100")

	// The generator stops by itself after the soak's length.
	dir := t.TempDir()
	acked, report := filepath.Join(dir, "acked.txt"), filepath.Join(dir, "report.json")
	load := exec.Command(plain, "loadgen", "--target", ms[0].url+","+ms[1].url+","+ms[2].url,
		"--rate", strconv.Itoa(rate), "--batch", "100", "--concurrency", "64", "--duration", length.String(),
		"--acked", acked, "--report", report, "--progress-interval", "1m")
	var out syncBuffer
	load.Stdout, load.Stderr = &out, &out
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- load.Wait() }()
	t.Cleanup(func() { _ = load.Process.Kill() })

	// Sample every node's RSS (from /proc) every 10 seconds.
	type sample struct {
		at  time.Duration
		rss []int64
	}
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	bound := time.NewTimer(length + 5*time.Minute)
	defer bound.Stop()
	var loadErr error
wait:
	for {
		select {
		case loadErr = <-done:
			break wait
		case <-tick.C:
			s := sample{at: time.Since(start)}
			for _, m := range ms {
				s.rss = append(s.rss, rssOf(m.cmd.Process.Pid))
			}
			samples = append(samples, s)
			if len(samples)%6 == 0 {
				t.Logf("%s: RSS %s", s.at.Round(time.Second), mib(s.rss))
			}
		case <-bound.C:
			t.Fatalf("loadgen did not stop by itself within %s", length+5*time.Minute)
		}
	}
	if loadErr != nil {
		t.Fatalf("loadgen: %v\n%s", loadErr, tail(out.String(), 4000))
	}
	t.Logf("loadgen:\n%s", tail(out.String(), 3000))

	var dirs []string
	for _, m := range ms {
		if err := sigterm(t, m); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", m.name, err)
		}
		dirs = append(dirs, m.dir)
	}
	res, err := runVerifyCmd(t, acked, dirs...)
	t.Logf("verify: %s", res)
	if err != nil || !strings.HasPrefix(res, "lost 0 ") {
		t.Errorf("verify: %q %v; want lost 0", res, err)
	}

	// Flat memory: after a warm-up of a fifth of the run, no node's peak
	// RSS in the second half exceeds its peak in the first half by more
	// than 10 % (+8 MiB for the allocator's granularity).
	warm := length / 5
	for i, m := range ms {
		var first, second int64
		mid := warm + (length-warm)/2
		for _, s := range samples {
			switch {
			case s.at < warm:
			case s.at < mid:
				first = max(first, s.rss[i])
			default:
				second = max(second, s.rss[i])
			}
		}
		t.Logf("%s: peak RSS %d MiB from %s to %s, %d MiB after", m.name, first>>20, warm, mid.Round(time.Second), second>>20)
		if first == 0 || second == 0 {
			t.Errorf("%s: too few samples to compare", m.name)
			continue
		}
		if float64(second) > float64(first)*1.10+8<<20 {
			t.Errorf("%s: memory grew: peak RSS %d MiB in the second half, %d MiB in the first", m.name, second>>20, first>>20)
		}
	}
}

// rssOf is a process's resident set from /proc (0 if it cannot be read).
func rssOf(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(v []int64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%d MiB", x>>20))
	}
	return strings.Join(s, ", ")
}
