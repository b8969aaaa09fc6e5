package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this node's membership in the gossip pool. It keeps a table of
// every member it has heard of (with status, addresses and health), gossips
// this node's own health every Config.HealthInterval, and hands membership
// events to subscribers.
//
// All methods are safe for concurrent use.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	ml       *memberlist.Memberlist
	healthFn func() Health

	localMu sync.Mutex
	local   meta // what this node gossips about itself

	mu      sync.Mutex
	members map[string]*Member // by node name
	leaving map[string]bool    // members whose last meta announced a leave

	subMu      sync.Mutex
	subs       map[int]chan Event
	nextSub    int
	subsClosed bool
	dropped    atomic.Uint64

	joined      atomic.Bool
	refreshCh   chan struct{}
	stopRefresh chan struct{} // closed by Leave or Shutdown
	stopOnce    sync.Once
	shutdownCh  chan struct{}
	wg          sync.WaitGroup // the join retry loop
	refreshWG   sync.WaitGroup // the refresh loop

	lifeMu sync.Mutex // serialises Leave and Shutdown
	isShut bool
}

// New starts gossip: it binds cfg.BindAddr, joins cfg.Join (retrying in the
// background until one member answers) and gossips healthFn's answer every
// cfg.HealthInterval. healthFn may be nil until the node has health to give;
// it must be quick and safe to call from another goroutine.
//
// Call Leave and then Shutdown to stop.
func New(cfg Config, healthFn func() Health) (*Cluster, error) {
	cfg.setDefaults()
	if cfg.NodeID == "" {
		id, err := LoadOrCreateNodeID(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		cfg.NodeID = id
	}
	if err := validateNodeID(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if len(cfg.HTTPAddr) > maxAddrLen {
		return nil, fmt.Errorf("cluster: HTTP address %q is longer than %d bytes", cfg.HTTPAddr, maxAddrLen)
	}
	mc, err := cfg.memberlistConfig()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:         cfg,
		log:         cfg.Logger.With("node", cfg.NodeName),
		healthFn:    healthFn,
		local:       meta{ID: cfg.NodeID, HTTPAddr: cfg.HTTPAddr},
		members:     make(map[string]*Member),
		leaving:     make(map[string]bool),
		subs:        make(map[int]chan Event),
		refreshCh:   make(chan struct{}, 1),
		stopRefresh: make(chan struct{}),
		shutdownCh:  make(chan struct{}),
	}
	if healthFn != nil {
		c.local.Health = healthFn()
	}
	if _, err := encodeMeta(c.local); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	mc.Delegate = delegate{c}
	mc.Events = eventDelegate{c}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.BindAddr, err)
	}
	c.ml = ml

	seeds := c.seeds()
	if len(seeds) == 0 {
		c.joined.Store(true)
	} else if !c.tryJoin(seeds) {
		c.wg.Add(1)
		go c.retryJoin(seeds)
	}
	c.refreshWG.Add(1)
	go c.refreshLoop()
	c.wg.Add(1)
	go c.reconnectLoop()
	return c, nil
}

// seeds is cfg.Join without this node's own address.
func (c *Cluster) seeds() []string {
	self := c.Addr()
	var out []string
	for _, s := range c.cfg.Join {
		s = strings.TrimSpace(s)
		if s != "" && s != self {
			out = append(out, s)
		}
	}
	return out
}

func (c *Cluster) tryJoin(seeds []string) bool {
	n, err := c.ml.Join(seeds)
	if n > 0 {
		c.joined.Store(true)
		c.log.Info("joined cluster", "contacted", n)
		return true
	}
	c.log.Warn("join failed; retrying", "join", strings.Join(seeds, ","), "err", err)
	return false
}

func (c *Cluster) retryJoin(seeds []string) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.RetryJoinInterval)
	defer t.Stop()
	for {
		select {
		case <-c.shutdownCh:
			return
		case <-t.C:
			if c.tryJoin(seeds) {
				return
			}
		}
	}
}

