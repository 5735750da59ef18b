package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store/sqlite"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// resumeServer is a real server behind a handler that counts what the
// session route gets (full setups, resumes, refusals), can be swapped for
// a new server instance (a restart, or another node of a cluster: the same
// key and store), and counts TLS handshakes, full and resumed.
type resumeServer struct {
	url     string
	fp      protocol.Fingerprint
	clock   atomic.Int64
	newSrv  func() *server.Server
	current atomic.Pointer[server.Server]

	setups, resumes, refused atomic.Int64
	tlsFull, tlsResumed      atomic.Int64
	spoilTicket              atomic.Bool // tamper with the tickets the server issues
	drop                     atomic.Bool // cut session requests off without an answer
}

func (s *resumeServer) now() time.Time          { return time.Unix(0, s.clock.Load()) }
func (s *resumeServer) advance(d time.Duration) { s.clock.Add(int64(d)) }

// restart replaces the server instance: sessions are gone, the store and
// the server key stay.
func (s *resumeServer) restart() { s.current.Store(s.newSrv()) }

func startResumeServer(t *testing.T) *resumeServer {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &resumeServer{}
	s.clock.Store(time.Now().UnixNano())
	key := testkeys.Key(7)
	var all []*server.Server
	s.newSrv = func() *server.Server {
		srv, err := server.New(server.Options{Store: st, Key: key, BlobDir: filepath.Join(dir, "blobs"), Now: s.now,
			Registration: server.RegistrationOpen, IPRate: 1e6, IPBurst: 1e6, DeviceRate: 1e6, DeviceBurst: 1e6})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, srv)
		return srv
	}
	s.restart()
	k, _ := x509.ParsePKCS8PrivateKey(key.Bytes())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.(crypto.Signer).Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/session" {
			s.current.Load().Handler().ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		r.Body = io.NopCloser(bytes.NewReader(body))
		if s.drop.Load() {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		if protocol.IsResume(body) {
			s.resumes.Add(1)
		} else {
			s.setups.Add(1)
		}
		rec := httptest.NewRecorder()
		s.current.Load().Handler().ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			s.refused.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if t := rec.Header().Get(api.TicketHeader); t != "" && s.spoilTicket.Load() {
			raw, _ := base64.RawURLEncoding.DecodeString(t)
			raw[len(raw)-1] ^= 1
			w.Header().Set(api.TicketHeader, base64.RawURLEncoding.EncodeToString(raw))
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.DidResume {
				s.tlsResumed.Add(1)
			} else {
				s.tlsFull.Add(1)
			}
			return nil
		}}
	ts.StartTLS()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, srv := range all {
			srv.Shutdown(ctx)
		}
		st.Close()
	})
	s.url, s.fp = ts.URL, protocol.ServerFingerprint(key.Public())
	return s
}

// register makes a device from the fixed test keys and registers it, with
// a transport of its own (returned, to close its idle connections).
func (s *resumeServer) register(t *testing.T) (*client.Conn, *client.Device, *http.Transport) {
	t.Helper()
	dev, err := client.NewDeviceFromKeys(protocol.NewUserID(), protocol.NewDeviceID(), testkeys.Key(0), testkeys.Key(3), testkeys.Key(5), s.now())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: client.PinnedTLSConfig(s.fp)}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := client.Register(context.Background(), client.Options{Server: s.url, ServerFP: s.fp, Now: s.now, HTTPClient: &http.Client{Transport: tr}}, dev, "")
	if err != nil {
		t.Fatal(err)
	}
	return c, dev, tr
}

func (s *resumeServer) counts() [3]int64 {
	return [3]int64{s.setups.Load(), s.resumes.Load(), s.refused.Load()}
}

