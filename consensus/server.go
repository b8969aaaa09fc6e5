package consensus

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Gossip is what the Server needs from the node's gossip membership.
// *cluster.Cluster implements it.
type Gossip interface {
	ID() string   // this node's id, also its Raft server id
	Name() string // this node's name
	LocalMember() cluster.Member
	// Members returns every known member, this node included.
	Members() []cluster.Member
	// AliveServers returns the alive servers, this node included if it
	// is one, in no particular order (cheaper than Members).
	AliveServers() []cluster.Member
	// Subscribe delivers membership events; it may drop them when full.
	Subscribe(buf int) (<-chan cluster.Event, func())
	// SetRaft gossips this server's Raft address and bootstrap state.
	SetRaft(cluster.RaftMeta) error
	// SetClusterID gossips the cluster id (and refuses other clusters);
	// ClusterID is the one this node has.
	SetClusterID(string) error
	ClusterID() string
	// Joined reports whether the node has reached a member it was told
	// to join; a node does not bootstrap before that.
	Joined() bool
	// AnnounceLeave gossips that this node is about to leave, without
	// leaving yet; Leave leaves (announcing first if need be).
	AnnounceLeave(timeout time.Duration) error
	Leave(timeout time.Duration) error
}

var _ Gossip = (*cluster.Cluster)(nil)

// Config configures a Server.
type Config struct {
	// Worker makes this node a worker: a gossip member and a lease client
	// only, with no Raft (the Raft fields below are then unused).
	Worker bool
	// Health is what the node reports with its lease requests: its
	// health, and in WantBytes the budget it would like. May be nil.
	Health func() cluster.Health
	// Downstream, called once per lease request, reports what the node saw
	// of its sink since the last call (the leader's budget controller
	// learns from it). May be nil.
	Downstream func() DownstreamHealth
	// HTTPClient sends the lease requests to the servers' HTTP APIs and
	// asks them for their Raft stats; HTTPScheme is http or https (the
	// whole cluster serves one). Token is the API token sent with them.
	HTTPClient *http.Client
	HTTPScheme string
	Token      string
	// LeaseObserver, when set, is told the round trip of every lease
	// request sent over the network, and its error (the scale benchmark
	// measures with it). It must be quick.
	LeaseObserver func(rtt time.Duration, err error)
	// DataDir is the node's data dir; Raft keeps its log, stable store and
	// snapshots under DataDir/raft.
	DataDir string
	// RaftAddr is the Raft bind address, host:port (port 0 picks one).
	RaftAddr string
	// AdvertiseRaftAddr is the address the other servers dial; by default
	// RaftAddr, with the gossip advertise host when RaftAddr binds 0.0.0.0.
	AdvertiseRaftAddr string
	// BootstrapExpect is --bootstrap-expect: the number of servers that
	// must agree on the same set before bootstrapping a new cluster (1 for
	// a single node). 0 means never bootstrap: wait to be added to an
	// existing cluster. It is also autopilot's minimum quorum.
	BootstrapExpect int
	// Gossip is the node's membership, normally a *cluster.Cluster.
	Gossip Gossip
	// Logger receives the server's logs and raft's.
	Logger *slog.Logger
	// InitialLimits are committed by the first leader of a new cluster;
	// DefaultLimits when nil.
	InitialLimits *Limits
	// TLS, when set, runs Raft over mutual TLS: Certificates is this
	// node's certificate, presented to the servers it dials and to those
	// that dial it, and RootCAs the CA pool both ends verify the other's
	// chain against (not its host name: Raft addresses are IPs; see
	// tlsStreamLayer). Every server of a cluster must use TLS, or none.
	// Nil: plain TCP.
	TLS *tls.Config
	// Timing has the time constants; zero fields take the defaults.
	Timing Timing
}

