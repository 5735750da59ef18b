package postgres

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// enqueueSQL inserts a batch, passed as arrays, in one statement (so one
// implicit transaction, one WAL flush).
//
// live share-locks the recipient devices that exist and are not revoked, in
// a fixed order. A RevokeDevice or DeleteUser that locked a device first is
// waited for, and the device is then re-checked (READ COMMITTED re-evaluates
// a locked row that changed): revoked or deleted, it is skipped. One that
// comes after waits for this statement to commit, and then deletes these
// messages with the device's others. Without the lock, a message could be
// inserted for a device revoked in the meantime (the foreign key's own
// KEY SHARE lock does not conflict with the UPDATE that revokes it).
//
// ORDER BY m.ord makes seq, which Pending sorts by, follow the order of the
// batch. ON CONFLICT DO NOTHING skips a message already queued, also when
// the batch holds it twice.
const enqueueSQL = `
WITH m AS MATERIALIZED (
	SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::timestamptz[])
		WITH ORDINALITY AS m (user_id, device_id, message_id, envelope, expires, ord)
), live AS MATERIALIZED (
	SELECT d.user_id, d.device_id FROM devices d
	WHERE (d.user_id, d.device_id) IN (SELECT user_id, device_id FROM m) AND d.revoked IS NULL
	ORDER BY d.user_id, d.device_id
	FOR SHARE OF d
)
INSERT INTO queue (user_id, device_id, message_id, envelope, expires)
SELECT m.user_id, m.device_id, m.message_id, m.envelope, m.expires
FROM m JOIN live USING (user_id, device_id)
ORDER BY m.ord
ON CONFLICT (user_id, device_id, message_id) DO NOTHING`

// Enqueue implements store.Store: the whole batch is one statement, so one
// transaction and one commit however many messages it holds.
func (s *Store) Enqueue(ctx context.Context, msgs []store.QueuedMessage) error {
	for i := range msgs {
		if err := store.ValidateQueuedMessage(&msgs[i]); err != nil {
			return fmt.Errorf("postgres: enqueue: message %d: %w", i, err)
		}
	}
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: enqueue: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	users := make([][]byte, len(msgs))
	devices := make([][]byte, len(msgs))
	ids := make([][]byte, len(msgs))
	envelopes := make([][]byte, len(msgs))
	expires := make([]time.Time, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		users[i], devices[i], ids[i] = m.User[:], m.Device[:], m.ID[:]
		envelopes[i] = nonNil(m.Envelope)
		expires[i] = ts(m.Expires)
	}
	_, err := s.exec(ctx, "enqueue", enqueueSQL, users, devices, ids, envelopes, expires)
	return err
}

// exec runs one statement (one implicit transaction), again if PostgreSQL
// aborts it as a deadlock victim.
func (s *Store) exec(ctx context.Context, op, sql string, args ...any) (pgconn.CommandTag, error) {
	for attempt := 1; ; attempt++ {
		tag, err := s.pool.Exec(ctx, sql, args...)
		if err == nil {
			return tag, nil
		}
		if c := pgCode(err); (c == codeDeadlock || c == codeSerializationFail) && attempt < maxAttempts && ctx.Err() == nil {
			continue
		}
		return tag, s.fail(ctx, op, err)
	}
}

// Pending implements store.Store.
func (s *Store) Pending(ctx context.Context, user protocol.UserID, device protocol.DeviceID, now time.Time, limit int) ([]store.QueuedMessage, error) {
	return s.PendingAfter(ctx, user, device, 0, now, limit)
}

