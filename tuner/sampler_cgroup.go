package tuner

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The sources of a CPUAllowance: the limit that acts.
const (
	// AllowanceHost: no cgroup quota bounds the process below the CPUs it
	// may run on (runtime.NumCPU, which honours its affinity mask, so a
	// cpuset counts).
	AllowanceHost = "host"
	// AllowanceCgroupV2: a cgroup v2 quota, cpu.max ("$MAX $PERIOD").
	AllowanceCgroupV2 = "cgroup-v2"
	// AllowanceCgroupV1: a cgroup v1 CFS quota, cpu.cfs_quota_us over
	// cpu.cfs_period_us.
	AllowanceCgroupV1 = "cgroup-v1"
)

// CPUAllowance is how much CPU this process may use, and which limit sets
// it. (Not Observation.CPULimit, the percentage of it the breaker holds the
// node to.)
type CPUAllowance struct {
	// Cores is the CPU time, in seconds per second, the process may use:
	// the tightest of the host's CPUs and the quota over the period of
	// every cgroup from the process's own up to the hierarchy's root.
	Cores float64 `json:"cores"`
	// Source is the limit in force: AllowanceHost, AllowanceCgroupV2 or
	// AllowanceCgroupV1.
	Source string `json:"source"`
	// File is the cgroup file the quota in force was read from; "" when
	// the host's CPUs are the limit.
	File string `json:"file,omitempty"`
}

// String reads like "cgroup-v2: 1.50 cores (/sys/fs/cgroup/app/cpu.max)".
func (l CPUAllowance) String() string {
	if l.File == "" {
		return fmt.Sprintf("%s: %.2f cores", l.Source, l.Cores)
	}
	return fmt.Sprintf("%s: %.2f cores (%s)", l.Source, l.Cores, l.File)
}

// cgroupCPU is where the CPU quotas that bound this process live: its own
// cgroup directory and every ancestor up to the hierarchy's mount point (a
// parent's quota bounds its children), found once from /proc/self/cgroup
// and /proc/self/mountinfo. Their quota files are read on every sample, so
// a quota changed at run time is seen.
type cgroupCPU struct {
	version int      // 1 or 2; 0: the process is under no cgroup CPU controller
	dirs    []string // the process's cgroup directory first, the mount point last
}

