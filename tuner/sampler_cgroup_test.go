package tuner

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lines of /proc/self/mountinfo as the kernel writes them.
const (
	mountV2       = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
	mountV1CPU    = "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct\n"
	mountV1Cpuset = "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime shared:12 - cgroup cgroup rw,cpuset\n"
	mountHybridV2 = "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	mountProc     = "22 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
)

// fakeRoot writes files (path relative to the root → content) under a
// temporary directory standing for "/".
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReadCPUAllowanceFromCgroupFiles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hostCores int
		files     map[string]string
		cores     float64
		source    string
		file      string // relative to the root; "" for the host
		err       string // a substring of the error; "" for none
	}{
		{
			name: "no /proc/self/cgroup (not Linux) is bounded by the host's CPUs", hostCores: 4,
			cores: 4, source: AllowanceHost,
		},
		{
			name: "a cgroup v2 without a quota (cpu.max max) is bounded by the host's CPUs", hostCores: 4,
			files: map[string]string{
				"proc/self/cgroup": "0::/app.slice/batchpilot.service\n", "proc/self/mountinfo": mountProc + mountV2,
				"sys/fs/cgroup/app.slice/batchpilot.service/cpu.max": "max 100000\n",
			},
			cores: 4, source: AllowanceHost,
		},
		{
			name: "a cgroup v2 quota of 150 ms per 100 ms is 1.5 cores", hostCores: 4,
			files: map[string]string{
				"proc/self/cgroup": "0::/app.slice/batchpilot.service\n", "proc/self/mountinfo": mountProc + mountV2,
				"sys/fs/cgroup/app.slice/batchpilot.service/cpu.max": "150000 100000\n",
			},
			cores: 1.5, source: AllowanceCgroupV2, file: "sys/fs/cgroup/app.slice/batchpilot.service/cpu.max",
		},
		{
			name: "a parent's tighter cgroup v2 quota bounds the child", hostCores: 8,
			files: map[string]string{
				"proc/self/cgroup": "0::/kubepods/pod1/c1\n", "proc/self/mountinfo": mountV2,
				"sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "400000 100000\n",
				"sys/fs/cgroup/kubepods/pod1/cpu.max":    "50000 100000\n",
				"sys/fs/cgroup/kubepods/cpu.max":         "max 100000\n",
			},
			cores: 0.5, source: AllowanceCgroupV2, file: "sys/fs/cgroup/kubepods/pod1/cpu.max",
		},
		{
			name: "a cgroup v2 quota above the host's CPUs leaves the host as the limit", hostCores: 2,
			files: map[string]string{
				"proc/self/cgroup": "0::/big\n", "proc/self/mountinfo": mountV2,
				"sys/fs/cgroup/big/cpu.max": "400000 100000\n",
			},
			cores: 2, source: AllowanceHost,
		},
		{
			name: "in a cgroup namespace the process's cgroup is the mount point itself", hostCores: 4,
			files: map[string]string{
				"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": mountV2,
				"sys/fs/cgroup/cpu.max": "200000 100000\n",
			},
			cores: 2, source: AllowanceCgroupV2, file: "sys/fs/cgroup/cpu.max",
		},
		{
			name: "a container's cgroup mounted at its own root is found from the mount's root", hostCores: 4,
			files: map[string]string{
				"proc/self/cgroup":      "0::/system.slice/docker-abc.scope\n",
				"proc/self/mountinfo":   "30 23 0:26 /system.slice/docker-abc.scope /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
				"sys/fs/cgroup/cpu.max": "25000 100000\n",
			},
			cores: 0.25, source: AllowanceCgroupV2, file: "sys/fs/cgroup/cpu.max",
		},
		{
			name: "a cgroup v1 CFS quota of 50 ms per 100 ms is half a core", hostCores: 2,
			files: map[string]string{
				"proc/self/cgroup":    "5:cpuset:/\n4:cpu,cpuacct:/docker/abc\n0::/\n",
				"proc/self/mountinfo": mountV1CPU + mountV1Cpuset + mountHybridV2,
				"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  "50000\n",
				"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
				"sys/fs/cgroup/unified/cpu.max":                          "10000 100000\n",
			},
			cores: 0.5, source: AllowanceCgroupV1, file: "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
		},
		{
			name: "a cgroup v1 quota of -1 is no limit", hostCores: 2,
			files: map[string]string{
				"proc/self/cgroup": "1:cpu:/\n", "proc/self/mountinfo": "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
				"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
			},
			cores: 2, source: AllowanceHost,
		},
		{
			name: "a cpuacct-only v1 hierarchy is not the cpu controller", hostCores: 2,
			files: map[string]string{
				"proc/self/cgroup":                         "2:cpuacct:/x\n",
				"proc/self/mountinfo":                      "32 30 0:29 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n",
				"sys/fs/cgroup/cpuacct/x/cpu.cfs_quota_us": "10000\n", "sys/fs/cgroup/cpuacct/x/cpu.cfs_period_us": "100000\n",
			},
			cores: 2, source: AllowanceHost,
		},
		{
			name: "a mount point with an escaped space is unescaped", hostCores: 4,
			files: map[string]string{
				"proc/self/cgroup":    "0::/a\n",
				"proc/self/mountinfo": `30 23 0:26 / /cg\040root rw - cgroup2 cgroup2 rw` + "\n",
				"cg root/a/cpu.max":   "100000 100000\n",
			},
			cores: 1, source: AllowanceCgroupV2, file: "cg root/a/cpu.max",
		},
		{
			name: "a malformed cpu.max is an error naming the file, and the host is the limit", hostCores: 4,
			files: map[string]string{
				"proc/self/cgroup": "0::/a\n", "proc/self/mountinfo": mountV2,
				"sys/fs/cgroup/a/cpu.max": "lots 100000\n",
			},
			cores: 4, source: AllowanceHost, err: "a/cpu.max: quota \"lots\"",
		},
		{
			name: "a zero period is an error", hostCores: 4,
			files: map[string]string{
				"proc/self/cgroup": "0::/a\n", "proc/self/mountinfo": mountV2,
				"sys/fs/cgroup/a/cpu.max": "50000 0\n",
			},
			cores: 4, source: AllowanceHost, err: "period \"0\"",
		},
		{
			name: "a malformed /proc/self/cgroup line is an error naming the line", hostCores: 4,
			files: map[string]string{"proc/self/cgroup": "0::/a\nnonsense\n", "proc/self/mountinfo": mountV2},
			cores: 4, source: AllowanceHost, err: "line 2",
		},
		{
			name: "a malformed mountinfo line is an error naming the line", hostCores: 4,
			files: map[string]string{"proc/self/cgroup": "0::/a\n", "proc/self/mountinfo": mountProc + "30 23 0:26\n"},
			cores: 4, source: AllowanceHost, err: "mountinfo: line 2",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.files)
			got, err := ReadCPUAllowance(root, tc.hostCores)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			want := CPUAllowance{Cores: tc.cores, Source: tc.source}
			if tc.file != "" {
				want.File = filepath.Join(root, tc.file)
			}
			if math.Abs(got.Cores-want.Cores) > 1e-9 || got.Source != want.Source || got.File != want.File {
				t.Errorf("limit %v, want %v", got, want)
			}
		})
	}
}

