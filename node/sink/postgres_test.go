package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The tests in this file that need a database run against the real
// PostgreSQL server named by BATCHPILOT_TEST_PG_DSN, a superuser DSN (CI
// starts one with .ci/postgres.sh). Each test writes to tables of its own
// and drops them at the end, so they run in parallel.

const pgDSNEnv = "BATCHPILOT_TEST_PG_DSN"

// testPGDSN returns the test server's DSN. Without one the test fails in CI
// (CI set) and is skipped elsewhere.
func testPGDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(pgDSNEnv)
	if dsn != "" {
		return dsn
	}
	const how = `start a throwaway server with: eval "$(.ci/postgres.sh start)"`
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("%s is not set, and CI must test the postgres sink against a real server; %s", pgDSNEnv, how)
	}
	t.Skipf("%s is not set; %s", pgDSNEnv, how)
	return ""
}

// pgEnv is one test's view of the test server: an admin connection and a
// way to build DSNs for the sink under test.
type pgEnv struct {
	t     testing.TB
	cfg   *pgconn.Config // the test server's address and login
	admin *pgx.Conn
	app   string // application_name of this test's sinks
}

func newPGEnv(t testing.TB) *pgEnv {
	t.Helper()
	dsn := testPGDSN(t)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("%s: %v", pgDSNEnv, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	return &pgEnv{t: t, cfg: cfg, admin: admin, app: fmt.Sprintf("bp-test-%x", rand.Uint64())}
}

// dsn is a DSN for the sink under test that reaches the server at addr
// ("" for the server's own address) and names this test's application.
func (e *pgEnv) dsn(addr string) string {
	return e.dsnAs(addr, e.cfg.User, e.cfg.Password)
}

func (e *pgEnv) dsnAs(addr, user, password string) string {
	if addr == "" {
		addr = net.JoinHostPort(e.cfg.Host, strconv.Itoa(int(e.cfg.Port)))
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     addr,
		Path:     "/" + e.cfg.Database,
		RawQuery: url.Values{"sslmode": {"disable"}, "application_name": {e.app}}.Encode(),
	}
	return u.String()
}

// table returns a fresh table name, dropped when the test ends.
func (e *pgEnv) table() string {
	name := fmt.Sprintf("bp_test_%x", rand.Uint64())
	e.t.Cleanup(func() { e.exec("DROP TABLE IF EXISTS " + pgx.Identifier{name}.Sanitize()) })
	return name
}

func (e *pgEnv) exec(sql string, args ...any) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.admin.Exec(ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *pgEnv) queryInt(sql string, args ...any) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := e.admin.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// count is the number of rows in table, and of distinct record ids.
func (e *pgEnv) count(table string) (rows, ids int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := "SELECT count(*), count(DISTINCT record_id) FROM " + pgx.Identifier{table}.Sanitize()
	if err := e.admin.QueryRow(ctx, q).Scan(&rows, &ids); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return rows, ids
}

// backends is the number of this test's sessions on the server; waiting
// says how many of them wait for a lock.
func (e *pgEnv) backends() (all, waiting int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock')
		FROM pg_stat_activity WHERE application_name = $1`, e.app).Scan(&all, &waiting); err != nil {
		e.t.Fatal(err)
	}
	return all, waiting
}

// lockTable holds a lock on table that makes COPY into it wait, until the
// returned function is called (or the test ends).
func (e *pgEnv) lockTable(table string) (release func()) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dsn(""))
	if err != nil {
		e.t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{table}.Sanitize()+" IN SHARE MODE"); err != nil {
		e.t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			tx.Rollback(ctx)
			conn.Close(ctx)
		})
	}
	e.t.Cleanup(release)
	return release
}

func newPostgres(t testing.TB, cfg PostgresConfig) *Postgres {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 10 * time.Millisecond
	}
	s, err := NewPostgres(cfg)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func writePG(t *testing.T, s *Postgres, b *Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Write(ctx, b); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// nodeBatch is n records shaped as the node hands them to a sink.
func nodeBatch(tag string, n int) *Batch {
	b := &Batch{}
	for i := range n {
		r := fmt.Appendf(nil, `{"id":"%s-%d","msg":"hello","_node":"n1","_received_at":"%s","_source":"http"}`,
			tag, i, time.Now().UTC().Format(time.RFC3339Nano))
		b.Records = append(b.Records, r)
		b.Bytes += len(r)
	}
	return b
}

func recordsBatch(recs ...string) *Batch {
	b := &Batch{}
	for _, r := range recs {
		b.Records = append(b.Records, []byte(r))
		b.Bytes += len(r)
	}
	return b
}

func TestPostgresWritesEachBatchOnceWithItsFields(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: table})

	if n := e.queryInt("SELECT count(*) FROM pg_indexes WHERE tablename = $1", table); n != 3 {
		t.Errorf("the new table has %d indexes, want 3 (primary key, received_at, record_id)", n)
	}
	before := time.Now()
	recs := []string{
		`{"id":"r-1","msg":"hello","_node":"n1","_received_at":"2025-01-02T03:04:05.123456789Z","_source":"http"}`,
		`{"id":42,"nested":{"id":"inner","_node":"x"},"arr":[1,"]}"],"_node":"n1","_received_at":"2025-01-02T03:04:06Z","_source":"syslog"}`,
		`{"msg":"no id","esc":"tab\there \"q\" \u00e9","_node":"n\u00f6de","_received_at":"2025-01-02T03:04:07Z","_source":"http"}`,
		` { "id" : "first" , "id" : "last" , "_node" : "n2" , "_received_at" : "2025-01-02T03:04:08Z" , "_source" : "http" } `,
		`{"id":null,"msg":"from elsewhere: no node fields"}`,
		`{}`,
	}
	writePG(t, s, recordsBatch(recs...))
	after := time.Now()

	type row struct {
		at                   time.Time
		node, source, ident  *string
		record               string
		recordIDFromTheJSONB *string
	}
	ctx := context.Background()
	rs, err := e.admin.Query(ctx, `SELECT received_at, node, source, record_id, record::text, record->>'id'
		FROM `+pgx.Identifier{table}.Sanitize()+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.at, &r.node, &r.source, &r.ident, &r.record, &r.recordIDFromTheJSONB); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d rows, want %d (each record exactly once)", len(got), len(recs))
	}
	str := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return *p
	}
	want := []struct {
		at                  string // "" = the write's own time
		node, source, ident string
	}{
		{"2025-01-02T03:04:05.123456Z", "n1", "http", "r-1"}, // timestamptz keeps microseconds
		{"2025-01-02T03:04:06Z", "n1", "syslog", "42"},
		{"2025-01-02T03:04:07Z", "nöde", "http", "NULL"},
		{"2025-01-02T03:04:08Z", "n2", "http", "last"}, // as jsonb: the last of duplicate keys
		{"", "NULL", "NULL", "NULL"},
		{"", "NULL", "NULL", "NULL"},
	}
	for i, w := range want {
		g := got[i]
		if w.at == "" {
			if g.at.Before(before.Truncate(time.Microsecond)) || g.at.After(after) {
				t.Errorf("row %d: received_at %v, want the write's time, within [%v, %v]", i, g.at, before, after)
			}
		} else if wt, _ := time.Parse(time.RFC3339Nano, w.at); !g.at.Equal(wt) {
			t.Errorf("row %d: received_at %v, want %v", i, g.at.UTC(), wt)
		}
		if str(g.node) != w.node || str(g.source) != w.source || str(g.ident) != w.ident {
			t.Errorf("row %d: node, source, record_id = %s, %s, %s; want %s, %s, %s",
				i, str(g.node), str(g.source), str(g.ident), w.node, w.source, w.ident)
		}
		if str(g.ident) != str(g.recordIDFromTheJSONB) {
			t.Errorf("row %d: record_id %s but record->>'id' %s", i, str(g.ident), str(g.recordIDFromTheJSONB))
		}
		var in, out any
		if err := json.Unmarshal([]byte(recs[i]), &in); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(g.record), &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Errorf("row %d: record %s, want %s", i, g.record, recs[i])
		}
	}

	writePG(t, s, nodeBatch("second", 50))
	if rows, _ := e.count(table); rows != len(recs)+50 {
		t.Errorf("after a second batch: %d rows, want %d", rows, len(recs)+50)
	}
	st := s.Stats()
	if st.Batches != 2 || st.Records != uint64(len(recs)+50) || st.Attempts != 2 || st.Retries != 0 || st.Failures != 0 {
		t.Errorf("stats %+v, want 2 batches of %d records in 2 attempts", st, len(recs)+50)
	}
}

func TestPostgresCreatesTheTableOnceWhenNodesStartTogether(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	schema := fmt.Sprintf("bp_test_schema_%x", rand.Uint64())
	e.exec("CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize())
	t.Cleanup(func() { e.exec("DROP SCHEMA " + pgx.Identifier{schema}.Sanitize() + " CASCADE") })
	table := schema + ".Logs Table" // schema-qualified, and a name that needs quoting

	const nodes = 6
	sinks := make([]*Postgres, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			sinks[i], errs[i] = NewPostgres(PostgresConfig{DSN: e.dsn(""), Table: table, Logger: discardLogger})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: NewPostgres: %v", i, err)
		}
		t.Cleanup(func() { sinks[i].Close() })
	}
	for i, s := range sinks {
		writePG(t, s, nodeBatch(fmt.Sprint("node", i), 3))
	}
	if n := e.queryInt(`SELECT count(*) FROM ` + pgx.Identifier{schema, "Logs Table"}.Sanitize()); n != nodes*3 {
		t.Errorf("%d rows, want %d", n, nodes*3)
	}
	if n := e.queryInt("SELECT count(*) FROM pg_indexes WHERE schemaname = $1", schema); n != 3 {
		t.Errorf("%d indexes, want 3", n)
	}
}

func TestPostgresCreatesTheTableAgainWhenItIsDropped(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: table})
	writePG(t, s, nodeBatch("a", 5))
	e.exec("DROP TABLE " + pgx.Identifier{table}.Sanitize())
	writePG(t, s, nodeBatch("b", 7))
	if rows, _ := e.count(table); rows != 7 {
		t.Errorf("%d rows, want the 7 written after the drop", rows)
	}
}

// pgProxy forwards TCP connections from a fixed 127.0.0.1 port to the test
// server. The test takes the database away (the port refuses connections
// and open ones break) and brings it back on the same port, and can cut a
// connection around its next COMMIT.
type pgProxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}

	// cut says what happens to the next COMMIT: "before" drops the
	// connection instead of passing it on; "after" passes it on and drops
	// the connection when the server answers, unanswered.
	cut atomic.Value
}

// newPGProxy returns a proxy to the test server, up unless down.
func newPGProxy(t *testing.T, e *pgEnv, down bool) *pgProxy {
	p := &pgProxy{t: t, target: net.JoinHostPort(e.cfg.Host, strconv.Itoa(int(e.cfg.Port))), conns: map[net.Conn]struct{}{}}
	p.cut.Store("")
	p.addr = deadPort(t)
	if !down {
		p.up()
	}
	t.Cleanup(p.down)
	return p
}

func (p *pgProxy) up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listen on %s again: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
}

// down closes the port and every connection through it.
func (p *pgProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *pgProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// commitMsg is the simple-protocol Query message "COMMIT".
var commitMsg = []byte("Q\x00\x00\x00\x0bCOMMIT\x00")

func (p *pgProxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	closeBoth := func() { client.Close(); server.Close() }
	var swallow atomic.Bool // the answer to a COMMIT is to be lost
	go func() {
		defer closeBoth()
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if swallow.Load() {
				return
			}
			if n > 0 {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer closeBoth()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if bytes.Contains(chunk, commitMsg) {
				switch mode := p.cut.Load().(string); {
				case mode == "before" && p.cut.CompareAndSwap(mode, ""):
					return
				case mode == "after" && p.cut.CompareAndSwap(mode, ""):
					swallow.Store(true)
				}
			}
			if _, werr := server.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestPostgresDatabaseDownFailsAfterBoundedRetriesThenRecovers(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	px := newPGProxy(t, e, false)
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(px.addr), Table: table, MaxRetries: 2, Timeout: 5 * time.Second})
	writePG(t, s, nodeBatch("before", 10))

	px.down()
	attempts := s.Stats().Attempts
	err := s.Write(context.Background(), nodeBatch("while-down", 10))
	if err == nil {
		t.Fatal("Write while the database is down: no error")
	}
	if got := s.Stats().Attempts - attempts; got != 3 {
		t.Errorf("%d attempts, want 3 (MaxRetries 2)", got)
	}
	if !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("error %q does not say it gave up after 3 attempts", err)
	}
	if errors.Is(err, ErrBackpressure) || errors.Is(err, ErrBadRecord) {
		t.Errorf("a refused connection is neither backpressure nor bad data: %v", err)
	}
	if err := s.Ready(context.Background()); err == nil {
		t.Error("Ready while the database is down: nil")
	}

	px.up()
	writePG(t, s, nodeBatch("after", 10))
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("Ready after recovery: %v", err)
	}
	rows, ids := e.count(table)
	if rows != 20 || ids != 20 {
		t.Errorf("%d rows with %d ids, want the 20 of the batches that succeeded, once each", rows, ids)
	}
	if n := e.queryInt("SELECT count(*) FROM " + pgx.Identifier{table}.Sanitize() + " WHERE record_id LIKE 'while-down-%'"); n != 0 {
		t.Errorf("%d rows of the failed batch were stored", n)
	}
}

func TestPostgresBatchWaitsOutAShortOutageWithinItsRetries(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	px := newPGProxy(t, e, false)
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(px.addr), Table: table, MaxRetries: 1000, BackoffMax: 10 * time.Millisecond})
	writePG(t, s, nodeBatch("warm", 1)) // the pool holds a connection that the outage breaks

	px.down()
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), nodeBatch("outage", 25)) }()
	waitFor(t, "two retries", func() bool { return s.Stats().Retries >= 2 })
	px.up()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Write across the outage: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Write did not return within 30s of the database coming back")
	}
	if rows, ids := e.count(table); rows != 26 || ids != 26 {
		t.Errorf("%d rows with %d ids, want 26, once each", rows, ids)
	}
}

func TestPostgresStartsWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	px := newPGProxy(t, e, true)
	log := &syncBuffer{}
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(px.addr), Table: table, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if !strings.Contains(log.String(), "not reachable yet") {
		t.Errorf("no warning that the database is not reachable; log: %s", log)
	}
	if err := s.Ready(context.Background()); err == nil {
		t.Error("Ready with the database down: nil")
	}
	px.up()
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("Ready once the database is up: %v", err)
	}
	writePG(t, s, nodeBatch("late", 4))
	if rows, _ := e.count(table); rows != 4 {
		t.Errorf("%d rows, want 4", rows)
	}
}

func TestPostgresRetriesABatchWhoseSessionWasTerminated(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: table})
	release := e.lockTable(table)

	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), nodeBatch("terminated", 30)) }()
	waitFor(t, "the COPY to wait for the lock", func() bool { _, w := e.backends(); return w == 1 })
	// What a server shutdown or an operator does: FATAL 57P01 admin_shutdown
	// in the middle of the COPY.
	if n := e.queryInt(`SELECT count(*) FROM pg_stat_activity, pg_terminate_backend(pid)
		WHERE application_name = $1 AND wait_event_type = 'Lock'`, e.app); n != 1 {
		t.Fatalf("terminated %d sessions, want 1", n)
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Write did not return")
	}
	if rows, ids := e.count(table); rows != 30 || ids != 30 {
		t.Errorf("%d rows with %d ids, want 30, once each", rows, ids)
	}
	if st := s.Stats(); st.Retries != 1 || st.Batches != 1 {
		t.Errorf("stats %+v, want one batch after one retry", st)
	}
}

func TestPostgresLostCommitAnswerStoresTheBatchOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		cut         string
		wantRetries uint64
	}{
		{"the server committed and its answer was lost: no retry", "after", 0},
		{"the connection broke before the COMMIT arrived: the server rolled back, the sink retries", "before", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newPGEnv(t)
			table := e.table()
			px := newPGProxy(t, e, false)
			s := newPostgres(t, PostgresConfig{DSN: e.dsn(px.addr), Table: table, MaxRetries: 20, BackoffMax: 20 * time.Millisecond})
			px.cut.Store(tc.cut)
			writePG(t, s, nodeBatch("commit", 40))
			if px.cut.Load() != "" {
				t.Fatal("the proxy never saw the COMMIT")
			}
			if rows, ids := e.count(table); rows != 40 || ids != 40 {
				t.Errorf("%d rows with %d ids, want 40, once each", rows, ids)
			}
			if st := s.Stats(); st.LostCommitAnswers != 1 || st.Retries != tc.wantRetries || st.Batches != 1 {
				t.Errorf("stats %+v, want 1 lost commit answer, %d retries, 1 batch", st, tc.wantRetries)
			}
		})
	}
}

func TestPostgresTooManyConnectionsIsBackpressure(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	if e.queryInt("SELECT rolsuper::int FROM pg_roles WHERE rolname = current_user") != 1 {
		t.Skip("needs a superuser DSN to create a role")
	}
	role := fmt.Sprintf("bp_test_role_%x", rand.Uint64())
	password := fmt.Sprintf("pw%x", rand.Uint64())
	// A role may hold no connection at all: every login fails with 53300
	// too_many_connections, as a server at max_connections answers.
	e.exec(fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' CONNECTION LIMIT 0", pgx.Identifier{role}.Sanitize(), password))
	t.Cleanup(func() { e.exec("DROP ROLE " + pgx.Identifier{role}.Sanitize()) })

	s := newPostgres(t, PostgresConfig{DSN: e.dsnAs("", role, password), Table: e.table(), MaxRetries: 2})
	err := s.Write(context.Background(), nodeBatch("refused", 3))
	if !errors.Is(err, ErrBackpressure) {
		t.Fatalf("Write: %v; want an error that matches ErrBackpressure", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Errorf("error %v does not hold the server's 53300", err)
	}
	if st := s.Stats(); st.Attempts != 3 || st.Failures != 1 {
		t.Errorf("stats %+v, want 3 attempts and 1 failure", st)
	}
}

func TestNewPostgresFailsFastWhenTheLoginIsRefused(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	const wrong = "not-the-password-x7"
	_, err := NewPostgres(PostgresConfig{DSN: e.dsnAs("", e.cfg.User, wrong), Table: e.table(), Logger: discardLogger})
	if err == nil {
		t.Fatal("NewPostgres with a wrong password: no error")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("error %v does not hold the server's 28P01 invalid_password", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestPostgresRefusesBadRecordsAtOnceAndStoresNothingOfTheBatch(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: table, MaxRetries: 5})
	good := `{"id":"good","_node":"n1","_received_at":"2025-01-02T03:04:05Z","_source":"http"}`
	for _, tc := range []struct {
		name, record string
		attempts     uint64 // 0: refused by the sink; 1: by the server
		where        string // in the error: which record
	}{
		{"not JSON", `hello`, 0, "record 1 of 3"},
		{"an array", `[1,2]`, 0, "record 1 of 3"},
		{"data after the object", `{"a":1} x`, 0, "record 1 of 3"},
		{"a string with \\u0000", `{"msg":"a\u0000b"}`, 0, "record 1 of 3"},
		{"broken JSON inside", `{"a":[1,,2]}`, 1, "line 2"},
		{"a lone surrogate", `{"msg":"\ud800"}`, 1, "line 2"},
		{"invalid UTF-8", "{\"msg\":\"\xff\xfe\"}", 1, "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			err := s.Write(context.Background(), recordsBatch(good, tc.record, good))
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("Write: %v; want an error that matches ErrBadRecord", err)
			}
			if errors.Is(err, ErrBackpressure) {
				t.Errorf("bad data is not backpressure: %v", err)
			}
			if !strings.Contains(err.Error(), tc.where) {
				t.Errorf("error %q does not say %q", err, tc.where)
			}
			if got := s.Stats().Attempts - before.Attempts; got != tc.attempts {
				t.Errorf("%d attempts, want %d (bad data is not retried)", got, tc.attempts)
			}
			if rows, _ := e.count(table); rows != 0 {
				t.Errorf("%d rows stored of a refused batch", rows)
			}
		})
	}
	writePG(t, s, recordsBatch(good)) // the sink goes on working
	if rows, _ := e.count(table); rows != 1 {
		t.Errorf("%d rows, want 1", rows)
	}
}

func TestPostgresConcurrentWritesStoreEveryRecordOnce(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	table := e.table()
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: table})
	const writers, batches, perBatch = 8, 20, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				if err := s.Write(context.Background(), nodeBatch(fmt.Sprintf("w%d-b%d", w, b), perBatch)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Write: %v", err)
	}
	const total = writers * batches * perBatch
	if rows, ids := e.count(table); rows != total || ids != total {
		t.Errorf("%d rows with %d ids, want %d, once each", rows, ids, total)
	}
	if st := s.Stats(); st.Batches != writers*batches || st.Records != total {
		t.Errorf("stats %+v, want %d batches of %d records", st, writers*batches, total)
	}
}

func TestPostgresCancellation(t *testing.T) {
	t.Parallel()
	t.Run("an ended context writes nothing", func(t *testing.T) {
		t.Parallel()
		e := newPGEnv(t)
		s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: e.table()})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Write(ctx, nodeBatch("x", 1)); !errors.Is(err, context.Canceled) {
			t.Errorf("Write: %v; want context.Canceled", err)
		}
		if st := s.Stats(); st.Attempts != 0 {
			t.Errorf("%d attempts, want 0", st.Attempts)
		}
	})
	t.Run("cancelling a COPY that waits returns at once and stores nothing", func(t *testing.T) {
		t.Parallel()
		e := newPGEnv(t)
		table := e.table()
		s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: table})
		release := e.lockTable(table)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Write(ctx, nodeBatch("cancelled", 20)) }()
		waitFor(t, "the COPY to wait for the lock", func() bool { _, w := e.backends(); return w == 1 })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Write: %v; want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Write did not return after its context was cancelled")
		}
		release()
		waitFor(t, "the cancelled session to end", func() bool { n, _ := e.backends(); return n == 0 })
		if rows, _ := e.count(table); rows != 0 {
			t.Errorf("%d rows stored by a cancelled Write", rows)
		}
	})
	t.Run("a deadline sooner than the next retry ends the retries", func(t *testing.T) {
		t.Parallel()
		e := newPGEnv(t)
		px := newPGProxy(t, e, true)
		s := newPostgres(t, PostgresConfig{DSN: e.dsn(px.addr), Table: e.table(), BackoffBase: time.Hour, BackoffMax: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := s.Write(ctx, nodeBatch("x", 1))
		if err == nil || !strings.Contains(err.Error(), "after the deadline") {
			t.Errorf("Write: %v; want it to give up before the deadline", err)
		}
		if st := s.Stats(); st.Attempts != 1 {
			t.Errorf("%d attempts, want 1", st.Attempts)
		}
	})
}

func TestPostgresReadyAndClose(t *testing.T) {
	t.Parallel()
	e := newPGEnv(t)
	s := newPostgres(t, PostgresConfig{DSN: e.dsn(""), Table: e.table()})
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Ready(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ready after Close: %v, want ErrClosed", err)
	}
	if err := s.Write(context.Background(), nodeBatch("x", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
}

func TestNewPostgresRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  PostgresConfig
		want string
	}{
		{"no DSN", PostgresConfig{}, "no DSN"},
		{"a DSN that does not parse", PostgresConfig{DSN: "postgres://u:secret@[::1"}, "bad DSN"},
		{"three-part table", PostgresConfig{DSN: "postgres://localhost/db", Table: "a.b.c"}, "SCHEMA.NAME"},
		{"empty part of the table", PostgresConfig{DSN: "postgres://localhost/db", Table: "a."}, "1 to 63 bytes"},
		{"a table name over 63 bytes", PostgresConfig{DSN: "postgres://localhost/db", Table: strings.Repeat("t", 64)}, "1 to 63 bytes"},
		{"negative timeout", PostgresConfig{DSN: "postgres://localhost/db", Timeout: -time.Second}, "timeout -1s is negative"},
		{"negative backoff", PostgresConfig{DSN: "postgres://localhost/db", BackoffBase: -1}, "backoff base -1ns is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = discardLogger
			s, err := NewPostgres(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestIndexNamesStayDistinctWhenCut(t *testing.T) {
	long := pgx.Identifier{"s", strings.Repeat("x", 63)}
	a, b := indexName(long, "_received_at_idx"), indexName(long, "_record_id_idx")
	if a == b || len(a) > 63+2 || len(b) > 63+2 {
		t.Errorf("index names %s and %s: want distinct, at most 63 bytes", a, b)
	}
}

func TestClassifyPG(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("COPY: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name string
		err  error
		want pgFailure
	}{
		{"serialization failure", pg("40001"), pgFailure{retry: true}},
		{"deadlock", pg("40P01"), pgFailure{retry: true}},
		{"connection failure", pg("08006"), pgFailure{retry: true}},
		{"too many connections", pg("53300"), pgFailure{retry: true, backpressure: true}},
		{"disk full", pg("53100"), pgFailure{retry: true, backpressure: true}},
		{"out of memory", pg("53200"), pgFailure{retry: true, backpressure: true}},
		{"statement timeout", pg("57014"), pgFailure{retry: true, backpressure: true}},
		{"lock timeout", pg("55P03"), pgFailure{retry: true, backpressure: true}},
		{"admin shutdown", pg("57P01"), pgFailure{retry: true}},
		{"starting up", pg("57P03"), pgFailure{retry: true}},
		{"table dropped", pg("42P01"), pgFailure{retry: true, missingTable: true}},
		{"bad JSON", pg("22P02"), pgFailure{badData: true}},
		{"bad encoding", pg("22021"), pgFailure{badData: true}},
		{"not null violation", pg("23502"), pgFailure{badData: true}},
		{"wrong password", pg("28P01"), pgFailure{}},
		{"no such database", pg("3D000"), pgFailure{}},
		{"no privilege", pg("42501"), pgFailure{}},
		{"a column missing from an existing table", pg("42703"), pgFailure{}},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, pgFailure{retry: true}},
		{"broken connection", io.ErrUnexpectedEOF, pgFailure{retry: true}},
		{"attempt timed out", fmt.Errorf("acquire: %w", context.DeadlineExceeded), pgFailure{retry: true, backpressure: true}},
		{"commit outcome unknown", fmt.Errorf("x: %w", ErrCommitUnknown), pgFailure{}},
		{"refused by the sink", fmt.Errorf("x: %w", ErrBadRecord), pgFailure{badData: true}},
	} {
		if got := classifyPG(tc.err); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestPgRowRead(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		rec                 string
		at                  time.Time
		node, source, ident string // "-" for NULL
	}{
		{`{"id":"a","_node":"n","_received_at":"2025-05-06T07:08:09.5Z","_source":"syslog"}`,
			time.Date(2025, 5, 6, 7, 8, 9, 5e8, time.UTC), "n", "syslog", "a"},
		{`{"id":-1.5e3}`, now, "-", "-", "-1.5e3"},
		{`{"id":true,"_node":7,"_source":null,"_received_at":"yesterday"}`, now, "-", "-", "-"},
		{`{"x":{"id":"inner","_node":"inner"},"y":["_node","id"]}`, now, "-", "-", "-"},
		{`{"\u0069d":"escaped key","_node":"a\"b\\c"}`, now, "a\"b\\c", "-", "escaped key"},
	} {
		var r pgRow
		if err := r.read([]byte(tc.rec), now); err != nil {
			t.Errorf("%s: %v", tc.rec, err)
			continue
		}
		s := func(b []byte) string {
			if b == nil {
				return "-"
			}
			return string(b)
		}
		if !r.receivedAt.Equal(tc.at) || s(r.node) != tc.node || s(r.source) != tc.source || s(r.ident) != tc.ident {
			t.Errorf("%s: got %v %q %q %q; want %v %q %q %q", tc.rec,
				r.receivedAt, s(r.node), s(r.source), s(r.ident), tc.at, tc.node, tc.source, tc.ident)
		}
	}
}

// FuzzScanObject checks scanObject against encoding/json: on every valid
// JSON object without \u0000 it must find the same top-level keys and
// values, and it must never panic.
func FuzzScanObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"id":"a","n":1}`, `{"a":{"b":[1,{"c":"}"}]},"d":"\"","e":null}`, ` {"k" : [ ] } `,
		`{"\u0069d":"x","id":"y"}`, `{"a":"\u0000"}`, `{"a":1`, `[1]`, `{"a":"\\u0000"}`, `{"a":tru}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := map[string]string{}
		err := scanObject(data, func(k, v []byte) error {
			got[string(k)] = string(v)
			return nil
		})
		if !utf8.Valid(data) {
			return // the server refuses it; encoding/json would replace the bytes
		}
		var want map[string]json.RawMessage
		if json.Unmarshal(data, &want) != nil || want == nil || !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
			return // not a JSON object: scanObject may refuse it or leave it to the server
		}
		if bytes.Contains(data, []byte(`\u0000`)) {
			return // refused by scanObject on purpose (or an escaped backslash before "u0000")
		}
		if err != nil {
			t.Fatalf("scanObject(%q): %v; encoding/json reads it", data, err)
		}
		if len(got) != len(want) {
			t.Fatalf("scanObject(%q): keys %v, want %d keys", data, got, len(want))
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || !bytes.Equal(bytes.TrimSpace([]byte(g)), bytes.TrimSpace(v)) {
				t.Fatalf("scanObject(%q): key %q = %q, want %q", data, k, g, v)
			}
		}
	})
}

// BenchmarkPostgresWrite writes batches of loadgen-sized records (about
// 256 bytes) into one table; records/s is the figure to compare with the
// file and http sinks.
func BenchmarkPostgresWrite(b *testing.B) {
	for _, size := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			e := newPGEnv(b)
			s := newPostgres(b, PostgresConfig{DSN: e.dsn(""), Table: e.table()})
			pad := strings.Repeat("x", 120)
			batch := &Batch{}
			for i := range size {
				r := fmt.Appendf(nil, `{"id":"bench-%d","ts":"2025-01-02T03:04:05Z","level":"info","service":"api","msg":"%s","_node":"n1","_received_at":"2025-01-02T03:04:05.123456789Z","_source":"http"}`, i, pad)
				batch.Records = append(batch.Records, r)
				batch.Bytes += len(r)
			}
			b.SetBytes(int64(batch.Bytes))
			for b.Loop() {
				if err := s.Write(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
