package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// The statements of the hot paths (routing, queueing, draining,
// acknowledging) are prepared once, when the store opens, instead of being
// parsed again on every call: database/sql keeps each one prepared on every
// connection it has run on, and a transaction reuses it through Tx.Stmt.
// Parsing was about a tenth of the server's CPU before.

// enqueueChunk is how many messages one prepared multi-row insert takes;
// a batch is written as full chunks, then the rest one row at a time.
const enqueueChunk = 32

// enqueueRows builds the insert of n messages. The EXISTS makes a message
// for an unknown or revoked device a no-op inside the same transaction
// that would insert it, so it cannot slip in after a revocation or an
// account deletion. The VALUES are read in order, so seq follows the
// batch's order.
func enqueueRows(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO queue (user_id, device_id, message_id, envelope, expires_us)
		SELECT v.column1, v.column2, v.column3, v.column4, v.column5 FROM (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?)")
	}
	b.WriteString(`) AS v
		WHERE EXISTS (SELECT 1 FROM devices d WHERE d.user_id = v.column1 AND d.device_id = v.column2 AND d.revoked_us IS NULL)
		ON CONFLICT (user_id, device_id, message_id) DO NOTHING`)
	return b.String()
}

type statements struct {
	// On the read pool.
	devices, userExists, pendingAfter *sql.Stmt
	// On the writer.
	enqueueOne, enqueueChunk, ack *sql.Stmt
}

func (s *Store) prepare(ctx context.Context) error {
	var err error
	prep := func(db *sql.DB, query string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = db.PrepareContext(ctx, query)
		return st
	}
	s.st.devices = prep(s.r, "SELECT "+deviceColumns+" FROM devices WHERE user_id = ? ORDER BY rowid")
	s.st.userExists = prep(s.r, "SELECT 1 FROM users WHERE id = ?")
	s.st.pendingAfter = prep(s.r, `SELECT seq, message_id, envelope, expires_us FROM queue
		WHERE user_id = ? AND device_id = ? AND seq > ? AND expires_us > ?
		ORDER BY seq LIMIT ?`)
	s.st.enqueueOne = prep(s.w, enqueueRows(1))
	s.st.enqueueChunk = prep(s.w, enqueueRows(enqueueChunk))
	s.st.ack = prep(s.w, "DELETE FROM queue WHERE user_id = ? AND device_id = ? AND message_id = ?")
	if err != nil {
		s.closeStatements()
		return fmt.Errorf("sqlite: open: preparing statements: %w", err)
	}
	return nil
}

func (s *Store) closeStatements() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.st.devices, s.st.userExists, s.st.pendingAfter, s.st.enqueueOne, s.st.enqueueChunk, s.st.ack} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}
