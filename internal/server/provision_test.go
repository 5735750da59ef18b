package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// provClient speaks to the provisioning routes as a device without an
// account does: plain HTTPS, the server key pinned.
type provClient struct {
	t    *testing.T
	ts   *testServer
	http *http.Client
}

func (ts *testServer) prov(t *testing.T) *provClient {
	return &provClient{t: t, ts: ts, http: &http.Client{Transport: &http.Transport{
		TLSClientConfig:     client.PinnedTLSConfig(ts.opts.ServerFP),
		MaxIdleConnsPerHost: 16, // reuse connections: a TLS handshake costs an RSA-3072 signature
	}}}
}

func (pc *provClient) do(method, path string, body []byte, hdr http.Header) (int, http.Header, []byte) {
	req, err := http.NewRequest(method, pc.ts.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		pc.t.Error(err)
		return 0, nil, nil
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := pc.http.Do(req)
	if err != nil {
		pc.t.Error(err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

func (pc *provClient) put(mailbox string, body []byte) (int, []byte) {
	status, _, data := pc.do("PUT", "/v1/provision/"+mailbox, body, nil)
	return status, data
}

func (pc *provClient) take(mailbox, query string) (int, http.Header, []byte) {
	return pc.do("POST", "/v1/provision/"+mailbox+"/take"+query, nil, nil)
}

func newMailbox() string {
	var m protocol.LinkMailbox
	rand.Read(m[:])
	return m.String()
}

// linkRequest is a genuine sealed link request.
func linkRequest(t *testing.T, ts *testServer) (protocol.LinkCode, []byte) {
	t.Helper()
	code, err := protocol.NewLinkCode(ts.opts.Server, ts.opts.ServerFP, protocol.NewUserID())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.SealLinkRequest(code, protocol.LinkRequest{Device: protocol.NewDeviceID(), EncryptionKey: testkeys.Key(1).Public(), AuthKey: testkeys.Key(2).Public()})
	if err != nil {
		t.Fatal(err)
	}
	return code, msg
}

// fakeLinkMessage has the header and size of a provisioning message: all
// the server can check.
func fakeLinkMessage() []byte {
	return append([]byte{protocol.Version, 7}, make([]byte, protocol.MinLinkMessageSize)...)
}

func TestProvisionPutTake(t *testing.T) {
	ts := newTestServer(t)
	pc := ts.prov(t)
	code, msg := linkRequest(t, ts)
	m := code.RequestMailbox().String()

	status, _, body := pc.take(m, "")
	wantError(t, "take before put", status, body, api.ErrNotFound)
	status, body = pc.put(m, msg)
	if status != 200 || string(body) != "{\"ok\":true}\n" {
		t.Fatalf("put: %d %s", status, body)
	}
	status, body = pc.put(m, msg)
	wantError(t, "second put", status, body, api.ErrExists)
	status, hdr, body := pc.take(m, "")
	if status != 200 || !bytes.Equal(body, msg) {
		t.Fatalf("take: %d, %d bytes", status, len(body))
	}
	if ct := hdr.Get("Content-Type"); ct != api.ContentBlob {
		t.Fatalf("take: Content-Type %q", ct)
	}
	if cc := hdr.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("take: Cache-Control %q", cc)
	}
	if _, err := protocol.OpenLinkRequest(code, body); err != nil {
		t.Fatalf("the message taken does not open: %v", err)
	}
	status, _, body = pc.take(m, "")
	wantError(t, "second take", status, body, api.ErrNotFound)
	status, _, body = pc.take(m, "?wait=5000") // gone: no point waiting
	wantError(t, "take of a taken message, waiting", status, body, api.ErrNotFound)
	status, body = pc.put(m, msg)
	wantError(t, "put after take", status, body, api.ErrExists)

	// The response mailbox is another one.
	r := code.ResponseMailbox().String()
	if status, body := pc.put(r, fakeLinkMessage()); status != 200 {
		t.Fatalf("put to the response mailbox: %d %s", status, body)
	}
}

func TestProvisionBadInput(t *testing.T) {
	ts := newTestServer(t)
	pc := ts.prov(t)
	m := newMailbox()
	good := fakeLinkMessage()
	for _, tc := range []struct {
		name    string
		mailbox string
		body    []byte
		want    *api.Error
	}{
		{"upper-case mailbox", strings.ToUpper(m), good, api.ErrMalformed},
		{"short mailbox", m[:30], good, api.ErrMalformed},
		{"zero mailbox", strings.Repeat("0", 32), good, api.ErrMalformed},
		{"not hexadecimal", strings.Repeat("x", 32), good, api.ErrMalformed},
		{"empty body", m, nil, api.ErrMalformed},
		{"too short", m, good[:protocol.MinLinkMessageSize-1], api.ErrMalformed},
		{"version 2", m, append([]byte{2}, good[1:]...), api.ErrVersion},
		{"envelope type", m, append([]byte{1, 3}, good[2:]...), api.ErrMalformed},
		{"larger than a link message", m, append(bytes.Clone(good), make([]byte, protocol.MaxLinkMessageSize)...), api.ErrTooLarge},
		{"larger than 16 KiB", m, append(bytes.Clone(good), make([]byte, 16<<10)...), api.ErrTooLarge},
	} {
		status, body := pc.put(tc.mailbox, tc.body)
		wantError(t, tc.name, status, body, tc.want)
	}
	// Nothing was stored.
	status, _, body := pc.take(m, "")
	wantError(t, "take after bad puts", status, body, api.ErrNotFound)

	for _, q := range []string{"?wait=-1", "?wait=abc", "?wait=1.5", "?wait=99999999999999999999"} {
		status, _, body := pc.take(m, q)
		wantError(t, "take"+q, status, body, api.ErrMalformed)
	}
	status, _, body = pc.take(strings.Repeat("g", 32), "")
	wantError(t, "take, bad mailbox", status, body, api.ErrMalformed)
	status, _, body = pc.do("GET", "/v1/provision/"+m, nil, nil)
	wantError(t, "GET", status, body, api.ErrNoRoute)
}

func TestProvisionLongPoll(t *testing.T) {
	ts := newTestServer(t)
	pc := ts.prov(t)
	code, msg := linkRequest(t, ts)
	m := code.RequestMailbox().String()

	// Two takers wait; one put wakes both; one gets the message, the other
	// learns it is gone, long before the wait ends.
	type result struct {
		status int
		body   []byte
	}
	results := make(chan result, 2)
	start := time.Now()
	for range 2 {
		go func() {
			status, _, body := pc.take(m, "?wait=20000")
			results <- result{status, body}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if status, body := pc.put(m, msg); status != 200 {
		t.Fatalf("put: %d %s", status, body)
	}
	got := 0
	for range 2 {
		r := <-results
		switch {
		case r.status == 200 && bytes.Equal(r.body, msg):
			got++
		default:
			wantError(t, "the other taker", r.status, r.body, api.ErrNotFound)
		}
	}
	if got != 1 {
		t.Fatalf("%d takers got the message, want 1", got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the long polls answered after %v", d)
	}

	// A wait that ends with nothing is a 404 after the wait.
	start = time.Now()
	status, _, body := pc.take(newMailbox(), "?wait=300")
	wantError(t, "take, nothing arrives", status, body, api.ErrNotFound)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("the long poll answered after %v, before its wait", d)
	}
}

func TestProvisionDrainEndsLongPolls(t *testing.T) {
	ts := newTestServer(t)
	pc := ts.prov(t)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		status, _, body := pc.take(newMailbox(), "?wait=30000")
		wantError(t, "take during drain", status, body, api.ErrShuttingDown)
	}()
	time.Sleep(200 * time.Millisecond)
	ts.srv.Drain()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not end the long poll")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the long poll ended after %v", d)
	}
	status, body := pc.put(newMailbox(), fakeLinkMessage())
	wantError(t, "put after drain", status, body, api.ErrShuttingDown)
}

// TestProvisionExpiry: a mailbox lives protocol.LinkLifetime. After that
// its message is gone, the sweeper frees what it counted for, and the
// mailbox may be written again.
func TestProvisionExpiry(t *testing.T) {
	ts := newTestServer(t)
	pc := ts.prov(t)
	m := newMailbox()
	if status, body := pc.put(m, fakeLinkMessage()); status != 200 {
		t.Fatalf("put: %d %s", status, body)
	}
	ts.clock.Advance(protocol.LinkLifetime - time.Second)
	status, body := pc.put(m, fakeLinkMessage())
	wantError(t, "put before expiry", status, body, api.ErrExists)
	ts.clock.Advance(time.Second)
	status, _, body = pc.take(m, "")
	wantError(t, "take after expiry", status, body, api.ErrNotFound)
	if status, body := pc.put(m, fakeLinkMessage()); status != 200 {
		t.Fatalf("put after expiry: %d %s", status, body)
	}

	// One IP holds at most 64 mailboxes at once; the sweeper gives them
	// back when they expire.
	var n int
	for n = 1; n < 64; n++ {
		if status, body := pc.put(newMailbox(), fakeLinkMessage()); status != 200 {
			t.Fatalf("put %d: %d %s", n, status, body)
		}
	}
	status, body = pc.put(newMailbox(), fakeLinkMessage())
	wantError(t, "put over the per-IP limit", status, body, api.ErrRateLimited)
	ts.clock.Advance(protocol.LinkLifetime)
	ts.srv.Sweep(context.Background())
	if status, body := pc.put(newMailbox(), fakeLinkMessage()); status != 200 {
		t.Fatalf("put after the sweep: %d %s", status, body)
	}
}

// TestProvisionFull: at most 10,000 mailboxes at once; then 503, and
// nothing else changes.
func TestProvisionFull(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 requests")
	}
	ts := newTestServer(t, func(o *server.Options) { o.TrustedProxies = []string{"127.0.0.0/8", "::1/128"} })
	pc := ts.prov(t)
	const total = 10_000
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// 50 mailboxes per client IP, under the per-IP limit.
				hdr := http.Header{"X-Forwarded-For": {fmt.Sprintf("10.0.%d.%d", i/50/256, i/50%256)}}
				status, _, body := pc.do("PUT", "/v1/provision/"+newMailbox(), fakeLinkMessage(), hdr)
				if status != 200 {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%d: %d %s", i, status, body))
					mu.Unlock()
				}
			}
		}()
	}
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d puts failed, the first: %s", len(failed), failed[0])
	}
	hdr := http.Header{"X-Forwarded-For": {"10.1.0.1"}}
	m := newMailbox()
	status, _, body := pc.do("PUT", "/v1/provision/"+m, fakeLinkMessage(), hdr)
	wantError(t, "put to a full table", status, body, api.ErrUnavailable)
	status, _, body = pc.take(m, "")
	wantError(t, "take of the refused put", status, body, api.ErrNotFound)
}