// Timing holds the Server's time constants. The defaults suit a LAN; tests
// shrink them.
type Timing struct {
	HeartbeatTimeout   time.Duration // raft; default 1s
	ElectionTimeout    time.Duration // raft; default 1s
	LeaderLeaseTimeout time.Duration // raft; default 500ms
	CommitTimeout      time.Duration // raft; default 50ms
	// ReconcileInterval is the period of the leader's membership
	// reconcile (adding servers gossip shows) and of autopilot's rounds
	// (default 1s).
	ReconcileInterval time.Duration
	// StableFor is autopilot's server stabilisation time: how long a
	// server is healthy before it is promoted to voter (default 10s).
	StableFor time.Duration
	// DeadGrace is how long a server must be both dead in gossip and out
	// of Raft contact (its Raft stats unreachable) before autopilot may
	// remove it (default 30s). Gossip alone never removes a voter.
	DeadGrace time.Duration
	// LastContactThreshold is how long a server may go without contact
	// from the leader and still be healthy (default 10 × HeartbeatTimeout).
	LastContactThreshold time.Duration
	// MaxLag is how many entries a server may trail the leader and still
	// be healthy (default 250).
	MaxLag uint64
	// MaxVoters is unused since autopilot manages the voters; kept so
	// that old configurations still compile.
	MaxVoters int
	// LeaseRetry is the pause before a failed lease request is retried
	// (default 500ms).
	LeaseRetry time.Duration
	// ApplyTimeout bounds membership changes and the leader's setup
	// (default 5s).
	ApplyTimeout time.Duration
	// BoltOpenTimeout is how long to wait for the Raft store's file lock
	// before failing: another process is using the data dir (default 1s).
	BoltOpenTimeout time.Duration
}

func (t *Timing) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.HeartbeatTimeout, time.Second)
	def(&t.ElectionTimeout, time.Second)
	def(&t.LeaderLeaseTimeout, min(500*time.Millisecond, t.HeartbeatTimeout))
	def(&t.CommitTimeout, 50*time.Millisecond)
	def(&t.ReconcileInterval, time.Second)
	def(&t.StableFor, 10*time.Second)
	def(&t.DeadGrace, 30*time.Second)
	def(&t.ApplyTimeout, 5*time.Second)
	def(&t.BoltOpenTimeout, time.Second)
	def(&t.LastContactThreshold, 10*t.HeartbeatTimeout)
	def(&t.LeaseRetry, 500*time.Millisecond)
	if t.MaxLag == 0 {
		t.MaxLag = 250
	}
	if t.MaxVoters <= 0 {
		t.MaxVoters = 5
	}
}

// Errors callers branch on.
var (
	// ErrNotLeader: the call must be made on the leader. The web layer
	// forwards it to LeaderHTTPAddr.
	ErrNotLeader = errors.New("not the Raft leader")
	// ErrOutcomeUnknown: the command was sent but leadership was lost (or
	// the caller gave up) before its outcome was known. It may or may not
	// be applied; retrying with the same request id is safe.
	ErrOutcomeUnknown = errors.New("outcome unknown: leadership was lost before the command committed; retry with the same request id")
	// ErrShutdown: the server is shut down.
	ErrShutdown = errors.New("consensus: server is shut down")
)

// Server is one node's part in the cluster. On a server (--server) it runs
// Raft with the FSM (limits, cluster id), its stores, its bootstrap, and,
// while it leads, autopilot and the lease table. On every node, servers
// included, it runs the lease client that keeps the node's Lease fresh. On
// a worker (Config.Worker) there is no Raft: the limits and the leader come
// with the lease answers.
//
// All methods are safe for concurrent use.
type Server struct {
	cfg    Config
	timing Timing
	log    *slog.Logger
	id     string
	gossip Gossip

	fsm    *fsm
	lease  *Lease
	client *leaseClient
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	store  *raftboltdb.BoltStore
	pilot  *autopilot.Autopilot

	raftAddr     string
	hadState     bool
	bootstrapped atomic.Bool // this node called BootstrapCluster
	reconcileCh  chan struct{}

	// table is the lease table while this server leads, nil otherwise.
	table atomic.Pointer[LeaseTable]
	// alive caches the ids of the members gossip knows that did not leave
	// (alive, suspect or dead: a node cut off runs on its baseline), for
	// the lease table (rebuilt at most every aliveCacheFor).
	aliveMu    sync.Mutex
	alive      []string
	aliveAt    time.Time
	leaseCount atomic.Uint64 // lease requests answered while leading
	// budgetLog keeps the budget controller's recent decisions.
	budgetLog  budgetLog
	leaderView leaderStatus // a copy of the leader's status, on other nodes

	startOnce    sync.Once
	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	wg           sync.WaitGroup
}

