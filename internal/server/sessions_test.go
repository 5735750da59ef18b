package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// sessionClient speaks the session route by hand, so that tests can send
// what the SDK never would (a spent ticket, another device's ticket).
type sessionClient struct {
	t    *testing.T
	http *http.Client
	fp   protocol.Fingerprint
	now  func() time.Time
}

func newSessionClient(t *testing.T, ts *testServer) *sessionClient {
	return newSessionClientFor(t, ts.opts.ServerFP, ts.clock.Now)
}

func newSessionClientFor(t *testing.T, fp protocol.Fingerprint, now func() time.Time) *sessionClient {
	tr := &http.Transport{TLSClientConfig: client.PinnedTLSConfig(fp)}
	t.Cleanup(tr.CloseIdleConnections)
	return &sessionClient{t: t, http: &http.Client{Transport: tr}, fp: fp, now: now}
}

// post sends body to url's session route and returns the answer, its
// ticket (nil if none) and the API error (nil on success).
func (c *sessionClient) post(url string, body []byte) ([]byte, []byte, error) {
	c.t.Helper()
	resp, err := c.http.Post(url+"/v1/session", api.ContentFrame, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Code == 0 {
			c.t.Fatalf("answer %s: %q", resp.Status, data)
		}
		return nil, nil, &e
	}
	var ticket []byte
	if h := resp.Header.Get(api.TicketHeader); h != "" {
		if ticket, err = base64.RawURLEncoding.DecodeString(h); err != nil {
			c.t.Fatalf("ticket header: %v", err)
		}
	}
	return data, ticket, nil
}

// setup makes a full session for dev at url and returns it and its ticket.
func (c *sessionClient) setup(url string, dev *client.Device, serverKey *protocol.PublicKey) (*protocol.ClientSession, *protocol.Ticket) {
	c.t.Helper()
	cs, setup, err := protocol.NewClientSession(protocol.ChannelDevice{User: dev.User, Device: dev.ID, AuthKey: dev.Auth}, serverKey, c.now())
	if err != nil {
		c.t.Fatal(err)
	}
	confirm, sealed, err := c.post(url, setup)
	if err != nil {
		c.t.Fatalf("setup: %v", err)
	}
	if err := cs.Confirm(confirm, c.now()); err != nil {
		c.t.Fatal(err)
	}
	if sealed == nil {
		c.t.Fatal("a full setup's answer has no ticket")
	}
	ticket, err := cs.Ticket(sealed, c.now())
	if err != nil {
		c.t.Fatal(err)
	}
	return cs, ticket
}

// resume sends a resume with ticket and, if accepted, returns the session
// and its new ticket.
func (c *sessionClient) resume(url string, ticket *protocol.Ticket) (*protocol.ClientSession, *protocol.Ticket, []byte, error) {
	c.t.Helper()
	res, msg, err := protocol.Resume(ticket, c.now())
	if err != nil {
		c.t.Fatal(err)
	}
	sess, next, err := c.finish(url, res, msg)
	return sess, next, msg, err
}

func (c *sessionClient) finish(url string, res *protocol.Resumption, msg []byte) (*protocol.ClientSession, *protocol.Ticket, error) {
	c.t.Helper()
	answer, sealed, err := c.post(url, msg)
	if err != nil {
		return nil, nil, err
	}
	sess, err := res.Finish(answer, c.now())
	if err != nil {
		c.t.Fatalf("the server's answer to a resume: %v", err)
	}
	next, err := sess.Ticket(sealed, c.now())
	if err != nil {
		c.t.Fatalf("the resumed session's ticket: %v", err)
	}
	return sess, next, nil
}

// inbox makes one authenticated request on sess.
func (c *sessionClient) inbox(url string, sess *protocol.ClientSession) error {
	c.t.Helper()
	frame, ctr, err := sess.SealRequest("POST", "/v1/inbox", []byte(`{"limit":1}`))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.http.Post(url+"/v1/inbox", api.ContentFrame, bytes.NewReader(frame))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		json.Unmarshal(data, &e)
		return &e
	}
	_, err = sess.OpenResponse(ctr, "POST", "/v1/inbox", data, c.now())
	return err
}

