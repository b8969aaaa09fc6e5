package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults for PostgresConfig's zero fields.
const (
	DefaultPostgresTable       = "logs"
	DefaultPostgresTimeout     = 30 * time.Second
	DefaultPostgresMaxRetries  = 3
	DefaultPostgresBackoffBase = 100 * time.Millisecond
	DefaultPostgresBackoffMax  = 5 * time.Second
)

const (
	// pgStartupCheck bounds NewPostgres's first look at the database.
	pgStartupCheck = 5 * time.Second
	// pgReadyTimeout bounds Ready's ping when ctx has no sooner deadline.
	pgReadyTimeout = 2 * time.Second
	// pgRollbackTimeout bounds the ROLLBACK after a failed attempt.
	pgRollbackTimeout = 2 * time.Second
	// pgMaxIdentifier is PostgreSQL's NAMEDATALEN-1: longer names are cut.
	pgMaxIdentifier = 63
)

// PostgresConfig configures the PostgreSQL sink.
type PostgresConfig struct {
	// DSN is a libpq connection string, URL (postgres://user:pass@host:5432/db?sslmode=verify-full)
	// or key=value form. pgxpool's settings in it are honoured, e.g.
	// pool_max_conns (default: the larger of 4 and the number of CPUs).
	DSN string
	// Table receives the records: a name, or schema.name. It is created,
	// with its indexes, when it does not exist. Empty means
	// DefaultPostgresTable.
	Table string
	// Timeout bounds one attempt: taking a connection, the COPY and the
	// COMMIT. Zero means DefaultPostgresTimeout.
	Timeout time.Duration
	// MaxRetries is how many times a failed attempt is retried (so at most
	// MaxRetries+1 transactions per batch). Zero means
	// DefaultPostgresMaxRetries; negative means no retries.
	MaxRetries int
	// BackoffBase and BackoffMax shape the wait before retry n:
	// min(BackoffBase·2ⁿ, BackoffMax), of which the upper half is jittered.
	// Zero means DefaultPostgresBackoffBase and DefaultPostgresBackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Logger receives retries; nil means slog.Default().
	Logger *slog.Logger
}

// PostgresStats are the PostgreSQL sink's counters since it was created.
type PostgresStats struct {
	Batches  uint64 // batches committed
	Records  uint64 // records in those batches
	Attempts uint64 // transactions started, retries included
	Retries  uint64 // attempts that were retries
	Failures uint64 // Writes that returned an error
	// LostCommitAnswers counts COMMITs whose answer never came back (the
	// connection broke); the sink then asked the server whether the
	// transaction had committed instead of guessing.
	LostCommitAnswers uint64
}

// ErrCommitUnknown marks a batch whose COMMIT was sent but whose outcome the
// sink could not learn (the connection broke and the server could not be
// asked in time): the batch may or may not be in the table. Retrying it
// could store it twice, so the sink does not; the node's clients may.
var ErrCommitUnknown = errors.New("commit outcome unknown")

// pgColumns are the columns a batch is copied into, in the order of
// pgRowSource's values.
var pgColumns = []string{"received_at", "node", "source", "record_id", "record"}

// Postgres is a sink that writes every batch into one table of a PostgreSQL
// database: one transaction per batch holding one COPY of all its records,
// committed before Write returns nil. Each row keeps the whole record as
// jsonb and copies out the fields people filter on:
//
//	id          bigserial primary key
//	received_at timestamptz not null  -- the record's "_received_at" (when the node took it in)
//	node        text                  -- "_node"
//	source      text                  -- "_source": http or syslog
//	record_id   text                  -- the record's own "id", when it is a string or a number
//	record      jsonb not null        -- the record as the node wrote it, its fields above included
//
// with a BRIN index on received_at (time ranges) and a b-tree on record_id.
//
// Failures of the connection or the server (refused or broken connections,
// shutdowns, serialization failures, deadlocks, too many connections, out of
// memory or disk, timeouts) are retried a bounded number of times with
// jittered exponential backoff; a record the database refuses (class 22 and 23
// errors) fails the batch at once with ErrBadRecord, and nothing of it is
// stored (the node then writes the batch's requests one by one, so that only
// the request with the bad record is refused, with 422). When the answer to a COMMIT is lost, the sink asks the server
// (txid_status) whether that transaction committed, so a batch is never
// stored twice by the sink's own retries. Safe for concurrent use: each Write
// takes its own connection from a pool.
type Postgres struct {
	pool     *pgxpool.Pool
	table    pgx.Identifier
	tableSQL string // table, quoted
	where    string // user@host:port/db, for logs and errors
	timeout  time.Duration
	retry    RetryPolicy
	log      *slog.Logger

	ensured atomic.Bool // the table is known to exist
	closed  atomic.Bool
	epoch   time.Time    // monotonic origin for lastOK
	lastOK  atomic.Int64 // time since epoch of the last successful write, +1; 0 = never

	batches, records, attempts, retries, failures, lostCommits atomic.Uint64
}

