package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// rawClient speaks to the test server below the SDK, to send what the SDK
// never would.
type rawClient struct {
	t    *testing.T
	ts   *testServer
	http *http.Client
	dev  *client.Device
	sess *protocol.ClientSession
}

func (ts *testServer) raw(t *testing.T, c *client.Conn) *rawClient {
	rc := &rawClient{t: t, ts: ts, http: &http.Client{Transport: &http.Transport{TLSClientConfig: client.PinnedTLSConfig(ts.opts.ServerFP)}}, dev: c.Device()}
	rc.sess = rc.newSession(ts.clock.Now())
	return rc
}

func (rc *rawClient) newSession(now time.Time) *protocol.ClientSession {
	sess, setup, err := protocol.NewClientSession(protocol.ChannelDevice{User: rc.dev.User, Device: rc.dev.ID, AuthKey: rc.dev.Auth}, rc.ts.key.Public(), now)
	if err != nil {
		rc.t.Fatal(err)
	}
	status, body := rc.do("POST", "/v1/session", setup, nil)
	if status != 200 {
		rc.t.Fatalf("session: %d %s", status, body)
	}
	if err := sess.Confirm(body, rc.ts.clock.Now()); err != nil {
		rc.t.Fatal(err)
	}
	return sess
}

func (rc *rawClient) do(method, path string, body []byte, hdr http.Header) (int, []byte) {
	req, err := http.NewRequest(method, rc.ts.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		rc.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := rc.http.Do(req)
	if err != nil {
		rc.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// sealed sends body sealed for method and path.
func (rc *rawClient) sealed(method, path string, body []byte) (int, []byte) {
	frame, _, err := rc.sess.SealRequest(method, path, body)
	if err != nil {
		rc.t.Fatal(err)
	}
	return rc.do(method, path, frame, nil)
}

// wantError checks that a response is the JSON error with the given code.
func wantError(t *testing.T, name string, status int, body []byte, want *api.Error) {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("%s: status %d, body is not a JSON error: %q", name, status, body)
		return
	}
	if e.Code != want.Code || status != want.HTTP {
		t.Errorf("%s: got %d %+v, want %d code %d", name, status, e, want.HTTP, want.Code)
	}
}

func TestBadInput(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.newUser(t), ts.newUser(t)
	rc := ts.raw(t, alice)
	now := ts.clock.Now()
	good := seal(t, alice, now, time.Hour, "x", bob)
	depth := func() int {
		n, err := ts.store.QueueDepth(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := depth()

	// Unauthenticated and malformed requests to the plain routes.
	st, b := rc.do("POST", "/v1/register", []byte("{not json"), nil)
	wantError(t, "register: bad JSON", st, b, api.ErrBadJSON)
	st, b = rc.do("POST", "/v1/register", []byte(`{"invite":"x","identity_key":"AAAA","device_cert":"AAAA","extra":1}`), nil)
	wantError(t, "register: unknown field", st, b, api.ErrBadJSON)
	st, b = rc.do("POST", "/v1/register", bytes.Repeat([]byte("a"), 100<<10), nil)
	wantError(t, "register: oversized", st, b, api.ErrTooLarge)
	small := func(k *protocol.PrivateKey) []byte { return k.Public().Bytes()[:100] }
	st, b = rc.do("POST", "/v1/register", mustJSON(api.RegisterRequest{Invite: ts.invite(t, 1), IdentityKey: small(alice.Device().Identity), DeviceCert: alice.Device().Cert.Bytes()}), nil)
	wantError(t, "register: bad key", st, b, api.ErrBadKey)
	st, b = rc.do("POST", "/v1/register", mustJSON(api.RegisterRequest{Invite: ts.invite(t, 1), IdentityKey: bob.Device().Identity.Public().Bytes(), DeviceCert: alice.Device().Cert.Bytes()}), nil)
	if alice.Device().Identity != bob.Device().Identity {
		wantError(t, "register: certificate not signed by the identity key", st, b, api.ErrBadSignature)
	}
	st, b = rc.do("POST", "/v1/session", []byte{1, 4, 0}, nil)
	wantError(t, "session: malformed", st, b, api.ErrMalformed)
	_, setup, _ := protocol.NewClientSession(protocol.ChannelDevice{User: protocol.NewUserID(), Device: protocol.NewDeviceID(), AuthKey: alice.Device().Auth}, ts.key.Public(), now)
	st, b = rc.do("POST", "/v1/session", setup, nil)
	wantError(t, "session: unknown device", st, b, api.ErrDeviceUnknown)
	v2 := bytes.Clone(setup)
	v2[0] = 2
	st, b = rc.do("POST", "/v1/session", v2, nil)
	wantError(t, "session: version 2", st, b, api.ErrVersion)
	_, stale, _ := protocol.NewClientSession(protocol.ChannelDevice{User: alice.Device().User, Device: alice.Device().ID, AuthKey: alice.Device().Auth}, ts.key.Public(), now.Add(-time.Hour))
	st, b = rc.do("POST", "/v1/session", stale, nil)
	wantError(t, "session: stale", st, b, api.ErrClockSkew)
	_, forged, _ := protocol.NewClientSession(protocol.ChannelDevice{User: alice.Device().User, Device: alice.Device().ID, AuthKey: bob.Device().Auth}, ts.key.Public(), now)
	if alice.Device().Auth != bob.Device().Auth {
		st, b = rc.do("POST", "/v1/session", forged, nil)
		wantError(t, "session: signed by another key", st, b, api.ErrBadSignature)
	}
	_, fresh, _ := protocol.NewClientSession(protocol.ChannelDevice{User: alice.Device().User, Device: alice.Device().ID, AuthKey: alice.Device().Auth}, ts.key.Public(), now)
	if st, _ = rc.do("POST", "/v1/session", fresh, nil); st != 200 {
		t.Fatalf("fresh setup refused: %d", st)
	}
	st, b = rc.do("POST", "/v1/session", fresh, nil)
	wantError(t, "session: replayed setup", st, b, api.ErrReplay)

	// Authenticated routes without a session, or with a bad frame.
	st, b = rc.do("POST", "/v1/directory/"+bob.Device().User.String(), nil, nil)
	wantError(t, "directory without a session", st, b, api.ErrUnauthorized)
	st, b = rc.do("POST", "/v1/send", []byte("garbage that is long enough to look like a frame header"), nil)
	wantError(t, "send: garbage frame", st, b, api.ErrVersion)
	frame, _, _ := rc.sess.SealRequest("POST", "/v1/send", good)
	tampered := bytes.Clone(frame)
	tampered[len(tampered)-1] ^= 1
	st, b = rc.do("POST", "/v1/send", tampered, nil)
	wantError(t, "send: tampered frame", st, b, api.ErrFrame)
	st, b = rc.do("POST", "/v1/ack", frame, nil)
	wantError(t, "frame sealed for another path", st, b, api.ErrFrame)
	if st, b = rc.do("POST", "/v1/send", frame, nil); st != 200 {
		t.Fatalf("genuine send refused: %d %s", st, b)
	}
	st, b = rc.do("POST", "/v1/send", frame, nil)
	wantError(t, "send: replayed request", st, b, api.ErrReplay)
	before = depth()

	// Bad envelopes, sealed properly: each is refused and nothing is queued.
	v2env := bytes.Clone(good)
	v2env[0] = 2
	st, b = rc.sealed("POST", "/v1/send", v2env)
	wantError(t, "send: envelope version 2", st, b, api.ErrVersion)
	st, b = rc.sealed("POST", "/v1/send", good[:len(good)-3])
	wantError(t, "send: truncated envelope", st, b, api.ErrBadEnvelope)
	st, b = rc.sealed("POST", "/v1/send", seal(t, bob, now, time.Hour, "not from alice", bob))
	wantError(t, "send: someone else's envelope", st, b, api.ErrWrongSender)
	ttl0 := bytes.Clone(good)
	copy(ttl0[2+16+16+8+8:], []byte{0, 0, 0, 0})
	st, b = rc.sealed("POST", "/v1/send", ttl0)
	wantError(t, "send: TTL 0", st, b, api.ErrBadEnvelope)
	ttl8d := bytes.Clone(good)
	copy(ttl8d[2+16+16+8+8:], []byte{0, 0x0a, 0x8c, 0x00}) // 691200 s = 8 days
	st, b = rc.sealed("POST", "/v1/send", ttl8d)
	wantError(t, "send: TTL 8 days", st, b, api.ErrBadEnvelope)
	st, b = rc.sealed("POST", "/v1/send", seal(t, alice, now.Add(-2*time.Hour), time.Hour, "stale", bob))
	wantError(t, "send: expired on arrival", st, b, api.ErrBadTTL)
	st, b = rc.do("POST", "/v1/send", bytes.Repeat([]byte{1}, protocol.MaxFrameSize+10), nil)
	wantError(t, "send: oversized", st, b, api.ErrTooLarge)
	st, b = rc.sealed("POST", "/v1/ack", []byte(`{"ids":["zz"]}`))
	wantError(t, "ack: bad ID", st, b, api.ErrBadJSON)
	st, b = rc.sealed("POST", "/v1/directory/not-an-id", nil)
	wantError(t, "directory: bad user ID", st, b, api.ErrMalformed)
	st, b = rc.sealed("POST", "/v1/directory/"+protocol.NewUserID().String(), nil)
	wantError(t, "directory: unknown user", st, b, api.ErrUserUnknown)
	st, b = rc.sealed("POST", "/v1/devices/add", mustJSON(api.AddDeviceRequest{DeviceCert: bob.Device().Cert.Bytes()}))
	wantError(t, "add a device of another user", st, b, api.ErrForbidden)
	st, b = rc.do("GET", "/v1/nowhere", nil, nil)
	wantError(t, "unknown route", st, b, api.ErrNoRoute)
	// Unknown users and devices in an envelope: rejected per device.
	ghost := protocol.DeviceRecipient{User: protocol.NewUserID(), Device: protocol.NewDeviceID(), Key: bob.Device().Enc.Public()}
	env, _ := protocol.Seal(&protocol.Message{ContentType: "text/plain"}, alice.Device().Sender(), []protocol.DeviceRecipient{ghost}, protocol.SealOptions{Sent: now, TTL: time.Hour})
	st, b = rc.sealed("POST", "/v1/send", env)
	if st != 200 {
		t.Fatalf("send to an unknown user: %d %s", st, b)
	}
	if depth() != before {
		t.Fatalf("refused input changed the queue: %d messages, want %d", depth(), before)
	}

	// An expired session.
	ts.clock.Advance(protocol.MaxSessionLifetime + time.Minute)
	st, b = rc.sealed("POST", "/v1/inbox", []byte("{}"))
	wantError(t, "expired session", st, b, api.ErrSessionUnknown)
	if !strings.Contains(string(b), "hint") {
		t.Errorf("expired session error has no hint: %s", b)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
