package protocol

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func newTestChannel(t testing.TB) (*ClientSession, *ServerSession) {
	t.Helper()
	server := testKey(t, 7)
	dev := ChannelDevice{User: NewUserID(), Device: NewDeviceID(), AuthKey: testKey(t, 2)}
	cs, setup, err := NewClientSession(dev, server.Public(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseChannelSetup(setup)
	if err != nil {
		t.Fatal(err)
	}
	ss, confirm, err := AcceptSession(parsed, server, dev.AuthKey.Public(), &MemoryReplayCache{}, 30*time.Minute, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Confirm(confirm, testNow); err != nil {
		t.Fatal(err)
	}
	return cs, ss
}

func TestChannelRoundTrip(t *testing.T) {
	cs, ss := newTestChannel(t)
	if cs.ID() != ss.ID() || !cs.Expires().Equal(testNow.Add(30*time.Minute)) {
		t.Fatalf("ids %s %s, expiry %s", cs.ID(), ss.ID(), cs.Expires())
	}
	at := testNow.Add(time.Minute)
	for i := 0; i < 3; i++ {
		req, ctr, err := cs.SealRequest("POST", "/v1/send", []byte("request body"))
		if err != nil {
			t.Fatal(err)
		}
		body, gotCtr, err := ss.OpenRequest("POST", "/v1/send", req, at)
		if err != nil || gotCtr != ctr || string(body) != "request body" {
			t.Fatalf("open request: %q %d %v", body, gotCtr, err)
		}
		if _, _, err := ss.OpenRequest("POST", "/v1/send", req, at); !errors.Is(err, ErrReplay) {
			t.Fatalf("replayed request: got %v, want ErrReplay", err)
		}
		resp := ss.SealResponse(ctr, "POST", "/v1/send", []byte("response"))
		got, err := cs.OpenResponse(ctr, "POST", "/v1/send", resp, at)
		if err != nil || string(got) != "response" {
			t.Fatalf("open response: %q %v", got, err)
		}
	}
	push := ss.SealPush([]byte("pushed"))
	if got, err := cs.OpenPush(push, at); err != nil || string(got) != "pushed" {
		t.Fatalf("push: %q %v", got, err)
	}
}

func TestChannelRefuses(t *testing.T) {
	cs, ss := newTestChannel(t)
	at := testNow.Add(time.Minute)
	req, ctr, _ := cs.SealRequest("POST", "/v1/send", []byte("x"))
	cases := []struct {
		name         string
		method, path string
		frame        []byte
		now          time.Time
		want         error
	}{
		{"other path", "POST", "/v1/other", req, at, ErrDecrypt},
		{"other method", "GET", "/v1/send", req, at, ErrDecrypt},
		{"flipped bit", "POST", "/v1/send", flip(req, len(req)-1), at, ErrDecrypt},
		{"flipped counter", "POST", "/v1/send", flip(req, 25), at, ErrDecrypt},
		{"other session", "POST", "/v1/send", flip(req, 3), at, ErrMismatch},
		{"expired session", "POST", "/v1/send", req, testNow.Add(31 * time.Minute), ErrExpired},
		{"wrong version", "POST", "/v1/send", flip(req, 0), at, ErrVersion},
		{"short", "POST", "/v1/send", req[:20], at, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ss.OpenRequest(tc.method, tc.path, tc.frame, tc.now); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A response cannot be taken for the answer to another request.
	resp := ss.SealResponse(ctr, "POST", "/v1/send", []byte("r"))
	if _, err := cs.OpenResponse(ctr+1, "POST", "/v1/send", resp, at); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("response for another request: got %v", err)
	}
	// A request frame is not a push, nor a response.
	if _, err := cs.OpenPush(req, at); err == nil {
		t.Fatal("request frame opened as a push")
	}
	// The genuine frame still opens: the forgeries above did not burn its counter.
	if _, _, err := ss.OpenRequest("POST", "/v1/send", req, at); err != nil {
		t.Fatal(err)
	}
}

func TestChannelSetupRefuses(t *testing.T) {
	server := testKey(t, 7)
	dev := ChannelDevice{User: NewUserID(), Device: NewDeviceID(), AuthKey: testKey(t, 2)}
	_, setup, err := NewClientSession(dev, server.Public(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	accept := func(p []byte, srv *PrivateKey, auth *PublicKey, cache ReplayCache, now time.Time) error {
		s, err := ParseChannelSetup(p)
		if err != nil {
			return err
		}
		_, _, err = AcceptSession(s, srv, auth, cache, time.Hour, now)
		return err
	}
	cache := &MemoryReplayCache{}
	if err := accept(setup, server, dev.AuthKey.Public(), cache, testNow); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"replayed", accept(setup, server, dev.AuthKey.Public(), cache, testNow), ErrReplay},
		{"stale", accept(setup, server, dev.AuthKey.Public(), &MemoryReplayCache{}, testNow.Add(6*time.Minute)), ErrClockSkew},
		{"future", accept(setup, server, dev.AuthKey.Public(), &MemoryReplayCache{}, testNow.Add(-6*time.Minute)), ErrClockSkew},
		{"other server", accept(setup, testKey(t, 6), dev.AuthKey.Public(), &MemoryReplayCache{}, testNow), ErrMismatch},
		{"other device key", accept(setup, server, testKey(t, 1).Public(), &MemoryReplayCache{}, testNow), ErrBadSignature},
		{"tampered", accept(flip(setup, 500), server, dev.AuthKey.Public(), &MemoryReplayCache{}, testNow), ErrBadSignature},
		{"truncated", accept(setup[:100], server, dev.AuthKey.Public(), &MemoryReplayCache{}, testNow), ErrMalformed},
		{"version", accept(flip(setup, 0), server, dev.AuthKey.Public(), &MemoryReplayCache{}, testNow), ErrVersion},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	for _, n := range []uint64{5, 3, 4, 0, 1, 2} {
		if !w.accept(n) {
			t.Fatalf("%d refused", n)
		}
	}
	for _, n := range []uint64{0, 3, 5} {
		if w.accept(n) {
			t.Fatalf("%d accepted twice", n)
		}
	}
	if !w.accept(5 + ReplayWindow) {
		t.Fatal("jump refused")
	}
	if w.accept(5) {
		t.Fatal("counter out of the window accepted")
	}
	if !w.accept(6) || w.accept(6) {
		t.Fatal("edge of the window")
	}
	if !w.accept(10 * ReplayWindow) {
		t.Fatal("long jump refused")
	}
	if !w.accept(10*ReplayWindow - 1) {
		t.Fatal("a slot left marked by an old counter")
	}
}

func flip(p []byte, i int) []byte {
	q := bytes.Clone(p)
	q[i] ^= 1
	return q
}

// The highest counters neither hang the window nor wrap it.
func TestReplayWindowTopCounter(t *testing.T) {
	var w replayWindow
	if !w.accept(1<<63 - 1) {
		t.Fatal("counter 2^63-1 refused")
	}
	if w.accept(1<<63 - 1) {
		t.Fatal("counter 2^63-1 accepted twice")
	}
	done := make(chan bool)
	go func() { done <- w.accept(1<<64 - 1) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("accept(2^64-1) does not return")
	}
}

// A frame with a counter of 2^63 or more is refused before anything else.
func TestChannelRefusesHugeCounter(t *testing.T) {
	cs, ss := newTestChannel(t)
	req, _, _ := cs.SealRequest("POST", "/x", []byte("b"))
	for i := 0; i < 8; i++ {
		req[2+SessionIDSize+i] = 0xff
	}
	if _, _, err := ss.OpenRequest("POST", "/x", req, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("got %v, want ErrReplay", err)
	}
}