func TestSessionResume(t *testing.T) {
	ts := newTestServer(t)
	sc := newSessionClient(t, ts)
	alice := ts.newUser(t)
	dev := alice.Device()
	url := ts.ts.URL
	_, ticket := sc.setup(url, dev, ts.key.Public())

	sess, next, msg, err := sc.resume(url, ticket)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := sc.inbox(url, sess); err != nil {
		t.Fatalf("request on the resumed session: %v", err)
	}
	// The message again: the ticket is spent.
	if _, _, err := sc.post(url, msg); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("replayed resume: got %v, want ErrSessionUnknown", err)
	}
	// The chain goes on with the new ticket.
	sess2, next2, _, err := sc.resume(url, next)
	if err != nil {
		t.Fatalf("second resume: %v", err)
	}
	if sess2.ID() == sess.ID() {
		t.Fatal("two resumes, one session ID")
	}
	// Tampered: any byte of the message, the ticket's included.
	for _, off := range []int{30, 70, 100, 150, protocol.ResumeSize - 1} {
		res, msg, err := protocol.Resume(next2, ts.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Clone(msg)
		bad[off] ^= 1
		if _, _, err := sc.post(url, bad); !errors.Is(err, api.ErrSessionUnknown) && !errors.Is(err, api.ErrMalformed) {
			t.Fatalf("resume tampered at byte %d: got %v", off, err)
		}
		// The refused message did not spend the ticket (the binder is
		// checked first), so the genuine one still goes through once.
		var sess3 *protocol.ClientSession
		if sess3, next2, err = sc.finish(url, res, msg); err != nil {
			t.Fatalf("genuine resume after a tampered one (byte %d): %v", off, err)
		}
		if err := sc.inbox(url, sess3); err != nil {
			t.Fatal(err)
		}
	}
	// The ticket's chain ends 24 hours after the full setup.
	ts.clock.Advance(protocol.TicketLifetime)
	if _, _, err := sc.post(url, mustResume(t, next2, ts.clock.Now().Add(-time.Minute))); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("expired ticket: got %v", err)
	}
}

func mustResume(t *testing.T, ticket *protocol.Ticket, at time.Time) []byte {
	t.Helper()
	_, msg, err := protocol.Resume(ticket, at)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestSessionResumeRefused(t *testing.T) {
	ts := newTestServer(t)
	sc := newSessionClient(t, ts)
	ctx := context.Background()
	url := ts.ts.URL
	bob := ts.newUser(t)
	bob2 := ts.linkDevice(t, bob)
	_, ticket := sc.setup(url, bob.Device(), ts.key.Public())
	_, ticket2 := sc.setup(url, bob2.Device(), ts.key.Public())

	// Bob's second device presents the first device's ticket (and holds
	// its secret): the ticket names the device it was issued to.
	ticket.Device = bob2.Device().ID
	if _, _, _, err := sc.resume(url, ticket); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("ticket for another device: got %v", err)
	}

	// A revoked device cannot resume.
	if err := bob.Revoke(ctx, bob2.Device().ID); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := sc.resume(url, ticket2); !errors.Is(err, api.ErrDeviceUnknown) {
		t.Fatalf("revoked device: got %v", err)
	}

	// A resume for another server key.
	_, ticket3 := sc.setup(url, bob.Device(), ts.key.Public())
	ticket3.Server[0] ^= 1
	if _, _, _, err := sc.resume(url, ticket3); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("resume for another server key: got %v", err)
	}

	// A resume from a clock far off is the device's clock to fix.
	_, ticket4 := sc.setup(url, bob.Device(), ts.key.Public())
	if _, _, err := sc.post(url, mustResume(t, ticket4, ts.clock.Now().Add(-10*time.Minute))); !errors.Is(err, api.ErrClockSkew) {
		t.Fatalf("stale resume: got %v", err)
	}
	// Garbage of the resume type.
	if _, _, err := sc.post(url, []byte{protocol.Version, 9, 1, 2, 3}); !errors.Is(err, api.ErrMalformed) {
		t.Fatalf("short resume: got %v", err)
	}
}

