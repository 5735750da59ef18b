// Package store defines what qrtalkd keeps on disk and the interface every
// storage engine implements (SQLite for one machine, PostgreSQL for several).
//
// The server is meant to learn as little as possible, so the store holds only
// anonymous user IDs, public keys, opaque device certificates and revocation
// statements, invites (by the hash of their token), opaque envelopes queued
// for offline devices, and the metadata of opaque blobs. Nothing here can read
// a message.
//
// Conventions shared by every implementation, checked by the conformance
// suite in package storetest:
//
//   - The store has no clock: every time it compares against is passed in as
//     now, so that tests and several server nodes agree on what "expired"
//     means. Times are kept to the microsecond (PostgreSQL's precision) and
//     come back in UTC.
//   - Something expires at its expiry time: a message whose Expires equals now
//     is expired, and is never returned again, even before a sweep deletes it.
//   - Errors are wrapped with %w around the sentinel errors below, or are the
//     context's error when ctx ends first.
package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// Sentinel errors. Implementations wrap them with detail; test with errors.Is.
var (
	// ErrNotFound: the user, device, message, invite or blob does not exist
	// (or, for a blob, has expired).
	ErrNotFound = errors.New("not found")
	// ErrExists: a user, device, invite or blob with that ID already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalid: the input cannot be stored (a zero ID, a missing key, a
	// negative count, a non-positive limit). Nothing was changed.
	ErrInvalid = errors.New("invalid input")
	// ErrRevoked: the device is already revoked. A revocation is final, so
	// the first statement is kept.
	ErrRevoked = errors.New("device revoked")
	// ErrNotRecipient: the device is not among those allowed to fetch a blob.
	ErrNotRecipient = errors.New("not a recipient of the blob")
	// ErrSchemaTooNew: the database was written by a newer version of
	// qrtalkd. Opening it anyway could lose data the newer version relies
	// on, so the store refuses.
	ErrSchemaTooNew = errors.New("database schema is newer than this version of qrtalkd")
	// ErrClosed: the store or the QueueWriter is closed.
	ErrClosed = errors.New("closed")

	// ErrInviteInvalid is what every failed invite redemption matches, so a
	// server can answer with one error and reveal nothing about the token.
	ErrInviteInvalid = errors.New("invite invalid")
	// ErrInviteUnknown: no invite has that token hash.
	ErrInviteUnknown = fmt.Errorf("%w: unknown", ErrInviteInvalid)
	// ErrInviteUsed: the invite has no uses left.
	ErrInviteUsed = fmt.Errorf("%w: no uses left", ErrInviteInvalid)
	// ErrInviteExpired: the invite's expiry has passed.
	ErrInviteExpired = fmt.Errorf("%w: expired", ErrInviteInvalid)
)

// BlobIDSize is the size of a blob ID in bytes.
const BlobIDSize = 16

// A BlobID names an uploaded blob (128 random bits, from crypto/rand).
type BlobID [BlobIDSize]byte

