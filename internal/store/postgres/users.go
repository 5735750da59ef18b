package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// execer is what a pool and a transaction have in common.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if err := store.ValidateUser(&u); err != nil {
		return fmt.Errorf("postgres: create user: %w", err)
	}
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: create user: %w", err)
	}
	if err := insertUser(ctx, s.pool, &u); err != nil {
		return s.fail(ctx, "create user", err)
	}
	return nil
}

func insertUser(ctx context.Context, q execer, u *store.User) error {
	_, err := q.Exec(ctx, "INSERT INTO users (id, identity_key, created) VALUES ($1, $2, $3)",
		u.ID[:], u.IdentityKey, ts(u.Created))
	if pgCode(err) == codeUniqueViolation {
		return fmt.Errorf("%w: user %s", store.ErrExists, u.ID)
	}
	return err
}

// User implements store.Store.
func (s *Store) User(ctx context.Context, id protocol.UserID) (store.User, error) {
	if err := s.check(ctx); err != nil {
		return store.User{}, fmt.Errorf("postgres: user: %w", err)
	}
	u := store.User{ID: id}
	err := s.pool.QueryRow(ctx, "SELECT identity_key, created FROM users WHERE id = $1", id[:]).
		Scan(&u.IdentityKey, &u.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, fmt.Errorf("postgres: user: %w: user %s", store.ErrNotFound, id)
	}
	if err != nil {
		return store.User{}, s.fail(ctx, "user", err)
	}
	u.Created = u.Created.UTC()
	return u, nil
}

