package cluster

import (
	"testing"

	"github.com/batchpilot/batchpilot/cluster/clustertest"
)

// A round reconnects with the probability dead/alive, so that the whole
// cluster tries each dead member about once per interval, as Serf.
func TestReconnectIsTriedWithTheProbabilityDeadOverAlive(t *testing.T) {
	tests := []struct {
		name        string
		dead, alive int
		draw        float64
		want        bool
	}{
		{"one dead in a pair: always", 1, 1, 0.999, true},
		{"more dead than alive: always", 3, 1, 0.999, true},
		{"one dead among 1,000: a draw under 1/1000 tries", 1, 1000, 0.0009, true},
		{"one dead among 1,000: a draw over 1/1000 does not", 1, 1000, 0.0011, false},
		{"half dead: a draw under one half tries", 50, 100, 0.49, true},
		{"half dead: a draw over one half does not", 50, 100, 0.51, false},
		{"no alive count (cannot happen): treated as one", 1, 0, 0.5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reconnectNow(tt.dead, tt.alive, tt.draw); got != tt.want {
				t.Errorf("reconnectNow(%d dead, %d alive, draw %v) = %v, want %v", tt.dead, tt.alive, tt.draw, got, tt.want)
			}
		})
	}
}

// The members a node may reconnect to are those found dead, not those that
// left, nor itself; the alive count includes suspects and this node.
func TestDeadMembersAreThoseFoundDeadNotThoseThatLeft(t *testing.T) {
	a, _ := startNode(t, "a", nil)
	b, _ := startNode(t, "b", nil, a.Addr())
	clustertest.WaitFor(t, "a to see b", func() bool { return len(a.Members()) == 2 })
	c, _ := startNode(t, "c", nil, a.Addr())
	clustertest.WaitFor(t, "a to see c", func() bool { return len(a.Members()) == 3 })
	// c stops without a leave while b still confirms a's suspicion (which
	// shortens it), then b leaves.
	c.Shutdown()
	clustertest.WaitFor(t, "a to find c dead", func() bool { return statusOf(a, "c") == StatusDead })
	if err := b.Leave(waitTimeout); err != nil {
		t.Fatal(err)
	}
	b.Shutdown()
	clustertest.WaitFor(t, "a to find b left", func() bool { return statusOf(a, "b") == StatusLeft })
	dead, alive := a.deadMembers()
	if len(dead) != 1 || dead[0].Name != "c" || alive != 1 {
		var names []string
		for _, m := range dead {
			names = append(names, m.Name)
		}
		t.Fatalf("dead %v, alive %d; want dead [c], alive 1 (a itself)", names, alive)
	}
}