// New opens the Raft stores under cfg.DataDir/raft, binds the Raft
// transport and starts Raft (which restores any snapshot and rejoins its
// cluster) on a server; on a worker it only prepares the lease client.
// Call Start to begin, and Shutdown to stop.
func New(cfg Config) (*Server, error) {
	if cfg.Gossip == nil {
		return nil, errors.New("consensus: no gossip given")
	}
	if cfg.DataDir == "" && !cfg.Worker {
		return nil, errors.New("consensus: no data dir given")
	}
	if cfg.BootstrapExpect < 0 {
		return nil, fmt.Errorf("consensus: bootstrap-expect must be 0 or more, got %d", cfg.BootstrapExpect)
	}
	if cfg.Worker && cfg.BootstrapExpect > 0 {
		return nil, errors.New("consensus: only servers take bootstrap-expect")
	}
	if cfg.InitialLimits != nil {
		if err := cfg.InitialLimits.Validate(); err != nil {
			return nil, fmt.Errorf("consensus: initial limits: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}
	}
	if cfg.HTTPScheme == "" {
		cfg.HTTPScheme = "http"
	}
	cfg.Timing.setDefaults()
	s := &Server{
		cfg:         cfg,
		timing:      cfg.Timing,
		id:          cfg.Gossip.ID(),
		gossip:      cfg.Gossip,
		log:         cfg.Logger.With("node", cfg.Gossip.Name()),
		reconcileCh: make(chan struct{}, 1),
		shutdownCh:  make(chan struct{}),
		lease:       NewLease(InitialBaseline),
	}
	s.client = &leaseClient{s: s, http: cfg.HTTPClient, scheme: cfg.HTTPScheme, token: cfg.Token}
	if cfg.Worker {
		return s, nil
	}
	if err := s.open(); err != nil {
		s.closeStores()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	dir := filepath.Join(s.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("consensus: create raft dir: %w", err)
	}
	dbPath := filepath.Join(dir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        dbPath,
		BoltOptions: &bbolt.Options{Timeout: s.timing.BoltOpenTimeout},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("consensus: raft store %s is locked: is another batchpilot running with data dir %s? (%w)", dbPath, s.cfg.DataDir, err)
	}
	if err != nil {
		return fmt.Errorf("consensus: open raft store %s: %w", dbPath, err)
	}
	s.store = store
	rlog := newRaftLogger(s.cfg.Logger)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, rlog)
	if err != nil {
		return fmt.Errorf("consensus: open snapshot store: %w", err)
	}
	if s.hadState, err = raft.HasExistingState(store, store, snaps); err != nil {
		return fmt.Errorf("consensus: read raft state: %w", err)
	}
	advertise, err := s.advertiseAddr()
	if err != nil {
		return err
	}
	var trans *raft.NetworkTransport
	if s.cfg.TLS != nil {
		stream, err := newTLSStreamLayer(s.cfg.RaftAddr, advertise, s.cfg.TLS)
		if err != nil {
			return fmt.Errorf("consensus: raft TLS transport on %s: %w", s.cfg.RaftAddr, err)
		}
		trans = raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, rlog)
	} else {
		trans, err = raft.NewTCPTransportWithLogger(s.cfg.RaftAddr, advertise, 3, 10*time.Second, rlog)
		if err != nil {
			return fmt.Errorf("consensus: raft transport on %s: %w", s.cfg.RaftAddr, err)
		}
	}
	s.trans = trans
	s.raftAddr = string(trans.LocalAddr())

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.id)
	rc.Logger = rlog
	rc.HeartbeatTimeout = s.timing.HeartbeatTimeout
	rc.ElectionTimeout = s.timing.ElectionTimeout
	rc.LeaderLeaseTimeout = s.timing.LeaderLeaseTimeout
	rc.CommitTimeout = s.timing.CommitTimeout
	// A server removed while it was away must be able to come back: the
	// leader adds it again when gossip shows it alive.
	rc.ShutdownOnRemove = false
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("consensus: raft config: %w", err)
	}
	s.fsm = newFSM()
	r, err := raft.NewRaft(rc, s.fsm, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("consensus: start raft: %w", err)
	}
	s.raft = r
	s.pilot = autopilot.New(r, &pilotDelegate{s: s, lastOK: map[raft.ServerID]time.Time{}},
		autopilot.WithLogger(newRaftLogger(s.cfg.Logger).Named("autopilot")),
		autopilot.WithReconcileInterval(s.timing.ReconcileInterval),
		autopilot.WithUpdateInterval(s.timing.ReconcileInterval))
	s.publishRaft(0)
	return nil
}

