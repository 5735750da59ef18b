package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// Enqueue implements store.Store: the whole batch is one transaction, so one
// fsync however many messages it holds.
func (s *Store) Enqueue(ctx context.Context, msgs []store.QueuedMessage) error {
	for i := range msgs {
		if err := store.ValidateQueuedMessage(&msgs[i]); err != nil {
			return fmt.Errorf("sqlite: enqueue: message %d: %w", i, err)
		}
	}
	if len(msgs) == 0 {
		if err := s.check(ctx); err != nil {
			return fmt.Errorf("sqlite: enqueue: %w", err)
		}
		return nil
	}
	return s.write(ctx, "enqueue", func(tx *sql.Tx) error {
		// The EXISTS makes a message for an unknown or revoked device a
		// no-op inside the same transaction that would insert it, so it
		// cannot slip in after a revocation or an account deletion.
		stmt, err := tx.PrepareContext(ctx, `
			INSERT INTO queue (user_id, device_id, message_id, envelope, expires_us)
			SELECT ?1, ?2, ?3, ?4, ?5
			WHERE EXISTS (SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2 AND revoked_us IS NULL)
			ON CONFLICT (user_id, device_id, message_id) DO NOTHING`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range msgs {
			m := &msgs[i]
			if _, err := stmt.ExecContext(ctx, m.User[:], m.Device[:], m.ID[:], nonNil(m.Envelope), toDB(m.Expires)); err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
		}
		return nil
	})
}

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context, user protocol.UserID, device protocol.DeviceID, now time.Time, limit int) ([]store.QueuedMessage, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: pending: %w: limit %d", store.ErrInvalid, limit)
	}
	var msgs []store.QueuedMessage
	err := s.read(ctx, "pending", func(tx *sql.Tx) error {
		msgs = nil
		rows, err := tx.QueryContext(ctx, `SELECT message_id, envelope, expires_us FROM queue
			WHERE user_id = ? AND device_id = ? AND expires_us > ?
			ORDER BY seq LIMIT ?`, user[:], device[:], toDB(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m := store.QueuedMessage{User: user, Device: device}
			var id []byte
			var expires int64
			if err := rows.Scan(&id, &m.Envelope, &expires); err != nil {
				return err
			}
			if err := scanID(m.ID[:], id, "message ID"); err != nil {
				return err
			}
			m.Expires = fromDB(expires)
			msgs = append(msgs, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

// Ack implements store.Store.
func (s *Store) Ack(ctx context.Context, user protocol.UserID, device protocol.DeviceID, id protocol.MessageID) error {
	return s.write(ctx, "ack", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM queue WHERE user_id = ? AND device_id = ? AND message_id = ?",
			user[:], device[:], id[:])
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: message %s for device %s", store.ErrNotFound, id, device)
		}
		return nil
	})
}

// DeleteExpired implements store.Store.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "delete expired", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM queue WHERE expires_us <= ?", toDB(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// QueueDepth implements store.Store.
func (s *Store) QueueDepth(ctx context.Context) (int, error) {
	var n int
	err := s.read(ctx, "queue depth", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, "SELECT count(*) FROM queue").Scan(&n)
	})
	return n, err
}