// NewPostgres checks cfg, opens a connection pool and creates the table if
// it is missing. An error in the DSN, a refused login, a missing database or
// a missing privilege fails it; a database that is not reachable yet only
// logs a warning, and the table is created before the first write instead.
func NewPostgres(cfg PostgresConfig) (*Postgres, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres sink: no DSN")
	}
	if cfg.Table == "" {
		cfg.Table = DefaultPostgresTable
	}
	table, err := parseTable(cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	for name, d := range map[string]time.Duration{"timeout": cfg.Timeout, "backoff base": cfg.BackoffBase, "backoff max": cfg.BackoffMax} {
		if d < 0 {
			return nil, fmt.Errorf("postgres sink: %s %s is negative", name, d)
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultPostgresTimeout
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultPostgresMaxRetries
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = DefaultPostgresBackoffBase
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultPostgresBackoffMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx leaves the password out of its parse errors.
		return nil, fmt.Errorf("postgres sink: bad DSN: %w", err)
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "batchpilot"
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	p := &Postgres{
		pool:     pool,
		table:    table,
		tableSQL: table.Sanitize(),
		where:    fmt.Sprintf("%s@%s:%d/%s", pcfg.ConnConfig.User, pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Database),
		timeout:  cfg.Timeout,
		retry: RetryPolicy{MaxRetries: cfg.MaxRetries, BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax,
			Name: "postgres sink", Logger: cfg.Logger}.withDefaults(),
		log:   cfg.Logger,
		epoch: time.Now(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(pgStartupCheck, cfg.Timeout))
	defer cancel()
	if err := p.ensureTable(ctx); err != nil {
		if f := classifyPG(err); !f.retry {
			pool.Close()
			return nil, fmt.Errorf("postgres sink: %s: %w", p.where, err)
		}
		p.log.Warn("postgres sink: database not reachable yet; the table is checked again before the first write",
			"db", p.where, "table", p.tableSQL, "error", err)
	}
	return p, nil
}

// parseTable reads "name" or "schema.name".
func parseTable(s string) (pgx.Identifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("table %q: want NAME or SCHEMA.NAME", s)
	}
	for _, p := range parts {
		if p == "" || len(p) > pgMaxIdentifier || strings.ContainsRune(p, 0) {
			return nil, fmt.Errorf("table %q: each part must be 1 to %d bytes", s, pgMaxIdentifier)
		}
	}
	return pgx.Identifier(parts), nil
}

// indexName is the name of the table's index with suffix, cut so that it
// stays distinct from the other index's name within PostgreSQL's limit.
func indexName(table pgx.Identifier, suffix string) string {
	name := table[len(table)-1]
	if len(name)+len(suffix) > pgMaxIdentifier {
		name = name[:pgMaxIdentifier-len(suffix)]
	}
	return pgx.Identifier{name + suffix}.Sanitize()
}

// ensureTable creates the table and its indexes unless the table exists.
// Nodes that start together serialise on an advisory lock: CREATE TABLE IF
// NOT EXISTS alone fails when two sessions run it at once. A table that
// already exists needs no privilege beyond INSERT.
func (p *Postgres) ensureTable(ctx context.Context) error {
	if p.ensured.Load() {
		return nil
	}
	var exists bool
	if err := p.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", p.tableSQL).Scan(&exists); err != nil {
		return fmt.Errorf("look up table %s: %w", p.tableSQL, err)
	}
	if !exists {
		err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "batchpilot table "+p.tableSQL); err != nil {
				return err
			}
			for _, stmt := range []string{
				`CREATE TABLE IF NOT EXISTS ` + p.tableSQL + ` (
					id          bigserial PRIMARY KEY,
					received_at timestamptz NOT NULL,
					node        text,
					source      text,
					record_id   text,
					record      jsonb NOT NULL
				)`,
				`CREATE INDEX IF NOT EXISTS ` + indexName(p.table, "_received_at_idx") + ` ON ` + p.tableSQL + ` USING brin (received_at)`,
				`CREATE INDEX IF NOT EXISTS ` + indexName(p.table, "_record_id_idx") + ` ON ` + p.tableSQL + ` (record_id)`,
			} {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("create table %s: %w", p.tableSQL, err)
		}
		p.log.Info("postgres sink: table ready", "db", p.where, "table", p.tableSQL)
	}
	p.ensured.Store(true)
	return nil
}

