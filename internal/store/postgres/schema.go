package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qrtalk/qrtalk/internal/store"
)

// migrations[i] takes the schema from version i to version i+1. Append only:
// a released step is never edited, because databases out there already ran
// it.
//
// IDs are bytea of their protocol size; times are timestamptz (microsecond
// precision, the store's). seq columns are identities that record the order
// rows were added in, which Devices and Pending return.
var migrations = [][]string{
	// 1: the first schema, the same tables as the SQLite store's.
	{
		`CREATE TABLE users (
			id           bytea PRIMARY KEY CHECK (length(id) = 16),
			identity_key bytea NOT NULL,
			created      timestamptz NOT NULL
		)`,
		`CREATE TABLE devices (
			user_id     bytea NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			device_id   bytea NOT NULL CHECK (length(device_id) = 8),
			seq         bigint GENERATED ALWAYS AS IDENTITY,
			certificate bytea NOT NULL,
			enc_key     bytea NOT NULL,
			auth_key    bytea NOT NULL,
			created     timestamptz NOT NULL,
			revoked     timestamptz,
			revocation  bytea,
			PRIMARY KEY (user_id, device_id)
		)`,
		`CREATE TABLE invites (
			token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
			uses       bigint NOT NULL CHECK (uses >= 0),
			expires    timestamptz NOT NULL,
			created    timestamptz NOT NULL
		)`,
		`CREATE INDEX invites_expires ON invites (expires)`,
		`CREATE TABLE queue (
			seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			user_id    bytea NOT NULL,
			device_id  bytea NOT NULL,
			message_id bytea NOT NULL CHECK (length(message_id) = 16),
			envelope   bytea NOT NULL,
			expires    timestamptz NOT NULL,
			UNIQUE (user_id, device_id, message_id),
			FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
		)`,
		`CREATE INDEX queue_device ON queue (user_id, device_id, seq)`,
		`CREATE INDEX queue_expires ON queue (expires)`,
		`CREATE TABLE blobs (
			id           bytea PRIMARY KEY CHECK (length(id) = 16),
			owner_user   bytea NOT NULL,
			owner_device bytea NOT NULL,
			size         bigint NOT NULL CHECK (size >= 0),
			expires      timestamptz NOT NULL,
			created      timestamptz NOT NULL,
			FOREIGN KEY (owner_user, owner_device) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
		)`,
		`CREATE INDEX blobs_owner ON blobs (owner_user, owner_device)`,
		`CREATE INDEX blobs_expires ON blobs (expires)`,
		`CREATE TABLE blob_recipients (
			blob_id   bytea NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
			user_id   bytea NOT NULL,
			device_id bytea NOT NULL,
			pos       integer NOT NULL,
			fetched   boolean NOT NULL DEFAULT false,
			PRIMARY KEY (blob_id, user_id, device_id),
			FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
		)`,
		`CREATE INDEX blob_recipients_device ON blob_recipients (user_id, device_id)`,
	},
	// 2: state the nodes of a cluster share besides the store proper: the
	// channel-setup replay cache and rate-limit buckets (see shared.go).
	{
		`CREATE TABLE setup_replay (
			key     bytea PRIMARY KEY CHECK (length(key) = 16),
			expires timestamptz NOT NULL
		)`,
		`CREATE INDEX setup_replay_expires ON setup_replay (expires)`,
		`CREATE TABLE rate_buckets (
			key     bytea PRIMARY KEY,
			tokens  double precision NOT NULL,
			updated timestamptz NOT NULL,
			full_at timestamptz NOT NULL
		)`,
		`CREATE INDEX rate_buckets_full_at ON rate_buckets (full_at)`,
	},
	// 3: the fingerprint of the server key the cluster's nodes share (see
	// CheckServerKey). One row at most.
	{
		`CREATE TABLE server_key (
			one         boolean PRIMARY KEY DEFAULT true CHECK (one),
			fingerprint bytea NOT NULL,
			recorded    timestamptz NOT NULL DEFAULT now()
		)`,
	},
}

// SchemaVersion returns the schema version this code writes.
func SchemaVersion() int { return len(migrations) }

// migrationLockClass is the first key of the advisory lock that serializes
// migrations: "qrtm". The second is a hash of the schema migrated, so that
// databases sharing a server but not a schema do not wait for each other (a
// hash collision only makes two of them wait).
const migrationLockClass = 0x7172746d

// migrate brings the schema to SchemaVersion() one step at a time, each step
// in its own transaction together with the version it leads to, so that a
// crash leaves the database at a version it really has.
//
// Every step first takes a transaction-level advisory lock
// (pg_advisory_xact_lock) and only then reads the version: nodes started
// together queue on the lock, and each finds the steps the one before it
// applied. The lock ends with the transaction, so a node that dies
// mid-migration cannot leave it held; its step is rolled back and the next
// node applies it.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	for {
		done, err := migrateStep(ctx, pool)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func migrateStep(ctx context.Context, pool *pgxpool.Pool) (done bool, err error) {
	fail := func(what string, err error) (bool, error) {
		if cerr := ctx.Err(); cerr != nil {
			return false, fmt.Errorf("postgres: migrate: %s: %w (%v)", what, cerr, err)
		}
		return false, fmt.Errorf("postgres: migrate: %s: %w", what, err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fail("begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	var schema *string
	if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fail("current schema", err)
	}
	if schema == nil {
		return false, fmt.Errorf("postgres: migrate: no schema to create tables in: the search_path names no existing schema")
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", int32(migrationLockClass), *schema); err != nil {
		return fail("advisory lock", err)
	}
	// Look before creating: CREATE TABLE IF NOT EXISTS would need the
	// CREATE privilege on the schema even when the table is there.
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return fail("version table", err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (
			version integer PRIMARY KEY CHECK (version > 0),
			applied timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fail("version table", err)
		}
	}
	var v int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return fail("read version", err)
	}
	switch {
	case v > len(migrations):
		return false, fmt.Errorf("postgres: open: %w: schema %q is at version %d, this code knows up to %d",
			store.ErrSchemaTooNew, *schema, v, len(migrations))
	case v == len(migrations):
		return true, tx.Commit(ctx)
	}
	for i, stmt := range migrations[v] {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fail(fmt.Sprintf("to version %d, statement %d", v+1, i), err)
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", v+1); err != nil {
		return fail(fmt.Sprintf("to version %d", v+1), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fail(fmt.Sprintf("to version %d: commit", v+1), err)
	}
	return false, nil
}