// TestSamplerReadsTheQuotaAgainAtEverySample: a quota changed while the
// node runs (a container resized in place) is the limit of the next sample.
func TestSamplerReadsTheQuotaAgainAtEverySample(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/self/cgroup": "0::/a\n", "proc/self/mountinfo": mountV2,
		"sys/fs/cgroup/a/cpu.max": "max 100000\n",
	})
	s, err := newSampler(t.Context(), root, 4)
	if err != nil {
		t.Skipf("no process figures on this platform: %v", err)
	}
	r, _ := s.Sample(t.Context())
	if r.CPUAllowance.Source != AllowanceHost || r.CPUAllowance.Cores != 4 {
		t.Fatalf("limit %v, want the host's 4 cores", r.CPUAllowance)
	}
	if err := os.WriteFile(filepath.Join(root, "sys/fs/cgroup/a/cpu.max"), []byte("50000 100000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ = s.Sample(t.Context())
	if r.CPUAllowance.Source != AllowanceCgroupV2 || r.CPUAllowance.Cores != 0.5 {
		t.Errorf("limit %v, want the cgroup's 0.5 cores", r.CPUAllowance)
	}
}

// FuzzCgroupFiles feeds arbitrary contents to the parsers of
// /proc/self/cgroup, /proc/self/mountinfo, cpu.max and the v1 CFS files:
// they never panic, and a quota they accept is a positive, finite number
// of cores.
func FuzzCgroupFiles(f *testing.F) {
	f.Add("0::/a\n", mountV2, "150000 100000\n", "50000\n", "100000\n")
	f.Add("4:cpu,cpuacct:/docker/abc\n0::/\n", mountV1CPU+mountHybridV2, "max\n", "-1\n", "100000\n")
	f.Add("x", `1 2 3 /a\04 /b\ - cgroup2`, "1 2 3", "0", "0")
	f.Fuzz(func(t *testing.T, cgroup, mountinfo, cpuMax, cfsQuota, cfsPeriod string) {
		if m, err := parseProcCgroup(cgroup); err == nil {
			for _, p := range m {
				if !strings.HasPrefix(p, "/") {
					t.Fatalf("cgroup path %q accepted", p)
				}
			}
		}
		if mounts, err := parseMountInfo(mountinfo); err == nil {
			for _, m := range mounts {
				dirs := cgroupDirs("/root", m, "/x/../../y")
				for _, d := range dirs {
					if !within(d, filepath.Join("/root", m.point)) {
						t.Fatalf("dir %q escapes the mount %q", d, m.point)
					}
				}
			}
		}
		for _, parse := range []func() (float64, bool, error){
			func() (float64, bool, error) { return parseCPUMax(cpuMax) },
			func() (float64, bool, error) { return parseCFSQuota(cfsQuota, cfsPeriod) },
		} {
			cores, limited, err := parse()
			if err == nil && limited && (cores <= 0 || math.IsInf(cores, 0) || math.IsNaN(cores)) {
				t.Fatalf("quota of %v cores accepted", cores)
			}
		}
	})
}