// Write copies the batch into the table in one transaction and returns nil
// once it is committed. On a retryable failure it waits and tries again, at
// most MaxRetries times; it gives up early when ctx ends or when ctx's
// deadline would pass before the next attempt. The error of a batch that
// failed because the database is overloaded (too many connections, out of
// memory or disk, timeouts, lock timeouts) matches ErrBackpressure under
// errors.Is; one the database refused as bad data matches ErrBadRecord.
func (p *Postgres) Write(ctx context.Context, b *Batch) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if b == nil || len(b.Records) == 0 {
		return nil
	}
	rows := make([]pgRow, len(b.Records))
	now := time.Now()
	for i, rec := range b.Records {
		if err := rows[i].read(rec, now); err != nil {
			p.failures.Add(1)
			return fmt.Errorf("postgres sink: record %d of %d: %w: %w", i, len(b.Records), ErrBadRecord, err)
		}
	}
	if err := p.copyRetrying(ctx, rows, b.OnAttempt); err != nil {
		p.failures.Add(1)
		if !errors.Is(err, ErrBadRecord) {
			p.lastOK.Store(0) // let Ready look for itself
		}
		return err
	}
	p.batches.Add(1)
	p.records.Add(uint64(len(rows)))
	p.lastOK.Store(int64(time.Since(p.epoch)) + 1)
	return nil
}

// copyRetrying copies rows under the retry policy, reporting every
// attempt. A class 53 error (too many connections, out of memory or disk)
// or a timeout is back pressure; a refused record fails the batch at once.
func (p *Postgres) copyRetrying(ctx context.Context, rows []pgRow, report func(Attempt)) error {
	n := 0
	return p.retry.Do(ctx, report, func(ctx context.Context) AttemptResult {
		if n > 0 {
			p.retries.Add(1)
		}
		n++
		p.attempts.Add(1)
		err := p.attempt(ctx, rows)
		if err == nil {
			return AttemptResult{RetryAfter: -1}
		}
		f := classifyPG(err)
		if f.missingTable {
			p.ensured.Store(false) // dropped under us: create it again
		}
		res := AttemptResult{Err: f.mark(err), Retry: f.retry, RetryAfter: -1, Outcome: OutcomeFailed}
		if f.backpressure {
			res.Outcome = OutcomeBackpressure
		}
		return res
	}, "db", p.where, "table", p.tableSQL, "records", len(rows))
}