// reconnectLoop tries, every ReconnectInterval, to join one member that
// this node found dead (not one that left), picked at random, as Serf's
// reconnect does. A join that reaches it exchanges full state: each side
// learns that the other thinks it dead and refutes that, and both are alive
// again. A member that is really gone costs one failed connection per round
// until it is forgotten.
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
		var dead []Member
		for _, m := range c.Members() {
			if m.Status == StatusDead && m.Name != c.cfg.NodeName && m.Addr != "" {
				dead = append(dead, m)
			}
		}
		if len(dead) == 0 {
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

// refreshLoop reads the node's health and re-advertises its meta every
// HealthInterval, and at once after SetRaft changes something that matters.
func (c *Cluster) refreshLoop() {
	defer c.refreshWG.Done()
	t := time.NewTicker(c.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stopRefresh:
			return
		case <-t.C:
		case <-c.refreshCh:
		}
		c.refresh()
	}
}

func (c *Cluster) refresh() {
	var h Health
	if c.healthFn != nil {
		h = c.healthFn()
	}
	c.localMu.Lock()
	c.local.Health = h
	c.local.Seq++
	c.localMu.Unlock()
	// UpdateNode waits until the update is gossiped to someone; a timeout
	// just means nobody else is around.
	if err := c.ml.UpdateNode(c.cfg.HealthInterval); err != nil {
		c.log.Debug("gossip update not acknowledged", "err", err)
	}
}

// ID is this node's id.
func (c *Cluster) ID() string { return c.cfg.NodeID }

// Name is this node's name.
func (c *Cluster) Name() string { return c.cfg.NodeName }

// Addr is this node's advertised gossip address (host:port), the address
// other nodes pass to Join. With BindAddr port 0 it has the chosen port.
func (c *Cluster) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.members[c.cfg.NodeName]; ok {
		return m.Addr
	}
	return c.cfg.BindAddr
}

// Joined reports whether the node has contacted one of its Join addresses
// (always true when it was given none).
func (c *Cluster) Joined() bool { return c.joined.Load() }

// SetRaft sets the Raft part of this node's meta. A change of address,
// bootstrap expectation or HasState is gossiped at once; the log position
// rides along with the next health refresh.
func (c *Cluster) SetRaft(r RaftMeta) error {
	if len(r.Addr) > maxAddrLen {
		return fmt.Errorf("cluster: raft address %q is longer than %d bytes", r.Addr, maxAddrLen)
	}
	c.localMu.Lock()
	old := c.local.Raft
	c.local.Raft = r
	c.localMu.Unlock()
	if old.Addr != r.Addr || old.BootstrapExpect != r.BootstrapExpect || old.HasState != r.HasState {
		select {
		case c.refreshCh <- struct{}{}:
		default:
		}
	}
	return nil
}

// LocalMember is this node as the others see it, with its latest health.
func (c *Cluster) LocalMember() Member {
	c.mu.Lock()
	m := Member{Name: c.cfg.NodeName, Status: StatusAlive}
	if e, ok := c.members[c.cfg.NodeName]; ok {
		m = *e
	}
	c.mu.Unlock()
	c.localMu.Lock()
	m.ID, m.HTTPAddr, m.Raft, m.Health = c.local.ID, c.local.HTTPAddr, c.local.Raft, c.local.Health
	c.localMu.Unlock()
	m.Status = StatusAlive
	m.LastHeard = time.Now()
	return m
}

