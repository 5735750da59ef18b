// Package postgres is the store of qrtalkd in scale-out mode: several nodes
// share one PostgreSQL database, through jackc/pgx v5 and its pool.
//
// It implements store.Store with the same semantics as the SQLite store (the
// conformance suite in package storetest is the judge); what differs is how
// those semantics hold when several nodes write at once.
//
// Schema: migrations are versioned (schema_migrations) and applied one step
// per transaction, each under a transaction-level advisory lock, so that
// nodes starting together apply every step exactly once; a node refuses a
// database whose schema is newer than it knows (store.ErrSchemaTooNew). The
// tables live in the first schema of the connection's search_path (set it in
// the DSN, for example ?search_path=qrtalk, to keep them apart from others).
//
// Concurrency: every statement runs in READ COMMITTED. Atomic steps are
// single conditional statements (ConsumeInvite's UPDATE ... WHERE uses > 0
// AND expires > now RETURNING) or transactions that lock the rows they depend
// on (Enqueue share-locks the recipient devices, so a revocation or account
// deletion waits for it, or it sees them). A transaction that PostgreSQL
// aborts as a deadlock or serialization failure is retried a few times.
//
// Statements: pgx prepares every statement the first time a connection
// runs it and keeps it in the connection's statement cache (its default
// query mode, QueryExecModeCacheStatement), so the hot paths are parsed
// and planned once per connection, not on every call. Do not set
// default_query_exec_mode in the DSN to a mode without a cache.
//
// Durability: with PostgreSQL's default synchronous_commit=on, a commit is
// flushed to the WAL (and to synchronous standbys, if configured) before
// Commit returns, so a message the server called "queued" survives a crash.
// Do not turn synchronous_commit off for the qrtalk database.
//
// Deletion: PostgreSQL deletes a row by marking it dead; VACUUM (autovacuum,
// or Vacuum here) later makes its space reusable, but the bytes stay in the
// page's free space until new rows overwrite them, and a copy stays in WAL
// segments until they are recycled, in WAL archives, base backups and on
// streaming replicas. There is no equivalent of SQLite's secure_delete: a
// deleted envelope is unreachable through SQL at once, but its ciphertext is
// not guaranteed to be gone from every file. Run the database on an encrypted
// disk, and keep WAL archives and backups of it short-lived (see Vacuum).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qrtalk/qrtalk/internal/store"
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// MaxConns bounds the connection pool of this node. Default: pgxpool's
	// (the larger of 4 and the number of CPUs). Every node has its own
	// pool: keep nodes × MaxConns below the server's max_connections.
	MaxConns int32
	// SweepBatch is how many rows DeleteExpired and DeleteExpiredBlobs
	// delete per transaction. Default 1000.
	SweepBatch int
}

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool       *pgxpool.Pool
	sweepBatch int
	closed     atomic.Bool
	// deleted is set when rows were deleted through this Store since the
	// last Vacuum, which has nothing to do otherwise.
	deleted atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword=value string, as pgx accepts) and brings its schema up to date.
// It refuses, with store.ErrSchemaTooNew, a database written by a newer
// version. Several nodes may call Open on the same database at once.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.SweepBatch <= 0 {
		opts.SweepBatch = 1000
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN with its password masked.
		return nil, fmt.Errorf("postgres: open: %w: %v", store.ErrInvalid, err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	s := &Store{pool: pool, sweepBatch: opts.SweepBatch}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, s.fail(ctx, "open: connect", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pool, after the statements running on it end. Calling it
// again does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// Pool returns the connection pool, for what shares the database with the
// store (LISTEN/NOTIFY, health checks). Do not close it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Vacuum runs a plain VACUUM (not VACUUM FULL) of the tables the sweeper and
// acknowledgements delete from, if rows were deleted through this Store
// since the last Vacuum; otherwise it does nothing.
//
// What it achieves is less than SQLite's secure_delete: VACUUM marks the dead
// rows' space (and their TOASTed envelopes') reusable and removes their index
// entries, sooner than autovacuum would, so that new rows overwrite them
// sooner; it does not overwrite them itself, and copies remain in the WAL
// until its segments are recycled, in WAL archives and backups, and on
// replicas. VACUUM FULL would rewrite the tables into new files, but it locks
// them exclusively and the old files' blocks are left to the file system, so
// it is not run here. An encrypted disk is the real protection.
//
// VACUUM (SKIP_LOCKED) skips a table another node is vacuuming at that moment
// instead of waiting for it, so that nodes sweeping together do not queue up
// behind one another; plain VACUUM takes no lock that blocks reads or writes.
func (s *Store) Vacuum(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: vacuum: %w", err)
	}
	if !s.deleted.Swap(false) {
		return nil
	}
	// VACUUM cannot run in a transaction block: one statement, on its own.
	if _, err := s.pool.Exec(ctx, "VACUUM (SKIP_LOCKED) queue, blobs, blob_recipients, invites"); err != nil {
		s.deleted.Store(true) // try again next time
		return s.fail(ctx, "vacuum", err)
	}
	return nil
}

// check refuses work on a closed store or an ended context.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// fail wraps err for the operation op. It prefers the context's error (pgx
// reports an interrupted statement in its own words) and store.ErrClosed,
// and maps what PostgreSQL reports to the store's sentinels: a unique
// violation is store.ErrExists, a foreign-key violation store.ErrNotFound
// (the row referred to does not exist), no row store.ErrNotFound. Errors
// that already match a sentinel are wrapped as they are.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("postgres: %s: %w (%v)", op, cerr, err)
	}
	if s.closed.Load() && !errors.Is(err, store.ErrClosed) {
		return fmt.Errorf("postgres: %s: %w (%v)", op, store.ErrClosed, err)
	}
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == codeUniqueViolation:
		return fmt.Errorf("postgres: %s: %w (%v)", op, store.ErrExists, err)
	case errors.As(err, &pe) && pe.Code == codeForeignKeyViolation:
		return fmt.Errorf("postgres: %s: %w (%v)", op, store.ErrNotFound, err)
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: %s: %w (%v)", op, store.ErrNotFound, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// SQLSTATE codes the store reacts to.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeSerializationFail   = "40001"
	codeDeadlock            = "40P01"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// maxAttempts bounds how often a transaction aborted by a deadlock or a
// serialization failure is run.
const maxAttempts = 4

// tx runs fn in one READ COMMITTED transaction and commits it. If PostgreSQL
// aborts it as a deadlock victim or a serialization failure (which a
// deadlock between, say, an enqueue and an account deletion can cause), fn
// is run again in a new transaction, so it must set its results afresh.
func (s *Store) tx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil {
			return nil
		}
		if c := pgCode(err); (c == codeDeadlock || c == codeSerializationFail) && attempt < maxAttempts && ctx.Err() == nil {
			continue
		}
		return s.fail(ctx, op, err)
	}
}

// Times are timestamptz, which keeps microseconds: truncate explicitly so
// that what is compared is what is stored, whatever the driver does with
// nanoseconds.
func ts(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

// scanID copies a stored ID into dst, refusing a value of the wrong size
// (the CHECK constraints should make that impossible) instead of silently
// truncating it.
func scanID(dst, src []byte, what string) error {
	if len(src) != len(dst) {
		return fmt.Errorf("stored %s has %d bytes, want %d", what, len(src), len(dst))
	}
	copy(dst, src)
	return nil
}

// nonNil keeps an empty byte slice from being stored as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
