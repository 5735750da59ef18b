package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/protocol"
)

func TestRegisterAndDirectory(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.newUser(t)
	bob := ts.newUser(t)
	ctx := context.Background()
	devs, err := alice.Devices(ctx, bob.Device().User, bob.Device().Identity.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Device != bob.Device().ID {
		t.Fatalf("bob's devices: %+v", devs)
	}
	// A pinned key that is not the user's: the directory is refused.
	if _, err := alice.Devices(ctx, bob.Device().User, alice.Device().Identity.Public()); err == nil && alice.Device().Identity != bob.Device().Identity {
		t.Fatal("a directory under another identity key was accepted")
	}
	if _, err := alice.Directory(ctx, protocol.NewUserID()); !errors.Is(err, api.ErrUserUnknown) {
		t.Fatalf("unknown user: got %v", err)
	}
}

func TestInvites(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	tok := ts.invite(t, 1)
	d1 := newDevice(t, protocol.NewUserID(), ts.key, ts.clock.Now())
	if _, err := client.Register(ctx, ts.opts, d1, tok); err != nil {
		t.Fatal(err)
	}
	d2 := newDevice(t, protocol.NewUserID(), ts.key, ts.clock.Now())
	if _, err := client.Register(ctx, ts.opts, d2, tok); !errors.Is(err, api.ErrInvite) {
		t.Fatalf("used invite: got %v, want ErrInvite", err)
	}
	if _, err := client.Register(ctx, ts.opts, d2, "not-a-real-token-at-all"); !errors.Is(err, api.ErrInvite) {
		t.Fatalf("unknown invite: got %v, want ErrInvite", err)
	}
	expiring := ts.invite(t, 5)
	ts.clock.Advance(2 * time.Hour)
	if _, err := client.Register(ctx, ts.opts, d2, expiring); !errors.Is(err, api.ErrInvite) {
		t.Fatalf("expired invite: got %v, want ErrInvite", err)
	}
	// The same user ID twice.
	again := newDevice(t, d1.User, ts.key, ts.clock.Now())
	if _, err := client.Register(ctx, ts.opts, again, ts.invite(t, 1)); !errors.Is(err, api.ErrExists) {
		t.Fatalf("taken user ID: got %v, want ErrExists", err)
	}
}

func TestRegistrationModes(t *testing.T) {
	ctx := context.Background()
	closed := newTestServer(t, func(o *server.Options) { o.Registration = "closed" })
	d := newDevice(t, protocol.NewUserID(), closed.key, closed.clock.Now())
	if _, err := client.Register(ctx, closed.opts, d, closed.invite(t, 1)); !errors.Is(err, api.ErrRegistration) {
		t.Fatalf("closed: got %v", err)
	}
	open := newTestServer(t, func(o *server.Options) { o.Registration = "open" })
	if _, err := client.Register(ctx, open.opts, d, ""); err != nil {
		t.Fatalf("open: %v", err)
	}
}

func TestSendLiveNeverStored(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	alice, bob := ts.newUser(t), ts.newUser(t)
	live, err := bob.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if ev, err := live.Next(ctx); err != nil || ev.Type != client.EventDrained {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	got := make(chan []byte, 1)
	go func() {
		ev, err := live.Next(ctx)
		if err != nil || ev.Type != client.EventEnvelope {
			got <- nil
			return
		}
		env, _ := protocol.ParseEnvelope(ev.Envelope)
		live.Ack(ctx, env.ID)
		got <- ev.Envelope
	}()
	resp, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, "hello live", bob))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Status != api.StatusDelivered {
		t.Fatalf("results: %+v", resp.Results)
	}
	envBytes := <-got
	env, err := protocol.ParseEnvelope(envBytes)
	if err != nil {
		t.Fatal(err)
	}
	m, status, err := env.Open(bob.Device().Recipient(), alice.Device().Identity.Public(), ts.clock.Now())
	if err != nil || status != protocol.Verified || string(m.Body) != "hello live" {
		t.Fatalf("open: %v %v %+v", err, status, m)
	}
	if n := ts.store.enqueued.Load(); n != 0 {
		t.Fatalf("a live delivery wrote %d messages to the store", n)
	}
}

