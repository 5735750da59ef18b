package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// CreateBlob implements store.Store. The foreign keys find an unknown owner
// or recipient device.
func (s *Store) CreateBlob(ctx context.Context, b store.Blob) error {
	if err := store.ValidateBlob(&b); err != nil {
		return fmt.Errorf("postgres: create blob: %w", err)
	}
	users := make([][]byte, len(b.Recipients))
	devices := make([][]byte, len(b.Recipients))
	for i, r := range b.Recipients {
		users[i], devices[i] = r.User[:], r.Device[:]
	}
	return s.tx(ctx, "create blob", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO blobs (id, owner_user, owner_device, size, expires, created)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			b.ID[:], b.OwnerUser[:], b.OwnerDevice[:], b.Size, ts(b.Expires), ts(b.Created))
		switch pgCode(err) {
		case "":
		case codeUniqueViolation:
			return fmt.Errorf("%w: blob %s", store.ErrExists, b.ID)
		case codeForeignKeyViolation:
			return fmt.Errorf("owner: %w: device %s of user %s", store.ErrNotFound, b.OwnerDevice, b.OwnerUser)
		}
		if err != nil {
			return err
		}
		// A recipient listed twice is one recipient; pos keeps the order
		// of the list.
		_, err = tx.Exec(ctx, `INSERT INTO blob_recipients (blob_id, user_id, device_id, pos)
			SELECT $1, r.user_id, r.device_id, r.pos
			FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS r (user_id, device_id, pos)
			ORDER BY r.pos
			ON CONFLICT DO NOTHING`, b.ID[:], users, devices)
		if pgCode(err) == codeForeignKeyViolation {
			return fmt.Errorf("recipient: %w: a recipient device does not exist", store.ErrNotFound)
		}
		return err
	})
}

// Blob implements store.Store: the blob and its recipients in one statement,
// so one snapshot.
func (s *Store) Blob(ctx context.Context, id store.BlobID, now time.Time) (store.Blob, error) {
	if err := s.check(ctx); err != nil {
		return store.Blob{}, fmt.Errorf("postgres: blob: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT b.owner_user, b.owner_device, b.size, b.expires, b.created,
			r.user_id, r.device_id, r.fetched
		FROM blobs b LEFT JOIN blob_recipients r ON r.blob_id = b.id
		WHERE b.id = $1 AND b.expires > $2
		ORDER BY r.pos`, id[:], ts(now))
	if err != nil {
		return store.Blob{}, s.fail(ctx, "blob", err)
	}
	defer rows.Close()
	b := store.Blob{ID: id}
	found := false
	for rows.Next() {
		found = true
		var owner, ownerDev, ru, rd []byte
		var fetched *bool
		if err := rows.Scan(&owner, &ownerDev, &b.Size, &b.Expires, &b.Created, &ru, &rd, &fetched); err != nil {
			return store.Blob{}, s.fail(ctx, "blob", err)
		}
		if err := errors.Join(scanID(b.OwnerUser[:], owner, "user ID"), scanID(b.OwnerDevice[:], ownerDev, "device ID")); err != nil {
			return store.Blob{}, s.fail(ctx, "blob", err)
		}
		if ru == nil { // no recipient left
			continue
		}
		var r store.BlobRecipient
		if err := errors.Join(scanID(r.User[:], ru, "user ID"), scanID(r.Device[:], rd, "device ID")); err != nil {
			return store.Blob{}, s.fail(ctx, "blob", err)
		}
		r.Fetched = fetched != nil && *fetched
		b.Recipients = append(b.Recipients, r)
	}
	if err := rows.Err(); err != nil {
		return store.Blob{}, s.fail(ctx, "blob", err)
	}
	if !found {
		return store.Blob{}, fmt.Errorf("postgres: blob: %w: blob %s", store.ErrNotFound, id)
	}
	b.Expires, b.Created = b.Expires.UTC(), b.Created.UTC()
	return b, nil
}

// MarkBlobFetched implements store.Store. The blob's row is locked first, so
// that recipients fetching at once are counted one after the other: without
// it, the last two could each still see the other unfetched, both report 1
// remaining, and nobody would delete the blob before it expires.
func (s *Store) MarkBlobFetched(ctx context.Context, id store.BlobID, user protocol.UserID, device protocol.DeviceID) (int, error) {
	var remaining int
	err := s.tx(ctx, "mark blob fetched", func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM blobs WHERE id = $1 FOR NO KEY UPDATE", id[:]).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: blob %s", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		// The count cannot see the UPDATE of its own statement, so it
		// leaves that recipient out.
		var updated, left int64
		err = tx.QueryRow(ctx, `
			WITH upd AS (
				UPDATE blob_recipients SET fetched = true
				WHERE blob_id = $1 AND user_id = $2 AND device_id = $3
				RETURNING 1
			)
			SELECT (SELECT count(*) FROM upd),
				(SELECT count(*) FROM blob_recipients
				 WHERE blob_id = $1 AND NOT fetched AND NOT (user_id = $2 AND device_id = $3))`,
			id[:], user[:], device[:]).Scan(&updated, &left)
		if err != nil {
			return err
		}
		if updated == 0 {
			return fmt.Errorf("%w: device %s of user %s, blob %s", store.ErrNotRecipient, device, user, id)
		}
		remaining = int(left)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return remaining, nil
}

// DeleteBlob implements store.Store.
func (s *Store) DeleteBlob(ctx context.Context, id store.BlobID) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: delete blob: %w", err)
	}
	tag, err := s.exec(ctx, "delete blob", "DELETE FROM blobs WHERE id = $1", id[:])
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete blob: %w: blob %s", store.ErrNotFound, id)
	}
	s.deleted.Store(true)
	return nil
}

// DeleteExpiredBlobs implements store.Store, in one statement, so that it is
// all or nothing: the caller deletes the files of exactly the IDs returned,
// and an error means no metadata was deleted (chunks committed one by one,
// as DeleteExpired does, would leave files nobody deletes if a later chunk
// failed). Blob rows are few (one per attachment, not per recipient), and a
// sweep every half minute deletes half a minute of expiries, so one
// statement stays short.
//
// Several nodes at once: FOR UPDATE SKIP LOCKED makes each node take the
// expired blobs no other transaction holds, without waiting; each ID is
// returned by exactly one node, so each file is deleted once. A blob
// skipped because another transaction held it (a sweeper or a DeleteBlob
// deleting it; a MarkBlobFetched counting its recipients) is gone when that
// one commits, or is taken by the next sweep.
func (s *Store) DeleteExpiredBlobs(ctx context.Context, now time.Time) ([]store.BlobID, error) {
	// In an explicit transaction rather than one autocommitted statement:
	// if reading the IDs fails, the rollback keeps the metadata, instead of
	// a committed DELETE whose IDs never reached the caller.
	var ids []store.BlobID
	err := s.tx(ctx, "delete expired blobs", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH doomed AS MATERIALIZED (
				SELECT id FROM blobs WHERE expires <= $1 FOR UPDATE SKIP LOCKED
			)
			DELETE FROM blobs b USING doomed WHERE b.id = doomed.id
			RETURNING b.id`, ts(now))
		if err != nil {
			return err
		}
		ids, err = scanBlobIDs(rows)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		s.deleted.Store(true)
	}
	return ids, nil
}
