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
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchpilot/batchpilot/cluster"
	"github.com/hashicorp/raft"
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
	// Subscribe delivers membership events; it may drop them when full.
	Subscribe(buf int) (<-chan cluster.Event, func())
	// SetRaft gossips this node's Raft address and progress.
	SetRaft(cluster.RaftMeta) error
	// Joined reports whether the node has reached a member it was told
	// to join; a node does not bootstrap before that.
	Joined() bool
	// Leave announces a graceful leave.
	Leave(timeout time.Duration) error
}

var _ Gossip = (*cluster.Cluster)(nil)

// Config configures a Server.
type Config struct {
	// DataDir is the node's data dir; Raft keeps its log, stable store and
	// snapshots under DataDir/raft.
	DataDir string
	// RaftAddr is the Raft bind address, host:port (port 0 picks one).
	RaftAddr string
	// AdvertiseRaftAddr is the address the other servers dial; by default
	// RaftAddr, with the gossip advertise host when RaftAddr binds 0.0.0.0.
	AdvertiseRaftAddr string
	// BootstrapExpect is --bootstrap-expect: the number of servers to see
	// in gossip before bootstrapping a new cluster (1 for a single node).
	// 0 means never bootstrap: wait to be added to an existing cluster.
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
	// ReconcileInterval is the period of the leader's full membership
	// reconcile and of the node's Raft progress gossip (default 1s).
	ReconcileInterval time.Duration
	// StableFor is how long a member is alive before it is promoted to
	// voter (default 10s).
	StableFor time.Duration
	// DeadGrace is how long a member is dead before it is removed from
	// Raft (default 30s).
	DeadGrace time.Duration
	// MaxLag is how many entries a server may trail the leader and still
	// be promoted (default 250).
	MaxLag uint64
	// MaxVoters is the most voters the cluster has (default 5).
	MaxVoters int
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

// Server is one node's Raft member: its FSM (limits and allocations), its
// stores, its bootstrap, and, while it leads, the membership reconcile and
// budget epochs. Every node runs one; every node has the FSM.
//
// All methods are safe for concurrent use.
type Server struct {
	cfg    Config
	timing Timing
	log    *slog.Logger
	id     string
	gossip Gossip

	fsm   *fsm
	lease *Lease
	raft  *raft.Raft
	trans *raft.NetworkTransport
	store *raftboltdb.BoltStore

	raftAddr     string
	hadState     bool
	bootstrapped atomic.Bool // this node called BootstrapCluster
	reconcileCh  chan struct{}
	epochCommit  atomic.Int64 // the last epoch's commit time, ns, on the leader

	startOnce    sync.Once
	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	wg           sync.WaitGroup
}

// New opens the Raft stores under cfg.DataDir/raft, binds the Raft
// transport and starts Raft (which restores any snapshot and rejoins its
// cluster). It gossips the Raft address. Call Start to begin bootstrap and
// the leader duties, and Shutdown to stop.
func New(cfg Config) (*Server, error) {
	if cfg.Gossip == nil {
		return nil, errors.New("consensus: no gossip given")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("consensus: no data dir given")
	}
	if cfg.BootstrapExpect < 0 {
		return nil, fmt.Errorf("consensus: bootstrap-expect must be 0 or more, got %d", cfg.BootstrapExpect)
	}
	if cfg.InitialLimits != nil {
		if err := cfg.InitialLimits.Validate(); err != nil {
			return nil, fmt.Errorf("consensus: initial limits: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
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
	s.lease = NewLease(DefaultLimits().NodeFloorBytes)
	s.fsm = newFSM(s.id, s.lease, time.Now)
	r, err := raft.NewRaft(rc, s.fsm, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("consensus: start raft: %w", err)
	}
	s.raft = r
	s.publishProgress()
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

// Start begins the background work: bootstrap (when expected), the Raft
// progress gossip, and the leader duties whenever this node leads. Calling
// it again does nothing.
func (s *Server) Start() {
	s.startOnce.Do(func() {
		s.wg.Add(4)
		go s.bootstrapLoop()
		go s.progressLoop()
		go s.watchMembers()
		go s.monitorLeadership()
	})
}

// publishProgress gossips this node's Raft address and progress.
func (s *Server) publishProgress() {
	meta := cluster.RaftMeta{
		Addr:            s.raftAddr,
		BootstrapExpect: s.cfg.BootstrapExpect,
		HasState:        s.hadState || s.raft.LastIndex() > 0,
		AppliedIndex:    s.raft.AppliedIndex(),
		Term:            s.raft.CurrentTerm(),
	}
	if err := s.gossip.SetRaft(meta); err != nil {
		s.log.Error("cannot gossip raft state", "err", err)
	}
}

func (s *Server) progressLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.timing.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
			s.publishProgress()
		}
	}
}

// bootstrapLoop bootstraps a new cluster once, when BootstrapExpect servers
// without Raft state are alive in gossip. A node with Raft state, or one
// that sees a member with Raft state, never bootstraps: it is (or will be)
// part of that cluster.
func (s *Server) bootstrapLoop() {
	defer s.wg.Done()
	if s.cfg.BootstrapExpect == 0 || s.hadState {
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	lastWhy := ""
	var view string // the alive members seen, and since when
	var viewSince time.Time
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
		}
		if s.raft.LastIndex() > 0 {
			return // added to a cluster by its leader
		}
		if !s.gossip.Joined() {
			continue
		}
		members := s.gossip.Members()
		if v := aliveView(members); v != view {
			view, viewSince = v, time.Now()
		}
		settled := time.Since(viewSince) >= bootstrapSettle
		cfg, ok, why := bootstrapConfiguration(s.id, s.cfg.BootstrapExpect, members, settled)
		if !ok {
			if why != lastWhy {
				s.log.Info("not bootstrapping yet", "reason", why)
				lastWhy = why
			}
			continue
		}
		s.log.Info("bootstrapping raft cluster", "servers", len(cfg.Servers), "bootstrap_expect", s.cfg.BootstrapExpect)
		s.bootstrapped.Store(true)
		if err := s.raft.BootstrapCluster(cfg).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			s.log.Error("bootstrap failed", "err", err)
		}
		s.publishProgress()
		return
	}
}

