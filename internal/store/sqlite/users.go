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

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if err := store.ValidateUser(&u); err != nil {
		return fmt.Errorf("sqlite: create user: %w", err)
	}
	return s.write(ctx, "create user", func(tx *sql.Tx) error {
		return insertUser(ctx, tx, &u)
	})
}

func insertUser(ctx context.Context, tx *sql.Tx, u *store.User) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO users (id, identity_key, created_us) VALUES (?, ?, ?)",
		u.ID[:], u.IdentityKey, toDB(u.Created))
	if isDuplicate(err) {
		return fmt.Errorf("%w: user %s", store.ErrExists, u.ID)
	}
	return err
}

// User implements store.Store.
func (s *Store) User(ctx context.Context, id protocol.UserID) (store.User, error) {
	u := store.User{ID: id}
	err := s.read(ctx, "user", func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, "SELECT identity_key, created_us FROM users WHERE id = ?", id[:]).
			Scan(&u.IdentityKey, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: user %s", store.ErrNotFound, id)
		}
		u.Created = fromDB(created)
		return err
	})
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// DeleteUser implements store.Store.
func (s *Store) DeleteUser(ctx context.Context, id protocol.UserID) ([]store.BlobID, error) {
	var blobs []store.BlobID
	err := s.write(ctx, "delete user", func(tx *sql.Tx) error {
		blobs = nil // a retry of fn must not see the previous attempt's IDs
		if err := userExists(ctx, tx, id); err != nil {
			return err
		}
		// The blobs the user owns, and those only this user was still
		// waiting for: once the user is gone nobody would fetch them.
		rows, err := tx.QueryContext(ctx, `
			SELECT id FROM blobs WHERE owner_user = ?1
			UNION
			SELECT r.blob_id FROM blob_recipients r
			WHERE r.user_id = ?1 AND r.fetched = 0 AND NOT EXISTS (
				SELECT 1 FROM blob_recipients o
				WHERE o.blob_id = r.blob_id AND o.user_id != ?1 AND o.fetched = 0)`, id[:])
		if err != nil {
			return err
		}
		blobs, err = scanBlobIDs(rows)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			if _, err := tx.ExecContext(ctx, "DELETE FROM blobs WHERE id = ?", b[:]); err != nil {
				return err
			}
		}
		// Devices, queued messages and the user's places among other blobs'
		// recipients go by ON DELETE CASCADE.
		_, err = tx.ExecContext(ctx, "DELETE FROM users WHERE id = ?", id[:])
		return err
	})
	if err != nil {
		return nil, err
	}
	return blobs, nil
}

func userExists(ctx context.Context, tx *sql.Tx, id protocol.UserID) error {
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM users WHERE id = ?", id[:]).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: user %s", store.ErrNotFound, id)
	}
	return err
}

// AddDevice implements store.Store.
func (s *Store) AddDevice(ctx context.Context, d store.Device) error {
	if err := store.ValidateDevice(&d); err != nil {
		return fmt.Errorf("sqlite: add device: %w", err)
	}
	return s.write(ctx, "add device", func(tx *sql.Tx) error {
		if err := userExists(ctx, tx, d.User); err != nil {
			return err
		}
		return insertDevice(ctx, tx, &d)
	})
}

