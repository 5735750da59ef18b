// Package sqlite is the store of a single qrtalkd: one SQLite file, through
// modernc.org/sqlite (pure Go, so the server stays one static binary).
//
// Durability: the database is in WAL mode with synchronous=FULL, so a
// transaction is fsynced before Commit returns; a message the server called
// "queued" survives kill -9 and power loss.
//
// Deletion: secure_delete=ON overwrites deleted rows (and freed pages) with
// zeros, but in WAL mode the overwrite is itself a new page in the WAL while
// the old image may sit in earlier WAL frames, and freed pages stay in the
// file. Vacuum, which the sweeper calls, therefore runs incremental_vacuum
// (auto_vacuum=INCREMENTAL returns free pages to the file system) and a
// truncating WAL checkpoint, after which a deleted envelope is in neither the
// database file nor the WAL. What the file system and the disk keep of freed
// blocks is beyond SQLite's reach: run the server on an encrypted disk.
//
// Concurrency: SQLite has one writer at a time, so all writes go through one
// connection (transactions begin IMMEDIATE, so none can fail half-way on a
// lock upgrade) and reads through a small pool of query-only connections,
// which WAL lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/qrtalk/qrtalk/internal/store"
)

// ErrCheckpointBusy is returned by Vacuum when readers kept the WAL from
// being checkpointed and truncated completely. Nothing is wrong; deleted
// rows may stay in the WAL until the next Vacuum.
var ErrCheckpointBusy = errors.New("wal checkpoint incomplete: readers were active")

// Options tune a Store. The zero value is usable.
type Options struct {
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection (the checkpoint waits for readers, for example) before
	// failing. Default 5s.
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool. Default 4.
	ReadConns int
}

// Store is a store.Store on one SQLite file.
type Store struct {
	path   string
	w      *sql.DB // exactly one connection: SQLite's single writer
	r      *sql.DB // query-only pool
	st     statements
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating it (mode 0600) if needed, and
// brings its schema up to date. It refuses, with store.ErrSchemaTooNew, a
// database written by a newer version.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	if path == "" || strings.ContainsAny(path, "?#\x00") {
		// The driver splits the name at '?'; refuse rather than open a
		// different file than the one named.
		return nil, fmt.Errorf("sqlite: open: %w: unusable database path %q", store.ErrInvalid, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// Create the file ourselves so that it is private: SQLite would use the
	// umask, and gives the -wal and -shm files the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}

	busy := strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)
	common := url.Values{}
	common.Add("_pragma", "busy_timeout("+busy+")")
	common.Add("_pragma", "foreign_keys(1)")
	// Sorting and other temporary data stay in memory, never in a temp file
	// that nobody vacuums.
	common.Add("_pragma", "temp_store(MEMORY)")
	common.Add("_pragma", "secure_delete(ON)")

	wq := cloneValues(common)
	// auto_vacuum takes effect only before the first table exists; the
	// driver applies it first. An older file is converted in ensureVacuum.
	wq.Set("_auto_vacuum", "INCREMENTAL")
	wq.Add("_pragma", "journal_mode(WAL)")
	wq.Add("_pragma", "synchronous(FULL)")
	// Keep a WAL that grew under a burst from staying large after
	// checkpoints; Vacuum truncates it to zero anyway.
	wq.Add("_pragma", "journal_size_limit(67108864)")
	// Checkpoint every 10,000 WAL pages (40 MB) instead of SQLite's 1,000:
	// the queue's indexes are keyed by random IDs, so every commit dirties
	// index pages all over, and a checkpoint copies each page once however
	// often it was written since the last one. About 7% less CPU per queued
	// and per acknowledged message in qrtalk-bench's b. Deleted rows leave
	// the WAL at Vacuum's truncating checkpoint, as before.
	wq.Add("_pragma", "wal_autocheckpoint(10000)")
	wq.Set("_txlock", "immediate")

	s := &Store{path: abs}
	s.w, err = sql.Open("sqlite", abs+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	if err := s.setUp(ctx); err != nil {
		s.w.Close()
		return nil, err
	}

	rq := cloneValues(common)
	rq.Add("_pragma", "query_only(1)")
	s.r, err = sql.Open("sqlite", abs+"?"+rq.Encode())
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	s.r.SetMaxOpenConns(opts.ReadConns)
	s.r.SetMaxIdleConns(opts.ReadConns)
	if err := s.r.PingContext(ctx); err != nil {
		s.w.Close()
		s.r.Close()
		return nil, fmt.Errorf("sqlite: open read pool: %w", err)
	}
	if err := s.prepare(ctx); err != nil {
		s.w.Close()
		s.r.Close()
		return nil, err
	}
	return s, nil
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// setUp checks the settings that persist in the file and migrates the schema.
func (s *Store) setUp(ctx context.Context) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlite: open: journal mode is %q, not wal", mode)
	}
	if err := s.ensureIncrementalVacuum(ctx); err != nil {
		return err
	}
	return migrate(ctx, s.w)
}

