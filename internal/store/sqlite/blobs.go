package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// CreateBlob implements store.Store.
func (s *Store) CreateBlob(ctx context.Context, b store.Blob) error {
	if err := store.ValidateBlob(&b); err != nil {
		return fmt.Errorf("sqlite: create blob: %w", err)
	}
	return s.write(ctx, "create blob", func(tx *sql.Tx) error {
		if err := deviceExists(ctx, tx, b.OwnerUser, b.OwnerDevice); err != nil {
			return fmt.Errorf("owner: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO blobs (id, owner_user, owner_device, size, expires_us, created_us)
			VALUES (?, ?, ?, ?, ?, ?)`,
			b.ID[:], b.OwnerUser[:], b.OwnerDevice[:], b.Size, toDB(b.Expires), toDB(b.Created))
		if isDuplicate(err) {
			return fmt.Errorf("%w: blob %s", store.ErrExists, b.ID)
		}
		if err != nil {
			return err
		}
		for _, r := range b.Recipients {
			if err := deviceExists(ctx, tx, r.User, r.Device); err != nil {
				return fmt.Errorf("recipient: %w", err)
			}
			// A recipient listed twice is one recipient.
			if _, err := tx.ExecContext(ctx, `INSERT INTO blob_recipients (blob_id, user_id, device_id)
				VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, b.ID[:], r.User[:], r.Device[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

func deviceExists(ctx context.Context, tx *sql.Tx, user protocol.UserID, device protocol.DeviceID) error {
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", user[:], device[:]).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: device %s of user %s", store.ErrNotFound, device, user)
	}
	return err
}

// Blob implements store.Store.
func (s *Store) Blob(ctx context.Context, id store.BlobID, now time.Time) (store.Blob, error) {
	b := store.Blob{ID: id}
	err := s.read(ctx, "blob", func(tx *sql.Tx) error {
		b.Recipients = nil
		var owner, ownerDev []byte
		var expires, created int64
		err := tx.QueryRowContext(ctx, `SELECT owner_user, owner_device, size, expires_us, created_us
			FROM blobs WHERE id = ? AND expires_us > ?`, id[:], toDB(now)).
			Scan(&owner, &ownerDev, &b.Size, &expires, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: blob %s", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if err := scanID(b.OwnerUser[:], owner, "user ID"); err != nil {
			return err
		}
		if err := scanID(b.OwnerDevice[:], ownerDev, "device ID"); err != nil {
			return err
		}
		b.Expires, b.Created = fromDB(expires), fromDB(created)
		rows, err := tx.QueryContext(ctx, "SELECT user_id, device_id, fetched FROM blob_recipients WHERE blob_id = ? ORDER BY rowid", id[:])
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u, d []byte
			var r store.BlobRecipient
			if err := rows.Scan(&u, &d, &r.Fetched); err != nil {
				return err
			}
			if err := scanID(r.User[:], u, "user ID"); err != nil {
				return err
			}
			if err := scanID(r.Device[:], d, "device ID"); err != nil {
				return err
			}
			b.Recipients = append(b.Recipients, r)
		}
		return rows.Err()
	})
	if err != nil {
		return store.Blob{}, err
	}
	return b, nil
}

// MarkBlobFetched implements store.Store.
func (s *Store) MarkBlobFetched(ctx context.Context, id store.BlobID, user protocol.UserID, device protocol.DeviceID) (int, error) {
	var remaining int
	err := s.write(ctx, "mark blob fetched", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM blobs WHERE id = ?", id[:]).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: blob %s", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "UPDATE blob_recipients SET fetched = 1 WHERE blob_id = ? AND user_id = ? AND device_id = ?",
			id[:], user[:], device[:])
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: device %s of user %s, blob %s", store.ErrNotRecipient, device, user, id)
		}
		return tx.QueryRowContext(ctx, "SELECT count(*) FROM blob_recipients WHERE blob_id = ? AND fetched = 0", id[:]).Scan(&remaining)
	})
	if err != nil {
		return 0, err
	}
	return remaining, nil
}

// DeleteBlob implements store.Store.
func (s *Store) DeleteBlob(ctx context.Context, id store.BlobID) error {
	return s.write(ctx, "delete blob", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM blobs WHERE id = ?", id[:])
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: blob %s", store.ErrNotFound, id)
		}
		return nil
	})
}

// DeleteExpiredBlobs implements store.Store.
func (s *Store) DeleteExpiredBlobs(ctx context.Context, now time.Time) ([]store.BlobID, error) {
	var ids []store.BlobID
	err := s.write(ctx, "delete expired blobs", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "DELETE FROM blobs WHERE expires_us <= ? RETURNING id", toDB(now))
		if err != nil {
			return err
		}
		ids, err = scanBlobIDs(rows)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// scanBlobIDs reads a column of blob IDs and closes rows.
func scanBlobIDs(rows *sql.Rows) ([]store.BlobID, error) {
	defer rows.Close()
	var ids []store.BlobID
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var id store.BlobID
		if err := scanID(id[:], raw, "blob ID"); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return ids, nil
}