// Members returns every member this node knows, itself included, sorted by
// name: alive and suspect ones, and dead or left ones until ForgetAfter.
func (c *Cluster) Members() []Member {
	now := time.Now()
	c.mu.Lock()
	out := make([]Member, 0, len(c.members))
	for name, e := range c.members {
		if (e.Status == StatusDead || e.Status == StatusLeft) && now.Sub(e.StatusSince) > c.cfg.ForgetAfter {
			delete(c.members, name)
			delete(c.leaving, name)
			continue
		}
		if name == c.cfg.NodeName {
			continue
		}
		m := *e
		if m.Status == StatusAlive && now.Sub(m.LastHeard) > c.cfg.SuspectAfter {
			m.Status = StatusSuspect
		}
		out = append(out, m)
	}
	c.mu.Unlock()
	out = append(out, c.LocalMember())
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// MemberByID returns the member with the given node id.
func (c *Cluster) MemberByID(id string) (Member, bool) {
	if id == c.cfg.NodeID {
		return c.LocalMember(), true
	}
	for _, m := range c.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// Subscribe returns a channel of membership events with room for buf events
// and a function that ends the subscription and closes the channel. Events
// are never waited for: when the channel is full they are dropped, so a
// subscriber that must not miss a change also rereads Members periodically.
// The channel is closed by Shutdown.
func (c *Cluster) Subscribe(buf int) (<-chan Event, func()) {
	ch := make(chan Event, max(buf, 1))
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if c.subsClosed {
		close(ch)
		return ch, func() {}
	}
	id := c.nextSub
	c.nextSub++
	c.subs[id] = ch
	return ch, func() {
		c.subMu.Lock()
		defer c.subMu.Unlock()
		if ch, ok := c.subs[id]; ok {
			delete(c.subs, id)
			close(ch)
		}
	}
}

func (c *Cluster) publish(ev Event) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for _, ch := range c.subs {
		select {
		case ch <- ev:
		default:
			if c.dropped.Add(1)%100 == 1 {
				c.log.Warn("membership subscriber is slow; events dropped", "dropped", c.dropped.Load())
			}
		}
	}
}

// ErrShutdown is returned by Leave after Shutdown.
var ErrShutdown = errors.New("cluster: shut down")

// Leave tells the other members that this node is leaving and waits up to
// timeout for that to be gossiped. The node stops advertising its health.
// Call Shutdown afterwards.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.isShut {
		return ErrShutdown
	}
	c.stopOnce.Do(func() { close(c.stopRefresh) })
	c.refreshWG.Wait() // no refresh may re-advertise the node as plain alive now
	c.localMu.Lock()
	c.local.Leaving = true
	c.localMu.Unlock()
	if err := c.ml.UpdateNode(timeout); err != nil {
		c.log.Debug("leave intent not acknowledged", "err", err)
	}
	c.sendLeaveIntent(timeout)
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// msgLeaveIntent starts the user message a leaving node sends, followed by
// its name.
const msgLeaveIntent byte = 1

// sendLeaveIntent tells every live member over TCP that this node is about
// to leave. The intent also rides in the node's meta, but gossip may bring a
// member the leave itself (memberlist's dead message) before the meta that
// announced it; that member would then take the leave for a failure, and
// the Raft leader would wait out its dead grace before removing the node.
// A direct message to each member, before the leave, closes that gap; an
// intent that still comes late turns the failure into a leave (noteLeaving).
func (c *Cluster) sendLeaveIntent(timeout time.Duration) {
	msg := append([]byte{msgLeaveIntent}, c.cfg.NodeName...)
	done := make(chan struct{})
	var sends sync.WaitGroup
	for _, n := range c.ml.Members() {
		if n.Name == c.cfg.NodeName {
			continue
		}
		sends.Add(1)
		go func() {
			defer sends.Done()
			if err := c.ml.SendReliable(n, msg); err != nil {
				c.log.Debug("leave intent not delivered", "member", n.Name, "err", err)
			}
		}()
	}
	// Shutdown waits for sends that outlive the timeout.
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		sends.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// noteLeaving records a member's leave intent. If the member was already
// found dead, it left: its status becomes left and subscribers get a leave.
func (c *Cluster) noteLeaving(name string) {
	c.mu.Lock()
	c.leaving[name] = true
	var ev *Event
	if e, ok := c.members[name]; ok && e.Status == StatusDead {
		e.Status = StatusLeft
		e.StatusSince = time.Now()
		ev = &Event{Type: EventLeave, Member: *e}
	}
	c.mu.Unlock()
	if ev != nil {
		c.publish(*ev)
	}
}

// Shutdown stops gossip at once. Without a Leave first, the others will
// find this node dead after their failure detector's timeout. Subscriber
// channels are closed. Safe to call more than once.
func (c *Cluster) Shutdown() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.isShut {
		return nil
	}
	c.isShut = true
	c.stopOnce.Do(func() { close(c.stopRefresh) })
	close(c.shutdownCh)
	err := c.ml.Shutdown()
	c.wg.Wait()
	c.refreshWG.Wait()
	c.subMu.Lock()
	c.subsClosed = true
	for id, ch := range c.subs {
		delete(c.subs, id)
		close(ch)
	}
	c.subMu.Unlock()
	if err != nil {
		return fmt.Errorf("cluster: shutdown: %w", err)
	}
	return nil
}