func insertDevice(ctx context.Context, tx *sql.Tx, d *store.Device) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO devices
		(user_id, device_id, certificate, enc_key, auth_key, created_us)
		VALUES (?, ?, ?, ?, ?, ?)`,
		d.User[:], d.ID[:], d.Certificate, d.EncryptionKey, d.AuthKey, toDB(d.Created))
	if isDuplicate(err) {
		return fmt.Errorf("%w: device %s of user %s", store.ErrExists, d.ID, d.User)
	}
	return err
}

const deviceColumns = "device_id, certificate, enc_key, auth_key, created_us, revoked_us, revocation"

func scanDevice(sc interface{ Scan(...any) error }, user protocol.UserID) (store.Device, error) {
	d := store.Device{User: user}
	var id []byte
	var created int64
	var revoked sql.NullInt64
	if err := sc.Scan(&id, &d.Certificate, &d.EncryptionKey, &d.AuthKey, &created, &revoked, &d.Revocation); err != nil {
		return d, err
	}
	if err := scanID(d.ID[:], id, "device ID"); err != nil {
		return d, err
	}
	d.Created = fromDB(created)
	if revoked.Valid {
		d.RevokedAt = fromDB(revoked.Int64)
	}
	return d, nil
}

// Device implements store.Store.
func (s *Store) Device(ctx context.Context, user protocol.UserID, device protocol.DeviceID) (store.Device, error) {
	var d store.Device
	err := s.read(ctx, "device", func(tx *sql.Tx) error {
		var err error
		row := tx.QueryRowContext(ctx, "SELECT "+deviceColumns+" FROM devices WHERE user_id = ? AND device_id = ?",
			user[:], device[:])
		d, err = scanDevice(row, user)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: device %s of user %s", store.ErrNotFound, device, user)
		}
		return err
	})
	if err != nil {
		return store.Device{}, err
	}
	return d, nil
}

// Devices implements store.Store.
func (s *Store) Devices(ctx context.Context, user protocol.UserID) ([]store.Device, error) {
	var ds []store.Device
	err := s.read(ctx, "devices", func(tx *sql.Tx) error {
		ds = nil
		rows, err := tx.StmtContext(ctx, s.st.devices).QueryContext(ctx, user[:])
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDevice(rows, user)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ds) == 0 {
			var one int
			err := tx.StmtContext(ctx, s.st.userExists).QueryRowContext(ctx, user[:]).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: user %s", store.ErrNotFound, user)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// RevokeDevice implements store.Store.
func (s *Store) RevokeDevice(ctx context.Context, user protocol.UserID, device protocol.DeviceID, statement []byte, now time.Time) error {
	if len(statement) == 0 || now.IsZero() {
		return fmt.Errorf("sqlite: revoke device: %w: a revocation needs a statement and a time", store.ErrInvalid)
	}
	return s.write(ctx, "revoke device", func(tx *sql.Tx) error {
		var revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT revoked_us FROM devices WHERE user_id = ? AND device_id = ?",
			user[:], device[:]).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: device %s of user %s", store.ErrNotFound, device, user)
		}
		if err != nil {
			return err
		}
		if revoked.Valid {
			return fmt.Errorf("%w: device %s of user %s", store.ErrRevoked, device, user)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE devices SET revoked_us = ?, revocation = ? WHERE user_id = ? AND device_id = ?",
			toDB(now), statement, user[:], device[:]); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM queue WHERE user_id = ? AND device_id = ?", user[:], device[:])
		return err
	})
}

// CreateInvite implements store.Store.
func (s *Store) CreateInvite(ctx context.Context, inv store.Invite) error {
	if err := store.ValidateInvite(&inv); err != nil {
		return fmt.Errorf("sqlite: create invite: %w", err)
	}
	return s.write(ctx, "create invite", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO invites (token_hash, uses, expires_us, created_us) VALUES (?, ?, ?, ?)",
			inv.TokenHash[:], inv.Uses, toDB(inv.Expires), toDB(inv.Created))
		if isDuplicate(err) {
			return fmt.Errorf("%w: invite", store.ErrExists)
		}
		return err
	})
}

// ConsumeInvite implements store.Store. There is one writer connection and
// the decrement is one conditional UPDATE, so two callers racing for the
// last use are serialized and the second finds no use left.
func (s *Store) ConsumeInvite(ctx context.Context, tokenHash [32]byte, now time.Time) (int, error) {
	var remaining int
	err := s.write(ctx, "consume invite", func(tx *sql.Tx) error {
		var err error
		remaining, err = consumeInvite(ctx, tx, tokenHash, now)
		return err
	})
	if err != nil {
		return 0, err
	}
	return remaining, nil
}

func consumeInvite(ctx context.Context, tx *sql.Tx, tokenHash [32]byte, now time.Time) (int, error) {
	var remaining int
	err := tx.QueryRowContext(ctx, `UPDATE invites SET uses = uses - 1
		WHERE token_hash = ? AND uses > 0 AND expires_us > ? RETURNING uses`,
		tokenHash[:], toDB(now)).Scan(&remaining)
	if err == nil {
		return remaining, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	// Say why, for the operator's logs; the client sees ErrInviteInvalid.
	var uses int
	var expires int64
	err = tx.QueryRowContext(ctx, "SELECT uses, expires_us FROM invites WHERE token_hash = ?", tokenHash[:]).Scan(&uses, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, store.ErrInviteUnknown
	case err != nil:
		return 0, err
	case expires <= toDB(now):
		return 0, store.ErrInviteExpired
	default:
		return 0, store.ErrInviteUsed
	}
}

// DeleteInvite implements store.Store.
func (s *Store) DeleteInvite(ctx context.Context, tokenHash [32]byte) error {
	return s.write(ctx, "delete invite", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM invites WHERE token_hash = ?", tokenHash[:])
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrInviteUnknown
		}
		return nil
	})
}

// DeleteExpiredInvites implements store.Store.
func (s *Store) DeleteExpiredInvites(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "delete expired invites", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM invites WHERE expires_us <= ?", toDB(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// ActiveInvites implements store.Store.
func (s *Store) ActiveInvites(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.read(ctx, "active invites", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, "SELECT count(*) FROM invites WHERE expires_us > ? AND uses > 0", toDB(now)).Scan(&n)
	})
	return n, err
}

// Register implements store.Store.
func (s *Store) Register(ctx context.Context, u store.User, d store.Device, inviteHash *[32]byte, now time.Time) error {
	if err := store.ValidateUser(&u); err != nil {
		return fmt.Errorf("sqlite: register: %w", err)
	}
	if err := store.ValidateDevice(&d); err != nil {
		return fmt.Errorf("sqlite: register: %w", err)
	}
	if d.User != u.ID {
		return fmt.Errorf("sqlite: register: %w: device belongs to user %s, not %s", store.ErrInvalid, d.User, u.ID)
	}
	return s.write(ctx, "register", func(tx *sql.Tx) error {
		if inviteHash != nil {
			if _, err := consumeInvite(ctx, tx, *inviteHash, now); err != nil {
				return err
			}
		}
		if err := insertUser(ctx, tx, &u); err != nil {
			return err
		}
		return insertDevice(ctx, tx, &d)
	})
}