func TestConnResumesSession(t *testing.T) {
	s := startResumeServer(t)
	ctx := context.Background()
	c, _, _ := s.register(t)
	inbox := func(what string) {
		t.Helper()
		if _, err := c.Inbox(ctx, 1, 0); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	inbox("first request")
	if got := s.counts(); got != [3]int64{1, 0, 0} {
		t.Fatalf("first request: setups, resumes, refusals = %v, want one full setup", got)
	}
	// Near the session's end, the Conn renews it: a resume, not a setup.
	s.advance(59*time.Minute + 30*time.Second)
	inbox("renewal")
	if got := s.counts(); got != [3]int64{1, 1, 0} {
		t.Fatalf("renewal: %v, want a resume", got)
	}
	// A restarted server (or another node) has forgotten the session but
	// opens the ticket: the Conn resumes, without a full setup.
	s.restart()
	inbox("after a restart")
	if got := s.counts(); got != [3]int64{1, 2, 0} {
		t.Fatalf("after a restart: %v, want a second resume", got)
	}
	// And again, with the ticket the resumed session gave.
	s.restart()
	s.advance(time.Minute)
	inbox("second restart")
	if got := s.counts(); got != [3]int64{1, 3, 0} {
		t.Fatalf("after a second restart: %v, want a third resume", got)
	}
	// A live channel refused by a restarted server: the next Live
	// resumes the session.
	l, err := c.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.restart()
	l.Close()
	l, err = c.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.Next(nctx); !errors.Is(err, api.ErrSessionUnknown) {
		t.Fatalf("live channel on a forgotten session: %v", err)
	}
	l.Close()
	l, err = c.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := l.Next(nctx); err != nil || ev.Type != client.EventDrained {
		t.Fatalf("live channel after resuming: %v, %v", ev, err)
	}
	l.Close()
	if got := s.counts(); got != [3]int64{1, 4, 0} {
		t.Fatalf("live after a restart: %v, want a resume", got)
	}
	// 24 hours after the full setup, the chain ends: a full setup again.
	s.advance(24 * time.Hour)
	inbox("after a day")
	if got := s.counts(); got[0] != 2 {
		t.Fatalf("after the chain's end: %v, want a second full setup", got)
	}
}

// When the server refuses the resume, the Conn falls back to a full setup
// and the request goes through.
func TestConnResumeRefusedFallsBack(t *testing.T) {
	s := startResumeServer(t)
	ctx := context.Background()
	c, _, _ := s.register(t)
	s.spoilTicket.Store(true)
	if _, err := c.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	s.restart()
	if _, err := c.Inbox(ctx, 1, 0); err != nil {
		t.Fatalf("after a refused resume: %v", err)
	}
	if got := s.counts(); got != [3]int64{2, 1, 1} {
		t.Fatalf("setups, resumes, refusals = %v, want a refused resume then a full setup", got)
	}
}

// A revoked device cannot resume, and does not get a session by falling
// back either.
func TestConnRevokedCannotResume(t *testing.T) {
	s := startResumeServer(t)
	ctx := context.Background()
	c, dev, _ := s.register(t)
	if _, err := c.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	// A second device of the user revokes the first.
	dev2, err := client.NewDeviceFromKeys(dev.User, protocol.NewDeviceID(), dev.Identity, testkeys.Key(4), testkeys.Key(6), s.now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddDevice(ctx, dev2.Cert); err != nil {
		t.Fatal(err)
	}
	c2, err := client.Dial(ctx, client.Options{Server: s.url, ServerFP: s.fp, Now: s.now}, dev2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Revoke(ctx, dev.ID); err != nil {
		t.Fatal(err)
	}
	before := s.counts()
	_, err = c.Inbox(ctx, 1, 0)
	if !errors.Is(err, api.ErrDeviceUnknown) {
		t.Fatalf("revoked device: got %v, want ErrDeviceUnknown", err)
	}
	if got := s.counts(); got[1] != before[1]+1 || got[2] < before[2]+2 {
		t.Fatalf("setups, resumes, refusals = %v (before %v): want a refused resume and a refused setup", got, before)
	}
}

// TLS: a new connection resumes the TLS session (the server makes no
// certificate signature), the WebSocket dial included, and a resumed
// session is still checked against the pin.
func TestPinnedTLSResumes(t *testing.T) {
	s := startResumeServer(t)
	ctx := context.Background()
	c, _, tr := s.register(t)
	if _, err := c.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	full := s.tlsFull.Load()
	tr.CloseIdleConnections()
	if _, err := c.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	l, err := c.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if s.tlsFull.Load() != full || s.tlsResumed.Load() < 2 {
		t.Fatalf("TLS handshakes: %d full (was %d), %d resumed: want the new connection and the WebSocket resumed",
			s.tlsFull.Load(), full, s.tlsResumed.Load())
	}

	// A configuration pinned to another key, handed this session cache
	// (which holds a session for this server): the resumption must not
	// skip the pin.
	good := tr.TLSClientConfig
	var other protocol.Fingerprint
	other[0] = 1
	bad := client.PinnedTLSConfig(other)
	bad.ClientSessionCache = good.ClientSessionCache
	addr := s.url[len("https://"):]
	conn, err := tls.Dial("tcp", addr, bad)
	if err == nil {
		resumed := conn.ConnectionState().DidResume
		conn.Close()
		t.Fatalf("a configuration pinned to another key connected (resumed: %v)", resumed)
	}
	conn, err = tls.Dial("tcp", addr, good)
	if err != nil {
		t.Fatalf("the pinned configuration: %v", err)
	}
	conn.Close()
}

// memTickets is a TicketStore in memory, standing for a file.
type memTickets struct{ saved atomic.Pointer[[]byte] }

func (m *memTickets) LoadTicket() []byte {
	if p := m.saved.Load(); p != nil {
		return *p
	}
	return nil
}
func (m *memTickets) SaveTicket(t []byte) { m.saved.Store(&t) }

// A restarted device (a new Conn) with a saved ticket resumes instead of
// setting up a full session; a ticket saved for another device is not used.
func TestConnResumesAfterRestart(t *testing.T) {
	s := startResumeServer(t)
	ctx := context.Background()
	_, dev, _ := s.register(t)
	store := &memTickets{}
	opts := client.Options{Server: s.url, ServerFP: s.fp, Now: s.now, Tickets: store}
	c1, err := client.Dial(ctx, opts, dev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if store.LoadTicket() == nil {
		t.Fatal("no ticket saved")
	}
	c2, err := client.Dial(ctx, opts, dev) // the device restarted
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if got := s.counts(); got != [3]int64{1, 1, 0} {
		t.Fatalf("setups, resumes, refusals = %v, want the restarted Conn to resume", got)
	}
	// Another device given this store sets up a full session.
	_, other, _ := s.register(t)
	c3, err := client.Dial(ctx, opts, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if got := s.counts(); got != [3]int64{2, 1, 0} {
		t.Fatalf("setups, resumes, refusals = %v, want a full setup for the other device", got)
	}
}

// A resume that gets no answer (offline, a server restarting) keeps the
// ticket for the next try, instead of falling back to a full setup.
func TestConnKeepsTicketWhenUnanswered(t *testing.T) {
	s := startResumeServer(t)
	ctx := context.Background()
	c, _, _ := s.register(t)
	if _, err := c.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	s.restart()
	s.drop.Store(true)
	if _, err := c.Inbox(ctx, 1, 0); err == nil {
		t.Fatal("a request went through while the session route answered nothing")
	}
	s.drop.Store(false)
	if _, err := c.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	// One full setup (the first), the resume that got no answer is not
	// counted (the route was cut before counting), then a resume.
	if got := s.counts(); got != [3]int64{1, 1, 0} {
		t.Fatalf("setups, resumes, refusals = %v, want the kept ticket to resume", got)
	}
}

// An account keeps its resumption ticket beside an unencrypted key file,
// so that the next run of a program (each qrtalk command is one) resumes
// instead of setting up a session; never beside an encrypted one.
func TestAccountKeepsTicketAcrossRuns(t *testing.T) {
	s := startResumeServer(t)
	ctx := context.Background()
	invite := protocol.Invite{Server: s.url, ServerFP: s.fp, Token: "open-registration-token"}.URI()
	dir := t.TempDir()
	a, err := client.Join(ctx, dir, invite, client.AccountOptions{Now: s.now})
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := a.Conn(ctx); err != nil {
		t.Fatal(err)
	} else if _, err := conn.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	a.Close()
	fi, err := os.Stat(filepath.Join(dir, "session.ticket"))
	if err != nil {
		t.Fatalf("no ticket kept after joining: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("ticket file mode %v, want 0600", fi.Mode().Perm())
	}
	before := s.counts()
	b, err := client.OpenAccount(dir, client.AccountOptions{Now: s.now})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := b.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if got := s.counts(); got[0] != before[0] || got[1] != before[1]+1 {
		t.Fatalf("reopened account: setups, resumes, refusals %v → %v, want one resume and no setup", before, got)
	}

	locked := t.TempDir()
	c, err := client.Join(ctx, locked, invite, client.AccountOptions{Now: s.now, Passphrase: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := c.Conn(ctx); err != nil {
		t.Fatal(err)
	} else if _, err := conn.Inbox(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := os.Stat(filepath.Join(locked, "session.ticket")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a ticket beside a passphrase-protected key file: %v", err)
	}
}