// Restart and cluster: ticket keys come from the server key, so a new
// instance (a restart) and another node accept the ticket; the replay
// cache that the nodes share spends it for all of them.
func TestSessionResumeAcrossNodes(t *testing.T) {
	replay := &protocol.MemoryReplayCache{}
	shared := func(o *server.Options) { o.ReplayCache = replay }
	ts := newTestServer(t, shared)
	sc := newSessionClient(t, ts)
	alice := ts.newUser(t)

	// Another node: the same store and key, its own memory.
	opts := server.Options{Store: ts.store, Key: ts.key, BlobDir: t.TempDir(), Now: ts.clock.Now, ReplayCache: replay,
		IPRate: 10000, IPBurst: 10000, DeviceRate: 10000, DeviceBurst: 10000}
	node2, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(node2.Handler())
	hs.TLS = ts.ts.TLS
	hs.StartTLS()
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node2.Shutdown(ctx)
	})

	_, ticket := sc.setup(ts.ts.URL, alice.Device(), ts.key.Public())
	sess, next, msg, err := sc.resume(hs.URL, ticket)
	if err != nil {
		t.Fatalf("node 1's ticket on node 2: %v", err)
	}
	if err := sc.inbox(hs.URL, sess); err != nil {
		t.Fatal(err)
	}
	if err := sc.inbox(ts.ts.URL, sess); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("node 2's session on node 1 (sessions stay on their node): %v", err)
	}
	if _, _, err := sc.post(ts.ts.URL, msg); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("a resume replayed on the other node: got %v", err)
	}
	// A restarted node 1 (a new instance) takes node 2's ticket.
	restarted, err := server.New(server.Options{Store: ts.store, Key: ts.key, BlobDir: t.TempDir(), Now: ts.clock.Now, ReplayCache: replay})
	if err != nil {
		t.Fatal(err)
	}
	hr := httptest.NewUnstartedServer(restarted.Handler())
	hr.TLS = ts.ts.TLS
	hr.StartTLS()
	t.Cleanup(func() {
		hr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		restarted.Shutdown(ctx)
	})
	if _, _, _, err := sc.resume(hr.URL, next); err != nil {
		t.Fatalf("resume on a restarted server: %v", err)
	}
}

// The scale-out mode: two nodes on PostgreSQL (the replay cache in the
// database, as qrtalkd wires it). Each node opens the other's tickets, a
// ticket spent on one is spent on both, and a revocation made through one
// node stops resumes on the other.
func TestClusterResumeAcrossNodes(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 2})
	sc := newSessionClientFor(t, protocol.ServerFingerprint(c.key.Public()), time.Now)
	a, b := c.nodes[0].ts.URL, c.nodes[1].ts.URL
	bob := c.user(t, 0)
	_, ticket := sc.setup(a, bob.Device(), c.key.Public())
	sess, next, msg, err := sc.resume(b, ticket)
	if err != nil {
		t.Fatalf("node A's ticket on node B: %v", err)
	}
	if err := sc.inbox(b, sess); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sc.post(a, msg); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("a resume spent on node B, replayed on node A: got %v", err)
	}
	if _, _, err := sc.post(b, msg); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("a resume replayed on its own node: got %v", err)
	}
	bob2 := c.link(t, bob, 1)
	_, ticket2 := sc.setup(b, bob2.Device(), c.key.Public())
	if err := bob.Revoke(context.Background(), bob2.Device().ID); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := sc.resume(b, ticket2); !errors.Is(err, api.ErrDeviceUnknown) {
		t.Fatalf("revoked device resuming on the other node: got %v", err)
	}
	if _, _, _, err := sc.resume(a, next); err != nil {
		t.Fatalf("node B's ticket on node A: %v", err)
	}
}

