package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// The server is startSDKServer's (account_test.go): real TLS, a real
// SQLite file, open registration and a clock that moves only when told.

// registerWithKeys registers a user with one device made of fixed test
// keys, so that only the linked device spends time generating keys.
func registerWithKeys(t *testing.T, s *sdkServer, identity, enc, auth int) *client.Conn {
	t.Helper()
	dev, err := client.NewDeviceFromKeys(protocol.NewUserID(), protocol.NewDeviceID(), testkeys.Key(identity), testkeys.Key(enc), testkeys.Key(auth), s.now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Register(context.Background(), client.Options{Server: s.url, ServerFP: s.fp, Now: s.now}, dev, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type joined struct {
	dev  *client.Device
	conn *client.Conn
	err  error
}

func joinAsync(ctx context.Context, s *sdkServer, code string) <-chan joined {
	ch := make(chan joined, 1)
	go func() {
		d, c, err := client.JoinLink(ctx, code, client.Options{Now: s.now}, s.now())
		ch <- joined{d, c, err}
	}()
	return ch
}

func TestLinkDevice(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	a := registerWithKeys(t, s, 0, 1, 2) // the existing device
	user, identity := a.Device().User, a.Device().Identity.Public()

	link, err := a.StartLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := protocol.ParseLinkCode(link.Code())
	if err != nil {
		t.Fatal(err)
	}
	if lc.Server != s.url || !lc.ServerFP.Equal(s.fp) || lc.User != user {
		t.Fatalf("link code names %s", lc)
	}
	if got := link.Expires(); !got.Equal(s.now().Add(protocol.LinkLifetime)) {
		t.Fatalf("link expires at %v", got)
	}

	wait := joinAsync(ctx, s, link.Code()) // the new device, B
	cert, err := link.Complete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	j := <-wait
	if j.err != nil {
		t.Fatal(j.err)
	}
	b := j.dev

	// B is a device of the same user, certified by the identity key for
	// exactly the keys it generated, and it holds the identity key.
	if err := cert.Verify(identity); err != nil {
		t.Fatal(err)
	}
	if b.User != user || b.ID != cert.Device || !bytes.Equal(b.Cert.Bytes(), cert.Bytes()) {
		t.Fatalf("B is %s/%s, the certificate names %s/%s", b.User, b.ID, cert.User, cert.Device)
	}
	if !cert.EncryptionKey.Equal(b.Enc.Public()) || !cert.AuthKey.Equal(b.Auth.Public()) {
		t.Fatal("the certificate does not bind B's keys")
	}
	if !bytes.Equal(b.Identity.Bytes(), a.Device().Identity.Bytes()) || b.Fingerprint() != a.Device().Fingerprint() {
		t.Fatal("B does not hold the user's identity key")
	}
	// The directory, verified under the identity key, lists both devices.
	certs, err := a.Devices(ctx, user, identity)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !containsDevice(certs, a.Device().ID) || !containsDevice(certs, b.ID) {
		t.Fatalf("directory lists %d devices", len(certs))
	}

	// Carol, who pinned the user's identity key, sends to every device of
	// the user; B opens its copy and sees the signature verified.
	carol := registerWithKeys(t, s, 3, 4, 5)
	var to []protocol.DeviceRecipient
	for _, c := range certs {
		to = append(to, protocol.DeviceRecipient{User: c.User, Device: c.Device, Key: c.EncryptionKey})
	}
	env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte("to both of your devices")}, carol.Device().Sender(), to, protocol.SealOptions{Sent: s.now(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Send(ctx, env); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Conn{"A": a, "B": j.conn} {
		inbox, err := c.Inbox(ctx, 10, 5*time.Second)
		if err != nil || len(inbox.Envelopes) != 1 {
			t.Fatalf("%s's inbox: %v, %+v", name, err, inbox)
		}
		e, err := protocol.ParseEnvelope(inbox.Envelopes[0])
		if err != nil {
			t.Fatal(err)
		}
		m, status, err := e.Open(c.Device().Recipient(), carol.Device().Identity.Public(), s.now())
		if err != nil || status != protocol.Verified || string(m.Body) != "to both of your devices" {
			t.Fatalf("%s opens: %v, %v", name, status, err)
		}
	}

	// And B sends as the user: Carol verifies it under the same identity key.
	env, err = protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte("from my new device")}, b.Sender(), []protocol.DeviceRecipient{{User: carol.Device().User, Device: carol.Device().ID, Key: carol.Device().Enc.Public()}}, protocol.SealOptions{Sent: s.now(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.conn.Send(ctx, env); err != nil {
		t.Fatal(err)
	}
	inbox, err := carol.Inbox(ctx, 10, 5*time.Second)
	if err != nil || len(inbox.Envelopes) != 1 {
		t.Fatalf("carol's inbox: %v, %+v", err, inbox)
	}
	e, _ := protocol.ParseEnvelope(inbox.Envelopes[0])
	if m, status, err := e.Open(carol.Device().Recipient(), identity, s.now()); err != nil || status != protocol.Verified || string(m.Body) != "from my new device" {
		t.Fatalf("carol opens: %v, %v", status, err)
	}

	// A link completes once, and its code works once.
	if _, err := link.Complete(ctx); err == nil {
		t.Fatal("a second Complete succeeded")
	}
	if _, _, err := client.JoinLink(ctx, link.Code(), client.Options{Now: s.now}, s.now()); !errors.Is(err, client.ErrLinkUsed) {
		t.Fatalf("joining with a used code: %v", err)
	}
}

func containsDevice(certs []*protocol.DeviceCert, id protocol.DeviceID) bool {
	for _, c := range certs {
		if c.Device == id {
			return true
		}
	}
	return false
}

func TestLinkWrongSecret(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	a := registerWithKeys(t, s, 0, 1, 2)
	link, err := a.StartLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A code with the right mailbox and another secret, as a server or
	// anyone who learned the mailbox but not the secret could make: its
	// request reaches the existing device, which refuses to certify it.
	lc, _ := protocol.ParseLinkCode(link.Code())
	lc.Secret[0] ^= 1
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait := joinAsync(jctx, s, lc.URI())
	if _, err := link.Complete(ctx); !errors.Is(err, client.ErrLinkFailed) {
		t.Fatalf("Complete with a request under another secret: %v", err)
	}
	cancel()
	if j := <-wait; j.err == nil {
		t.Fatal("the join with another secret succeeded")
	}
	certs, err := a.Devices(ctx, a.Device().User, a.Device().Identity.Public())
	if err != nil || len(certs) != 1 {
		t.Fatalf("devices after a refused link: %v, %d", err, len(certs))
	}
}

// TestLinkRequestTakenByAnother: someone who learned the mailbox (the
// server, say) takes the new device's request before the existing device
// does. They cannot read it, and the existing device learns at once that
// the link is spoiled instead of waiting out the 10 minutes.
func TestLinkRequestTakenByAnother(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	a := registerWithKeys(t, s, 0, 1, 2)
	link, err := a.StartLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc, _ := protocol.ParseLinkCode(link.Code())
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait := joinAsync(jctx, s, link.Code())
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client.PinnedTLSConfig(s.fp)}}
	resp, err := hc.Post(s.url+"/v1/provision/"+lc.RequestMailbox().String()+"/take?wait=20000", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("thief's take: %s", resp.Status)
	}
	start := time.Now()
	if _, err := link.Complete(ctx); !errors.Is(err, client.ErrLinkUsed) {
		t.Fatalf("Complete after the request was taken: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Complete took %v to notice", d)
	}
	cancel()
	<-wait
}

func TestLinkExpiry(t *testing.T) {
	s := startSDKServer(t)
	ctx := context.Background()
	a := registerWithKeys(t, s, 0, 1, 2)
	link, err := a.StartLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A code scanned more than 10 minutes ago: refused before any key is made.
	_, _, err = client.JoinLink(ctx, link.Code(), client.Options{Now: s.now}, s.now().Add(-protocol.LinkLifetime))
	if !errors.Is(err, client.ErrLinkExpired) || !strings.Contains(err.Error(), "10 minutes") {
		t.Fatalf("join with an expired code: %v", err)
	}
	// The existing device stops waiting when the code's time is up.
	s.clock.Add(int64(protocol.LinkLifetime))
	start := time.Now()
	if _, err := link.Complete(ctx); !errors.Is(err, client.ErrLinkExpired) || !strings.Contains(err.Error(), "10 minutes") {
		t.Fatalf("Complete after expiry: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Complete took %v to give up", d)
	}

	// Bad codes and disagreeing options are refused at once.
	if _, _, err := client.JoinLink(ctx, "qrtalk:link?v=1", client.Options{}, s.now()); !errors.Is(err, protocol.ErrMalformed) {
		t.Fatalf("malformed code: %v", err)
	}
	other, err := a.StartLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.JoinLink(ctx, other.Code(), client.Options{ServerFP: protocol.ServerFingerprint(testkeys.Key(6).Public())}, s.now()); !errors.Is(err, client.ErrServerKey) {
		t.Fatalf("code for another server key than the options': %v", err)
	}
	if _, _, err := client.JoinLink(ctx, other.Code(), client.Options{Server: "https://elsewhere.example"}, s.now()); err == nil {
		t.Fatal("code for another server than the options' accepted")
	}
}