// PendingAfter implements store.Store.
func (s *Store) PendingAfter(ctx context.Context, user protocol.UserID, device protocol.DeviceID, after int64, now time.Time, limit int) ([]store.QueuedMessage, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: pending: %w: limit %d", store.ErrInvalid, limit)
	}
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("postgres: pending: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, message_id, envelope, expires FROM queue
		WHERE user_id = $1 AND device_id = $2 AND seq > $3 AND expires > $4
		ORDER BY seq LIMIT $5`, user[:], device[:], after, ts(now), int64(limit))
	if err != nil {
		return nil, s.fail(ctx, "pending", err)
	}
	defer rows.Close()
	var msgs []store.QueuedMessage
	for rows.Next() {
		m := store.QueuedMessage{User: user, Device: device}
		var id []byte
		if err := rows.Scan(&m.Seq, &id, &m.Envelope, &m.Expires); err != nil {
			return nil, s.fail(ctx, "pending", err)
		}
		if err := scanID(m.ID[:], id, "message ID"); err != nil {
			return nil, s.fail(ctx, "pending", err)
		}
		m.Expires = m.Expires.UTC()
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "pending", err)
	}
	return msgs, nil
}

// Ack implements store.Store.
func (s *Store) Ack(ctx context.Context, user protocol.UserID, device protocol.DeviceID, id protocol.MessageID) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: ack: %w", err)
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM queue WHERE user_id = $1 AND device_id = $2 AND message_id = $3",
		user[:], device[:], id[:])
	if err != nil {
		return s.fail(ctx, "ack", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: ack: %w: message %s for device %s", store.ErrNotFound, id, device)
	}
	s.deleted.Store(true)
	return nil
}

// ackManySQL deletes a batch of acknowledged messages, passed as arrays, in
// one statement (one commit). AckMany sorts the batch, so that two nodes
// deleting overlapping batches tend to lock the rows in the same order;
// PostgreSQL may still pick another order, and a deadlock victim is run
// again by exec.
const ackManySQL = `
DELETE FROM queue q
USING unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS a (user_id, device_id, message_id)
WHERE q.user_id = a.user_id AND q.device_id = a.device_id AND q.message_id = a.message_id`

// AckMany implements store.Store.
func (s *Store) AckMany(ctx context.Context, refs []store.MessageRef) (int, error) {
	for i := range refs {
		if err := store.ValidateMessageRef(&refs[i]); err != nil {
			return 0, fmt.Errorf("postgres: ack: reference %d: %w", i, err)
		}
	}
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("postgres: ack: %w", err)
	}
	if len(refs) == 0 {
		return 0, nil
	}
	sorted := slices.Clone(refs)
	slices.SortFunc(sorted, func(a, b store.MessageRef) int {
		return cmp.Or(bytes.Compare(a.User[:], b.User[:]), bytes.Compare(a.Device[:], b.Device[:]), bytes.Compare(a.ID[:], b.ID[:]))
	})
	users := make([][]byte, len(sorted))
	devices := make([][]byte, len(sorted))
	ids := make([][]byte, len(sorted))
	for i := range sorted {
		users[i], devices[i], ids[i] = sorted[i].User[:], sorted[i].Device[:], sorted[i].ID[:]
	}
	tag, err := s.exec(ctx, "ack", ackManySQL, users, devices, ids)
	if err != nil {
		return 0, err
	}
	if tag.RowsAffected() > 0 {
		s.deleted.Store(true)
	}
	return int(tag.RowsAffected()), nil
}

// deleteExpiredSQL deletes one chunk of expired messages.
//
// Sweeping on several nodes at once: each chunk is its own short
// transaction that locks the rows it takes with FOR UPDATE SKIP LOCKED, so
// two nodes take disjoint chunks and neither waits for the other (no double
// work), and every row is deleted, and counted, by exactly one of them. A
// row a sweep skips is locked by someone deleting it (another sweeper, an
// Ack, a revocation, an account deletion; nothing else locks queue rows):
// if that deletion commits, it is gone; if it rolls back, the next sweep
// takes it (no lost delete). A sweep stops at the first chunk that comes
// back short, because then every expired row was either in its chunks or
// locked by another deleter at that moment.
//
// Chunks rather than one DELETE ... WHERE expires <= now: one statement
// would be as correct (a second node would wait on the first's row locks,
// then skip the rows it deleted), but a large backlog (after an outage, or a
// burst of short TTLs) would be one long transaction that holds its locks and
// blocks the other nodes' sweeps and Acks on those rows until the end, and
// the other nodes would only wait instead of sharing the work.
const deleteExpiredSQL = `
WITH doomed AS MATERIALIZED (
	SELECT seq FROM queue WHERE expires <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM queue q USING doomed WHERE q.seq = doomed.seq`

// DeleteExpired implements store.Store, in chunks of Options.SweepBatch rows,
// each committed on its own (see deleteExpiredSQL). If ctx ends or the
// database fails part-way, the chunks already committed stay deleted (they
// were expired, and the next sweep would have deleted them anyway): the
// count returned with the error is theirs.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		if err := s.check(ctx); err != nil {
			return total, fmt.Errorf("postgres: delete expired: %w", err)
		}
		tag, err := s.exec(ctx, "delete expired", deleteExpiredSQL, ts(now), int64(s.sweepBatch))
		if err != nil {
			return total, err
		}
		n := int(tag.RowsAffected())
		if n > 0 {
			s.deleted.Store(true)
		}
		total += n
		if n < s.sweepBatch {
			return total, nil
		}
	}
}

// QueueDepth implements store.Store.
func (s *Store) QueueDepth(ctx context.Context) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("postgres: queue depth: %w", err)
	}
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM queue").Scan(&n); err != nil {
		return 0, s.fail(ctx, "queue depth", err)
	}
	return int(n), nil
}

// scanBlobIDs reads a column of blob IDs and closes rows.
func scanBlobIDs(rows pgx.Rows) ([]store.BlobID, error) {
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