// TestProvisionRateLimited: the routes are unauthenticated, so the per-IP
// limit is what holds back a client that floods them.
func TestProvisionRateLimited(t *testing.T) {
	ts := newTestServer(t, func(o *server.Options) { o.IPRate, o.IPBurst = 0.001, 3 })
	pc := ts.prov(t)
	for i := range 3 {
		if status, _, body := pc.take(newMailbox(), ""); status != 404 {
			t.Fatalf("take %d: %d %s", i, status, body)
		}
	}
	status, body := pc.put(newMailbox(), fakeLinkMessage())
	wantError(t, "put over the rate", status, body, api.ErrRateLimited)
	status, _, body = pc.take(newMailbox(), "")
	wantError(t, "take over the rate", status, body, api.ErrRateLimited)
}

// TestProvisionEndToEnd: both halves of a link through the server, with
// the protocol's messages, as the SDK does it.
func TestProvisionEndToEnd(t *testing.T) {
	ts := newTestServer(t)
	pc := ts.prov(t)
	alice := ts.newUser(t)
	dev := alice.Device()
	code, err := protocol.NewLinkCode(ts.opts.Server, ts.opts.ServerFP, dev.User)
	if err != nil {
		t.Fatal(err)
	}
	req := protocol.LinkRequest{Device: protocol.NewDeviceID(), EncryptionKey: testkeys.Key(3).Public(), AuthKey: testkeys.Key(4).Public()}
	sealed, err := protocol.SealLinkRequest(code, req)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := pc.put(code.RequestMailbox().String(), sealed); status != 200 {
		t.Fatalf("put request: %d %s", status, body)
	}
	status, _, body := pc.take(code.RequestMailbox().String(), "?wait=1000")
	if status != 200 {
		t.Fatalf("take request: %d %s", status, body)
	}
	got, err := protocol.OpenLinkRequest(code, body)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := protocol.CertifyDevice(dev.Identity, dev.User, got.Device, got.EncryptionKey, got.AuthKey, ts.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.AddDevice(context.Background(), cert); err != nil {
		t.Fatal(err)
	}
	resp, err := protocol.SealLinkResponse(code, got, protocol.LinkResponse{User: dev.User, Identity: dev.Identity, Cert: cert})
	if err != nil {
		t.Fatal(err)
	}
	if status, body := pc.put(code.ResponseMailbox().String(), resp); status != 200 {
		t.Fatalf("put response: %d %s", status, body)
	}
	status, _, body = pc.take(code.ResponseMailbox().String(), "?wait=1000")
	if status != 200 {
		t.Fatalf("take response: %d %s", status, body)
	}
	out, err := protocol.OpenLinkResponse(code, &req, body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Identity.Bytes(), dev.Identity.Bytes()) || hex.EncodeToString(out.Cert.Bytes()) != hex.EncodeToString(cert.Bytes()) {
		t.Fatal("the response opens to other values")
	}
}
