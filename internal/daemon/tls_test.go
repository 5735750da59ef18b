package daemon

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// handshake runs one TLS handshake of a client with cache against a server
// with config sc over an in-memory pipe, and reports whether it resumed.
func handshake(t *testing.T, sc *tls.Config, cache tls.ClientSessionCache, version uint16) bool {
	t.Helper()
	cconn, sconn := net.Pipe()
	defer cconn.Close()
	defer sconn.Close()
	srv := tls.Server(sconn, sc)
	errc := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			// TLS 1.3 tickets come after the handshake: read so they are sent.
			_, err = srv.Write([]byte{1})
		}
		errc <- err
	}()
	cl := tls.Client(cconn, &tls.Config{
		InsecureSkipVerify: true, // this test is about tickets, not pinning
		ClientSessionCache: cache,
		ServerName:         "chat.example.org",
		MinVersion:         version,
		MaxVersion:         version,
	})
	if err := cl.Handshake(); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := cl.Read(b[:]); err != nil { // also takes the 1.3 ticket
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cl.ConnectionState().DidResume
}

// TestTLSTicketsAcrossRestarts: TLS session tickets issued by one server
// process are taken by another with the same server key (a restart, or
// another node of a cluster), for the current and the previous period, and
// not by a server with another key or two periods later.
func TestTLSTicketsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	server := func(key *protocol.PrivateKey, now time.Time) *tls.Config {
		t.Helper()
		tc, _, _, err := serverTLS(cfg, key, "https://chat.example.org:8443", now)
		if err != nil {
			t.Fatal(err)
		}
		useTicketKeys(tc, key, func() time.Time { return now })
		return tc
	}
	// serverTLS itself sets the derived keys, with the real clock.
	plain := func() *tls.Config {
		tc, _, _, err := serverTLS(cfg, testkeys.Key(0), "https://chat.example.org:8443", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	cache := tls.NewLRUClientSessionCache(4)
	handshake(t, plain(), cache, tls.VersionTLS13)
	if !handshake(t, plain(), cache, tls.VersionTLS13) {
		t.Fatal("serverTLS: a restarted server did not resume the session")
	}

	for _, version := range []uint16{tls.VersionTLS13} {
		first := server(testkeys.Key(0), at)
		cache := tls.NewLRUClientSessionCache(4)
		if handshake(t, first, cache, version) {
			t.Fatal("resumed on a first connection")
		}
		if !handshake(t, server(testkeys.Key(0), at), cache, version) {
			t.Errorf("TLS %x: another process with the same key did not resume", version)
		}
		if !handshake(t, server(testkeys.Key(0), at.Add(tlsTicketPeriod)), cache, version) {
			t.Errorf("TLS %x: the next period did not resume with the previous key", version)
		}
		cache = tls.NewLRUClientSessionCache(4)
		handshake(t, first, cache, version)
		if handshake(t, server(testkeys.Key(1), at), cache, version) {
			t.Errorf("TLS %x: a server with another key resumed", version)
		}
		cache = tls.NewLRUClientSessionCache(4)
		handshake(t, first, cache, version)
		if handshake(t, server(testkeys.Key(0), at.Add(2*tlsTicketPeriod)), cache, version) {
			t.Errorf("TLS %x: a ticket resumed two periods later", version)
		}
	}
}

// TestTLS12NoTickets: a TLS 1.2 client gets no session ticket. A 1.2
// ticket holds the connection's master secret and is sent in the clear;
// sealed with a key derived from the server key, it would let whoever
// later obtains server.key decrypt recorded 1.2 connections, the full
// ECDHE handshake included: no forward secrecy left. (TLS 1.3 tickets
// hold a resumption PSK only, and resumption still runs ECDHE.)
func TestTLS12NoTickets(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	tc, _, _, err := serverTLS(cfg, testkeys.Key(0), "https://chat.example.org:8443", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cache := tls.NewLRUClientSessionCache(4)
	handshake(t, tc, cache, tls.VersionTLS12)
	if handshake(t, tc, cache, tls.VersionTLS12) {
		t.Fatal("TLS 1.2 session resumed: its ticket, sealed with a key derived from server.key, holds the master secret")
	}
	// 1.3 still resumes on the same configuration.
	cache = tls.NewLRUClientSessionCache(4)
	handshake(t, tc, cache, tls.VersionTLS13)
	if !handshake(t, tc, cache, tls.VersionTLS13) {
		t.Fatal("TLS 1.3 did not resume")
	}
}