// gatedStore holds one Device lookup of a chosen device after it has read
// the store, so that a test can revoke the device in that window.
type gatedStore struct {
	store.Store
	device atomic.Pointer[protocol.DeviceID]
	read   chan struct{} // closed once the held lookup has read
	resume chan struct{} // closed to let it return
	once   sync.Once
}

func (g *gatedStore) Device(ctx context.Context, u protocol.UserID, d protocol.DeviceID) (store.Device, error) {
	dev, err := g.Store.Device(ctx, u, d)
	if p := g.device.Load(); p != nil && d == *p {
		held := false
		g.once.Do(func() { held = true })
		if held {
			close(g.read)
			<-g.resume
		}
	}
	return dev, err
}

// A device revoked while its session is being set up or resumed (the
// server read it as active just before the revocation committed, and adds
// the session just after the revocation dropped the device's sessions)
// must not keep that session.
func TestSessionSetupRacingRevocation(t *testing.T) {
	for _, resume := range []bool{false, true} {
		var g *gatedStore
		ts := newTestServer(t, func(o *server.Options) {
			g = &gatedStore{Store: o.Store, read: make(chan struct{}), resume: make(chan struct{})}
			o.Store = g
		})
		sc := newSessionClient(t, ts)
		ctx := context.Background()
		url := ts.ts.URL
		bob := ts.newUser(t)
		bob2 := ts.linkDevice(t, bob)
		_, ticket := sc.setup(url, bob2.Device(), ts.key.Public())
		id := bob2.Device().ID
		g.device.Store(&id)

		type result struct {
			sess *protocol.ClientSession
			err  error
		}
		done := make(chan result, 1)
		go func() {
			if resume {
				sess, _, _, err := sc.resume(url, ticket)
				done <- result{sess, err}
				return
			}
			// A full setup, by hand (sc.setup fails the test on error).
			s, setup, err := protocol.NewClientSession(protocol.ChannelDevice{User: bob2.Device().User, Device: bob2.Device().ID, AuthKey: bob2.Device().Auth}, ts.key.Public(), ts.clock.Now())
			if err != nil {
				done <- result{nil, err}
				return
			}
			confirm, _, err := sc.post(url, setup)
			if err == nil {
				err = s.Confirm(confirm, ts.clock.Now())
			}
			done <- result{s, err}
		}()
		<-g.read
		if err := bob.Revoke(ctx, bob2.Device().ID); err != nil {
			t.Fatal(err)
		}
		close(g.resume)
		r := <-done
		if r.err != nil {
			continue // refused: right
		}
		if err := sc.inbox(url, r.sess); err == nil {
			t.Errorf("resume=%v: a session set up across the revocation serves the revoked device", resume)
		}
	}
}

// docs/PROTOCOL.md 18.8: a refused ticket (steps 3 to 8, its version byte
// included) is 40101; only the resume message's own version is 40005.
func TestSessionResumeTicketVersion(t *testing.T) {
	ts := newTestServer(t)
	sc := newSessionClient(t, ts)
	url := ts.ts.URL
	alice := ts.newUser(t)
	_, ticket := sc.setup(url, alice.Device(), ts.key.Public())
	msg := mustResume(t, ticket, ts.clock.Now())
	bad := bytes.Clone(msg)
	bad[98] = 2 // the ticket's version
	if _, _, err := sc.post(url, bad); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("resume with a ticket of version 2: got %v, want ErrSessionUnknown (40101)", err)
	}
	bad = bytes.Clone(msg)
	bad[0] = 2 // the message's version
	if _, _, err := sc.post(url, bad); !errors.Is(err, api.ErrVersion) {
		t.Fatalf("resume message of version 2: got %v, want ErrVersion (40005)", err)
	}
}
