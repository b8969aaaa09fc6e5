package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
// every member it has heard of (with status, role and addresses), gossips
// this node's identity (id, role, addresses, cluster id, version: small and
// static), refuses members of another cluster id, and hands membership
// events to subscribers.
//
// All methods are safe for concurrent use.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring

	localMu sync.Mutex
	local   meta // what this node gossips about itself

	mu      sync.Mutex
	members map[string]*Member // by node name
	leaving map[string]bool    // members whose last meta announced a leave

	refusedMu sync.Mutex
	refused   map[string]string // member name → the cluster id it was refused for

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

	lifeMu    sync.Mutex // serialises AnnounceLeave, Leave and Shutdown
	isShut    bool
	announced bool // AnnounceLeave ran
}

// New starts gossip: it binds cfg.BindAddr and joins cfg.Join (retrying in
// the background until one member answers). The node's meta is gossiped
// again only when it changes (SetRaft, SetClusterID, a leave).
//
// Call Leave and then Shutdown to stop.
func New(cfg Config) (*Cluster, error) {
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
	if cfg.ClusterID == "" && cfg.DataDir != "" {
		id, err := loadClusterID(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		cfg.ClusterID = id
	}
	mc, err := cfg.memberlistConfig()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:         cfg,
		log:         cfg.Logger.With("node", cfg.NodeName),
		keyring:     mc.Keyring,
		refused:     make(map[string]string),
		local:       meta{ID: cfg.NodeID, Role: cfg.Role, HTTPAddr: cfg.HTTPAddr, ClusterID: cfg.ClusterID, Version: cfg.Version},
		members:     make(map[string]*Member),
		leaving:     make(map[string]bool),
		subs:        make(map[int]chan Event),
		refreshCh:   make(chan struct{}, 1),
		stopRefresh: make(chan struct{}),
		shutdownCh:  make(chan struct{}),
	}
	if _, err := encodeMeta(c.local); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	mc.Delegate = delegate{c}
	mc.Events = eventDelegate{c}
	mc.Alive = clusterGuard{c}
	mc.Merge = clusterGuard{c}
	tr, err := newTransport(mc.BindAddr, mc.BindPort, c.log)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.BindAddr, err)
	}
	if mc.BindPort == 0 {
		mc.BindPort = tr.Port()
	}
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = tr.Port()
	}
	mc.Transport = tr
	ml, err := memberlist.Create(mc)
	if err != nil {
		tr.Shutdown()
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

// refreshLoop re-advertises the node's meta when it changes (SetRaft,
// SetClusterID). Nothing is gossiped on a timer: identity is static, and
// health travels with the lease requests instead.
func (c *Cluster) refreshLoop() {
	defer c.refreshWG.Done()
	for {
		select {
		case <-c.stopRefresh:
			return
		case <-c.refreshCh:
		}
		// UpdateNode waits until the update is gossiped to someone; a
		// timeout just means nobody else is around.
		if err := c.ml.UpdateNode(c.cfg.UpdateTimeout); err != nil {
			c.log.Debug("gossip update not acknowledged", "err", err)
		}
	}
}

func (c *Cluster) requestRefresh() {
	select {
	case c.refreshCh <- struct{}{}:
	default:
	}
}

// Role is this node's role.
func (c *Cluster) Role() Role { return c.cfg.Role }

// ClusterID is the cluster id this node belongs to ("" until it knows one).
func (c *Cluster) ClusterID() string {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	return c.local.ClusterID
}

// SetClusterID sets the cluster id this node gossips, persists it in the data
// dir, and from then on refuses members that gossip another. Servers set it
// from their FSM; a worker adopts the first one a server gossips.
func (c *Cluster) SetClusterID(id string) error {
	if len(id) > maxIDLen {
		return fmt.Errorf("cluster: cluster id %q is longer than %d bytes", id, maxIDLen)
	}
	c.localMu.Lock()
	old := c.local.ClusterID
	c.local.ClusterID = id
	c.localMu.Unlock()
	if old == id {
		return nil
	}
	if old != "" {
		c.log.Warn("cluster id changed", "old", old, "new", id)
	}
	if c.cfg.DataDir != "" {
		if err := storeClusterID(c.cfg.DataDir, id); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	c.requestRefresh()
	return nil
}

// Refused lists the members refused for gossiping another cluster id, by
// name, with that id.
func (c *Cluster) Refused() map[string]string {
	c.refusedMu.Lock()
	defer c.refusedMu.Unlock()
	return maps.Clone(c.refused) // never nil: made in New
}

// SetKeys replaces the gossip keyring, as a key rotation needs (see
// docs/cluster.md): primary encrypts what this node sends, and every key in
// keys (primary included) is tried on what it receives. Each is base64.
// It fails, changing nothing, when gossip was started without a key.
func (c *Cluster) SetKeys(primary string, keys []string) error {
	if c.keyring == nil {
		return errors.New("cluster: gossip was started without --encrypt; restart with a key to turn encryption on")
	}
	p, err := DecodeEncryptKey(primary)
	if err != nil {
		return fmt.Errorf("cluster: primary key: %w", err)
	}
	var decoded [][]byte
	for i, k := range keys {
		b, err := DecodeEncryptKey(k)
		if err != nil {
			return fmt.Errorf("cluster: key %d: %w", i+1, err)
		}
		decoded = append(decoded, b)
	}
	if err := c.keyring.AddKey(p); err != nil {
		return fmt.Errorf("cluster: add primary key: %w", err)
	}
	if err := c.keyring.UseKey(p); err != nil {
		return fmt.Errorf("cluster: use primary key: %w", err)
	}
	for _, b := range decoded {
		if err := c.keyring.AddKey(b); err != nil {
			return fmt.Errorf("cluster: add key: %w", err)
		}
	}
	keep := map[string]bool{string(p): true}
	for _, b := range decoded {
		keep[string(b)] = true
	}
	for _, k := range c.keyring.GetKeys() {
		if !keep[string(k)] {
			if err := c.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("cluster: remove old key: %w", err)
			}
		}
	}
	return nil
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

// SetRaft sets the Raft part of this node's meta; a change is gossiped at
// once.
func (c *Cluster) SetRaft(r RaftMeta) error {
	if len(r.Addr) > maxAddrLen {
		return fmt.Errorf("cluster: raft address %q is longer than %d bytes", r.Addr, maxAddrLen)
	}
	c.localMu.Lock()
	old := c.local.Raft
	c.local.Raft = r
	c.localMu.Unlock()
	if old != r {
		c.requestRefresh()
	}
	return nil
}

// LocalMember is this node as the others see it.
func (c *Cluster) LocalMember() Member {
	c.mu.Lock()
	m := Member{Name: c.cfg.NodeName, Status: StatusAlive}
	if e, ok := c.members[c.cfg.NodeName]; ok {
		m = *e
	}
	c.mu.Unlock()
	c.localMu.Lock()
	m.ID, m.Role, m.HTTPAddr, m.Raft = c.local.ID, c.local.Role, c.local.HTTPAddr, c.local.Raft
	m.ClusterID, m.Version, m.Leaving = c.local.ClusterID, c.local.Version, c.local.Leaving
	c.localMu.Unlock()
	m.Status = StatusAlive
	m.LastHeard = time.Now()
	return m
}

// AliveServers returns the alive members with the server role, this node
// included if it is one, in no particular order. It copies only the
// servers and sorts nothing, so a worker looking for a server to ask
// costs O(members) map reads, not a sorted copy of every member (which
// the scale benchmark's profile showed as the lease client's main cost
// while requests were failing).
func (c *Cluster) AliveServers() []Member {
	var out []Member
	c.mu.Lock()
	for name, e := range c.members {
		if name != c.cfg.NodeName && e.Role == RoleServer && e.Status == StatusAlive {
			out = append(out, *e)
		}
	}
	c.mu.Unlock()
	if c.cfg.Role == RoleServer {
		out = append(out, c.LocalMember())
	}
	return out
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
		out = append(out, *e)
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

// ErrShutdown is returned by AnnounceLeave and Leave after Shutdown.
var ErrShutdown = errors.New("cluster: shut down")

// AnnounceLeave tells the other members that this node is about to leave,
// in its meta (Member.Leaving) and by a direct message to each, and waits
// up to timeout for that; it does not leave yet. A Raft server announces
// first so that the leader removes it from Raft while it still answers,
// and leaves gossip afterwards. Leave announces too if this was not called.
func (c *Cluster) AnnounceLeave(timeout time.Duration) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.isShut {
		return ErrShutdown
	}
	c.announce(timeout)
	return nil
}

// announce is AnnounceLeave with lifeMu held; it runs once.
func (c *Cluster) announce(timeout time.Duration) {
	if c.announced {
		return
	}
	c.announced = true
	c.stopOnce.Do(func() { close(c.stopRefresh) })
	c.refreshWG.Wait() // no refresh may re-advertise the node as plain alive now
	c.localMu.Lock()
	c.local.Leaving = true
	c.localMu.Unlock()
	if err := c.ml.UpdateNode(timeout); err != nil {
		c.log.Debug("leave intent not acknowledged", "err", err)
	}
	c.sendLeaveIntent(timeout)
}

// Leave tells the other members that this node is leaving and waits up to
// timeout for that to be gossiped. The node stops advertising its health.
// Call Shutdown afterwards.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.isShut {
		return ErrShutdown
	}
	c.announce(timeout)
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
	for _, m := range c.Members() {
		if m.Name == c.cfg.NodeName || m.Status == StatusDead || m.Status == StatusLeft {
			continue
		}
		// The address from this node's own table (copied in memberlist's
		// event callbacks, under its lock), not a *memberlist.Node from
		// ml.Members(): memberlist rewrites those nodes' addresses in place
		// on every alive message it takes, and reading one here raced with
		// it (go test -race, TestClusterLifecycle).
		host, port, err := net.SplitHostPort(m.Addr)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			continue
		}
		to := &memberlist.Node{Name: m.Name, Addr: net.ParseIP(host), Port: uint16(p)}
		sends.Add(1)
		go func() {
			defer sends.Done()
			if err := c.ml.SendReliable(to, msg); err != nil {
				c.log.Debug("leave intent not delivered", "member", to.Name, "err", err)
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
// (the only user message). The other hooks are unused.
type delegate struct{ c *Cluster }

func (d delegate) NodeMeta(limit int) []byte {
	d.c.localMu.Lock()
	m := d.c.local
	d.c.localMu.Unlock()
	b, err := encodeMeta(m)
	if err != nil || len(b) > limit {
		// Cannot happen with the field limits New and SetRaft enforce.
		d.c.log.Error("node meta does not fit; gossiping an empty one", "err", err)
		return nil
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
		e.ID, e.Role, e.HTTPAddr, e.Raft, e.MetaError = decoded.ID, decoded.Role, decoded.HTTPAddr, decoded.Raft, ""
		e.ClusterID, e.Version, e.Leaving = decoded.ClusterID, decoded.Version, decoded.Leaving
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
	if decErr == nil && decoded.Role == RoleServer && decoded.ClusterID != "" && c.cfg.Role != RoleServer && c.ClusterID() == "" {
		c.log.Info("joined cluster id gossiped by a server", "cluster_id", decoded.ClusterID, "server", n.Name)
		if err := c.SetClusterID(decoded.ClusterID); err != nil {
			c.log.Error("cannot keep the cluster id", "err", err)
		}
	}
	c.publish(ev)
}

// clusterGuard refuses members of another cluster: memberlist asks it about
// every member it hears of (NotifyAlive) and about every state exchanged on
// a join (NotifyMerge); an error keeps the member out. A member that gossips
// no cluster id yet (a new node) is let in.
type clusterGuard struct{ c *Cluster }

func (g clusterGuard) NotifyAlive(n *memberlist.Node) error { return g.c.check(n) }

func (g clusterGuard) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := g.c.check(n); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) check(n *memberlist.Node) error {
	if n.Name == c.cfg.NodeName {
		return nil
	}
	// The cluster id alone first, without allocating: this runs for
	// every alive message received, the repeated ones included.
	cid, err := metaClusterID(n.Meta)
	if err != nil {
		return nil // shown with its meta error; it cannot be a server of anything
	}
	own := c.ClusterID()
	if own == "" || len(cid) == 0 || string(cid) == own {
		return nil
	}
	m, err := decodeMeta(n.Meta)
	if err != nil {
		return nil
	}
	c.refusedMu.Lock()
	first := c.refused[n.Name] != m.ClusterID
	c.refused[n.Name] = m.ClusterID
	c.refusedMu.Unlock()
	if first {
		c.log.Warn("refusing a member of another cluster", "member", n.Name, "addr", n.Address(),
			"its_cluster_id", m.ClusterID, "cluster_id", own)
	}
	return fmt.Errorf("member %s belongs to cluster %s, not %s", n.Name, m.ClusterID, own)
}
