package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store/sqlite"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// sdkServer is a real server on a TLS listener and a SQLite file, with a
// settable clock shared with the accounts.
type sdkServer struct {
	url   string
	fp    protocol.Fingerprint
	srv   *server.Server
	st    *sqlite.Store
	clock atomic.Int64
}

func (s *sdkServer) now() time.Time { return time.Unix(0, s.clock.Load()) }

func startSDKServer(t *testing.T) *sdkServer {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &sdkServer{st: st}
	s.clock.Store(time.Now().UnixNano())
	key := testkeys.Key(7)
	srv, err := server.New(server.Options{Store: st, Key: key, BlobDir: filepath.Join(dir, "blobs"), Now: s.now,
		Registration: server.RegistrationOpen, IPRate: 1e6, IPBurst: 1e6, DeviceRate: 1e6, DeviceBurst: 1e6, DirectoryRate: 1e6, DirectoryBurst: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := x509.ParsePKCS8PrivateKey(key.Bytes())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.(crypto.Signer).Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}}
	ts.StartTLS()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.Close()
	})
	s.srv, s.url, s.fp = srv, ts.URL, protocol.ServerFingerprint(key.Public())
	return s
}

func (s *sdkServer) invite() string {
	return protocol.Invite{Server: s.url, ServerFP: s.fp, Token: "open-registration-token"}.URI()
}