// findCgroupCPU locates the cgroup CPU controller of this process under
// root (the filesystem root, "/" outside tests). A process whose cgroup v1
// hierarchy has the cpu controller is bounded by it (on a hybrid host the
// controller cannot be attached to v2 as well); otherwise by its v2
// cgroup. Neither file present (not Linux) is no cgroup, not an error.
func findCgroupCPU(root string) (cgroupCPU, error) {
	cg, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if errors.Is(err, fs.ErrNotExist) {
		return cgroupCPU{}, nil
	}
	if err != nil {
		return cgroupCPU{}, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	memberships, err := parseProcCgroup(string(cg))
	if err != nil {
		return cgroupCPU{}, fmt.Errorf("/proc/self/cgroup: %w", err)
	}
	mi, err := os.ReadFile(filepath.Join(root, "proc/self/mountinfo"))
	if errors.Is(err, fs.ErrNotExist) {
		return cgroupCPU{}, nil
	}
	if err != nil {
		return cgroupCPU{}, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	mounts, err := parseMountInfo(string(mi))
	if err != nil {
		return cgroupCPU{}, fmt.Errorf("/proc/self/mountinfo: %w", err)
	}
	for _, version := range []int{1, 2} {
		path, ok := memberships[version]
		if !ok {
			continue
		}
		m, ok := cgroupMount(mounts, version, path)
		if !ok {
			continue
		}
		return cgroupCPU{version: version, dirs: cgroupDirs(root, m, path)}, nil
	}
	return cgroupCPU{}, nil
}

// parseProcCgroup reads /proc/self/cgroup ("hierarchy-ID:controllers:path"
// a line) into the path of the process's cgroup under the v1 hierarchy
// carrying the cpu controller (key 1) and under v2 (key 2, the "0::" line).
func parseProcCgroup(data string) (map[int]string, error) {
	out := map[int]string{}
	for i, line := range strings.Split(data, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(line, ":")
		controllers, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("line %d: %q is not hierarchy-ID:controllers:/path", i+1, line)
		}
		if _, err := strconv.ParseUint(id, 10, 32); err != nil {
			return nil, fmt.Errorf("line %d: hierarchy ID %q is not a number", i+1, id)
		}
		switch {
		case id == "0" && controllers == "":
			out[2] = path
		case hasWord(controllers, "cpu"):
			out[1] = path
		}
	}
	return out, nil
}

// mount is one line of /proc/self/mountinfo, the fields the sampler needs.
type mount struct {
	root   string // the directory of the filesystem mounted here
	point  string // where it is mounted
	fstype string
	super  string // superblock options: the v1 controllers
}

// parseMountInfo reads /proc/self/mountinfo (proc(5)): "ID parent
// major:minor root mount-point options [optional fields...] - fstype source
// super-options", with spaces and the like in paths escaped as \ooo.
func parseMountInfo(data string) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 2 {
			return nil, fmt.Errorf("line %d: %q has not the fields of a mountinfo line", n, line)
		}
		m := mount{root: unescapeOctal(f[3]), point: unescapeOctal(f[4]), fstype: g[0]}
		if len(g) >= 3 {
			m.super = g[2]
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \ooo escapes of mountinfo paths; a
// malformed escape is left as it is.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupMount picks the mount of the hierarchy: cgroup2 for version 2, a
// cgroup mount with the cpu controller for version 1. Of several, the one
// whose root holds path.
func cgroupMount(mounts []mount, version int, path string) (mount, bool) {
	var found []mount
	for _, m := range mounts {
		switch {
		case version == 2 && m.fstype == "cgroup2":
			found = append(found, m)
		case version == 1 && m.fstype == "cgroup" && hasWord(m.super, "cpu"):
			found = append(found, m)
		}
	}
	for _, m := range found {
		if within(path, m.root) {
			return m, true
		}
	}
	if len(found) > 0 {
		return found[0], true
	}
	return mount{}, false
}

// cgroupDirs lists the directories from the process's cgroup up to the
// mount point. The cgroup's path is relative to the hierarchy's root; the
// mount shows the hierarchy from m.root down. A path outside the mounted
// part (a cgroup namespace the mount does not match) leaves the mount
// point alone.
func cgroupDirs(root string, m mount, path string) []string {
	top := filepath.Join(root, m.point)
	rel := ""
	if within(path, m.root) {
		rel = strings.TrimPrefix(path, m.root)
	}
	dir := filepath.Join(top, rel)
	if !within(dir, top) {
		dir = top
	}
	var dirs []string
	for {
		dirs = append(dirs, dir)
		if dir == top {
			return dirs
		}
		dir = filepath.Dir(dir)
	}
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

func hasWord(list, word string) bool {
	for _, w := range strings.Split(list, ",") {
		if w == word {
			return true
		}
	}
	return false
}

// quota reads the quotas of the cgroup's directories and returns the
// tightest in cores and the file it came from; ok is false when none is
// set. A directory without the file (the root cgroup has none) is skipped.
func (c cgroupCPU) quota() (cores float64, file string, ok bool, err error) {
	cores = math.Inf(1)
	for _, dir := range c.dirs {
		var v float64
		var limited bool
		var f string
		switch c.version {
		case 2:
			f = filepath.Join(dir, "cpu.max")
			data, rerr := os.ReadFile(f)
			if errors.Is(rerr, fs.ErrNotExist) {
				continue
			}
			if rerr != nil {
				return 0, "", false, fmt.Errorf("read %s: %w", f, rerr)
			}
			v, limited, err = parseCPUMax(string(data))
		case 1:
			f = filepath.Join(dir, "cpu.cfs_quota_us")
			q, rerr := os.ReadFile(f)
			if errors.Is(rerr, fs.ErrNotExist) {
				continue
			}
			if rerr != nil {
				return 0, "", false, fmt.Errorf("read %s: %w", f, rerr)
			}
			pf := filepath.Join(dir, "cpu.cfs_period_us")
			p, rerr := os.ReadFile(pf)
			if rerr != nil {
				return 0, "", false, fmt.Errorf("read %s: %w", pf, rerr)
			}
			v, limited, err = parseCFSQuota(string(q), string(p))
		default:
			return 0, "", false, nil
		}
		if err != nil {
			return 0, "", false, fmt.Errorf("%s: %w", f, err)
		}
		if limited && v < cores {
			cores, file, ok = v, f, true
		}
	}
	if !ok {
		return 0, "", false, nil
	}
	return cores, file, true, nil
}

// parseCPUMax reads a cgroup v2 cpu.max: "$MAX $PERIOD" in microseconds,
// $MAX "max" for no limit (the kernel's cgroup-v2.rst, "cpu.max").
func parseCPUMax(data string) (cores float64, limited bool, err error) {
	f := strings.Fields(data)
	if len(f) < 1 || len(f) > 2 {
		return 0, false, fmt.Errorf("%q is not \"$MAX $PERIOD\"", strings.TrimSpace(data))
	}
	period := uint64(100000) // the kernel's default, should the period be missing
	if len(f) == 2 {
		if period, err = strconv.ParseUint(f[1], 10, 64); err != nil || period == 0 {
			return 0, false, fmt.Errorf("period %q is not a positive number of microseconds", f[1])
		}
	}
	if f[0] == "max" {
		return 0, false, nil
	}
	q, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || q == 0 {
		return 0, false, fmt.Errorf("quota %q is neither \"max\" nor a positive number of microseconds", f[0])
	}
	return float64(q) / float64(period), true, nil
}

// parseCFSQuota reads cgroup v1's cpu.cfs_quota_us (-1: no limit) and
// cpu.cfs_period_us, both in microseconds (the kernel's
// scheduler/sched-bwc.rst).
func parseCFSQuota(quota, period string) (cores float64, limited bool, err error) {
	q, err := strconv.ParseInt(strings.TrimSpace(quota), 10, 64)
	if err != nil || q == 0 || q < -1 {
		return 0, false, fmt.Errorf("quota %q is neither -1 nor a positive number of microseconds", strings.TrimSpace(quota))
	}
	p, err := strconv.ParseUint(strings.TrimSpace(period), 10, 64)
	if err != nil || p == 0 {
		return 0, false, fmt.Errorf("period %q is not a positive number of microseconds", strings.TrimSpace(period))
	}
	if q == -1 {
		return 0, false, nil
	}
	return float64(q) / float64(p), true, nil
}

// readCPUAllowance is the CPU limit in force for a process under cg on a host
// whose process may run on hostCores CPUs. On an error it returns the host
// limit and the error.
func readCPUAllowance(cg cgroupCPU, hostCores int) (CPUAllowance, error) {
	host := CPUAllowance{Cores: float64(max(1, hostCores)), Source: AllowanceHost}
	cores, file, ok, err := cg.quota()
	if err != nil || !ok || cores >= host.Cores {
		return host, err
	}
	src := AllowanceCgroupV2
	if cg.version == 1 {
		src = AllowanceCgroupV1
	}
	return CPUAllowance{Cores: cores, Source: src, File: file}, nil
}

// ReadCPUAllowance is the CPU limit in force for this process: the tightest of
// its CPUs (hostCores, runtime.NumCPU outside tests) and the cgroup CPU
// quotas of its cgroup and its ancestors, found under root ("/" outside
// tests). A cgroup file it cannot make sense of is an error naming it; the
// host's CPUs are then returned as the limit.
func ReadCPUAllowance(root string, hostCores int) (CPUAllowance, error) {
	cg, err := findCgroupCPU(root)
	if err != nil {
		return CPUAllowance{Cores: float64(max(1, hostCores)), Source: AllowanceHost}, fmt.Errorf("cgroup cpu: %w", err)
	}
	l, err := readCPUAllowance(cg, hostCores)
	if err != nil {
		return l, fmt.Errorf("cgroup cpu: %w", err)
	}
	return l, nil
}