// ensureIncrementalVacuum converts a file created without
// auto_vacuum=INCREMENTAL (by another tool, say): without it freed pages
// would stay in the file for good.
func (s *Store) ensureIncrementalVacuum(ctx context.Context) error {
	var av int
	if err := s.w.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&av); err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	if av == 2 {
		return nil
	}
	if _, err := s.w.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
		return fmt.Errorf("sqlite: open: set auto_vacuum: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("sqlite: open: vacuum to enable auto_vacuum: %w", err)
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&av); err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	if av != 2 {
		return fmt.Errorf("sqlite: open: auto_vacuum is %d after conversion, want 2 (incremental)", av)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database. Calling it again does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	errS := s.closeStatements()
	errR := s.r.Close()
	errW := s.w.Close()
	if err := errors.Join(errS, errR, errW); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Vacuum returns free pages to the file system and checkpoints the WAL into
// the database file, truncating it to zero bytes. With secure_delete on,
// that leaves no copy of a deleted row in either file. It returns
// ErrCheckpointBusy if readers kept the checkpoint from completing.
func (s *Store) Vacuum(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("sqlite: vacuum: %w", err)
	}
	// Run on the writer's one connection, so that no write of ours is
	// half-way and the pragmas below see the same connection settings.
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return s.fail(ctx, "vacuum", err)
	}
	defer conn.Close()
	// incremental_vacuum frees one page per step of the statement: read
	// every row so that it runs to the end.
	rows, err := conn.QueryContext(ctx, "PRAGMA incremental_vacuum")
	if err != nil {
		return s.fail(ctx, "vacuum", err)
	}
	for rows.Next() {
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return s.fail(ctx, "vacuum", err)
	}
	var busy, logFrames, checkpointed int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
		return s.fail(ctx, "vacuum: checkpoint", err)
	}
	if busy != 0 {
		return fmt.Errorf("sqlite: vacuum: %w", ErrCheckpointBusy)
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

// fail wraps err for the operation op, preferring the context's error (the
// driver reports an interrupted statement in its own words) and
// store.ErrClosed.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("sqlite: %s: %w (%v)", op, cerr, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("sqlite: %s: %w (%v)", op, store.ErrClosed, err)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// write runs fn in one write transaction and commits it.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return s.fail(ctx, op, err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// read runs fn in one read transaction, so that its queries see one
// snapshot.
func (s *Store) read(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s.fail(ctx, op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// isConstraint reports whether err is an SQLite constraint violation of the
// given extended code (for example SQLITE_CONSTRAINT_PRIMARYKEY).
func isConstraint(err error, codes ...int) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.Code() == c {
			return true
		}
	}
	return false
}

func isDuplicate(err error) bool {
	return isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE)
}

// Times are stored as microseconds since the Unix epoch: the precision the
// store promises, and the same in PostgreSQL.
func toDB(t time.Time) int64 { return t.UnixMicro() }

func fromDB(us int64) time.Time { return time.UnixMicro(us).UTC() }

// scanID copies a stored ID into dst, refusing a value of the wrong size
// (a damaged file) instead of silently truncating it.
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
