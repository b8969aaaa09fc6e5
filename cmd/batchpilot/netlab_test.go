package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// netLab is a small routed network of Linux network namespaces for the
// partition test. Every node has a namespace of its own on its own subnet
// (10.X.k.2/24) behind one router namespace, and the test process reaches
// every node through the router over a link from the root namespace
// (10.X.250.2). The lab has no route to anything outside itself.
//
// Cut makes the router drop, silently as a failed link does, every packet
// between one node and the others, while the test process still reaches
// all of them: each side of the cut sees the other vanish (connects and
// probes time out), and the test watches both sides. Heal removes the drop.
// It needs root and iproute2.
type netLab struct {
	t       *testing.T
	prefix  string // "10.X"
	router  string
	hostIf  string
	nodes   []string // namespace of node k is nodes[k], subnet prefix.(k+1)
	cut     map[int][][]string
	portCut map[int][][]string
}

// newNetLab builds a lab for n nodes, or skips the test where namespaces
// cannot be made.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the partition test needs root for network namespaces (ip netns)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the partition test needs iproute2 (ip): ", err)
	}
	id := fmt.Sprintf("%05x", rand.IntN(1<<20))
	l := &netLab{t: t, router: "bp" + id + "r", hostIf: "bp" + id + "h", cut: map[int][][]string{}, portCut: map[int][][]string{}}
	routes, _ := exec.Command("ip", "-4", "route", "show").Output()
	for tries := 0; ; tries++ {
		l.prefix = fmt.Sprintf("10.%d", 200+rand.IntN(50))
		if !strings.Contains(string(routes), l.prefix+".") {
			break
		}
		if tries > 50 {
			t.Skip("no free 10.x/16 for the lab")
		}
	}
	t.Cleanup(l.destroy)
	if _, err := l.ip("netns", "add", l.router); err != nil {
		t.Skip("cannot create a network namespace here: ", err)
	}
	l.must("netns", "exec", l.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	l.must("-n", l.router, "link", "set", "lo", "up")
	// The test process's way in.
	l.must("link", "add", l.hostIf, "type", "veth", "peer", "name", "uplink", "netns", l.router)
	l.must("-n", l.router, "addr", "add", l.prefix+".250.1/24", "dev", "uplink")
	l.must("-n", l.router, "link", "set", "uplink", "up")
	l.must("addr", "add", l.prefix+".250.2/24", "dev", l.hostIf)
	l.must("link", "set", l.hostIf, "up")
	l.must("route", "add", l.prefix+".0.0/16", "via", l.prefix+".250.1")
	for k := 0; k < n; k++ {
		ns := fmt.Sprintf("bp%sn%d", id, k)
		l.must("netns", "add", ns)
		l.nodes = append(l.nodes, ns)
		port := fmt.Sprintf("port%d", k)
		l.must("-n", ns, "link", "set", "lo", "up")
		l.must("link", "add", "name", port, "netns", l.router, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.must("-n", l.router, "addr", "add", l.subnet(k)+".1/24", "dev", port)
		l.must("-n", l.router, "link", "set", port, "up")
		l.must("-n", ns, "addr", "add", l.IP(k)+"/24", "dev", "eth0")
		l.must("-n", ns, "link", "set", "eth0", "up")
		l.must("-n", ns, "route", "add", "default", "via", l.subnet(k)+".1")
	}
	return l
}

func (l *netLab) subnet(k int) string { return fmt.Sprintf("%s.%d", l.prefix, k+1) }

// IP is node k's address.
func (l *netLab) IP(k int) string { return l.subnet(k) + ".2" }

// Wrap is the command prefix that runs a program in node k's namespace.
func (l *netLab) Wrap(k int) []string { return []string{"ip", "netns", "exec", l.nodes[k]} }

// Cut drops all traffic between node k and every other node.
func (l *netLab) Cut(k int) {
	l.t.Helper()
	for j := range l.nodes {
		if j == k {
			continue
		}
		for _, r := range [][]string{
			{"from", l.subnet(k) + ".0/24", "to", l.subnet(j) + ".0/24", "blackhole", "pref", "100"},
			{"from", l.subnet(j) + ".0/24", "to", l.subnet(k) + ".0/24", "blackhole", "pref", "100"},
		} {
			l.must(append([]string{"-n", l.router, "rule", "add"}, r...)...)
			l.cut[k] = append(l.cut[k], r)
		}
	}
}

// Heal lets node k's traffic through again.
func (l *netLab) Heal(k int) {
	l.t.Helper()
	for _, r := range l.cut[k] {
		l.must(append([]string{"-n", l.router, "rule", "del"}, r...)...)
	}
	delete(l.cut, k)
}

// CutPort drops the traffic to and from port (TCP and UDP) between node k
// and every other node, and lets everything else through: the partition
// test drops gossip alone this way.
func (l *netLab) CutPort(k, port int) {
	l.t.Helper()
	p := strconv.Itoa(port)
	for j := range l.nodes {
		if j == k {
			continue
		}
		for _, proto := range []string{"tcp", "udp"} {
			for _, r := range [][]string{
				{"from", l.subnet(k) + ".0/24", "to", l.subnet(j) + ".0/24", "ipproto", proto, "dport", p, "blackhole", "pref", "90"},
				{"from", l.subnet(k) + ".0/24", "to", l.subnet(j) + ".0/24", "ipproto", proto, "sport", p, "blackhole", "pref", "90"},
				{"from", l.subnet(j) + ".0/24", "to", l.subnet(k) + ".0/24", "ipproto", proto, "dport", p, "blackhole", "pref", "90"},
				{"from", l.subnet(j) + ".0/24", "to", l.subnet(k) + ".0/24", "ipproto", proto, "sport", p, "blackhole", "pref", "90"},
			} {
				l.must(append([]string{"-n", l.router, "rule", "add"}, r...)...)
				l.portCut[k] = append(l.portCut[k], r)
			}
		}
	}
}

// HealPort undoes CutPort.
func (l *netLab) HealPort(k, port int) {
	l.t.Helper()
	for _, r := range l.portCut[k] {
		l.must(append([]string{"-n", l.router, "rule", "del"}, r...)...)
	}
	delete(l.portCut, k)
}

func (l *netLab) ip(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (l *netLab) must(args ...string) {
	l.t.Helper()
	if _, err := l.ip(args...); err != nil {
		l.t.Fatal(err)
	}
}

// destroy removes the namespaces (and with them the links in them) and the
// host's end of its link; the processes in them are killed by their own
// cleanups, which run first.
func (l *netLab) destroy() {
	for _, ns := range append(l.nodes, l.router) {
		_, _ = l.ip("netns", "del", ns)
	}
	_, _ = l.ip("link", "del", l.hostIf)
}
