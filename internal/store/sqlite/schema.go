package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/qrtalk/qrtalk/internal/store"
)

// migrations[i] takes the schema from version i to version i+1. Append only:
// a released step is never edited, because databases out there already ran
// it.
//
// Times are microseconds since the Unix epoch (see toDB). IDs are BLOBs of
// their protocol size.
var migrations = [][]string{
	// 1: the first schema.
	{
		`CREATE TABLE users (
			id           BLOB PRIMARY KEY CHECK (length(id) = 16),
			identity_key BLOB NOT NULL,
			created_us   INTEGER NOT NULL
		)`,
		`CREATE TABLE devices (
			user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			device_id   BLOB NOT NULL CHECK (length(device_id) = 8),
			certificate BLOB NOT NULL,
			enc_key     BLOB NOT NULL,
			auth_key    BLOB NOT NULL,
			created_us  INTEGER NOT NULL,
			revoked_us  INTEGER,
			revocation  BLOB,
			PRIMARY KEY (user_id, device_id)
		)`,
		`CREATE TABLE invites (
			token_hash BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
			uses       INTEGER NOT NULL CHECK (uses >= 0),
			expires_us INTEGER NOT NULL,
			created_us INTEGER NOT NULL
		)`,
		`CREATE INDEX invites_expires ON invites (expires_us)`,
		// seq is the enqueue order. The rowid never goes below the largest
		// one in use, which is all the ordering needs.
		`CREATE TABLE queue (
			seq        INTEGER PRIMARY KEY,
			user_id    BLOB NOT NULL,
			device_id  BLOB NOT NULL,
			message_id BLOB NOT NULL CHECK (length(message_id) = 16),
			envelope   BLOB NOT NULL,
			expires_us INTEGER NOT NULL,
			UNIQUE (user_id, device_id, message_id),
			FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
		)`,
		`CREATE INDEX queue_device ON queue (user_id, device_id, seq)`,
		`CREATE INDEX queue_expires ON queue (expires_us)`,
		`CREATE TABLE blobs (
			id           BLOB PRIMARY KEY CHECK (length(id) = 16),
			owner_user   BLOB NOT NULL,
			owner_device BLOB NOT NULL,
			size         INTEGER NOT NULL CHECK (size >= 0),
			expires_us   INTEGER NOT NULL,
			created_us   INTEGER NOT NULL,
			FOREIGN KEY (owner_user, owner_device) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
		)`,
		`CREATE INDEX blobs_owner ON blobs (owner_user, owner_device)`,
		`CREATE INDEX blobs_expires ON blobs (expires_us)`,
		`CREATE TABLE blob_recipients (
			blob_id   BLOB NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
			user_id   BLOB NOT NULL,
			device_id BLOB NOT NULL,
			fetched   INTEGER NOT NULL DEFAULT 0 CHECK (fetched IN (0, 1)),
			PRIMARY KEY (blob_id, user_id, device_id),
			FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
		)`,
		`CREATE INDEX blob_recipients_device ON blob_recipients (user_id, device_id)`,
	},
}

// SchemaVersion returns the schema version this code writes.
func SchemaVersion() int { return len(migrations) }

// migrate brings the schema to SchemaVersion() one step at a time, each step
// in its own transaction together with the version it leads to, so that a
// crash leaves the database at a version it really has.
func migrate(ctx context.Context, db *sql.DB) error {
	for {
		done, err := migrateStep(ctx, db)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func migrateStep(ctx context.Context, db *sql.DB) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: migrate: %w", err)
	}
	defer tx.Rollback()
	// One row, enforced by the CHECK, so that there is no doubt which
	// version the file is at.
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	)`); err != nil {
		return false, fmt.Errorf("sqlite: migrate: %w", err)
	}
	var v int
	err = tx.QueryRowContext(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		v = 0
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_version (id, version) VALUES (1, 0)"); err != nil {
			return false, fmt.Errorf("sqlite: migrate: %w", err)
		}
	} else if err != nil {
		return false, fmt.Errorf("sqlite: migrate: read version: %w", err)
	}
	switch {
	case v > len(migrations):
		return false, fmt.Errorf("sqlite: open: %w: database is at version %d, this code knows up to %d", store.ErrSchemaTooNew, v, len(migrations))
	case v < 0:
		return false, fmt.Errorf("sqlite: open: schema version %d is invalid", v)
	case v == len(migrations):
		return true, tx.Commit()
	}
	for i, stmt := range migrations[v] {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("sqlite: migrate to version %d, statement %d: %w", v+1, i, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE schema_version SET version = ? WHERE id = 1", v+1); err != nil {
		return false, fmt.Errorf("sqlite: migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: migrate to version %d: commit: %w", v+1, err)
	}
	return false, nil
}
