package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipTuning overrides some of memberlist's settings for one member; a
// zero field keeps the value the member would otherwise use (memberlist's
// LAN or local defaults, see Config.LANTimings).
//
// Agents never set it: production nodes run memberlist's LAN defaults, as
// Consul's agents do. It exists for the scale benchmark, which hosts up to
// 1,000 simulated workers in one process on a 2-core machine: there every
// message one member gossips is handled by the same two cores that run the
// other 999, so the cluster's total gossip, not one member's, is what the
// host pays (docs/cluster.md, "Scale").
type GossipTuning struct {
	// ProbeInterval is how often the member probes one random member;
	// ProbeTimeout how long it waits for the ack before indirect probes.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// GossipInterval is how often it gossips pending broadcasts to
	// GossipNodes random members.
	GossipInterval time.Duration
	GossipNodes    int
	// RetransmitMult: each broadcast is sent RetransmitMult·⌈log10(n+1)⌉
	// times by every member that learns it.
	RetransmitMult int
	// SuspicionMult: a suspect member is declared dead after
	// SuspicionMult·⌈log10(n)⌉·ProbeInterval at the least.
	SuspicionMult int
	// PushPullInterval is the full-state exchange's interval before
	// memberlist scales it up with the cluster's size.
	PushPullInterval time.Duration
	// AwarenessMaxMultiplier bounds how far a member that misses acks
	// slows its own probes down.
	AwarenessMaxMultiplier int
}

// apply writes the non-zero fields into mc, after checking them.
func (t *GossipTuning) apply(mc *memberlist.Config) error {
	if t == nil {
		return nil
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"probe interval", t.ProbeInterval}, {"probe timeout", t.ProbeTimeout}, {"gossip interval", t.GossipInterval}, {"push-pull interval", t.PushPullInterval}} {
		if d.v < 0 {
			return fmt.Errorf("cluster: gossip tuning: %s %v is negative", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"gossip nodes", t.GossipNodes}, {"retransmit mult", t.RetransmitMult}, {"suspicion mult", t.SuspicionMult}, {"awareness max multiplier", t.AwarenessMaxMultiplier}} {
		if n.v < 0 {
			return fmt.Errorf("cluster: gossip tuning: %s %d is negative", n.name, n.v)
		}
	}
	setIfPositive(&mc.ProbeInterval, t.ProbeInterval)
	setIfPositive(&mc.ProbeTimeout, t.ProbeTimeout)
	setIfPositive(&mc.GossipInterval, t.GossipInterval)
	setIfPositive(&mc.PushPullInterval, t.PushPullInterval)
	setIfPositive(&mc.GossipNodes, t.GossipNodes)
	setIfPositive(&mc.RetransmitMult, t.RetransmitMult)
	setIfPositive(&mc.SuspicionMult, t.SuspicionMult)
	setIfPositive(&mc.AwarenessMaxMultiplier, t.AwarenessMaxMultiplier)
	if mc.ProbeTimeout >= mc.ProbeInterval {
		return fmt.Errorf("cluster: gossip tuning: probe timeout %v must be shorter than the probe interval %v", mc.ProbeTimeout, mc.ProbeInterval)
	}
	return nil
}

// setIfPositive sets *dst to v when v is above zero (zero: keep the default).
func setIfPositive[T int | time.Duration](dst *T, v T) {
	if v > 0 {
		*dst = v
	}
}