// DeleteUser implements store.Store.
func (s *Store) DeleteUser(ctx context.Context, id protocol.UserID) ([]store.BlobID, error) {
	var blobs []store.BlobID
	err := s.tx(ctx, "delete user", func(tx pgx.Tx) error {
		blobs = nil // a retry must not see the previous attempt's IDs
		// Lock the user, so that a concurrent deletion of the same user
		// waits and then finds nobody.
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", id[:]).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: user %s", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		// The blobs the user owns, and those only this user was still
		// waiting for: once the user is gone nobody would fetch them.
		rows, err := tx.Query(ctx, `
			DELETE FROM blobs WHERE id IN (
				SELECT id FROM blobs WHERE owner_user = $1
				UNION
				SELECT r.blob_id FROM blob_recipients r
				WHERE r.user_id = $1 AND NOT r.fetched AND NOT EXISTS (
					SELECT 1 FROM blob_recipients o
					WHERE o.blob_id = r.blob_id AND o.user_id <> $1 AND NOT o.fetched))
			RETURNING id`, id[:])
		if err != nil {
			return err
		}
		blobs, err = scanBlobIDs(rows)
		if err != nil {
			return err
		}
		// Devices, queued messages and the user's places among other blobs'
		// recipients go by ON DELETE CASCADE.
		_, err = tx.Exec(ctx, "DELETE FROM users WHERE id = $1", id[:])
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deleted.Store(true)
	return blobs, nil
}

// AddDevice implements store.Store. The foreign key finds an unknown user.
func (s *Store) AddDevice(ctx context.Context, d store.Device) error {
	if err := store.ValidateDevice(&d); err != nil {
		return fmt.Errorf("postgres: add device: %w", err)
	}
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: add device: %w", err)
	}
	if err := insertDevice(ctx, s.pool, &d); err != nil {
		return s.fail(ctx, "add device", err)
	}
	return nil
}

func insertDevice(ctx context.Context, q execer, d *store.Device) error {
	_, err := q.Exec(ctx, `INSERT INTO devices
		(user_id, device_id, certificate, enc_key, auth_key, created)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		d.User[:], d.ID[:], d.Certificate, d.EncryptionKey, d.AuthKey, ts(d.Created))
	switch pgCode(err) {
	case codeUniqueViolation:
		return fmt.Errorf("%w: device %s of user %s", store.ErrExists, d.ID, d.User)
	case codeForeignKeyViolation:
		return fmt.Errorf("%w: user %s", store.ErrNotFound, d.User)
	}
	return err
}

const deviceColumns = "d.device_id, d.certificate, d.enc_key, d.auth_key, d.created, d.revoked, d.revocation"

// scanDevice reads deviceColumns. It reports false if the columns are NULL
// (the user of a LEFT JOIN has no device).
func scanDevice(sc pgx.Row, user protocol.UserID, extra ...any) (store.Device, bool, error) {
	d := store.Device{User: user}
	var id []byte
	var created, revoked *time.Time
	dest := append([]any{&id, &d.Certificate, &d.EncryptionKey, &d.AuthKey, &created, &revoked, &d.Revocation}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return d, false, err
	}
	if id == nil {
		return store.Device{}, false, nil
	}
	if err := scanID(d.ID[:], id, "device ID"); err != nil {
		return d, false, err
	}
	if created != nil {
		d.Created = created.UTC()
	}
	if revoked != nil {
		d.RevokedAt = revoked.UTC()
	}
	return d, true, nil
}

// Device implements store.Store.
func (s *Store) Device(ctx context.Context, user protocol.UserID, device protocol.DeviceID) (store.Device, error) {
	if err := s.check(ctx); err != nil {
		return store.Device{}, fmt.Errorf("postgres: device: %w", err)
	}
	row := s.pool.QueryRow(ctx, "SELECT "+deviceColumns+" FROM devices d WHERE d.user_id = $1 AND d.device_id = $2",
		user[:], device[:])
	d, _, err := scanDevice(row, user)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Device{}, fmt.Errorf("postgres: device: %w: device %s of user %s", store.ErrNotFound, device, user)
	}
	if err != nil {
		return store.Device{}, s.fail(ctx, "device", err)
	}
	return d, nil
}

// Devices implements store.Store. One statement, so one snapshot: the user
// with a LEFT JOIN on their devices, so that a user without devices is one
// row of NULLs and an unknown user no row.
func (s *Store) Devices(ctx context.Context, user protocol.UserID) ([]store.Device, error) {
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("postgres: devices: %w", err)
	}
	rows, err := s.pool.Query(ctx, "SELECT "+deviceColumns+` FROM users u
		LEFT JOIN devices d ON d.user_id = u.id
		WHERE u.id = $1 ORDER BY d.seq`, user[:])
	if err != nil {
		return nil, s.fail(ctx, "devices", err)
	}
	defer rows.Close()
	found := false
	var ds []store.Device
	for rows.Next() {
		found = true
		d, ok, err := scanDevice(rows, user)
		if err != nil {
			return nil, s.fail(ctx, "devices", err)
		}
		if ok {
			ds = append(ds, d)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "devices", err)
	}
	if !found {
		return nil, fmt.Errorf("postgres: devices: %w: user %s", store.ErrNotFound, user)
	}
	return ds, nil
}

// RevokeDevice implements store.Store. The device row is locked first: an
// Enqueue holding a share lock on it finishes before, and its messages are
// deleted with the others; one starting after sees the device revoked.
func (s *Store) RevokeDevice(ctx context.Context, user protocol.UserID, device protocol.DeviceID, statement []byte, now time.Time) error {
	if len(statement) == 0 || now.IsZero() {
		return fmt.Errorf("postgres: revoke device: %w: a revocation needs a statement and a time", store.ErrInvalid)
	}
	err := s.tx(ctx, "revoke device", func(tx pgx.Tx) error {
		var revoked *time.Time
		err := tx.QueryRow(ctx, "SELECT revoked FROM devices WHERE user_id = $1 AND device_id = $2 FOR NO KEY UPDATE",
			user[:], device[:]).Scan(&revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: device %s of user %s", store.ErrNotFound, device, user)
		}
		if err != nil {
			return err
		}
		if revoked != nil {
			return fmt.Errorf("%w: device %s of user %s", store.ErrRevoked, device, user)
		}
		if _, err := tx.Exec(ctx, "UPDATE devices SET revoked = $1, revocation = $2 WHERE user_id = $3 AND device_id = $4",
			ts(now), statement, user[:], device[:]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM queue WHERE user_id = $1 AND device_id = $2", user[:], device[:])
		return err
	})
	if err != nil {
		return err
	}
	s.deleted.Store(true)
	return nil
}

// CreateInvite implements store.Store.
func (s *Store) CreateInvite(ctx context.Context, inv store.Invite) error {
	if err := store.ValidateInvite(&inv); err != nil {
		return fmt.Errorf("postgres: create invite: %w", err)
	}
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: create invite: %w", err)
	}
	_, err := s.pool.Exec(ctx, "INSERT INTO invites (token_hash, uses, expires, created) VALUES ($1, $2, $3, $4)",
		inv.TokenHash[:], int64(inv.Uses), ts(inv.Expires), ts(inv.Created))
	if pgCode(err) == codeUniqueViolation {
		return fmt.Errorf("postgres: create invite: %w: invite", store.ErrExists)
	}
	if err != nil {
		return s.fail(ctx, "create invite", err)
	}
	return nil
}

// ConsumeInvite implements store.Store. The decrement is one conditional
// UPDATE: two callers racing for the last use, on any nodes, queue on the
// row lock, and the second re-evaluates uses > 0 on the row the first
// committed and finds no use left.
func (s *Store) ConsumeInvite(ctx context.Context, tokenHash [32]byte, now time.Time) (int, error) {
	var remaining int
	err := s.tx(ctx, "consume invite", func(tx pgx.Tx) error {
		var err error
		remaining, err = consumeInvite(ctx, tx, tokenHash, now)
		return err
	})
	if err != nil {
		return 0, err
	}
	return remaining, nil
}

func consumeInvite(ctx context.Context, tx pgx.Tx, tokenHash [32]byte, now time.Time) (int, error) {
	var remaining int64
	err := tx.QueryRow(ctx, `UPDATE invites SET uses = uses - 1
		WHERE token_hash = $1 AND uses > 0 AND expires > $2 RETURNING uses`,
		tokenHash[:], ts(now)).Scan(&remaining)
	if err == nil {
		return int(remaining), nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	// Say why, for the operator's logs; the client sees ErrInviteInvalid.
	var uses int64
	var expires time.Time
	err = tx.QueryRow(ctx, "SELECT uses, expires FROM invites WHERE token_hash = $1", tokenHash[:]).Scan(&uses, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, store.ErrInviteUnknown
	case err != nil:
		return 0, err
	case !expires.After(ts(now)):
		return 0, store.ErrInviteExpired
	default:
		return 0, store.ErrInviteUsed
	}
}

// DeleteInvite implements store.Store.
func (s *Store) DeleteInvite(ctx context.Context, tokenHash [32]byte) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("postgres: delete invite: %w", err)
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM invites WHERE token_hash = $1", tokenHash[:])
	if err != nil {
		return s.fail(ctx, "delete invite", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete invite: %w", store.ErrInviteUnknown)
	}
	return nil
}

// DeleteExpiredInvites implements store.Store. Invites are few; one
// statement. Two nodes running it at once delete each invite once: the
// second waits for the first's row locks, then skips the rows it deleted.
func (s *Store) DeleteExpiredInvites(ctx context.Context, now time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("postgres: delete expired invites: %w", err)
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM invites WHERE expires <= $1", ts(now))
	if err != nil {
		return 0, s.fail(ctx, "delete expired invites", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		s.deleted.Store(true)
		return int(n), nil
	}
	return 0, nil
}

// ActiveInvites implements store.Store.
func (s *Store) ActiveInvites(ctx context.Context, now time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("postgres: active invites: %w", err)
	}
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM invites WHERE expires > $1 AND uses > 0", ts(now)).Scan(&n); err != nil {
		return 0, s.fail(ctx, "active invites", err)
	}
	return int(n), nil
}

// Register implements store.Store: invite, user and device in one
// transaction. The invite's row stays locked until the commit, so a
// concurrent registration with the same invite waits and then sees the use
// taken, or, if this one fails and rolls back, still available.
func (s *Store) Register(ctx context.Context, u store.User, d store.Device, inviteHash *[32]byte, now time.Time) error {
	if err := store.ValidateUser(&u); err != nil {
		return fmt.Errorf("postgres: register: %w", err)
	}
	if err := store.ValidateDevice(&d); err != nil {
		return fmt.Errorf("postgres: register: %w", err)
	}
	if d.User != u.ID {
		return fmt.Errorf("postgres: register: %w: device belongs to user %s, not %s", store.ErrInvalid, d.User, u.ID)
	}
	return s.tx(ctx, "register", func(tx pgx.Tx) error {
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
