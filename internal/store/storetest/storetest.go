// Package storetest is the conformance suite every store.Store runs, so that
// the SQLite and PostgreSQL stores behave the same wherever the server
// relies on it: errors, uniqueness, atomicity, expiry and ordering.
//
// An implementation's test calls Run with a function that opens a fresh,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// Run runs the suite. open must return a new, empty store each time it is
// called; the suite closes it when the subtest ends (Close must therefore
// tolerate a second call, if open also registers one).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"Devices", testDevices},
		{"RevokeDevice", testRevokeDevice},
		{"Invites", testInvites},
		{"InviteRace", testInviteRace},
		{"Register", testRegister},
		{"RegisterRace", testRegisterRace},
		{"Queue", testQueue},
		{"QueueExpiry", testQueueExpiry},
		{"QueueOrder", testQueueOrder},
		{"QueueSkipsUnknownDevices", testQueueSkipsUnknownDevices},
		{"QueueInvalidBatch", testQueueInvalidBatch},
		{"QueueConcurrent", testQueueConcurrent},
		{"QueueLargeBatch", testQueueLargeBatch},
		{"PendingAfter", testPendingAfter},
		{"AckMany", testAckMany},
		{"Blobs", testBlobs},
		{"BlobExpiry", testBlobExpiry},
		{"DeleteUser", testDeleteUser},
		{"ContextCanceled", testContextCanceled},
		{"ZeroInputs", testZeroInputs},
		{"Vacuum", testVacuum},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

// t0 has sub-second digits down to the microsecond, the precision stores
// must keep.
var t0 = time.Date(2031, 3, 14, 15, 9, 26, 535897000, time.UTC)

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newUser(t *testing.T) store.User {
	return store.User{ID: protocol.NewUserID(), IdentityKey: randBytes(t, 422), Created: t0}
}

func newDevice(t *testing.T, u protocol.UserID) store.Device {
	return store.Device{
		User:          u,
		ID:            protocol.NewDeviceID(),
		Certificate:   randBytes(t, 700),
		EncryptionKey: randBytes(t, 422),
		AuthKey:       randBytes(t, 422),
		Created:       t0.Add(time.Second),
	}
}

// account registers a user with one device.
func account(t *testing.T, s store.Store) (store.User, store.Device) {
	t.Helper()
	u := newUser(t)
	d := newDevice(t, u.ID)
	if err := s.Register(context.Background(), u, d, nil, t0); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return u, d
}

// addDevice adds another device to u.
func addDevice(t *testing.T, s store.Store, u protocol.UserID) store.Device {
	t.Helper()
	d := newDevice(t, u)
	if err := s.AddDevice(context.Background(), d); err != nil {
		t.Fatalf("AddDevice: %v", err)
	}
	return d
}

