package cluster

import (
	"math/rand/v2"
	"time"
)

// reconnectLoop tries, every ReconnectInterval, to join one member that
// this node found dead (not one that left), picked at random, as Serf's
// reconnect does. A join that reaches it exchanges full state: each side
// learns that the other thinks it dead and refutes that, and both are alive
// again. A member that is really gone costs one failed connection per
// attempt until it is forgotten.
//
// As in Serf, a round attempts with the probability dead/alive (at most 1),
// so that the cluster as a whole tries each dead member about once per
// interval whatever its size: were every node to try every round, n nodes
// would run n full-state exchanges (each O(n)) per interval. In the scale
// benchmark, where members suspected under load were found dead, that was
// 4 % of the workers' process's CPU at 300 members, and it grows as n².
func (c *Cluster) reconnectLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-c.shutdownCh:
			return
		case <-c.stopRefresh: // leaving
			return
		case <-t.C:
		}
		dead, alive := c.deadMembers()
		if len(dead) == 0 || !reconnectNow(len(dead), alive, rand.Float64()) {
			continue
		}
		m := dead[rand.IntN(len(dead))]
		if n, err := c.ml.Join([]string{m.Addr}); n > 0 {
			c.log.Info("reconnected to a member found dead", "member", m.Name, "addr", m.Addr)
		} else {
			c.log.Debug("reconnect failed", "member", m.Name, "addr", m.Addr, "err", err)
		}
	}
}

// reconnectNow says whether a round of reconnectLoop attempts, given the
// members found dead, those alive (this node included) and a uniform draw
// in [0, 1): with probability dead/alive, as Serf's reconnect.
func reconnectNow(dead, alive int, draw float64) bool {
	return draw < float64(dead)/float64(max(alive, 1))
}

// deadMembers lists the members found dead (not left) that have an
// address, and counts the members alive or suspect, this node included.
func (c *Cluster) deadMembers() (dead []Member, alive int) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	alive = 1 // this node
	for name, e := range c.members {
		if name == c.cfg.NodeName {
			continue
		}
		switch {
		case e.Status == StatusDead && e.Addr != "" && now.Sub(e.StatusSince) <= c.cfg.ForgetAfter:
			dead = append(dead, *e)
		case e.Status == StatusAlive || e.Status == StatusSuspect:
			alive++
		}
	}
	return dead, alive
}