// advertiseAddr is the address the other servers dial.
func (s *Server) advertiseAddr() (net.Addr, error) {
	if s.cfg.AdvertiseRaftAddr != "" {
		a, err := net.ResolveTCPAddr("tcp", s.cfg.AdvertiseRaftAddr)
		if err != nil {
			return nil, fmt.Errorf("consensus: advertise raft address %q: %w", s.cfg.AdvertiseRaftAddr, err)
		}
		return a, nil
	}
	host, port, err := net.SplitHostPort(s.cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("consensus: raft address %q: %w", s.cfg.RaftAddr, err)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return nil, nil // the bound address is advertisable
	}
	if port == "0" {
		return nil, fmt.Errorf("consensus: raft address %q binds all interfaces on a random port; give an advertise address", s.cfg.RaftAddr)
	}
	ghost, _, err := net.SplitHostPort(s.gossip.LocalMember().Addr)
	if err != nil || ghost == "" {
		return nil, fmt.Errorf("consensus: raft address %q binds all interfaces; give an advertise address", s.cfg.RaftAddr)
	}
	return net.ResolveTCPAddr("tcp", net.JoinHostPort(ghost, port))
}

// Start begins the background work: the lease client on every node; on a
// server also the bootstrap (when expected), the cluster id's gossip and
// the leader duties whenever it leads. Calling it again does nothing.
func (s *Server) Start() {
	s.startOnce.Do(func() {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.client.run(s.shutdownCh) }()
		if s.raft == nil {
			return
		}
		s.wg.Add(4)
		go s.bootstrapLoop()
		go s.clusterIDLoop()
		go s.watchMembers()
		go s.monitorLeadership()
	})
}

// IsServer reports whether this node runs Raft.
func (s *Server) IsServer() bool { return s.raft != nil }

// publishRaft gossips this server's Raft address and bootstrap state, with
// the hash of the server set it would bootstrap with (0: none).
func (s *Server) publishRaft(view uint64) {
	meta := cluster.RaftMeta{
		Addr:            s.raftAddr,
		BootstrapExpect: s.cfg.BootstrapExpect,
		HasState:        s.hadState || s.raft.LastIndex() > 0,
		BootstrapView:   view,
	}
	if meta.HasState {
		meta.BootstrapView = 0
	}
	if err := s.gossip.SetRaft(meta); err != nil {
		s.log.Error("cannot gossip raft state", "err", err)
	}
}

// clusterIDLoop gossips the cluster id once the FSM has one, and the Raft
// state once there is some.
func (s *Server) clusterIDLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.timing.ReconcileInterval)
	defer t.Stop()
	published := false
	for {
		if id := s.fsm.clusterID(); id != "" && !published {
			if err := s.gossip.SetClusterID(id); err != nil {
				s.log.Error("cannot gossip the cluster id", "err", err)
			} else {
				published = true
				s.publishRaft(0)
			}
		}
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
		}
	}
}

