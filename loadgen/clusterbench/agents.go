package clusterbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// agentProc is one `batchpilot agent` process of a bench cluster.
type agentProc struct {
	name   string
	cmd    *exec.Cmd
	url    string
	gossip string
	exited chan struct{}

	mu  sync.Mutex
	log strings.Builder
}

// listeningRE is the line an agent prints once it listens (agent.go).
var listeningRE = regexp.MustCompile(`listening http=(\S+) syslog=(\S*) gossip=(\S+) raft=(\S*)`)

// startAgent runs `bin agent` with args and waits until it says where it
// listens (or ctx ends, or it exits).
func startAgent(ctx context.Context, bin, name string, args []string) (*agentProc, error) {
	full := append([]string{"agent", "--node-name", name}, args...)
	a := &agentProc{name: name, cmd: exec.Command(bin, full...), exited: make(chan struct{})}
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent %s: %w", name, err)
	}
	found := make(chan []string, 1)
	go func() {
		defer close(a.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			if a.log.Len() < 1<<20 {
				a.log.WriteString(line + "\n")
			}
			a.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
		_ = a.cmd.Wait()
	}()
	select {
	case m := <-found:
		a.url, a.gossip = m[1], m[3]
		return a, nil
	case <-a.exited:
		return nil, fmt.Errorf("agent %s exited before listening:\n%s", name, a.tail(4000))
	case <-time.After(time.Minute):
		a.kill()
		return nil, fmt.Errorf("agent %s did not listen within a minute:\n%s", name, a.tail(4000))
	case <-ctx.Done():
		a.kill()
		return nil, ctx.Err()
	}
}

func (a *agentProc) tail(n int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.log.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// stop asks the agent to drain (SIGTERM) and kills it after grace.
func (a *agentProc) stop(grace time.Duration) {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(grace):
		a.kill()
	}
}

func (a *agentProc) kill() {
	_ = a.cmd.Process.Kill()
	<-a.exited
}

// cluster is the N agents of one arm.
type cluster struct {
	agents []*agentProc
}

// startCluster starts n agents writing to sinkURL: three servers when n is
// five or more (else one) and workers for the rest, all joining the first.
func startCluster(ctx context.Context, bin, dir string, n int, sinkURL string, extra []string) (*cluster, error) {
	servers := 1
	if n >= 5 {
		servers = 3
	}
	c := &cluster{}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"--data-dir", filepath.Join(dir, name),
			"--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
			"--syslog-addr", "", "--sink", "http", "--sink-url", sinkURL + "/" + name, "--log-level", "warn",
			"--shutdown-timeout", "5s"}
		if i < servers {
			args = append(args, "--server", "--bootstrap-expect", fmt.Sprint(servers))
		}
		if i > 0 {
			args = append(args, "--join", c.agents[0].gossip)
		}
		a, err := startAgent(ctx, bin, name, append(args, extra...))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.agents = append(c.agents, a)
	}
	return c, nil
}

func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, a := range c.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.stop(10 * time.Second)
		}()
	}
	wg.Wait()
}

// waitLeases polls until a leader is known and every node has a fresh
// lease (the budget binds from the first second of the load).
func (c *cluster) waitLeases(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		ok := true
		for _, a := range c.agents {
			if v, err := scrapeGauge(client, a.url+"/metrics", "batchpilot_lease_fresh"); err != nil || v != 1 {
				ok = false
				break
			}
		}
		if ok {
			var cl struct {
				Leader struct {
					Name string `json:"name"`
				} `json:"leader"`
			}
			if resp, err := client.Get(c.agents[0].url + "/api/v1/cluster"); err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&cl)
				resp.Body.Close()
			}
			if cl.Leader.Name != "" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, a := range c.agents {
				fmt.Fprintf(&b, "--- %s\n%s", a.name, a.tail(1500))
			}
			return fmt.Errorf("no leader with fresh leases on all %d nodes within %v:\n%s", len(c.agents), within, b.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// scrapeGauge reads one unlabelled sample from a Prometheus text page.
func scrapeGauge(client *http.Client, url, name string) (float64, error) {
	v, err := scrapeGauges(client, url, name)
	if err != nil {
		return 0, err
	}
	got, ok := v[name]
	if !ok {
		return 0, fmt.Errorf("%s not in %s", name, url)
	}
	return got, nil
}

// scrapeGauges reads the unlabelled samples of names from one Prometheus
// text page; a name the page does not have is left out of the map.
func scrapeGauges(client *http.Client, url string, names ...string) (map[string]float64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && len(out) < len(names) {
		line := sc.Text()
		for _, name := range names {
			rest, ok := strings.CutPrefix(line, name+" ")
			if !ok {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out[name] = v
		}
	}
	return out, sc.Err()
}