func TestSendOfflineQueuedThenDrainedAndGone(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	alice, bob := ts.newUser(t), ts.newUser(t)
	bob2 := ts.linkDevice(t, bob)
	marker := bytes.Repeat([]byte("QRTALK-SECRET-MARKER!"), 10)
	env := seal(t, alice, ts.clock.Now(), time.Hour, string(marker), bob, bob2)
	resp, err := alice.Send(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		if r.Status != api.StatusQueued {
			t.Fatalf("results: %+v", resp.Results)
		}
	}
	// bob's first device drains its queue over the live channel.
	live, err := bob.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	ev, err := live.Next(ctx)
	if err != nil || ev.Type != client.EventEnvelope {
		t.Fatalf("event: %+v %v", ev, err)
	}
	parsed, _ := protocol.ParseEnvelope(ev.Envelope)
	if len(parsed.Devices) != 1 || parsed.Devices[0].Device != bob.Device().ID {
		t.Fatalf("delivered envelope is not bob's own copy: %+v", parsed.Devices)
	}
	if ev, err := live.Next(ctx); err != nil || ev.Type != client.EventDrained {
		t.Fatalf("event: %+v %v", ev, err)
	}
	if err := live.Ack(ctx, parsed.ID); err != nil {
		t.Fatal(err)
	}
	// bob's second device fetches by long poll and acknowledges.
	inbox, err := bob2.Inbox(ctx, 10, time.Second)
	if err != nil || len(inbox.Envelopes) != 1 {
		t.Fatalf("inbox: %v %+v", err, inbox)
	}
	if err := bob2.Ack(ctx, parsed.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue to empty", func() bool {
		n, _ := ts.store.QueueDepth(ctx)
		return n == 0
	})
	ts.srv.Sweep(ctx)
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(ts.dbPath + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		// The envelope is encrypted, so look for its raw bytes: a
		// 64-byte window of the ciphertext.
		if bytes.Contains(data, env[len(env)-500:len(env)-436]) {
			t.Fatalf("acknowledged envelope still in %s", ts.dbPath+suffix)
		}
	}
}

func TestExpiryAndClamp(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	alice, bob := ts.newUser(t), ts.newUser(t)
	resp, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), 10*time.Second, "short-lived", bob))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].Status != api.StatusQueued {
		t.Fatalf("results: %+v", resp.Results)
	}
	ts.clock.Advance(11 * time.Second)
	inbox, err := bob.Inbox(ctx, 10, 0)
	if err != nil || len(inbox.Envelopes) != 0 {
		t.Fatalf("an expired message was served: %v %d", err, len(inbox.Envelopes))
	}
	if n, _ := ts.store.QueueDepth(ctx); n != 1 {
		t.Fatalf("queue depth before the sweep: %d", n)
	}
	ts.srv.Sweep(ctx)
	if n, _ := ts.store.QueueDepth(ctx); n != 0 {
		t.Fatalf("queue depth after the sweep: %d", n)
	}

	// A send time a little ahead (within the allowed skew) with the
	// longest TTL: the server still holds it no more than 7 days from now.
	now := ts.clock.Now()
	resp, err = alice.Send(ctx, seal(t, alice, now.Add(4*time.Minute), protocol.MaxTTL, "clamped", bob))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := time.UnixMilli(resp.Expires), now.Add(protocol.MaxTTL); got.After(want) {
		t.Fatalf("expiry %s is after now + 7 days (%s)", got, want)
	}
	// Too far in the future: refused.
	_, err = alice.Send(ctx, seal(t, alice, now.Add(10*time.Minute), time.Hour, "future", bob))
	if !errors.Is(err, api.ErrClockSkew) {
		t.Fatalf("future send time: got %v", err)
	}
	// Already expired on arrival: refused.
	_, err = alice.Send(ctx, seal(t, alice, now.Add(-2*time.Hour), time.Hour, "stale", bob))
	if !errors.Is(err, api.ErrBadTTL) {
		t.Fatalf("expired on arrival: got %v", err)
	}
}

func TestBlobs(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	alice, bob := ts.newUser(t), ts.newUser(t)
	var enc bytes.Buffer
	key := protocol.NewBlobKey()
	w, _ := protocol.EncryptBlob(&enc, key)
	w.Write(bytes.Repeat([]byte("attachment "), 20000))
	w.Close()
	sum := sha256sum(enc.Bytes())
	to := []api.Address{{User: bob.Device().User, Device: bob.Device().ID}}
	up, err := alice.Upload(ctx, bytes.NewReader(enc.Bytes()), int64(enc.Len()), sum, time.Hour, to)
	if err != nil {
		t.Fatal(err)
	}
	// Alice is not a recipient: no blob for her.
	if rc, _, err := alice.Download(ctx, up.ID, sum); err == nil {
		rc.Close()
		t.Fatal("a non-recipient downloaded the blob")
	}
	rc, _, err := bob.Download(ctx, up.ID, sum)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := protocol.DecryptBlob(rc, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(plain)
	rc.Close()
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("attachment "), 20000)) {
		t.Fatalf("blob round trip: %v", err)
	}
	// Every recipient fetched it: it is gone.
	waitFor(t, "the blob to be deleted", func() bool {
		_, _, err := bob.Download(ctx, up.ID, sum)
		return errors.Is(err, api.ErrNotFound)
	})
	// A blob whose bytes do not match its hash is refused.
	if _, err := alice.Upload(ctx, bytes.NewReader(enc.Bytes()), int64(enc.Len()), [32]byte{1}, time.Hour, to); !errors.Is(err, api.ErrMalformed) {
		t.Fatalf("bad hash: got %v", err)
	}
	// Expiry: an unfetched blob is deleted by the sweeper.
	up, err = alice.Upload(ctx, bytes.NewReader(enc.Bytes()), int64(enc.Len()), sum, 10*time.Second, to)
	if err != nil {
		t.Fatal(err)
	}
	ts.clock.Advance(11 * time.Second)
	ts.srv.Sweep(ctx)
	if _, _, err := bob.Download(ctx, up.ID, sum); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("expired blob: got %v", err)
	}
}