// delegate gives memberlist this node's meta and takes the leave intents
// (the only user message). The other hooks are unused: health travels in the
// meta.
type delegate struct{ c *Cluster }

func (d delegate) NodeMeta(limit int) []byte {
	d.c.localMu.Lock()
	m := d.c.local
	d.c.localMu.Unlock()
	b, err := encodeMeta(m)
	if err != nil || len(b) > limit {
		// Cannot happen with the field limits New and SetRaft enforce;
		// keep the node reachable without its health rather than panic.
		d.c.log.Error("node meta too large; gossiping it without health", "err", err)
		m.Health = Health{}
		b, _ = encodeMeta(m)
	}
	return b
}

// NotifyMsg takes the leave intents of other members; it ignores anything
// else. memberlist may reuse b after the call, so it is copied.
func (d delegate) NotifyMsg(b []byte) {
	if len(b) > 1 && b[0] == msgLeaveIntent {
		d.c.noteLeaving(string(b[1:]))
	}
}

func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// eventDelegate keeps the member table. memberlist calls it with its node
// lock held, one call at a time: it copies what it needs and never blocks.
type eventDelegate struct{ c *Cluster }

func (d eventDelegate) NotifyJoin(n *memberlist.Node)   { d.c.observe(n, EventJoin) }
func (d eventDelegate) NotifyUpdate(n *memberlist.Node) { d.c.observe(n, EventUpdate) }

// NotifyLeave is called for dead and left nodes alike (memberlist's Node.State
// is not filled in), so observe tells them apart by the leave intent.
func (d eventDelegate) NotifyLeave(n *memberlist.Node) { d.c.observe(n, EventFail) }

func (c *Cluster) observe(n *memberlist.Node, typ EventType) {
	now := time.Now()
	decoded, decErr := decodeMeta(n.Meta)
	c.mu.Lock()
	e, ok := c.members[n.Name]
	if !ok {
		e = &Member{Name: n.Name}
		c.members[n.Name] = e
	}
	e.Addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	if decErr == nil {
		e.ID, e.HTTPAddr, e.Raft, e.Health, e.MetaError = decoded.ID, decoded.HTTPAddr, decoded.Raft, decoded.Health, ""
		// The meta announces a leave, or a (re)join clears it; a failure
		// that comes with an older meta keeps an intent that came by
		// message (noteLeaving).
		if decoded.Leaving || typ == EventJoin {
			c.leaving[n.Name] = decoded.Leaving
		}
	} else if typ != EventLeave && typ != EventFail {
		e.MetaError = decErr.Error()
	}
	if typ == EventFail && c.leaving[n.Name] {
		typ = EventLeave // it announced its leave before it went
	}
	status := StatusAlive
	switch typ {
	case EventLeave:
		status = StatusLeft
	case EventFail:
		status = StatusDead
	default:
		e.LastHeard = now
	}
	if e.Status != status {
		e.Status = status
		e.StatusSince = now
	}
	ev := Event{Type: typ, Member: *e}
	c.mu.Unlock()
	if decErr != nil && typ == EventJoin {
		c.log.Warn("member meta unreadable", "member", n.Name, "err", decErr)
	}
	c.publish(ev)
}