// backoff returns the wait after failed attempt n (0-based): the retry
// policy's (RetryPolicy.Wait).
func (p *Postgres) backoff(n int) time.Duration { return p.retry.Wait(n, -1) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt writes the batch in one transaction. The transaction's id is
// read first, so that a COMMIT whose answer is lost can be looked up.
func (p *Postgres) attempt(ctx context.Context, rows []pgRow) error {
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.ensureTable(actx); err != nil {
		return err
	}
	conn, err := p.pool.Acquire(actx)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", p.where, err)
	}
	defer conn.Release() // the pool drops a connection left broken or inside a transaction
	xid, err := beginTx(actx, conn.Conn().PgConn())
	if err != nil {
		rollback(ctx, conn)
		return fmt.Errorf("begin: %w", err)
	}
	n, err := conn.CopyFrom(actx, p.table, pgColumns, &pgRowSource{rows: rows})
	if err == nil && n != int64(len(rows)) {
		err = fmt.Errorf("the server counted %d rows", n)
	}
	if err != nil {
		rollback(ctx, conn)
		return fmt.Errorf("COPY %d records into %s: %w", len(rows), p.tableSQL, withWhere(err))
	}
	tag, err := conn.Exec(actx, "COMMIT")
	switch {
	case err == nil && tag.String() == "COMMIT":
		return nil
	case err == nil:
		return fmt.Errorf("COMMIT answered %q: the transaction was rolled back", tag.String())
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered: the transaction did not commit.
		rollback(ctx, conn)
		return fmt.Errorf("commit: %w", err)
	}
	// The answer did not come back: the COMMIT may have been carried out.
	// pgconn.SafeToRetry cannot tell: pgx v5.12 reports a connection that
	// broke after the COMMIT went out as "conn closed", safe to retry.
	p.lostCommits.Add(1)
	return p.commitOutcome(ctx, xid, err)
}

// beginTx starts a transaction and returns its id, in one round trip.
func beginTx(ctx context.Context, conn *pgconn.PgConn) (int64, error) {
	res, err := conn.Exec(ctx, "BEGIN; SELECT txid_current()").ReadAll()
	if err != nil {
		return 0, err
	}
	if len(res) != 2 || len(res[1].Rows) != 1 || len(res[1].Rows[0]) != 1 {
		return 0, errors.New("txid_current() answered no row")
	}
	return strconv.ParseInt(string(res[1].Rows[0][0]), 10, 64)
}

// rollback ends a failed transaction so that the connection can go back to
// the pool. A connection that is closed or cannot roll back is dropped by
// the pool on Release.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	pc := conn.Conn().PgConn()
	if pc.IsClosed() || pc.TxStatus() == 'I' || ctx.Err() != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, pgRollbackTimeout)
	defer cancel()
	_, _ = conn.Exec(rctx, "ROLLBACK")
}

// commitOutcome finds out whether transaction xid, whose COMMIT went unanswered
// with commitErr, committed. nil means it did; an error that classifyPG
// retries means it did not; ErrCommitUnknown means the server could not tell
// in time.
func (p *Postgres) commitOutcome(ctx context.Context, xid int64, commitErr error) error {
	var lastErr error
	for i := 0; ; i++ {
		status, err := p.txStatus(ctx, xid)
		switch {
		case err != nil:
			lastErr = err
		case status == "committed":
			p.log.Info("postgres sink: the answer to COMMIT was lost but the transaction committed",
				"db", p.where, "xid", xid, "error", commitErr)
			return nil
		case status == "aborted":
			return fmt.Errorf("commit of transaction %d failed, it was rolled back: %w", xid, commitErr)
		case status == "":
			return fmt.Errorf("commit of transaction %d: %w: the server no longer knows it: %w", xid, ErrCommitUnknown, commitErr)
		default: // "in progress": its session has not ended yet
			lastErr = fmt.Errorf("transaction %d still in progress", xid)
		}
		if i >= p.retry.retries() || ctx.Err() != nil {
			return fmt.Errorf("commit of transaction %d: %w (last look-up: %w): %w", xid, ErrCommitUnknown, lastErr, commitErr)
		}
		if err := sleepCtx(ctx, p.backoff(i)); err != nil {
			return fmt.Errorf("commit of transaction %d: %w: %w: %w", xid, ErrCommitUnknown, err, commitErr)
		}
	}
}

func (p *Postgres) txStatus(ctx context.Context, xid int64) (string, error) {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var status *string
	if err := p.pool.QueryRow(qctx, "SELECT txid_status($1)", xid).Scan(&status); err != nil {
		return "", fmt.Errorf("txid_status(%d): %w", xid, err)
	}
	if status == nil {
		return "", nil
	}
	return *status, nil
}

// withWhere adds the server's context ("COPY logs, line 3, column record:
// ...") to a PostgreSQL error, which says which record was refused.
func withWhere(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Where != "" {
		return fmt.Errorf("%w; %s", err, pgErr.Where)
	}
	return err
}

// pgFailure is what an attempt's error means for the batch.
type pgFailure struct {
	retry        bool // another attempt may succeed
	backpressure bool // the database is overloaded rather than wrong
	badData      bool // the database refused a record
	missingTable bool // the table is gone
}

