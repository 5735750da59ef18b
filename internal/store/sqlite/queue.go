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
		// Full chunks through the multi-row insert, the rest row by row:
		// both prepared once (see statements), so a batch costs a few
		// statement executions, not one parse per message.
		i := 0
		if len(msgs) >= enqueueChunk {
			chunk := tx.StmtContext(ctx, s.st.enqueueChunk)
			args := make([]any, 0, 5*enqueueChunk)
			for ; i+enqueueChunk <= len(msgs); i += enqueueChunk {
				args = args[:0]
				for j := i; j < i+enqueueChunk; j++ {
					args = appendMessage(args, &msgs[j])
				}
				if _, err := chunk.ExecContext(ctx, args...); err != nil {
					return fmt.Errorf("messages %d to %d: %w", i, i+enqueueChunk-1, err)
				}
			}
		}
		if i < len(msgs) {
			one := tx.StmtContext(ctx, s.st.enqueueOne)
			args := make([]any, 0, 5)
			for ; i < len(msgs); i++ {
				if _, err := one.ExecContext(ctx, appendMessage(args[:0], &msgs[i])...); err != nil {
					return fmt.Errorf("message %d: %w", i, err)
				}
			}
		}
		return nil
	})
}

func appendMessage(args []any, m *store.QueuedMessage) []any {
	return append(args, m.User[:], m.Device[:], m.ID[:], nonNil(m.Envelope), toDB(m.Expires))
}

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context, user protocol.UserID, device protocol.DeviceID, now time.Time, limit int) ([]store.QueuedMessage, error) {
	return s.PendingAfter(ctx, user, device, 0, now, limit)
}

// PendingAfter implements store.Store.
func (s *Store) PendingAfter(ctx context.Context, user protocol.UserID, device protocol.DeviceID, after int64, now time.Time, limit int) ([]store.QueuedMessage, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: pending: %w: limit %d", store.ErrInvalid, limit)
	}
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: pending: %w", err)
	}
	// One statement is one snapshot: no transaction needed.
	rows, err := s.st.pendingAfter.QueryContext(ctx, user[:], device[:], after, toDB(now), limit)
	if err != nil {
		return nil, s.fail(ctx, "pending", err)
	}
	defer rows.Close()
	var msgs []store.QueuedMessage
	for rows.Next() {
		m := store.QueuedMessage{User: user, Device: device}
		var id []byte
		var expires int64
		if err := rows.Scan(&m.Seq, &id, &m.Envelope, &expires); err != nil {
			return nil, s.fail(ctx, "pending", err)
		}
		if err := scanID(m.ID[:], id, "message ID"); err != nil {
			return nil, s.fail(ctx, "pending", err)
		}
		m.Expires = fromDB(expires)
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "pending", err)
	}
	return msgs, nil
}

// Ack implements store.Store.
func (s *Store) Ack(ctx context.Context, user protocol.UserID, device protocol.DeviceID, id protocol.MessageID) error {
	return s.write(ctx, "ack", func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.st.ack).ExecContext(ctx, user[:], device[:], id[:])
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

// AckMany implements store.Store: one transaction, so one fsync, for the
// whole batch.
func (s *Store) AckMany(ctx context.Context, refs []store.MessageRef) (int, error) {
	for i := range refs {
		if err := store.ValidateMessageRef(&refs[i]); err != nil {
			return 0, fmt.Errorf("sqlite: ack: reference %d: %w", i, err)
		}
	}
	if len(refs) == 0 {
		if err := s.check(ctx); err != nil {
			return 0, fmt.Errorf("sqlite: ack: %w", err)
		}
		return 0, nil
	}
	var deleted int64
	err := s.write(ctx, "ack", func(tx *sql.Tx) error {
		deleted = 0
		st := tx.StmtContext(ctx, s.st.ack)
		for i := range refs {
			r := &refs[i]
			res, err := st.ExecContext(ctx, r.User[:], r.Device[:], r.ID[:])
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			deleted += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(deleted), nil
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