func msg(t *testing.T, d store.Device, expires time.Time) store.QueuedMessage {
	return store.QueuedMessage{User: d.User, Device: d.ID, ID: protocol.NewMessageID(), Envelope: randBytes(t, 100), Expires: expires}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func pending(t *testing.T, s store.Store, d store.Device, now time.Time) []store.QueuedMessage {
	t.Helper()
	ms, err := s.Pending(context.Background(), d.User, d.ID, now, 1000)
	must(t, "Pending", err)
	return ms
}

func ids(ms []store.QueuedMessage) []protocol.MessageID {
	out := make([]protocol.MessageID, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func depth(t *testing.T, s store.Store) int {
	t.Helper()
	n, err := s.QueueDepth(context.Background())
	must(t, "QueueDepth", err)
	return n
}

func equalDevice(a, b store.Device) bool {
	return a.User == b.User && a.ID == b.ID &&
		bytes.Equal(a.Certificate, b.Certificate) &&
		bytes.Equal(a.EncryptionKey, b.EncryptionKey) &&
		bytes.Equal(a.AuthKey, b.AuthKey) &&
		a.Created.Equal(b.Created) && a.RevokedAt.Equal(b.RevokedAt) &&
		bytes.Equal(a.Revocation, b.Revocation)
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := newUser(t)
	must(t, "CreateUser", s.CreateUser(ctx, u))
	got, err := s.User(ctx, u.ID)
	must(t, "User", err)
	if got.ID != u.ID || !bytes.Equal(got.IdentityKey, u.IdentityKey) || !got.Created.Equal(u.Created) {
		t.Fatalf("User = %+v, want %+v", got, u)
	}
	if got.Created.Location() != time.UTC {
		t.Errorf("Created is in %v, want UTC", got.Created.Location())
	}

	dup := newUser(t)
	dup.ID = u.ID
	wantErr(t, "CreateUser twice", s.CreateUser(ctx, dup), store.ErrExists)
	got, _ = s.User(ctx, u.ID)
	if !bytes.Equal(got.IdentityKey, u.IdentityKey) {
		t.Fatal("a refused CreateUser changed the stored key")
	}

	_, err = s.User(ctx, protocol.NewUserID())
	wantErr(t, "User(unknown)", err, store.ErrNotFound)

	wantErr(t, "CreateUser(zero ID)", s.CreateUser(ctx, store.User{IdentityKey: []byte{1}}), store.ErrInvalid)
	wantErr(t, "CreateUser(no key)", s.CreateUser(ctx, store.User{ID: protocol.NewUserID()}), store.ErrInvalid)
}

func testDevices(t *testing.T, s store.Store) {
	ctx := context.Background()
	wantErr(t, "AddDevice(unknown user)", s.AddDevice(ctx, newDevice(t, protocol.NewUserID())), store.ErrNotFound)

	u := newUser(t)
	must(t, "CreateUser", s.CreateUser(ctx, u))
	list, err := s.Devices(ctx, u.ID)
	must(t, "Devices(no device yet)", err)
	if len(list) != 0 {
		t.Fatalf("Devices of a user without devices = %d entries", len(list))
	}

	var want []store.Device
	for i := range 3 {
		d := newDevice(t, u.ID)
		d.Created = t0.Add(time.Duration(i) * time.Hour)
		must(t, "AddDevice", s.AddDevice(ctx, d))
		want = append(want, d)
	}
	wantErr(t, "AddDevice twice", s.AddDevice(ctx, want[1]), store.ErrExists)

	got, err := s.Device(ctx, u.ID, want[1].ID)
	must(t, "Device", err)
	if !equalDevice(got, want[1]) || got.IsRevoked() {
		t.Fatalf("Device = %+v, want %+v", got, want[1])
	}
	_, err = s.Device(ctx, u.ID, protocol.NewDeviceID())
	wantErr(t, "Device(unknown)", err, store.ErrNotFound)
	_, err = s.Device(ctx, protocol.NewUserID(), want[0].ID)
	wantErr(t, "Device(other user)", err, store.ErrNotFound)

	list, err = s.Devices(ctx, u.ID)
	must(t, "Devices", err)
	if len(list) != len(want) {
		t.Fatalf("Devices = %d entries, want %d", len(list), len(want))
	}
	for i := range want {
		if !equalDevice(list[i], want[i]) {
			t.Errorf("Devices[%d] = %+v, want %+v", i, list[i], want[i])
		}
	}
	_, err = s.Devices(ctx, protocol.NewUserID())
	wantErr(t, "Devices(unknown user)", err, store.ErrNotFound)

	bad := newDevice(t, u.ID)
	bad.AuthKey = nil
	wantErr(t, "AddDevice(no auth key)", s.AddDevice(ctx, bad), store.ErrInvalid)
	bad = newDevice(t, u.ID)
	bad.ID = protocol.DeviceID{}
	wantErr(t, "AddDevice(zero ID)", s.AddDevice(ctx, bad), store.ErrInvalid)
	bad = newDevice(t, u.ID)
	bad.RevokedAt = t0
	wantErr(t, "AddDevice(revoked)", s.AddDevice(ctx, bad), store.ErrInvalid)
}

func testRevokeDevice(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, d1 := account(t, s)
	d2 := addDevice(t, s, u.ID)
	now := t0.Add(time.Minute)
	must(t, "Enqueue", s.Enqueue(ctx, []store.QueuedMessage{msg(t, d1, now.Add(time.Hour)), msg(t, d1, now.Add(time.Hour)), msg(t, d2, now.Add(time.Hour))}))

	statement := randBytes(t, 384)
	revokedAt := t0.Add(2 * time.Minute)
	must(t, "RevokeDevice", s.RevokeDevice(ctx, u.ID, d1.ID, statement, revokedAt))

	got, err := s.Device(ctx, u.ID, d1.ID)
	must(t, "Device", err)
	if !got.IsRevoked() || !got.RevokedAt.Equal(revokedAt) || !bytes.Equal(got.Revocation, statement) {
		t.Fatalf("revoked device = revoked %v at %v, statement kept %v", got.IsRevoked(), got.RevokedAt, bytes.Equal(got.Revocation, statement))
	}
	list, err := s.Devices(ctx, u.ID)
	must(t, "Devices", err)
	if len(list) != 2 || !list[0].IsRevoked() || list[1].IsRevoked() {
		t.Fatalf("Devices after revocation: %d entries, revoked flags %v %v", len(list), list[0].IsRevoked(), len(list) > 1 && list[1].IsRevoked())
	}

	if ms := pending(t, s, d1, now); len(ms) != 0 {
		t.Fatalf("revoked device still has %d queued messages", len(ms))
	}
	if ms := pending(t, s, d2, now); len(ms) != 1 {
		t.Fatalf("other device has %d queued messages, want 1", len(ms))
	}
	if n := depth(t, s); n != 1 {
		t.Fatalf("QueueDepth = %d, want 1 (the revoked device's messages are deleted)", n)
	}
	must(t, "Enqueue for a revoked device", s.Enqueue(ctx, []store.QueuedMessage{msg(t, d1, now.Add(time.Hour))}))
	if ms := pending(t, s, d1, now); len(ms) != 0 {
		t.Fatal("a message was queued for a revoked device")
	}

	wantErr(t, "RevokeDevice twice", s.RevokeDevice(ctx, u.ID, d1.ID, randBytes(t, 10), now), store.ErrRevoked)
	got, _ = s.Device(ctx, u.ID, d1.ID)
	if !bytes.Equal(got.Revocation, statement) || !got.RevokedAt.Equal(revokedAt) {
		t.Fatal("a second revocation replaced the first statement")
	}
	wantErr(t, "RevokeDevice(unknown)", s.RevokeDevice(ctx, u.ID, protocol.NewDeviceID(), statement, now), store.ErrNotFound)
	wantErr(t, "RevokeDevice(no statement)", s.RevokeDevice(ctx, u.ID, d2.ID, nil, now), store.ErrInvalid)
}

func invite(t *testing.T, uses int, expires time.Time) store.Invite {
	return store.Invite{TokenHash: sha256.Sum256(randBytes(t, 32)), Uses: uses, Expires: expires, Created: t0}
}

func testInvites(t *testing.T, s store.Store) {
	ctx := context.Background()
	inv := invite(t, 3, t0.Add(time.Hour))
	must(t, "CreateInvite", s.CreateInvite(ctx, inv))
	wantErr(t, "CreateInvite twice", s.CreateInvite(ctx, inv), store.ErrExists)

	for want := 2; want >= 0; want-- {
		n, err := s.ConsumeInvite(ctx, inv.TokenHash, t0)
		must(t, "ConsumeInvite", err)
		if n != want {
			t.Fatalf("ConsumeInvite left %d uses, want %d", n, want)
		}
	}
	_, err := s.ConsumeInvite(ctx, inv.TokenHash, t0)
	wantErr(t, "ConsumeInvite(used up)", err, store.ErrInviteUsed)
	wantErr(t, "ConsumeInvite(used up)", err, store.ErrInviteInvalid)

	_, err = s.ConsumeInvite(ctx, sha256.Sum256([]byte("nope")), t0)
	wantErr(t, "ConsumeInvite(unknown)", err, store.ErrInviteUnknown)
	wantErr(t, "ConsumeInvite(unknown)", err, store.ErrInviteInvalid)

	exp := invite(t, 1, t0.Add(time.Hour))
	must(t, "CreateInvite", s.CreateInvite(ctx, exp))
	_, err = s.ConsumeInvite(ctx, exp.TokenHash, exp.Expires) // expiry is exclusive
	wantErr(t, "ConsumeInvite(at expiry)", err, store.ErrInviteExpired)
	wantErr(t, "ConsumeInvite(at expiry)", err, store.ErrInviteInvalid)
	if n, err := s.ConsumeInvite(ctx, exp.TokenHash, exp.Expires.Add(-time.Microsecond)); err != nil || n != 0 {
		t.Fatalf("ConsumeInvite just before expiry = %d, %v; want 0, nil", n, err)
	}

	wantErr(t, "CreateInvite(no uses)", s.CreateInvite(ctx, invite(t, 0, t0.Add(time.Hour))), store.ErrInvalid)

	del := invite(t, 1, t0.Add(time.Hour))
	must(t, "CreateInvite", s.CreateInvite(ctx, del))
	must(t, "DeleteInvite", s.DeleteInvite(ctx, del.TokenHash))
	wantErr(t, "DeleteInvite twice", s.DeleteInvite(ctx, del.TokenHash), store.ErrInviteUnknown)
	_, err = s.ConsumeInvite(ctx, del.TokenHash, t0)
	wantErr(t, "ConsumeInvite(deleted)", err, store.ErrInviteUnknown)

	// Left: inv (expires t0+1h, used up) and exp (expires t0+1h).
	active := func(at time.Time) int {
		t.Helper()
		n, err := s.ActiveInvites(ctx, at)
		must(t, "ActiveInvites", err)
		return n
	}
	before := active(t0)
	keep := invite(t, 1, t0.Add(2*time.Hour))
	must(t, "CreateInvite", s.CreateInvite(ctx, keep))
	if got := active(t0); got != before+1 {
		t.Fatalf("ActiveInvites = %d after adding one to %d", got, before)
	}
	if got := active(t0.Add(90 * time.Minute)); got != 1 {
		t.Fatalf("ActiveInvites at t0+90m = %d, want 1 (only keep is unexpired)", got)
	}
	n, err := s.DeleteExpiredInvites(ctx, t0.Add(time.Hour))
	must(t, "DeleteExpiredInvites", err)
	if n != 2 {
		t.Fatalf("DeleteExpiredInvites = %d, want 2", n)
	}
	if _, err := s.ConsumeInvite(ctx, keep.TokenHash, t0); err != nil {
		t.Fatalf("DeleteExpiredInvites removed an unexpired invite: %v", err)
	}
}

// testInviteRace: callers racing for an invite's last use; exactly one may
// win, every round.
func testInviteRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	const rounds, racers = 20, 2
	for range rounds {
		inv := invite(t, 1, t0.Add(time.Hour))
		must(t, "CreateInvite", s.CreateInvite(ctx, inv))
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, racers)
		for i := range racers {
			wg.Go(func() {
				<-start
				_, errs[i] = s.ConsumeInvite(ctx, inv.TokenHash, t0)
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrInviteUsed):
				t.Fatalf("losing ConsumeInvite: %v, want ErrInviteUsed", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d of %d racers consumed a one-use invite, want exactly 1", wins, racers)
		}
	}
}

func testRegister(t *testing.T, s store.Store) {
	ctx := context.Background()
	inv := invite(t, 2, t0.Add(time.Hour))
	must(t, "CreateInvite", s.CreateInvite(ctx, inv))

	u := newUser(t)
	d := newDevice(t, u.ID)
	must(t, "Register", s.Register(ctx, u, d, &inv.TokenHash, t0))
	if _, err := s.User(ctx, u.ID); err != nil {
		t.Fatalf("registered user: %v", err)
	}
	got, err := s.Device(ctx, u.ID, d.ID)
	must(t, "registered device", err)
	if !equalDevice(got, d) {
		t.Fatalf("registered device = %+v, want %+v", got, d)
	}

	// A registration that fails after the invite step must not use it up.
	u2 := newUser(t)
	u2.ID = u.ID
	wantErr(t, "Register(taken ID)", s.Register(ctx, u2, newDevice(t, u.ID), &inv.TokenHash, t0), store.ErrExists)

	// A bad invite creates nothing.
	u3 := newUser(t)
	unknown := sha256.Sum256([]byte("unknown"))
	wantErr(t, "Register(unknown invite)", s.Register(ctx, u3, newDevice(t, u3.ID), &unknown, t0), store.ErrInviteInvalid)
	wantErr(t, "Register(expired invite)", s.Register(ctx, u3, newDevice(t, u3.ID), &inv.TokenHash, inv.Expires), store.ErrInviteExpired)
	_, err = s.User(ctx, u3.ID)
	wantErr(t, "user of a refused registration", err, store.ErrNotFound)

	wantErr(t, "Register(device of another user)", s.Register(ctx, u3, newDevice(t, u.ID), nil, t0), store.ErrInvalid)

	if n, err := s.ConsumeInvite(ctx, inv.TokenHash, t0); err != nil || n != 0 {
		t.Fatalf("invite after one registration and failed ones: ConsumeInvite = %d, %v; want 0 left", n, err)
	}

	// Open registration.
	u4 := newUser(t)
	must(t, "Register(no invite)", s.Register(ctx, u4, newDevice(t, u4.ID), nil, t0))
}

// testRegisterRace: two registrations racing for an invite's last use; one
// account is created, the other registration leaves no trace.
func testRegisterRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	inv := invite(t, 1, t0.Add(time.Hour))
	must(t, "CreateInvite", s.CreateInvite(ctx, inv))
	users := []store.User{newUser(t), newUser(t)}
	errs := make([]error, len(users))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, u := range users {
		wg.Go(func() {
			<-start
			errs[i] = s.Register(ctx, u, newDevice(t, u.ID), &inv.TokenHash, t0)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		_, uerr := s.User(ctx, users[i].ID)
		switch {
		case err == nil:
			wins++
			must(t, "winner's user", uerr)
		case errors.Is(err, store.ErrInviteUsed):
			wantErr(t, "loser's user", uerr, store.ErrNotFound)
		default:
			t.Fatalf("Register: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d registrations used a one-use invite, want 1", wins)
	}
}

func testQueue(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	_, other := account(t, s)
	now := t0
	var batch []store.QueuedMessage
	for range 5 {
		batch = append(batch, msg(t, d, now.Add(time.Hour)))
	}
	batch[2].Envelope = []byte{} // an empty envelope is still a message
	must(t, "Enqueue", s.Enqueue(ctx, batch))
	must(t, "Enqueue(other)", s.Enqueue(ctx, []store.QueuedMessage{msg(t, other, now.Add(time.Hour))}))
	must(t, "Enqueue(empty batch)", s.Enqueue(ctx, nil))

	got := pending(t, s, d, now)
	if !slices.Equal(ids(got), ids(batch)) {
		t.Fatalf("Pending = %v, want %v in enqueue order", ids(got), ids(batch))
	}
	for i := range got {
		if got[i].User != d.User || got[i].Device != d.ID || !bytes.Equal(got[i].Envelope, batch[i].Envelope) || !got[i].Expires.Equal(batch[i].Expires) {
			t.Fatalf("Pending[%d] = %+v, want %+v", i, got[i], batch[i])
		}
	}
	if n := depth(t, s); n != 6 {
		t.Fatalf("QueueDepth = %d, want 6", n)
	}

	// A duplicate is skipped, in a later batch or within one, and does not
	// replace the stored envelope.
	dup := batch[0]
	dup.Envelope = []byte("replacement")
	must(t, "Enqueue(duplicate)", s.Enqueue(ctx, []store.QueuedMessage{dup, dup}))
	got = pending(t, s, d, now)
	if len(got) != 5 || !bytes.Equal(got[0].Envelope, batch[0].Envelope) {
		t.Fatalf("after a duplicate: %d pending, first envelope kept %v", len(got), bytes.Equal(got[0].Envelope, batch[0].Envelope))
	}
	// The same message ID for another device is another message.
	same := msg(t, other, now.Add(time.Hour))
	same.ID = batch[0].ID
	must(t, "Enqueue(same ID, other device)", s.Enqueue(ctx, []store.QueuedMessage{same}))
	if n := len(pending(t, s, other, now)); n != 2 {
		t.Fatalf("other device has %d pending, want 2", n)
	}

	lim, err := s.Pending(ctx, d.User, d.ID, now, 2)
	must(t, "Pending(limit 2)", err)
	if !slices.Equal(ids(lim), ids(batch[:2])) {
		t.Fatalf("Pending(limit 2) = %v, want the 2 oldest", ids(lim))
	}
	_, err = s.Pending(ctx, d.User, d.ID, now, 0)
	wantErr(t, "Pending(limit 0)", err, store.ErrInvalid)

	must(t, "Ack", s.Ack(ctx, d.User, d.ID, batch[1].ID))
	wantErr(t, "Ack twice", s.Ack(ctx, d.User, d.ID, batch[1].ID), store.ErrNotFound)
	wantErr(t, "Ack(other device)", s.Ack(ctx, other.User, other.ID, batch[2].ID), store.ErrNotFound)
	got = pending(t, s, d, now)
	want := []protocol.MessageID{batch[0].ID, batch[2].ID, batch[3].ID, batch[4].ID}
	if !slices.Equal(ids(got), want) {
		t.Fatalf("Pending after Ack = %v, want %v", ids(got), want)
	}
	if n := depth(t, s); n != 6 {
		t.Fatalf("QueueDepth = %d, want 6", n)
	}
	if ms := pending(t, s, store.Device{User: d.User, ID: protocol.NewDeviceID()}, now); len(ms) != 0 {
		t.Fatalf("Pending(unknown device) = %d messages", len(ms))
	}
}

func testQueueExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	a := msg(t, d, t0.Add(10*time.Second))
	b := msg(t, d, t0.Add(time.Hour))
	c := msg(t, d, t0.Add(-time.Second)) // expired on arrival
	must(t, "Enqueue", s.Enqueue(ctx, []store.QueuedMessage{a, b, c}))

	if got := ids(pending(t, s, d, t0)); !slices.Equal(got, []protocol.MessageID{a.ID, b.ID}) {
		t.Fatalf("Pending at t0 = %v, want a, b", got)
	}
	if got := ids(pending(t, s, d, a.Expires.Add(-time.Microsecond))); !slices.Equal(got, []protocol.MessageID{a.ID, b.ID}) {
		t.Fatalf("Pending 1µs before a's expiry = %v, want a, b", got)
	}
	// Expired at its expiry time, before any sweep.
	if got := ids(pending(t, s, d, a.Expires)); !slices.Equal(got, []protocol.MessageID{b.ID}) {
		t.Fatalf("Pending at a's expiry = %v, want b only", got)
	}
	if n := depth(t, s); n != 3 {
		t.Fatalf("QueueDepth before the sweep = %d, want 3", n)
	}
	n, err := s.DeleteExpired(ctx, a.Expires)
	must(t, "DeleteExpired", err)
	if n != 2 {
		t.Fatalf("DeleteExpired = %d, want 2", n)
	}
	if n := depth(t, s); n != 1 {
		t.Fatalf("QueueDepth after the sweep = %d, want 1", n)
	}
	wantErr(t, "Ack(swept)", s.Ack(ctx, d.User, d.ID, a.ID), store.ErrNotFound)
	if n, err := s.DeleteExpired(ctx, a.Expires); err != nil || n != 0 {
		t.Fatalf("second DeleteExpired = %d, %v; want 0", n, err)
	}
}

func testQueueOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	_, other := account(t, s)
	var want []protocol.MessageID
	for range 4 {
		var batch []store.QueuedMessage
		for range 3 {
			// Expiry out of order, so that sorting by it would show.
			m := msg(t, d, t0.Add(time.Duration(1+len(want)%3)*time.Hour))
			batch = append(batch, m, msg(t, other, t0.Add(time.Hour)))
			want = append(want, m.ID)
		}
		must(t, "Enqueue", s.Enqueue(ctx, batch))
	}
	if got := ids(pending(t, s, d, t0)); !slices.Equal(got, want) {
		t.Fatalf("Pending = %v, want enqueue order %v", got, want)
	}
	// Acking from the middle keeps the others' order.
	must(t, "Ack", s.Ack(ctx, d.User, d.ID, want[5]))
	want = slices.Delete(want, 5, 6)
	must(t, "Enqueue", s.Enqueue(ctx, []store.QueuedMessage{msg(t, d, t0.Add(time.Hour))}))
	got := ids(pending(t, s, d, t0))
	if !slices.Equal(got[:len(want)], want) || len(got) != len(want)+1 {
		t.Fatalf("Pending after an ack and a new message = %v, want %v then the new one", got, want)
	}
}

func testQueueSkipsUnknownDevices(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	ghost := store.Device{User: d.User, ID: protocol.NewDeviceID()}
	nobody := store.Device{User: protocol.NewUserID(), ID: protocol.NewDeviceID()}
	good := msg(t, d, t0.Add(time.Hour))
	must(t, "Enqueue(with unknown devices)", s.Enqueue(ctx, []store.QueuedMessage{
		msg(t, ghost, t0.Add(time.Hour)), good, msg(t, nobody, t0.Add(time.Hour)),
	}))
	if got := ids(pending(t, s, d, t0)); !slices.Equal(got, []protocol.MessageID{good.ID}) {
		t.Fatalf("Pending = %v, want the one message for a real device", got)
	}
	if n := depth(t, s); n != 1 {
		t.Fatalf("QueueDepth = %d, want 1: messages for unknown devices must not be stored", n)
	}
}

func testQueueInvalidBatch(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	bad := []store.QueuedMessage{
		{User: d.User, Device: d.ID, Expires: t0.Add(time.Hour)},                                 // zero message ID
		{User: d.User, ID: protocol.NewMessageID(), Expires: t0.Add(time.Hour)},                  // zero device
		{Device: d.ID, ID: protocol.NewMessageID(), Expires: t0.Add(time.Hour)},                  // zero user
		{User: d.User, Device: d.ID, ID: protocol.NewMessageID(), Envelope: []byte("no expiry")}, // no expiry
	}
	for i, b := range bad {
		err := s.Enqueue(ctx, []store.QueuedMessage{msg(t, d, t0.Add(time.Hour)), b})
		wantErr(t, fmt.Sprintf("Enqueue(bad message %d)", i), err, store.ErrInvalid)
	}
	if n := depth(t, s); n != 0 {
		t.Fatalf("QueueDepth = %d after refused batches, want 0", n)
	}
}

// testQueueConcurrent runs writers and readers at once; under -race it
// checks the implementation's own synchronisation, and nothing may be lost.
func testQueueConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errc := make(chan error, writers*each+writers)
	for range writers {
		wg.Go(func() {
			for range each {
				if err := s.Enqueue(ctx, []store.QueuedMessage{msg(t, d, t0.Add(time.Hour))}); err != nil {
					errc <- err
				}
			}
		})
		wg.Go(func() {
			for range each {
				if _, err := s.Pending(ctx, d.User, d.ID, t0, 100); err != nil {
					errc <- err
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if n := len(pending(t, s, d, t0)); n != writers*each {
		t.Fatalf("%d messages pending, want %d", n, writers*each)
	}
}

func blob(t *testing.T, owner store.Device, expires time.Time, recipients ...store.Device) store.Blob {
	b := store.Blob{OwnerUser: owner.User, OwnerDevice: owner.ID, Size: 12345, Expires: expires, Created: t0}
	rand.Read(b.ID[:])
	for _, r := range recipients {
		b.Recipients = append(b.Recipients, store.BlobRecipient{User: r.User, Device: r.ID})
	}
	return b
}

func testBlobs(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, owner := account(t, s)
	u2, r1 := account(t, s)
	r2 := addDevice(t, s, u2.ID)
	_, stranger := account(t, s)

	b := blob(t, owner, t0.Add(time.Hour), r1, r2, r1) // r1 twice: counted once
	must(t, "CreateBlob", s.CreateBlob(ctx, b))
	wantErr(t, "CreateBlob twice", s.CreateBlob(ctx, b), store.ErrExists)

	got, err := s.Blob(ctx, b.ID, t0)
	must(t, "Blob", err)
	if got.ID != b.ID || got.OwnerUser != owner.User || got.OwnerDevice != owner.ID || got.Size != b.Size ||
		!got.Expires.Equal(b.Expires) || !got.Created.Equal(b.Created) || len(got.Recipients) != 2 || got.Remaining() != 2 {
		t.Fatalf("Blob = %+v", got)
	}
	_, err = s.Blob(ctx, store.BlobID{1}, t0)
	wantErr(t, "Blob(unknown)", err, store.ErrNotFound)

	_, err = s.MarkBlobFetched(ctx, b.ID, stranger.User, stranger.ID)
	wantErr(t, "MarkBlobFetched(stranger)", err, store.ErrNotRecipient)
	_, err = s.MarkBlobFetched(ctx, b.ID, owner.User, owner.ID)
	wantErr(t, "MarkBlobFetched(owner, not a recipient)", err, store.ErrNotRecipient)
	_, err = s.MarkBlobFetched(ctx, store.BlobID{1}, r1.User, r1.ID)
	wantErr(t, "MarkBlobFetched(unknown blob)", err, store.ErrNotFound)

	for i, step := range []struct {
		d    store.Device
		want int
	}{{r1, 1}, {r1, 1}, {r2, 0}} {
		n, err := s.MarkBlobFetched(ctx, b.ID, step.d.User, step.d.ID)
		must(t, "MarkBlobFetched", err)
		if n != step.want {
			t.Fatalf("MarkBlobFetched #%d = %d remaining, want %d", i, n, step.want)
		}
	}
	got, _ = s.Blob(ctx, b.ID, t0)
	for _, r := range got.Recipients {
		if !r.Fetched {
			t.Fatalf("recipient %v not marked fetched", r)
		}
	}
	must(t, "DeleteBlob", s.DeleteBlob(ctx, b.ID))
	wantErr(t, "DeleteBlob twice", s.DeleteBlob(ctx, b.ID), store.ErrNotFound)
	_, err = s.Blob(ctx, b.ID, t0)
	wantErr(t, "Blob(deleted)", err, store.ErrNotFound)

	wantErr(t, "CreateBlob(unknown owner)", s.CreateBlob(ctx, blob(t, store.Device{User: protocol.NewUserID(), ID: protocol.NewDeviceID()}, t0.Add(time.Hour), r1)), store.ErrNotFound)
	wantErr(t, "CreateBlob(unknown recipient)", s.CreateBlob(ctx, blob(t, owner, t0.Add(time.Hour), r1, store.Device{User: r1.User, ID: protocol.NewDeviceID()})), store.ErrNotFound)
	wantErr(t, "CreateBlob(no recipient)", s.CreateBlob(ctx, blob(t, owner, t0.Add(time.Hour))), store.ErrInvalid)
	neg := blob(t, owner, t0.Add(time.Hour), r1)
	neg.Size = -1
	wantErr(t, "CreateBlob(negative size)", s.CreateBlob(ctx, neg), store.ErrInvalid)
}

func testBlobExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, owner := account(t, s)
	_, r := account(t, s)
	short := blob(t, owner, t0.Add(time.Minute), r)
	long := blob(t, owner, t0.Add(time.Hour), r)
	must(t, "CreateBlob", s.CreateBlob(ctx, short))
	must(t, "CreateBlob", s.CreateBlob(ctx, long))

	if _, err := s.Blob(ctx, short.ID, short.Expires.Add(-time.Microsecond)); err != nil {
		t.Fatalf("Blob before expiry: %v", err)
	}
	_, err := s.Blob(ctx, short.ID, short.Expires)
	wantErr(t, "Blob(at expiry)", err, store.ErrNotFound)

	gone, err := s.DeleteExpiredBlobs(ctx, short.Expires)
	must(t, "DeleteExpiredBlobs", err)
	if !slices.Equal(gone, []store.BlobID{short.ID}) {
		t.Fatalf("DeleteExpiredBlobs = %v, want [%v]", gone, short.ID)
	}
	wantErr(t, "DeleteBlob(swept)", s.DeleteBlob(ctx, short.ID), store.ErrNotFound)
	if _, err := s.Blob(ctx, long.ID, short.Expires); err != nil {
		t.Fatalf("unexpired blob after the sweep: %v", err)
	}
	if gone, err := s.DeleteExpiredBlobs(ctx, short.Expires); err != nil || len(gone) != 0 {
		t.Fatalf("second DeleteExpiredBlobs = %v, %v; want none", gone, err)
	}
}

func testDeleteUser(t *testing.T, s store.Store) {
	ctx := context.Background()
	victim, v1 := account(t, s)
	v2 := addDevice(t, s, victim.ID)
	bob, b1 := account(t, s)
	carol, c1 := account(t, s)
	exp := t0.Add(time.Hour)

	must(t, "Enqueue", s.Enqueue(ctx, []store.QueuedMessage{msg(t, v1, exp), msg(t, v2, exp), msg(t, v1, exp), msg(t, b1, exp)}))
	owned := blob(t, v1, exp, b1)
	onlyVictim := blob(t, b1, exp, v1, v2)   // nobody else would fetch it
	shared := blob(t, c1, exp, v2, b1)       // bob still waits for it
	doneByOthers := blob(t, c1, exp, b1, v1) // bob fetched, only the victim waits
	for _, b := range []store.Blob{owned, onlyVictim, shared, doneByOthers} {
		must(t, "CreateBlob", s.CreateBlob(ctx, b))
	}
	if _, err := s.MarkBlobFetched(ctx, doneByOthers.ID, b1.User, b1.ID); err != nil {
		t.Fatal(err)
	}

	gone, err := s.DeleteUser(ctx, victim.ID)
	must(t, "DeleteUser", err)
	slices.SortFunc(gone, func(a, b store.BlobID) int { return bytes.Compare(a[:], b[:]) })
	want := []store.BlobID{owned.ID, onlyVictim.ID, doneByOthers.ID}
	slices.SortFunc(want, func(a, b store.BlobID) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(gone, want) {
		t.Fatalf("DeleteUser returned blobs %v, want %v", gone, want)
	}
	for _, id := range want {
		_, err := s.Blob(ctx, id, t0)
		wantErr(t, "Blob of a deleted user", err, store.ErrNotFound)
	}
	sh, err := s.Blob(ctx, shared.ID, t0)
	must(t, "shared blob", err)
	if len(sh.Recipients) != 1 || sh.Recipients[0].User != bob.ID {
		t.Fatalf("shared blob recipients = %+v, want bob's device only", sh.Recipients)
	}

	_, err = s.User(ctx, victim.ID)
	wantErr(t, "User(deleted)", err, store.ErrNotFound)
	_, err = s.Devices(ctx, victim.ID)
	wantErr(t, "Devices(deleted)", err, store.ErrNotFound)
	_, err = s.Device(ctx, victim.ID, v1.ID)
	wantErr(t, "Device(deleted)", err, store.ErrNotFound)
	if n := len(pending(t, s, v1, t0)) + len(pending(t, s, v2, t0)); n != 0 {
		t.Fatalf("%d messages still queued for the deleted user", n)
	}
	if n := depth(t, s); n != 1 {
		t.Fatalf("QueueDepth = %d, want bob's 1 message", n)
	}
	if _, err := s.User(ctx, carol.ID); err != nil {
		t.Fatalf("another user: %v", err)
	}
	_, err = s.DeleteUser(ctx, victim.ID)
	wantErr(t, "DeleteUser twice", err, store.ErrNotFound)
	// The ID is free again, and the new account starts empty.
	must(t, "Register(reused ID)", s.Register(ctx, victim, newDevice(t, victim.ID), nil, t0))
}

// testContextCanceled: every method gives up on a canceled context, with the
// context's error, and changes nothing.
func testContextCanceled(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, d := account(t, s)
	inv := invite(t, 1, t0.Add(time.Hour))
	must(t, "CreateInvite", s.CreateInvite(ctx, inv))
	m := msg(t, d, t0.Add(time.Hour))
	must(t, "Enqueue", s.Enqueue(ctx, []store.QueuedMessage{m}))
	b := blob(t, d, t0.Add(time.Hour), d)
	must(t, "CreateBlob", s.CreateBlob(ctx, b))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	nu := newUser(t)
	calls := map[string]func() error{
		"CreateUser": func() error { return s.CreateUser(cctx, nu) },
		"User":       func() error { _, err := s.User(cctx, u.ID); return err },
		"DeleteUser": func() error { _, err := s.DeleteUser(cctx, u.ID); return err },
		"AddDevice":  func() error { return s.AddDevice(cctx, newDevice(t, u.ID)) },
		"Device":     func() error { _, err := s.Device(cctx, u.ID, d.ID); return err },
		"Devices":    func() error { _, err := s.Devices(cctx, u.ID); return err },
		"RevokeDevice": func() error {
			return s.RevokeDevice(cctx, u.ID, d.ID, []byte("statement"), t0)
		},
		"CreateInvite":         func() error { return s.CreateInvite(cctx, invite(t, 1, t0.Add(time.Hour))) },
		"ConsumeInvite":        func() error { _, err := s.ConsumeInvite(cctx, inv.TokenHash, t0); return err },
		"DeleteInvite":         func() error { return s.DeleteInvite(cctx, inv.TokenHash) },
		"DeleteExpiredInvites": func() error { _, err := s.DeleteExpiredInvites(cctx, t0.Add(48*time.Hour)); return err },
		"Register": func() error {
			return s.Register(cctx, nu, newDevice(t, nu.ID), &inv.TokenHash, t0)
		},
		"Enqueue": func() error { return s.Enqueue(cctx, []store.QueuedMessage{msg(t, d, t0.Add(time.Hour))}) },
		"Pending": func() error { _, err := s.Pending(cctx, d.User, d.ID, t0, 10); return err },
		"Ack":     func() error { return s.Ack(cctx, d.User, d.ID, m.ID) },
		"DeleteExpired": func() error {
			_, err := s.DeleteExpired(cctx, t0.Add(48*time.Hour))
			return err
		},
		"QueueDepth":      func() error { _, err := s.QueueDepth(cctx); return err },
		"CreateBlob":      func() error { return s.CreateBlob(cctx, blob(t, d, t0.Add(time.Hour), d)) },
		"Blob":            func() error { _, err := s.Blob(cctx, b.ID, t0); return err },
		"MarkBlobFetched": func() error { _, err := s.MarkBlobFetched(cctx, b.ID, d.User, d.ID); return err },
		"DeleteBlob":      func() error { return s.DeleteBlob(cctx, b.ID) },
		"DeleteExpiredBlobs": func() error {
			_, err := s.DeleteExpiredBlobs(cctx, t0.Add(48*time.Hour))
			return err
		},
		"Vacuum": func() error { return s.Vacuum(cctx) },
	}
	for name, call := range calls {
		wantErr(t, name+" with a canceled context", call(), context.Canceled)
	}

	// Nothing changed.
	if _, err := s.User(ctx, nu.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a canceled CreateUser or Register created the user: %v", err)
	}
	dev, err := s.Device(ctx, u.ID, d.ID)
	must(t, "Device", err)
	if dev.IsRevoked() {
		t.Error("a canceled RevokeDevice revoked the device")
	}
	if list, _ := s.Devices(ctx, u.ID); len(list) != 1 {
		t.Errorf("a canceled AddDevice added a device: %d devices", len(list))
	}
	if got := ids(pending(t, s, d, t0)); !slices.Equal(got, []protocol.MessageID{m.ID}) {
		t.Errorf("queue after canceled calls = %v, want the one message", got)
	}
	if n, err := s.ConsumeInvite(ctx, inv.TokenHash, t0); err != nil || n != 0 {
		t.Errorf("invite after canceled calls: ConsumeInvite = %d, %v; want its one use left", n, err)
	}
	bb, err := s.Blob(ctx, b.ID, t0)
	must(t, "Blob", err)
	if bb.Remaining() != 1 {
		t.Error("a canceled MarkBlobFetched marked the blob fetched")
	}
}

// testZeroInputs: zero values everywhere are refused or not found, and
// nothing panics.
func testZeroInputs(t *testing.T, s store.Store) {
	ctx := context.Background()
	var (
		u  protocol.UserID
		d  protocol.DeviceID
		m  protocol.MessageID
		b  store.BlobID
		h  [32]byte
		tz time.Time
	)
	wantErr(t, "CreateUser", s.CreateUser(ctx, store.User{}), store.ErrInvalid)
	wantErr(t, "AddDevice", s.AddDevice(ctx, store.Device{}), store.ErrInvalid)
	wantErr(t, "Register", s.Register(ctx, store.User{}, store.Device{}, nil, tz), store.ErrInvalid)
	wantErr(t, "Register(zero invite)", s.Register(ctx, store.User{}, store.Device{}, &h, tz), store.ErrInvalid)
	wantErr(t, "CreateInvite", s.CreateInvite(ctx, store.Invite{}), store.ErrInvalid)
	wantErr(t, "Enqueue", s.Enqueue(ctx, []store.QueuedMessage{{}}), store.ErrInvalid)
	wantErr(t, "CreateBlob", s.CreateBlob(ctx, store.Blob{}), store.ErrInvalid)
	wantErr(t, "RevokeDevice", s.RevokeDevice(ctx, u, d, nil, tz), store.ErrInvalid)
	_, err := s.Pending(ctx, u, d, tz, -1)
	wantErr(t, "Pending(limit -1)", err, store.ErrInvalid)

	_, err = s.User(ctx, u)
	wantErr(t, "User", err, store.ErrNotFound)
	_, err = s.DeleteUser(ctx, u)
	wantErr(t, "DeleteUser", err, store.ErrNotFound)
	_, err = s.Device(ctx, u, d)
	wantErr(t, "Device", err, store.ErrNotFound)
	_, err = s.Devices(ctx, u)
	wantErr(t, "Devices", err, store.ErrNotFound)
	wantErr(t, "Ack", s.Ack(ctx, u, d, m), store.ErrNotFound)
	_, err = s.Blob(ctx, b, tz)
	wantErr(t, "Blob", err, store.ErrNotFound)
	_, err = s.MarkBlobFetched(ctx, b, u, d)
	wantErr(t, "MarkBlobFetched", err, store.ErrNotFound)
	wantErr(t, "DeleteBlob", s.DeleteBlob(ctx, b), store.ErrNotFound)
	_, err = s.ConsumeInvite(ctx, h, tz)
	wantErr(t, "ConsumeInvite", err, store.ErrInviteUnknown)
	wantErr(t, "DeleteInvite", s.DeleteInvite(ctx, h), store.ErrInviteUnknown)
	if ms, err := s.Pending(ctx, u, d, tz, 1); err != nil || len(ms) != 0 {
		t.Fatalf("Pending(zero IDs) = %d, %v", len(ms), err)
	}
	for name, f := range map[string]func() (int, error){
		"DeleteExpired":        func() (int, error) { return s.DeleteExpired(ctx, tz) },
		"DeleteExpiredInvites": func() (int, error) { return s.DeleteExpiredInvites(ctx, tz) },
		"QueueDepth":           func() (int, error) { return s.QueueDepth(ctx) },
	} {
		if n, err := f(); err != nil || n != 0 {
			t.Fatalf("%s on an empty store = %d, %v", name, n, err)
		}
	}
	if ids, err := s.DeleteExpiredBlobs(ctx, tz); err != nil || len(ids) != 0 {
		t.Fatalf("DeleteExpiredBlobs on an empty store = %v, %v", ids, err)
	}
}

func testVacuum(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	var batch []store.QueuedMessage
	for range 50 {
		m := msg(t, d, t0.Add(time.Hour))
		m.Envelope = randBytes(t, 8<<10)
		batch = append(batch, m)
	}
	must(t, "Enqueue", s.Enqueue(ctx, batch))
	for _, m := range batch[:40] {
		must(t, "Ack", s.Ack(ctx, d.User, d.ID, m.ID))
	}
	must(t, "Vacuum", s.Vacuum(ctx))
	must(t, "Vacuum again", s.Vacuum(ctx))
	if got := ids(pending(t, s, d, t0)); !slices.Equal(got, ids(batch[40:])) {
		t.Fatalf("Pending after Vacuum = %d messages, want the 10 unacknowledged", len(got))
	}
}

func testClose(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, _ := account(t, s)
	must(t, "Close", s.Close())
	must(t, "Close twice", s.Close())
	_, err := s.User(ctx, u.ID)
	wantErr(t, "User after Close", err, store.ErrClosed)
	wantErr(t, "CreateUser after Close", s.CreateUser(ctx, newUser(t)), store.ErrClosed)
}

func testPendingAfter(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	_, other := account(t, s)
	var batch []store.QueuedMessage
	for i := range 6 {
		batch = append(batch, msg(t, d, t0.Add(time.Hour)))
		if i%2 == 0 {
			batch = append(batch, msg(t, other, t0.Add(time.Hour)))
		}
	}
	must(t, "Enqueue", s.Enqueue(ctx, batch))
	all := pending(t, s, d, t0)
	if len(all) != 6 {
		t.Fatalf("Pending = %d messages, want 6", len(all))
	}
	for i, m := range all {
		if m.Seq <= 0 || (i > 0 && m.Seq <= all[i-1].Seq) {
			t.Fatalf("Seq of message %d is %d after %d: not positive and increasing", i, m.Seq, all[max(i-1, 0)].Seq)
		}
	}
	// Reading by cursor, two at a time, gives the queue in order, once.
	var got []protocol.MessageID
	var after int64
	for {
		page, err := s.PendingAfter(ctx, d.User, d.ID, after, t0, 2)
		must(t, "PendingAfter", err)
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			got = append(got, m.ID)
			after = m.Seq
		}
	}
	if !slices.Equal(got, ids(all)) {
		t.Fatalf("read by cursor: %v, want %v", got, ids(all))
	}
	// A message queued later comes after the cursor.
	late := msg(t, d, t0.Add(time.Hour))
	must(t, "Enqueue(late)", s.Enqueue(ctx, []store.QueuedMessage{late}))
	page, err := s.PendingAfter(ctx, d.User, d.ID, after, t0, 10)
	must(t, "PendingAfter(late)", err)
	if len(page) != 1 || page[0].ID != late.ID || page[0].Seq <= after {
		t.Fatalf("after the cursor: %v, want the late message only", ids(page))
	}
	// Expired messages are not returned after a cursor either.
	page, err = s.PendingAfter(ctx, d.User, d.ID, all[2].Seq, t0.Add(time.Hour), 10)
	must(t, "PendingAfter(at expiry)", err)
	if len(page) != 0 {
		t.Fatalf("PendingAfter at expiry = %v, want none", ids(page))
	}
	_, err = s.PendingAfter(ctx, d.User, d.ID, 0, t0, 0)
	wantErr(t, "PendingAfter(limit 0)", err, store.ErrInvalid)
}

func testAckMany(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	_, e := account(t, s)
	var batch []store.QueuedMessage
	for range 4 {
		batch = append(batch, msg(t, d, t0.Add(time.Hour)), msg(t, e, t0.Add(time.Hour)))
	}
	must(t, "Enqueue", s.Enqueue(ctx, batch))
	ref := func(m store.QueuedMessage) store.MessageRef {
		return store.MessageRef{User: m.User, Device: m.Device, ID: m.ID}
	}
	// Several devices in one call; a message not queued (already acked,
	// another device's ID, unknown) is skipped.
	refs := []store.MessageRef{ref(batch[0]), ref(batch[1]), ref(batch[2]),
		{User: e.User, Device: e.ID, ID: batch[4].ID}, // d's message, e's device
		{User: d.User, Device: d.ID, ID: protocol.NewMessageID()},
		ref(batch[0]), // twice in one call
	}
	n, err := s.AckMany(ctx, refs)
	must(t, "AckMany", err)
	if n != 3 {
		t.Fatalf("AckMany deleted %d, want 3", n)
	}
	if got, want := ids(pending(t, s, d, t0)), []protocol.MessageID{batch[4].ID, batch[6].ID}; !slices.Equal(got, want) {
		t.Fatalf("d's queue after AckMany = %v, want %v", got, want)
	}
	if got, want := ids(pending(t, s, e, t0)), []protocol.MessageID{batch[3].ID, batch[5].ID, batch[7].ID}; !slices.Equal(got, want) {
		t.Fatalf("e's queue after AckMany = %v, want %v", got, want)
	}
	if n, err := s.AckMany(ctx, refs); err != nil || n != 0 {
		t.Fatalf("AckMany again = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.AckMany(ctx, nil); err != nil || n != 0 {
		t.Fatalf("AckMany(nil) = %d, %v", n, err)
	}
	// An invalid reference fails the whole call and deletes nothing.
	_, err = s.AckMany(ctx, []store.MessageRef{ref(batch[4]), {User: d.User, Device: d.ID}})
	wantErr(t, "AckMany(zero ID)", err, store.ErrInvalid)
	if n := depth(t, s); n != 5 {
		t.Fatalf("QueueDepth = %d, want 5", n)
	}

	// A large batch (stores may delete large batches differently): 150 of
	// 200 queued messages, with duplicates and unknown IDs among them.
	var many []store.QueuedMessage
	for range 200 {
		many = append(many, msg(t, d, t0.Add(time.Hour)))
	}
	must(t, "Enqueue(200)", s.Enqueue(ctx, many))
	refs = nil
	for i, m := range many[:150] {
		refs = append(refs, ref(m))
		if i%10 == 0 {
			refs = append(refs, ref(m), store.MessageRef{User: d.User, Device: d.ID, ID: protocol.NewMessageID()})
		}
	}
	n, err = s.AckMany(ctx, refs)
	must(t, "AckMany(large)", err)
	if n != 150 {
		t.Fatalf("AckMany(large) deleted %d, want 150", n)
	}
	want := []protocol.MessageID{batch[4].ID, batch[6].ID}
	want = append(want, ids(many[150:])...)
	if got := ids(pending(t, s, d, t0)); !slices.Equal(got, want) {
		t.Fatalf("after AckMany(large): %d pending, want %d", len(got), len(want))
	}
}

// testQueueLargeBatch: a batch as large as the QueueWriter makes, with
// messages for unknown devices and duplicates among them, keeps its order
// and skips what it must (stores may write large batches differently).
func testQueueLargeBatch(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, d := account(t, s)
	_, e := account(t, s)
	ghost := store.Device{User: d.User, ID: protocol.NewDeviceID()}
	var batch []store.QueuedMessage
	var wantD, wantE []protocol.MessageID
	for i := range 300 {
		switch {
		case i%7 == 3:
			batch = append(batch, msg(t, ghost, t0.Add(time.Hour)))
		case i%11 == 5 && len(batch) > 0:
			batch = append(batch, batch[len(batch)-1]) // a duplicate
		case i%2 == 0:
			m := msg(t, d, t0.Add(time.Hour))
			batch = append(batch, m)
			wantD = append(wantD, m.ID)
		default:
			m := msg(t, e, t0.Add(time.Hour))
			batch = append(batch, m)
			wantE = append(wantE, m.ID)
		}
	}
	must(t, "Enqueue", s.Enqueue(ctx, batch))
	got, err := s.Pending(ctx, d.User, d.ID, t0, 1000)
	must(t, "Pending", err)
	if !slices.Equal(ids(got), wantD) {
		t.Fatalf("d: %d messages, want %d in batch order", len(got), len(wantD))
	}
	got, err = s.Pending(ctx, e.User, e.ID, t0, 1000)
	must(t, "Pending", err)
	if !slices.Equal(ids(got), wantE) {
		t.Fatalf("e: %d messages, want %d in batch order", len(got), len(wantE))
	}
	if n := depth(t, s); n != len(wantD)+len(wantE) {
		t.Fatalf("QueueDepth = %d, want %d", n, len(wantD)+len(wantE))
	}
}