func (f pgFailure) mark(err error) error {
	switch {
	case f.backpressure && !errors.Is(err, ErrBackpressure):
		return fmt.Errorf("%w: %w", ErrBackpressure, err)
	case f.badData && !errors.Is(err, ErrBadRecord):
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	return err
}

// classifyPG sorts an attempt's error. Errors the server sends are sorted by
// SQLSTATE class; anything else failed on the way (dialling, a broken or
// timed-out connection), before the transaction committed, and another
// attempt is safe: a lost COMMIT answer is settled by commitOutcome first.
func classifyPG(err error) pgFailure {
	if errors.Is(err, ErrCommitUnknown) || errors.Is(err, ErrBadRecord) {
		return pgFailure{badData: errors.Is(err, ErrBadRecord)}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case code == "40001", code == "40P01": // serialization_failure, deadlock_detected
			return pgFailure{retry: true}
		case strings.HasPrefix(code, "08"): // connection_exception
			return pgFailure{retry: true}
		case strings.HasPrefix(code, "53"): // insufficient_resources: too_many_connections, disk_full, out_of_memory
			return pgFailure{retry: true, backpressure: true}
		case code == "57014", code == "55P03": // query_canceled (statement_timeout), lock_not_available (lock_timeout)
			return pgFailure{retry: true, backpressure: true}
		case code == "57P01", code == "57P02", code == "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return pgFailure{retry: true}
		case code == "25P03": // idle_in_transaction_session_timeout
			return pgFailure{retry: true}
		case code == "42P01": // undefined_table
			return pgFailure{retry: true, missingTable: true}
		case strings.HasPrefix(code, "22"), strings.HasPrefix(code, "23"): // data_exception, integrity_constraint_violation
			return pgFailure{badData: true}
		default: // login refused, no such database, no privilege, a table of another shape...
			return pgFailure{}
		}
	}
	if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return pgFailure{retry: true, backpressure: true}
	}
	return pgFailure{retry: true}
}

// Ready reports whether the database looks reachable: the last write
// succeeded within the last 30 seconds, or the database answers a ping now
// (and the table exists or could be created).
func (p *Postgres) Ready(ctx context.Context) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if ok := p.lastOK.Load(); ok != 0 && time.Since(p.epoch)-time.Duration(ok-1) < readyWindow {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, pgReadyTimeout)
	defer cancel()
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres sink: %s not reachable: %w", p.where, err)
	}
	if err := p.ensureTable(ctx); err != nil {
		return fmt.Errorf("postgres sink: %s: %w", p.where, err)
	}
	return nil
}

// Close makes later Writes return ErrClosed and closes the pool's
// connections.
func (p *Postgres) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.pool.Close()
	return nil
}

// Stats returns the sink's counters.
func (p *Postgres) Stats() PostgresStats {
	return PostgresStats{
		Batches:           p.batches.Load(),
		Records:           p.records.Load(),
		Attempts:          p.attempts.Load(),
		Retries:           p.retries.Load(),
		Failures:          p.failures.Load(),
		LostCommitAnswers: p.lostCommits.Load(),
	}
}

// pgRow is one record and the fields copied out of it. The byte slices
// point into the batch's record; nil ones are stored as NULL.
type pgRow struct {
	receivedAt          time.Time
	node, source, ident []byte
	record              []byte
}

// read fills r from rec, a JSON object. When rec has no usable
// "_received_at", now is used.
func (r *pgRow) read(rec []byte, now time.Time) error {
	r.record = rec
	r.receivedAt = now
	var at []byte
	err := scanObject(rec, func(key, val []byte) error {
		var dst *[]byte
		switch string(key) {
		case "_received_at":
			dst = &at
		case "_node":
			dst = &r.node
		case "_source":
			dst = &r.source
		case "id":
			dst = &r.ident
		default:
			return nil
		}
		*dst = nil
		switch {
		case len(val) > 0 && val[0] == '"':
			s, err := jsonString(val)
			if err != nil {
				return err
			}
			*dst = s
		case dst == &r.ident && len(val) > 0 && (val[0] == '-' || val[0] >= '0' && val[0] <= '9'):
			*dst = val // a number keeps its spelling
		}
		return nil
	})
	if err != nil {
		return err
	}
	if at != nil {
		if t, err := time.Parse(time.RFC3339Nano, string(at)); err == nil {
			r.receivedAt = t
		}
	}
	return nil
}