// bootstrapLoop bootstraps a new cluster once, when BootstrapExpect servers
// without Raft state agree on the same set (see bootstrapConfiguration). A
// node with Raft state, or one that sees a member with Raft state, never
// bootstraps: it is (or will be) part of that cluster.
func (s *Server) bootstrapLoop() {
	defer s.wg.Done()
	if s.cfg.BootstrapExpect == 0 || s.hadState {
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	lastWhy := ""
	var view string // the alive servers seen, and since when
	var viewSince time.Time
	var published uint64
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
		}
		if s.raft.LastIndex() > 0 {
			s.publishRaft(0)
			return // added to a cluster by its leader
		}
		if !s.gossip.Joined() {
			continue
		}
		members := s.gossip.Members()
		if v := aliveView(members); v != view {
			view, viewSince = v, time.Now()
		}
		settled := time.Since(viewSince) >= s.bootstrapSettle()
		cand, hash, ok, why := bootstrapConfiguration(s.id, s.cfg.BootstrapExpect, members, settled)
		if hash != published {
			s.publishRaft(hash)
			published = hash
		}
		if !ok {
			if why != lastWhy {
				s.log.Info("not bootstrapping yet", "reason", why)
				lastWhy = why
			}
			continue
		}
		s.log.Info("bootstrapping raft cluster", "servers", len(cand.Servers), "bootstrap_expect", s.cfg.BootstrapExpect)
		s.bootstrapped.Store(true)
		if err := s.raft.BootstrapCluster(cand).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			s.log.Error("bootstrap failed", "err", err)
		}
		s.publishRaft(0)
		return
	}
}

// bootstrapSettle is how long a node's view of the alive servers must stay
// the same before it bootstraps: long enough for gossip to have shown every
// expected server the same set and its agreement. A single node has no one
// to wait for.
func (s *Server) bootstrapSettle() time.Duration {
	if s.cfg.BootstrapExpect == 1 {
		return 0
	}
	return min(3*time.Second, 3*s.timing.ReconcileInterval)
}