func (s *sdkServer) join(t *testing.T) *client.Account {
	t.Helper()
	a, err := client.Join(context.Background(), t.TempDir(), s.invite(), client.AccountOptions{Now: s.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestAccountsTalk(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	alice, bob := s.join(t), s.join(t)

	// Add each other by the contact QR text: verified at once.
	if c, err := alice.AddContact(ctx, bob.ContactCard().URI(), "bob"); err != nil || !c.Verified {
		t.Fatalf("add bob: %v %+v", err, c)
	}
	// By ID only: pinned, unverified, until the fingerprint is compared.
	c, err := bob.AddContact(ctx, alice.Device().User.String(), "alice")
	if err != nil || c.Verified {
		t.Fatalf("add alice: %v %+v", err, c)
	}
	if _, err := bob.VerifyContact(ctx, "alice", "00000 11111"); !errors.Is(err, protocol.ErrMismatch) {
		t.Fatalf("wrong fingerprint: %v", err)
	}
	if _, err := bob.VerifyContact(ctx, "alice", alice.Device().Fingerprint().Numeric()); err != nil {
		t.Fatal(err)
	}

	// A message with an attachment, to bob who is offline.
	file := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(file, []byte("the attachment's content"), 0o600)
	res, err := alice.Send(ctx, "bob", []byte("hello bob"), client.SendOptions{TTL: time.Hour, Files: []string{file}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 1 || res.Devices[0].Status != "queued" {
		t.Fatalf("send: %+v", res.Devices)
	}
	got, err := bob.Sync(ctx, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("sync: %v %d", err, len(got))
	}
	r := got[0]
	if r.Signature != client.SigVerified || string(r.Message.Body) != "hello bob" || r.Conversation != "alice" {
		t.Fatalf("received: %+v", r)
	}
	saveDir := t.TempDir()
	paths, err := bob.SaveAttachments(ctx, r, saveDir)
	if err != nil || len(paths) != 1 {
		t.Fatalf("attachments: %v %v", err, paths)
	}
	if data, _ := os.ReadFile(paths[0]); string(data) != "the attachment's content" {
		t.Fatalf("attachment content: %q", data)
	}

	// Reading sends a read receipt; alice sees delivered, then read.
	if msgs, err := bob.Messages(ctx, "alice", true); err != nil || len(msgs) != 1 {
		t.Fatalf("bob's messages: %v %d", err, len(msgs))
	}
	if _, err := alice.Sync(ctx, 0); err != nil {
		t.Fatal(err)
	}
	msgs, err := alice.Messages(ctx, "bob", false)
	if err != nil || len(msgs) != 1 || !msgs[0].Outgoing || msgs[0].State != "read" {
		t.Fatalf("alice's copy: %v %+v", err, msgs)
	}

	// A duplicate delivery is shown once.
	if again, err := bob.Sync(ctx, 0); err != nil || len(again) != 0 {
		t.Fatalf("second sync: %v %d", err, len(again))
	}

	// Expiry removes the message from both local stores.
	s.clock.Add(int64(2 * time.Hour))
	for _, acc := range []*client.Account{alice, bob} {
		who := "bob"
		if acc == bob {
			who = "alice"
		}
		msgs, err := acc.Messages(ctx, who, false)
		if err != nil || len(msgs) != 0 {
			t.Fatalf("after expiry: %v %d messages", err, len(msgs))
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(bob.Dir(), "attachments")); len(entries) != 0 {
		t.Fatalf("expired attachments left on disk: %d", len(entries))
	}
}

func TestGroupAndKeyChange(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	alice, bob, carol := s.join(t), s.join(t), s.join(t)
	for _, pair := range [][2]*client.Account{{alice, bob}, {alice, carol}, {bob, alice}, {bob, carol}, {carol, alice}, {carol, bob}} {
		if _, err := pair[0].AddContact(ctx, pair[1].ContactCard().URI(), pair[1].Device().User.String()[:6]); err != nil {
			t.Fatal(err)
		}
	}
	name := func(a *client.Account) string { return a.Device().User.String()[:6] }
	g, err := alice.CreateGroup(ctx, "team", []string{name(bob), name(carol)})
	if err != nil {
		t.Fatal(err)
	}
	for _, acc := range []*client.Account{bob, carol} {
		if _, err := acc.Sync(ctx, 0); err != nil {
			t.Fatal(err)
		}
		got, err := acc.Group(ctx, "team")
		if err != nil || len(got.Members) != 3 || !bytes.Equal(got.ID, g.ID) {
			t.Fatalf("group state: %v %+v", err, got)
		}
	}
	if _, err := bob.Send(ctx, "team", []byte("hi team"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, acc := range []*client.Account{alice, carol} {
		got, err := acc.Sync(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		var texts int
		for _, r := range got {
			if r.Message != nil && string(r.Message.Body) == "hi team" && r.Conversation == "team" {
				texts++
			}
		}
		if texts != 1 {
			t.Fatalf("group message received %d times", texts)
		}
	}

	// Carol's account is replaced by one with another key under the same
	// user ID: alice must stop sending until she accepts it.
	if err := deleteAccount(ctx, carol); err != nil {
		t.Fatal(err)
	}
	newCarol := rejoinAs(t, s, carol.Device().User)
	_ = newCarol
	if _, err := alice.Send(ctx, name(carol), []byte("still you?"), client.SendOptions{}); !errors.Is(err, client.ErrKeyChanged) {
		t.Fatalf("send after a key change: %v", err)
	}
	c, err := alice.Contact(ctx, name(carol))
	if err != nil || c.Trust() != "CHANGED" {
		t.Fatalf("contact after key change: %v %+v", err, c)
	}
	if c.Pending == nil || c.Pending.Equal(c.Identity) {
		t.Fatalf("changed contact without the new key: %+v", c)
	}
	// Accepting a fingerprint other than the pending key's pins nothing.
	if _, err := alice.AcceptKeyChange(ctx, name(carol), c.Fingerprint()); !errors.Is(err, client.ErrKeyChanged) {
		t.Fatalf("accept with the old fingerprint: %v", err)
	}
	if _, err := alice.Send(ctx, name(carol), []byte("still you?"), client.SendOptions{}); !errors.Is(err, client.ErrKeyChanged) {
		t.Fatalf("send after a refused accept: %v", err)
	}
	if _, err := alice.AcceptKeyChange(ctx, name(carol), protocol.IdentityFingerprint(c.Pending)); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, name(carol), []byte("welcome back"), client.SendOptions{}); err != nil {
		t.Fatalf("send after accepting: %v", err)
	}
}

func deleteAccount(ctx context.Context, a *client.Account) error {
	c, err := a.Conn(ctx)
	if err != nil {
		return err
	}
	return c.DeleteAccount(ctx)
}

// rejoinAs registers a new identity under an existing (deleted) user ID,
// as a user who lost their device and re-registered would.
func rejoinAs(t *testing.T, s *sdkServer, user protocol.UserID) *client.Conn {
	t.Helper()
	dev, err := client.NewDeviceFromKeys(user, protocol.NewDeviceID(), testkeys.Key(0), testkeys.Key(1), testkeys.Key(2), s.now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Register(context.Background(), client.Options{Server: s.url, ServerFP: s.fp, Now: s.now}, dev, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Listen acknowledges what it received through the channel's Acker, so
// that a queue drains in few frames; every message it handed over is
// acknowledged, also the last ones when Listen stops: the server's queue
// is empty afterwards, and nothing comes again.
func TestListenAcknowledgesEverything(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	alice, bob := s.join(t), s.join(t)
	if _, err := alice.AddContact(ctx, bob.ContactCard().URI(), "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.AddContact(ctx, alice.ContactCard().URI(), "alice"); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		if _, err := alice.Send(ctx, "bob", fmt.Appendf(nil, "message %d", i), client.SendOptions{TTL: time.Hour, Unsigned: true}); err != nil {
			t.Fatal(err)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	got := 0
	err := bob.Listen(lctx, func(r *client.Received) {
		if r.Message != nil {
			got++
			if got == n {
				cancel()
			}
		}
	})
	if got != n {
		t.Fatalf("listen: %d of %d messages, %v", got, n, err)
	}
	conn, err := bob.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The server commits acknowledgements in batches, after reading
	// them: give the last batch a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		inbox, err := conn.Inbox(ctx, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(inbox.Envelopes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, e := range inbox.Envelopes {
				if env, err := protocol.ParseEnvelope(e); err == nil {
					t.Logf("still queued: %s from %s sent %v", env.ID, env.Sender, env.Sent)
				}
			}
			t.Fatalf("%d messages still queued on the server 5 s after Listen acknowledged them", len(inbox.Envelopes))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Group changes and receipts count only when their signature was checked
// under a pinned key, receipts only from a user the message went to, and
// a group's conversation takes messages only from its members.
func TestControlMessagesNeedAPinnedSender(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	alice, bob, carol, mallory := s.join(t), s.join(t), s.join(t), s.join(t)
	add := func(who, whom *client.Account, name string) {
		t.Helper()
		if _, err := who.AddContact(ctx, whom.ContactCard().URI(), name); err != nil {
			t.Fatal(err)
		}
	}
	add(alice, bob, "bob")
	add(alice, carol, "carol")
	add(alice, mallory, "mallory")
	add(bob, alice, "alice")
	add(bob, carol, "carol")
	add(carol, alice, "alice")
	add(carol, bob, "bob")
	add(mallory, alice, "alice")
	add(mallory, bob, "bob")

	// Mallory, whom bob has not added, makes a group with bob in it:
	// bob's device ignores it.
	if _, err := mallory.CreateGroup(ctx, "trap", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Sync(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if gs, err := bob.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("a stranger's group state was applied: %v %d groups", err, len(gs))
	}

	// Mallory, alice's contact, claims to have read alice's message to bob.
	res, err := alice.Send(ctx, "bob", []byte("for bob only"), client.SendOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(map[string]any{"kind": "read", "ids": []protocol.MessageID{res.ID}})
	if _, err := mallory.Send(ctx, "alice", forged, client.SendOptions{TTL: time.Hour, ContentType: client.ContentReceipt}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Sync(ctx, 0); err != nil {
		t.Fatal(err)
	}
	msgs, err := alice.Messages(ctx, "bob", false)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("alice's messages: %v %d", err, len(msgs))
	}
	if msgs[0].State == "read" {
		t.Fatal("a receipt from a user the message did not go to marked it read")
	}

	// Alice's group of three; carol is removed, and what she still writes
	// to the group lands in her own conversation on bob's device.
	if _, err := alice.CreateGroup(ctx, "team", []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	for _, acc := range []*client.Account{bob, carol} {
		if _, err := acc.Sync(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.RemoveMember(ctx, "team", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Sync(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Send(ctx, "team", []byte("still here"), client.SendOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	got, err := bob.Sync(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Message != nil && string(r.Message.Body) == "still here" && r.Conversation != "carol" {
			t.Fatalf("a removed member's message went to %q, not to her own conversation", r.Conversation)
		}
	}
}