// jsonString returns the value of the JSON string literal lit (quotes
// included), sharing lit's bytes when it holds no escapes.
func jsonString(lit []byte) ([]byte, error) {
	inner := lit[1 : len(lit)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(lit, &s); err != nil {
				return nil, err
			}
			return []byte(s), nil
		}
	}
	return inner, nil
}

// pgRowSource feeds a batch's rows to CopyFrom. Values reuses one slice:
// CopyFrom encodes a row before it asks for the next.
type pgRowSource struct {
	rows []pgRow
	i    int
	vals [5]any
}

func (s *pgRowSource) Next() bool {
	s.i++
	return s.i <= len(s.rows)
}

func (s *pgRowSource) Values() ([]any, error) {
	r := &s.rows[s.i-1]
	s.vals[0] = r.receivedAt
	s.vals[1] = textOrNull(r.node)
	s.vals[2] = textOrNull(r.source)
	s.vals[3] = textOrNull(r.ident)
	s.vals[4] = json.RawMessage(r.record)
	return s.vals[:], nil
}

func (s *pgRowSource) Err() error { return nil }

func textOrNull(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// errNUL: jsonb cannot hold the character U+0000, which PostgreSQL text
// types do not have.
var errNUL = errors.New(`a string holds \u0000, which PostgreSQL's jsonb cannot store`)

// scanObject calls fn with every top-level key of the JSON object rec and
// the raw bytes of its value, in order. It reads only as much as it needs to
// find them, refusing what is plainly not one JSON object and strings with
// \u0000 (anywhere in the record); PostgreSQL's jsonb input checks the rest
// of the syntax. Keys are unescaped.
func scanObject(rec []byte, fn func(key, val []byte) error) error {
	s := jsonScanner{b: rec}
	s.space()
	if !s.eat('{') {
		return errors.New("not a JSON object")
	}
	s.space()
	if s.eat('}') {
		return s.end()
	}
	for {
		s.space()
		if s.peek() != '"' {
			return s.errorf("want a key")
		}
		start := s.i
		if err := s.str(); err != nil {
			return err
		}
		key, err := jsonString(s.b[start:s.i])
		if err != nil {
			return s.errorf("bad key: %v", err)
		}
		s.space()
		if !s.eat(':') {
			return s.errorf("want ':' after a key")
		}
		s.space()
		start = s.i
		if err := s.value(); err != nil {
			return err
		}
		if err := fn(key, s.b[start:s.i]); err != nil {
			return err
		}
		s.space()
		if s.eat('}') {
			return s.end()
		}
		if !s.eat(',') {
			return s.errorf("want ',' or '}'")
		}
	}
}

type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("JSON at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *jsonScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) eat(c byte) bool {
	if s.peek() == c && s.i < len(s.b) {
		s.i++
		return true
	}
	return false
}

func (s *jsonScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) end() error {
	s.space()
	if s.i != len(s.b) {
		return s.errorf("data after the object")
	}
	return nil
}

// str skips the string at s.i.
func (s *jsonScanner) str() error {
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return nil
		case c == '\\':
			if j+1 < len(s.b) && s.b[j+1] == 'u' && j+6 <= len(s.b) && string(s.b[j+2:j+6]) == "0000" {
				return fmt.Errorf("JSON at byte %d: %w", j, errNUL)
			}
			j++
		case c < 0x20:
			s.i = j
			return s.errorf("control character 0x%02x in a string", c)
		}
	}
	return s.errorf("unterminated string")
}

// value skips the value at s.i: a string, a literal or number, or an
// object or array with everything inside.
func (s *jsonScanner) value() error {
	switch s.peek() {
	case '"':
		return s.str()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if err := s.str(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return nil
				}
			}
			s.i++
		}
		return s.errorf("unterminated object or array")
	case 0, ',', '}', ']', ':':
		return s.errorf("want a value")
	default:
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			}
			s.i++
		}
		if s.i == start {
			return s.errorf("want a value")
		}
		return nil
	}
}