// aliveView names the alive servers with a Raft address, in order.
func aliveView(members []cluster.Member) string {
	var ids []string
	for _, m := range members {
		if m.Status == cluster.StatusAlive && m.Role == cluster.RoleServer && m.ID != "" && m.Raft.Addr != "" {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// watchMembers asks the leader to reconcile at once when a member joins,
// leaves or fails, and autopilot to prune at once when a server announces
// its leave or leaves.
func (s *Server) watchMembers() {
	defer s.wg.Done()
	events, cancel := s.gossip.Subscribe(256)
	defer cancel()
	for {
		select {
		case <-s.shutdownCh:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Member.Role != cluster.RoleServer {
				continue
			}
			if ev.Member.Leaving || ev.Type == cluster.EventLeave {
				s.pilot.RemoveDeadServers() // prune it now, not at the next tick
			}
			if ev.Type != cluster.EventUpdate {
				select {
				case s.reconcileCh <- struct{}{}:
				default:
				}
			}
		}
	}
}

// ID is this node's id.
func (s *Server) ID() string { return s.id }

// RaftAddr is the advertised Raft address (with the chosen port); "" on a
// worker.
func (s *Server) RaftAddr() string { return s.raftAddr }

// IsLeader reports whether this node is the Raft leader now.
func (s *Server) IsLeader() bool { return s.raft != nil && s.raft.State() == raft.Leader }

// Leader returns the current leader's id, name and HTTP address as this node
// knows them; empty strings when there is none. A worker knows the leader
// from its last lease answer.
func (s *Server) Leader() (id, name, httpAddr string) {
	if s.raft == nil {
		ans, ok := s.client.answer()
		if !ok {
			return "", "", ""
		}
		return ans.Leader.ID, ans.Leader.Name, ans.Leader.HTTPAddr
	}
	_, lid := s.raft.LeaderWithID()
	if lid == "" {
		return "", "", ""
	}
	id = string(lid)
	if m, ok := s.member(id); ok {
		return id, m.Name, m.HTTPAddr
	}
	return id, "", ""
}

// LeaderHTTPAddr is the leader's HTTP API address, where the web layer
// forwards what must run on the leader; empty when unknown.
func (s *Server) LeaderHTTPAddr() string {
	_, _, addr := s.Leader()
	return addr
}

func (s *Server) member(id string) (cluster.Member, bool) {
	for _, m := range s.gossip.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// Term is this node's current Raft term (a worker: the epoch of its last
// lease answer).
func (s *Server) Term() uint64 {
	if s.raft == nil {
		ans, _ := s.client.answer()
		return ans.Epoch
	}
	return s.raft.CurrentTerm()
}

// Role is the Raft role of the server with the given id: "leader",
// "voter", "nonvoter" or "none" (not in the configuration, or a worker).
func (s *Server) Role(id string) string {
	cfg, err := s.configuration()
	if err != nil {
		return "none"
	}
	_, lid := s.raft.LeaderWithID()
	return roleIn(cfg, string(lid), id)
}

func roleIn(cfg raft.Configuration, leaderID, id string) string {
	for _, srv := range cfg.Servers {
		if string(srv.ID) != id {
			continue
		}
		switch {
		case id == leaderID && srv.Suffrage == raft.Voter:
			return "leader"
		case srv.Suffrage == raft.Voter:
			return "voter"
		default:
			return "nonvoter"
		}
	}
	return "none"
}

func (s *Server) configuration() (raft.Configuration, error) {
	if s.raft == nil {
		return raft.Configuration{}, errors.New("a worker has no raft configuration")
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}

// ClusterID is the id the first leader gave the cluster ("" until then).
func (s *Server) ClusterID() string {
	if s.raft == nil {
		return s.gossip.ClusterID()
	}
	return s.fsm.clusterID()
}

// Limits are the limits in force: a server's FSM has them; a worker has
// those of its last lease answer (the defaults before one).
func (s *Server) Limits() Limits {
	if s.raft == nil {
		if ans, ok := s.client.answer(); ok {
			return ans.Limits
		}
		return DefaultLimits()
	}
	return s.fsm.limits()
}

// Grant is this node's budget at now (pass time.Now()): its grant while its
// lease is fresh, the safe baseline otherwise. The node caps its in-flight
// batch bytes at it.
func (s *Server) Grant(now time.Time) (bytes int64, fresh bool) { return s.lease.Grant(now) }

// Lease is this node's lease on its grant.
func (s *Server) Lease() *Lease { return s.lease }

// LeaseAnswer is the last lease answer this node had, if any.
func (s *Server) LeaseAnswer() (LeaseAnswer, bool) { return s.client.answer() }

// LeaseRequests is how many lease requests this server answered as leader.
func (s *Server) LeaseRequests() uint64 { return s.leaseCount.Load() }

// aliveCacheFor is how long the leader reuses its list of alive members for
// lease requests: rebuilding it for every request costs a copy of the
// member table, which at a thousand members and hundreds of requests a
// second is most of the leader's work.
const aliveCacheFor = 250 * time.Millisecond

func (s *Server) aliveIDs(now time.Time) []string {
	s.aliveMu.Lock()
	defer s.aliveMu.Unlock()
	if s.alive != nil && now.Sub(s.aliveAt) < aliveCacheFor {
		return s.alive
	}
	ids := make([]string, 0, len(s.alive))
	for _, m := range s.gossip.Members() {
		if m.ID != "" && m.Status != cluster.StatusLeft {
			ids = append(ids, m.ID)
		}
	}
	s.alive, s.aliveAt = ids, now
	return ids
}

// RequestLease answers a lease request on the leader (ErrNotLeader
// elsewhere; the web layer forwards it). now is when it arrived.
func (s *Server) RequestLease(now time.Time, req LeaseRequest) (LeaseAnswer, error) {
	if err := req.Validate(); err != nil {
		return LeaseAnswer{}, err
	}
	t := s.table.Load()
	if t == nil || !s.IsLeader() {
		return LeaseAnswer{}, s.notLeader()
	}
	ans := t.Request(now, req, s.fsm.limits(), s.aliveIDs(now))
	s.leaseCount.Add(1)
	ans.ClusterID = s.fsm.clusterID()
	if m, ok := s.gossip.LocalMember(), true; ok {
		ans.Leader = LeaderInfo{ID: s.id, Name: m.Name, HTTPAddr: m.HTTPAddr}
	}
	return ans, nil
}

// ErrInvalidLease is wrapped by the errors of a malformed lease request.
var ErrInvalidLease = errors.New("invalid lease request")

// Validate checks a lease request from outside.
func (r LeaseRequest) Validate() error {
	switch {
	case r.ID == "" || len(r.ID) > 64:
		return fmt.Errorf("%w: id must be 1 to 64 bytes", ErrInvalidLease)
	case len(r.Name) > 128:
		return fmt.Errorf("%w: name is longer than 128 bytes", ErrInvalidLease)
	case r.Want < 0 || r.Has < 0:
		return fmt.Errorf("%w: want and has must not be negative (want %d, has %d)", ErrInvalidLease, r.Want, r.Has)
	case !r.Downstream.valid():
		return fmt.Errorf("%w: downstream figures must be rates between 0 and 1e12 (got %+v)", ErrInvalidLease, r.Downstream)
	}
	return nil
}

// Leases lists the lease table on the leader (nil elsewhere) and the sum
// of what the nodes may hold now.
func (s *Server) Leases(now time.Time) ([]LeaseState, int64) {
	t := s.table.Load()
	if t == nil {
		return nil, 0
	}
	return t.Snapshot(now)
}

// Learning reports whether this leader's lease table is in learning mode.
func (s *Server) Learning(now time.Time) bool {
	t := s.table.Load()
	return t != nil && t.Learning(now)
}

// NewRequestID returns a random request id for SetLimits.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SetLimits changes the limits and returns them as committed. It validates
// the patch against the limits in force first, so bad input gets a clear
// error (wrapping ErrInvalidLimits) on any node. It must then run on the
// leader: elsewhere it returns ErrNotLeader and the caller forwards the
// request to LeaderHTTPAddr. It returns once the change is committed and
// applied on the leader; followers apply it a heartbeat later.
//
// requestID makes the change idempotent: a request id that was already
// applied is a no-op. On ErrOutcomeUnknown, retry with the same id.
func (s *Server) SetLimits(ctx context.Context, patch LimitsPatch, requestID string) (Limits, error) {
	if patch.IsEmpty() {
		return Limits{}, fmt.Errorf("%w: no limit to change", ErrInvalidLimits)
	}
	if err := patch.Apply(s.Limits()).Validate(); err != nil {
		return Limits{}, err
	}
	if s.raft == nil {
		return Limits{}, s.notLeader()
	}
	if requestID == "" {
		requestID = NewRequestID()
	}
	if err := s.apply(ctx, command{Type: cmdSetLimits, RequestID: requestID, Patch: &patch}, s.timing.ApplyTimeout); err != nil {
		return Limits{}, err
	}
	return s.fsm.limits(), nil
}

// apply proposes a command and waits for it to be committed and applied
// here, for ctx, or for leadership to be lost.
func (s *Server) apply(ctx context.Context, c command, timeout time.Duration) error {
	select {
	case <-s.shutdownCh:
		return ErrShutdown
	default:
	}
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode command: %w", err)
	}
	f := s.raft.Apply(data, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, ctx.Err())
	}
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return s.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w (%v)", ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	default:
		return fmt.Errorf("raft apply: %w", err)
	}
	if resp, ok := f.Response().(*fsmResponse); ok && resp.err != nil {
		return resp.err
	}
	return nil
}

func (s *Server) notLeader() error {
	id, name, addr := s.Leader()
	if id == "" {
		return fmt.Errorf("%w: no leader is known", ErrNotLeader)
	}
	return fmt.Errorf("%w: the leader is %s (%s) at %s", ErrNotLeader, name, id, addr)
}

// Leave leaves the cluster gracefully within timeout. A leader hands its
// leadership to another voter first. A server then announces its leave in
// gossip and waits, still answering Raft, until the leader has removed it
// from Raft (autopilot prunes an announced leave at once, as a left
// server); only then does it leave gossip, with the last part of timeout
// kept for that. Removal before departure matters: a server that goes
// while still a voter counts against the quorum of those that stay (four
// voters, one of them just crashed: the leaver's departure would leave two
// of four). Call Shutdown afterwards.
func (s *Server) Leave(timeout time.Duration) error {
	if s.raft == nil {
		return s.gossip.Leave(timeout)
	}
	deadline := time.Now().Add(timeout)
	gossipDeadline := deadline.Add(-min(timeout/4, time.Second)) // the rest is gossip's leave
	cfg, err := s.configuration()
	if err == nil && len(cfg.Servers) > 1 && s.IsLeader() {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Warn("leadership transfer before leave failed; removing this server itself", "err", err)
			if err := s.raft.RemoveServer(raft.ServerID(s.id), 0, time.Until(gossipDeadline)).Error(); err != nil {
				s.log.Warn("could not remove this server from raft", "err", err)
			}
		}
	}
	var removeErr error
	if err == nil && len(cfg.Servers) > 1 && roleIn(cfg, "", s.id) != "none" {
		if err := s.gossip.AnnounceLeave(max(time.Until(gossipDeadline), time.Millisecond)); err != nil {
			s.log.Warn("announcing the leave failed", "err", err)
		}
		if !s.waitRemoved(gossipDeadline) {
			removeErr = fmt.Errorf("consensus: leave: not removed from raft within %s", timeout)
		}
	}
	gossipErr := s.gossip.Leave(max(time.Until(deadline), time.Millisecond))
	return errors.Join(gossipErr, removeErr)
}

// waitRemoved polls this server's Raft configuration until it is no longer
// in it (true), or deadline (false).
func (s *Server) waitRemoved(deadline time.Time) bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		cfg, err := s.configuration()
		if err == nil && roleIn(cfg, "", s.id) == "none" {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		<-t.C
	}
}

