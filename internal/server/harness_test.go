package server_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/sqlite"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// clock is a settable clock shared by the server and its test clients.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// countingStore counts queue writes, so that tests can show that a live
// delivery never touched the disk.
type countingStore struct {
	store.Store
	enqueued atomic.Int64
}

func (s *countingStore) Enqueue(ctx context.Context, msgs []store.QueuedMessage) error {
	s.enqueued.Add(int64(len(msgs)))
	return s.Store.Enqueue(ctx, msgs)
}

type testServer struct {
	srv    *server.Server
	ts     *httptest.Server
	store  *countingStore
	clock  *clock
	dbPath string
	opts   client.Options
	key    *protocol.PrivateKey
}

// newTestServer starts a server on a real TLS listener and a real SQLite
// file, with the server key's self-signed certificate, as qrtalkd does.
func newTestServer(t *testing.T, mod ...func(*server.Options)) *testServer {
	t.Helper()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "qrtalkd.db")
	st, err := sqlite.Open(context.Background(), dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	clk := newClock()
	key := testkeys.Key(7)
	opts := server.Options{Store: cs, Key: key, BlobDir: filepath.Join(dir, "blobs"), Now: clk.Now,
		AckTimeout: 2 * time.Second, IPRate: 10000, IPBurst: 10000, DeviceRate: 10000, DeviceBurst: 10000}
	for _, m := range mod {
		m(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t, key)}}
	ts.StartTLS()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.Close()
	})
	return &testServer{srv: srv, ts: ts, store: cs, clock: clk, dbPath: dbPath, key: key,
		opts: client.Options{Server: ts.URL, ServerFP: protocol.ServerFingerprint(key.Public()), Now: clk.Now}}
}

func selfSigned(t *testing.T, key *protocol.PrivateKey) tls.Certificate {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(key.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qrtalkd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.(crypto.Signer).Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func (ts *testServer) invite(t *testing.T, uses int) string {
	t.Helper()
	tok, err := server.NewInvite(context.Background(), ts.store, uses, time.Hour, ts.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var userSeq atomic.Int64

// newDevice makes credentials from the fixed test keys.
func newDevice(t *testing.T, user protocol.UserID, identity *protocol.PrivateKey, now time.Time) *client.Device {
	t.Helper()
	n := int(userSeq.Add(1))
	d, err := client.NewDeviceFromKeys(user, protocol.NewDeviceID(), identity, testkeys.Key(n%6), testkeys.Key((n+1)%6), now)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newUser registers a user with one device and returns its Conn.
func (ts *testServer) newUser(t *testing.T) *client.Conn {
	t.Helper()
	n := int(userSeq.Add(1))
	dev := newDevice(t, protocol.NewUserID(), testkeys.Key(n%6), ts.clock.Now())
	c, err := client.Register(context.Background(), ts.opts, dev, ts.invite(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// linkDevice adds a second device to c's user and returns its Conn.
func (ts *testServer) linkDevice(t *testing.T, c *client.Conn) *client.Conn {
	t.Helper()
	dev := newDevice(t, c.Device().User, c.Device().Identity, ts.clock.Now())
	if err := c.AddDevice(context.Background(), dev.Cert); err != nil {
		t.Fatal(err)
	}
	c2, err := client.Dial(context.Background(), ts.opts, dev)
	if err != nil {
		t.Fatal(err)
	}
	return c2
}

// recipients lists every device of the given conns' devices as recipients.
func recipients(conns ...*client.Conn) []protocol.DeviceRecipient {
	var out []protocol.DeviceRecipient
	for _, c := range conns {
		d := c.Device()
		out = append(out, protocol.DeviceRecipient{User: d.User, Device: d.ID, Key: d.Enc.Public()})
	}
	return out
}

func seal(t *testing.T, from *client.Conn, now time.Time, ttl time.Duration, body string, to ...*client.Conn) []byte {
	t.Helper()
	env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte(body)}, from.Device().Sender(), recipients(to...), protocol.SealOptions{Sent: now, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