// String returns the ID in lowercase hexadecimal, the form used in file names
// and URLs.
func (id BlobID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the all-zero ID, which is never valid.
func (id BlobID) IsZero() bool { return id == BlobID{} }

// A User is an account: nothing but a random ID and the identity public key
// whose fingerprint people compare.
type User struct {
	ID protocol.UserID
	// IdentityKey is the identity public key, PKIX DER.
	IdentityKey []byte
	Created     time.Time
}

// A Device is one device of a user. Its certificate is signed by the user's
// identity key; the store keeps it as opaque bytes, because the clients, not
// the server, are the ones who must be convinced by it.
type Device struct {
	User protocol.UserID
	ID   protocol.DeviceID
	// Certificate is the signed device certificate, opaque to the store.
	Certificate []byte
	// EncryptionKey is the device's encryption public key, PKIX DER.
	EncryptionKey []byte
	// AuthKey is the public key the device authenticates to the server
	// with, PKIX DER.
	AuthKey []byte
	Created time.Time
	// RevokedAt is zero while the device is active.
	RevokedAt time.Time
	// Revocation is the signed revocation statement, opaque to the store;
	// nil while the device is active. Revoked devices stay listed so that
	// clients can be shown the statement.
	Revocation []byte
}

// IsRevoked reports whether the device has been revoked.
func (d *Device) IsRevoked() bool { return !d.RevokedAt.IsZero() }

// An Invite lets someone register. Only the SHA-256 of its token is stored,
// so that a copy of the database does not hand out working invites.
type Invite struct {
	TokenHash [32]byte
	// Uses is how many registrations the invite still allows.
	Uses    int
	Expires time.Time
	Created time.Time
}

// A QueuedMessage is an opaque envelope waiting for one offline device.
// (User, Device, ID) is unique: enqueueing the same message twice stores it
// once, so that a sender's retry does not deliver it twice.
type QueuedMessage struct {
	User     protocol.UserID
	Device   protocol.DeviceID
	ID       protocol.MessageID
	Envelope []byte
	Expires  time.Time
	// Seq is the message's place in the queue, set by Pending and
	// PendingAfter (Enqueue ignores it): it grows with the enqueue order,
	// so that a reader can go on after the last message it saw. It is
	// positive. It is not a promise that no message with a smaller Seq
	// appears later: in PostgreSQL two transactions commit in any order,
	// and SQLite may reuse the Seq of the newest message once it is
	// deleted. A reader that must see everything reads from the start (0)
	// again when told that the queue grew.
	Seq int64
}

// A MessageRef names one queued copy: a message for one device.
type MessageRef struct {
	User   protocol.UserID
	Device protocol.DeviceID
	ID     protocol.MessageID
}

// A BlobRecipient is a device allowed to fetch a blob.
type BlobRecipient struct {
	User    protocol.UserID
	Device  protocol.DeviceID
	Fetched bool
}

// A Blob is the metadata of an encrypted attachment; its content lives in a
// file managed by the caller, named by ID.
type Blob struct {
	ID          BlobID
	OwnerUser   protocol.UserID
	OwnerDevice protocol.DeviceID
	// Size is the content's length in bytes.
	Size    int64
	Expires time.Time
	Created time.Time
	// Recipients are the devices allowed to fetch the blob; it can be
	// deleted once every one of them has.
	Recipients []BlobRecipient
}

// Remaining returns how many recipients have not fetched the blob yet.
func (b *Blob) Remaining() int {
	n := 0
	for _, r := range b.Recipients {
		if !r.Fetched {
			n++
		}
	}
	return n
}

// Store is what qrtalkd needs from a storage engine. Every method takes a
// context and returns its error when it ends first; a method that fails
// changes nothing. Implementations are safe for concurrent use.
type Store interface {
	// CreateUser adds a user. ErrExists if the ID is taken.
	CreateUser(ctx context.Context, u User) error
	// User returns a user, or ErrNotFound.
	User(ctx context.Context, id protocol.UserID) (User, error)
	// DeleteUser removes the user, their devices, the messages queued for
	// them and their blobs, in one transaction. It returns the IDs of the
	// blobs whose metadata is gone, so that the caller deletes their files:
	// those the user owned, and those no remaining device will fetch any
	// more because this user was the last one still waiting for them.
	DeleteUser(ctx context.Context, id protocol.UserID) ([]BlobID, error)

	// AddDevice adds a device to an existing user: ErrNotFound if the user
	// does not exist, ErrExists if the device does.
	AddDevice(ctx context.Context, d Device) error
	// Device returns one device, revoked or not, or ErrNotFound.
	Device(ctx context.Context, user protocol.UserID, device protocol.DeviceID) (Device, error)
	// Devices lists a user's devices, the revoked ones included, in the
	// order they were added. ErrNotFound if the user does not exist.
	Devices(ctx context.Context, user protocol.UserID) ([]Device, error)
	// RevokeDevice marks a device revoked at now, keeps the signed
	// statement, and deletes the messages queued for it, in one
	// transaction. ErrNotFound if the device does not exist, ErrRevoked if
	// it is already revoked.
	RevokeDevice(ctx context.Context, user protocol.UserID, device protocol.DeviceID, statement []byte, now time.Time) error

	// CreateInvite stores an invite. ErrExists if the hash is taken.
	CreateInvite(ctx context.Context, inv Invite) error
	// ConsumeInvite uses up one use of an invite, atomically: when callers
	// race for the last use, exactly one wins. It returns the uses left, or
	// an error matching ErrInviteInvalid (ErrInviteUnknown, ErrInviteUsed or
	// ErrInviteExpired).
	ConsumeInvite(ctx context.Context, tokenHash [32]byte, now time.Time) (remaining int, err error)
	// DeleteInvite removes an invite. ErrInviteUnknown if there is none.
	DeleteInvite(ctx context.Context, tokenHash [32]byte) error
	// ActiveInvites counts the invites that are unexpired at now and have
	// uses left.
	ActiveInvites(ctx context.Context, now time.Time) (int, error)
	// DeleteExpiredInvites removes the invites expired at now and returns
	// how many.
	DeleteExpiredInvites(ctx context.Context, now time.Time) (int, error)
	// Register creates a user and their first device and, unless inviteHash
	// is nil (open registration), consumes one use of the invite, all in one
	// transaction: a failed registration does not use up the invite, and a
	// consumed invite always has an account to show for it. d.User must be
	// u.ID.
	Register(ctx context.Context, u User, d Device, inviteHash *[32]byte, now time.Time) error

	// Enqueue stores a batch of messages in one transaction (one fsync).
	// A message already queued (same user, device and ID) is skipped, not
	// an error, so that retries are harmless. A message for a device that
	// does not exist or is revoked is skipped too: such a message must never
	// be stored, and a send racing an account deletion must not fail the
	// other messages of the batch. An invalid message fails the whole batch
	// with ErrInvalid; use ValidateQueuedMessage first to keep one bad
	// message from failing others.
	Enqueue(ctx context.Context, msgs []QueuedMessage) error
	// Pending returns up to limit messages queued for a device that have
	// not expired at now, oldest first (in the order they were enqueued).
	// ErrInvalid if limit is not positive.
	Pending(ctx context.Context, user protocol.UserID, device protocol.DeviceID, now time.Time, limit int) ([]QueuedMessage, error)
	// PendingAfter is Pending for the messages whose Seq is greater than
	// after (Pending is PendingAfter from 0): a reader that pushed a
	// device's queue up to some message goes on from there instead of
	// reading the head again.
	PendingAfter(ctx context.Context, user protocol.UserID, device protocol.DeviceID, after int64, now time.Time, limit int) ([]QueuedMessage, error)
	// Ack deletes a delivered message. ErrNotFound if it is not queued
	// (already acknowledged, expired and swept, or never queued).
	Ack(ctx context.Context, user protocol.UserID, device protocol.DeviceID, id protocol.MessageID) error
	// AckMany deletes delivered messages, of any devices, in one
	// transaction (one fsync), and returns how many it deleted. Messages
	// that are not queued are skipped, not an error. An invalid reference
	// (a zero ID) fails the whole call with ErrInvalid.
	AckMany(ctx context.Context, refs []MessageRef) (int, error)
	// DeleteExpired deletes the messages expired at now and returns how
	// many.
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
	// QueueDepth returns how many messages are queued, expired or not, for
	// metrics.
	QueueDepth(ctx context.Context) (int, error)

	// CreateBlob stores a blob's metadata, with every recipient unfetched.
	// ErrExists if the ID is taken, ErrNotFound if the owner or a recipient
	// device does not exist, ErrInvalid if there is no recipient.
	CreateBlob(ctx context.Context, b Blob) error
	// Blob returns a blob's metadata, or ErrNotFound if it does not exist or
	// has expired at now.
	Blob(ctx context.Context, id BlobID, now time.Time) (Blob, error)
	// MarkBlobFetched records that a recipient device fetched the blob and
	// returns how many recipients have not; at zero the caller deletes the
	// file and calls DeleteBlob. Fetching twice counts once. ErrNotFound if
	// the blob does not exist, ErrNotRecipient if the device is not among
	// its recipients.
	MarkBlobFetched(ctx context.Context, id BlobID, user protocol.UserID, device protocol.DeviceID) (remaining int, err error)
	// DeleteBlob removes a blob's metadata. ErrNotFound if there is none.
	DeleteBlob(ctx context.Context, id BlobID) error
	// DeleteExpiredBlobs removes the metadata of the blobs expired at now
	// and returns their IDs, so that the caller deletes the files.
	DeleteExpiredBlobs(ctx context.Context, now time.Time) ([]BlobID, error)

	// Vacuum is what the sweeper calls after deleting: it returns freed
	// space to the file system and, where the engine allows, makes sure
	// deleted rows are no longer in any file the store wrote (SQLite:
	// incremental vacuum and a truncating WAL checkpoint).
	Vacuum(ctx context.Context) error

	// Close releases the store. Calling it again does nothing.
	Close() error
}

// ValidateUser reports, as ErrInvalid, why u cannot be stored.
func ValidateUser(u *User) error {
	switch {
	case u.ID.IsZero():
		return fmt.Errorf("%w: zero user ID", ErrInvalid)
	case len(u.IdentityKey) == 0:
		return fmt.Errorf("%w: user %s has no identity key", ErrInvalid, u.ID)
	}
	return nil
}

// ValidateDevice reports, as ErrInvalid, why d cannot be stored as a new
// (active) device.
func ValidateDevice(d *Device) error {
	switch {
	case d.User.IsZero():
		return fmt.Errorf("%w: zero user ID", ErrInvalid)
	case d.ID.IsZero():
		return fmt.Errorf("%w: zero device ID", ErrInvalid)
	case len(d.Certificate) == 0:
		return fmt.Errorf("%w: device %s has no certificate", ErrInvalid, d.ID)
	case len(d.EncryptionKey) == 0:
		return fmt.Errorf("%w: device %s has no encryption key", ErrInvalid, d.ID)
	case len(d.AuthKey) == 0:
		return fmt.Errorf("%w: device %s has no authentication key", ErrInvalid, d.ID)
	case !d.RevokedAt.IsZero() || d.Revocation != nil:
		return fmt.Errorf("%w: a new device cannot be revoked already; use RevokeDevice", ErrInvalid)
	}
	return nil
}

// ValidateInvite reports, as ErrInvalid, why inv cannot be stored.
func ValidateInvite(inv *Invite) error {
	switch {
	case inv.TokenHash == [32]byte{}:
		return fmt.Errorf("%w: zero invite hash", ErrInvalid)
	case inv.Uses < 1:
		return fmt.Errorf("%w: invite must allow at least one use, got %d", ErrInvalid, inv.Uses)
	}
	return nil
}

// ValidateQueuedMessage reports, as ErrInvalid, why m cannot be queued. The
// QueueWriter calls it before a message joins a batch.
func ValidateQueuedMessage(m *QueuedMessage) error {
	switch {
	case m.User.IsZero():
		return fmt.Errorf("%w: zero user ID", ErrInvalid)
	case m.Device.IsZero():
		return fmt.Errorf("%w: zero device ID", ErrInvalid)
	case m.ID.IsZero():
		return fmt.Errorf("%w: zero message ID", ErrInvalid)
	case m.Expires.IsZero():
		return fmt.Errorf("%w: message %s has no expiry", ErrInvalid, m.ID)
	}
	return nil
}

// ValidateMessageRef reports, as ErrInvalid, why r cannot name a queued
// message.
func ValidateMessageRef(r *MessageRef) error {
	switch {
	case r.User.IsZero():
		return fmt.Errorf("%w: zero user ID", ErrInvalid)
	case r.Device.IsZero():
		return fmt.Errorf("%w: zero device ID", ErrInvalid)
	case r.ID.IsZero():
		return fmt.Errorf("%w: zero message ID", ErrInvalid)
	}
	return nil
}

// ValidateBlob reports, as ErrInvalid, why b cannot be stored.
func ValidateBlob(b *Blob) error {
	switch {
	case b.ID.IsZero():
		return fmt.Errorf("%w: zero blob ID", ErrInvalid)
	case b.OwnerUser.IsZero() || b.OwnerDevice.IsZero():
		return fmt.Errorf("%w: blob %s has no owner", ErrInvalid, b.ID)
	case b.Size < 0:
		return fmt.Errorf("%w: blob %s has negative size %d", ErrInvalid, b.ID, b.Size)
	case b.Expires.IsZero():
		return fmt.Errorf("%w: blob %s has no expiry", ErrInvalid, b.ID)
	case len(b.Recipients) == 0:
		// Nobody could ever fetch it, so it would only wait for expiry.
		return fmt.Errorf("%w: blob %s has no recipient", ErrInvalid, b.ID)
	}
	for _, r := range b.Recipients {
		if r.User.IsZero() || r.Device.IsZero() {
			return fmt.Errorf("%w: blob %s has a zero recipient", ErrInvalid, b.ID)
		}
	}
	return nil
}