// Shutdown stops Raft and closes the stores. Without Leave first, the
// others see this node fail. Safe to call more than once.
func (s *Server) Shutdown() error {
	var err error
	s.shutdownOnce.Do(func() {
		close(s.shutdownCh)
		if s.raft != nil {
			err = s.raft.Shutdown().Error()
		}
		s.wg.Wait()
		if cerr := s.closeStores(); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

func (s *Server) closeStores() error {
	var errs []error
	if s.trans != nil {
		errs = append(errs, s.trans.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}

// RaftStats is what a server tells the leader's autopilot about its Raft:
// the body of GET /api/v1/raft/stats.
type RaftStats struct {
	LastContactMS int64  `json:"last_contact_ms"` // since the leader's last contact; 0 on the leader, -1 never
	LastTerm      uint64 `json:"last_term"`
	LastIndex     uint64 `json:"last_index"`
}

// RaftStats describes this server's Raft for the leader's autopilot.
func (s *Server) RaftStats() (RaftStats, error) {
	if s.raft == nil {
		return RaftStats{}, errors.New("a worker runs no raft")
	}
	st := RaftStats{LastTerm: s.raft.CurrentTerm(), LastIndex: s.raft.LastIndex()}
	if s.IsLeader() {
		return st, nil
	}
	lc := s.raft.LastContact()
	if lc.IsZero() {
		st.LastContactMS = -1
	} else {
		st.LastContactMS = time.Since(lc).Milliseconds()
	}
	return st, nil
}