func TestRevokeAndDeleteAccount(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	alice, bob := ts.newUser(t), ts.newUser(t)
	bob2 := ts.linkDevice(t, bob)
	if _, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, "x", bob, bob2)); err != nil {
		t.Fatal(err)
	}
	if err := bob.Revoke(ctx, bob2.Device().ID); err != nil {
		t.Fatal(err)
	}
	// The revoked device's session is gone and it cannot set up another.
	if _, err := bob2.Inbox(ctx, 10, 0); !errors.Is(err, api.ErrDeviceUnknown) {
		t.Fatalf("revoked device: got %v", err)
	}
	// Others see the revocation, verified under bob's identity key.
	devs, err := alice.Devices(ctx, bob.Device().User, bob.Device().Identity.Public())
	if err != nil || len(devs) != 1 || devs[0].Device != bob.Device().ID {
		t.Fatalf("devices after revocation: %v %+v", err, devs)
	}
	// A send to the revoked device is rejected for that device only.
	resp, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, "y", bob, bob2))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		want := api.StatusQueued
		if r.Device == bob2.Device().ID {
			want = api.StatusRejected
		}
		if r.Status != want {
			t.Fatalf("device %s: %s, want %s", r.Device, r.Status, want)
		}
	}
	// Deleting the account removes everything.
	if err := bob.DeleteAccount(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := ts.store.QueueDepth(ctx); n != 0 {
		t.Fatalf("queue after account deletion: %d", n)
	}
	if _, err := alice.Directory(ctx, bob.Device().User); !errors.Is(err, api.ErrUserUnknown) {
		t.Fatalf("deleted user: got %v", err)
	}
	if _, err := bob.Inbox(ctx, 1, 0); !errors.Is(err, api.ErrDeviceUnknown) {
		t.Fatalf("deleted user's device: got %v", err)
	}
}

func sha256sum(p []byte) [32]byte { return sha256.Sum256(p) }

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

// A device that is connected but does not acknowledge in time gets the
// message through its queue instead; acknowledging it later deletes it.
func TestLiveWithoutAckFallsBackToQueue(t *testing.T) {
	ts := newTestServer(t, func(o *server.Options) { o.AckTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	alice, bob := ts.newUser(t), ts.newUser(t)
	live, err := bob.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if ev, err := live.Next(ctx); err != nil || ev.Type != client.EventDrained {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	resp, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, "slow", bob))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].Status != api.StatusQueued {
		t.Fatalf("unacknowledged live delivery: %+v", resp.Results)
	}
	// The live copy did arrive; its late acknowledgement deletes the queued one.
	ev, err := live.Next(ctx)
	if err != nil || ev.Type != client.EventEnvelope {
		t.Fatalf("event: %+v %v", ev, err)
	}
	if err := live.Ack(ctx, resp.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late acknowledgement to empty the queue", func() bool {
		n, _ := ts.store.QueueDepth(ctx)
		return n == 0
	})
}

// Key directory lookups are limited per device, so the ID space cannot be
// walked.
func TestDirectoryRateLimit(t *testing.T) {
	ts := newTestServer(t, func(o *server.Options) { o.DirectoryRate, o.DirectoryBurst = 0.001, 5 })
	ctx := context.Background()
	alice := ts.newUser(t)
	var limited int
	for range 8 {
		_, err := alice.Directory(ctx, protocol.NewUserID())
		switch {
		case errors.Is(err, api.ErrRateLimited):
			limited++
		case !errors.Is(err, api.ErrUserUnknown):
			t.Fatalf("lookup: %v", err)
		}
	}
	if limited != 3 {
		t.Fatalf("%d of 8 lookups limited with a burst of 5, want 3", limited)
	}
}

// A live channel ends at its lifetime with a closing notice.
func TestLiveLifetime(t *testing.T) {
	ts := newTestServer(t, func(o *server.Options) { o.LiveLifetime = 300 * time.Millisecond })
	ctx := context.Background()
	bob := ts.newUser(t)
	live, err := bob.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	for {
		ev, err := live.Next(ctx)
		if err != nil {
			t.Fatalf("channel ended without a closing notice: %v", err)
		}
		if ev.Type == client.EventClosing {
			return
		}
	}
}