// bootstrapSettle is how long a node's view of the alive members must stay
// the same before, seeing more servers than expected, it bootstraps with the
// ones with the lowest ids: long enough for gossip to have shown every node
// the same members.
const bootstrapSettle = 3 * time.Second

// aliveView names the alive members with a Raft address, in order.
func aliveView(members []cluster.Member) string {
	var ids []string
	for _, m := range members {
		if m.Status == cluster.StatusAlive && m.ID != "" && m.Raft.Addr != "" {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// watchMembers asks the leader to reconcile at once when a member joins,
// leaves or fails (health updates wait for the periodic reconcile).
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

// RaftAddr is the advertised Raft address (with the chosen port).
func (s *Server) RaftAddr() string { return s.raftAddr }

// IsLeader reports whether this node is the Raft leader now.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the current leader's id, name and HTTP address as this node
// knows them; empty strings when there is none.
func (s *Server) Leader() (id, name, httpAddr string) {
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

// Term is this node's current Raft term.
func (s *Server) Term() uint64 { return s.raft.CurrentTerm() }

// Role is the Raft role of the server with the given id: "leader",
// "voter", "nonvoter" or "none" (not in the configuration).
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
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}

// ClusterID is the id the first leader gave the cluster ("" until then).
func (s *Server) ClusterID() string { return s.fsm.clusterID() }

// Limits are the limits in force, as this node's FSM has them.
func (s *Server) Limits() Limits { return s.fsm.limits() }

// Allocation is the latest budget epoch this node's FSM has applied.
func (s *Server) Allocation() Allocation { return s.fsm.allocation() }

// Grant is this node's budget at now (pass time.Now()): its grant while its
// lease is fresh, the safe baseline (the per-node floor) otherwise. The node
// caps its in-flight batch bytes at it.
func (s *Server) Grant(now time.Time) (bytes int64, fresh bool) { return s.lease.Grant(now) }

// Lease is this node's lease on its grant.
func (s *Server) Lease() *Lease { return s.lease }

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
	if err := patch.Apply(s.fsm.limits()).Validate(); err != nil {
		return Limits{}, err
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

// Leave leaves the cluster gracefully within timeout: a leader hands its
// leadership to another voter first, then the node announces its leave in
// gossip and waits until the leader has removed it from Raft. Call Shutdown
// afterwards.
func (s *Server) Leave(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cfg, err := s.configuration()
	if err == nil && len(cfg.Servers) > 1 && s.IsLeader() {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Warn("leadership transfer before leave failed; removing this server itself", "err", err)
			if err := s.raft.RemoveServer(raft.ServerID(s.id), 0, time.Until(deadline)).Error(); err != nil {
				s.log.Warn("could not remove this server from raft", "err", err)
			}
		}
	}
	gossipErr := s.gossip.Leave(max(time.Until(deadline), time.Millisecond))
	if err != nil || len(cfg.Servers) <= 1 || roleIn(cfg, "", s.id) == "none" {
		return gossipErr
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for time.Now().Before(deadline) {
		cfg, err := s.configuration()
		if err == nil && roleIn(cfg, "", s.id) == "none" {
			return gossipErr
		}
		<-t.C
	}
	return errors.Join(gossipErr, fmt.Errorf("consensus: leave: not removed from raft within %s", timeout))
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

// EpochCommitTime is how long the leader's last budget epoch took to commit
// (zero on followers and before the first epoch).
func (s *Server) EpochCommitTime() time.Duration { return time.Duration(s.epochCommit.Load()) }

func formatEpochID(leader string, epoch uint64) string {
	return "epoch/" + leader + "/" + strconv.FormatUint(epoch, 10)
}
