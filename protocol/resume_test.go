package protocol

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// resumeFixture: a full session between device dev and the server (test
// key 7), with the ticket the server issued for it.
type resumeFixture struct {
	server *PrivateKey
	tk     *TicketKeys
	dev    ChannelDevice
	cs     *ClientSession
	ss     *ServerSession
	ticket *Ticket
}

func newResumeFixture(t testing.TB, now time.Time) *resumeFixture {
	t.Helper()
	server := testKey(t, 7)
	dev := ChannelDevice{User: NewUserID(), Device: NewDeviceID(), AuthKey: testKey(t, 2)}
	cs, setup, err := NewClientSession(dev, server.Public(), now)
	mustOK(t, "setup", err)
	parsed, err := ParseChannelSetup(setup)
	mustOK(t, "parse setup", err)
	ss, confirm, err := AcceptSession(parsed, server, dev.AuthKey.Public(), &MemoryReplayCache{}, time.Hour, now)
	mustOK(t, "accept setup", err)
	mustOK(t, "confirm", cs.Confirm(confirm, now))
	tk := NewTicketKeys(server)
	sealed, err := tk.IssueTicket(ss, now)
	mustOK(t, "issue ticket", err)
	ticket, err := cs.Ticket(sealed, now)
	mustOK(t, "pair ticket", err)
	return &resumeFixture{server: server, tk: tk, dev: dev, cs: cs, ss: ss, ticket: ticket}
}

// resumeOnce runs a whole resume: the device's message, the server's checks
// and acceptance, and the device's check of the answer.
func resumeOnce(t *Ticket, tk *TicketKeys, cache ReplayCache, at time.Time) (*ClientSession, *ServerSession, error) {
	res, msg, err := Resume(t, at)
	if err != nil {
		return nil, nil, err
	}
	q, err := ParseResume(msg)
	if err != nil {
		return nil, nil, err
	}
	if err := tk.Check(q, at); err != nil {
		return nil, nil, err
	}
	ss, answer, err := AcceptResume(q, cache, 30*time.Minute, at)
	if err != nil {
		return nil, nil, err
	}
	cs, err := res.Finish(answer, at)
	return cs, ss, err
}

func TestResumeRoundTrip(t *testing.T) {
	f := newResumeFixture(t, testNow)
	if f.ticket.User != f.dev.User || f.ticket.Device != f.dev.Device || !f.ticket.Expires.Equal(testNow.Add(TicketLifetime)) {
		t.Fatalf("ticket: %+v", f.ticket)
	}
	cache := &MemoryReplayCache{}
	at := testNow.Add(50 * time.Minute)
	cs, ss, err := resumeOnce(f.ticket, f.tk, cache, at)
	if err != nil {
		t.Fatal(err)
	}
	if ss.User != f.dev.User || ss.Device != f.dev.Device {
		t.Fatalf("resumed session is for %s/%s", ss.User, ss.Device)
	}
	if cs.ID() != ss.ID() || cs.ID() == f.cs.ID() {
		t.Fatalf("session IDs: client %s, server %s, first %s", cs.ID(), ss.ID(), f.cs.ID())
	}
	if !cs.Expires().Equal(at.Add(30*time.Minute)) || !ss.Expires().Equal(cs.Expires()) {
		t.Fatalf("expiry: client %s, server %s", cs.Expires(), ss.Expires())
	}
	// The resumed session works, and its keys are not the first session's.
	frame, ctr, err := cs.SealRequest("POST", "/v1/send", []byte("after resume"))
	mustOK(t, "seal", err)
	body, _, err := ss.OpenRequest("POST", "/v1/send", frame, at)
	if err != nil || string(body) != "after resume" {
		t.Fatalf("request on the resumed session: %q, %v", body, err)
	}
	if _, _, err := f.ss.OpenRequest("POST", "/v1/send", frame, at); !errors.Is(err, ErrMismatch) {
		t.Fatalf("a resumed frame opened by the first session: %v", err)
	}
	resp := ss.SealResponse(ctr, "POST", "/v1/send", []byte("ok"))
	if body, err := cs.OpenResponse(ctr, "POST", "/v1/send", resp, at); err != nil || string(body) != "ok" {
		t.Fatalf("response: %q, %v", body, err)
	}
	if !bytes.Equal(cs.k.send.Seal(nil, make([]byte, 12), nil, nil), ss.k.recv.Seal(nil, make([]byte, 12), nil, nil)) ||
		bytes.Equal(cs.k.send.Seal(nil, make([]byte, 12), nil, nil), f.cs.k.send.Seal(nil, make([]byte, 12), nil, nil)) {
		t.Fatal("resumed keys: the ends disagree, or they are the first session's")
	}

	// The chain goes on: the resumed session has a ticket of its own, that
	// expires with the chain (24 hours after the full setup), not later.
	sealed, err := f.tk.IssueTicket(ss, at)
	mustOK(t, "second ticket", err)
	next, err := cs.Ticket(sealed, at)
	mustOK(t, "pair second ticket", err)
	if !next.Expires.Equal(f.ticket.Expires) {
		t.Fatalf("second ticket expires %s, the chain %s", next.Expires, f.ticket.Expires)
	}
	at2 := testNow.Add(23 * time.Hour)
	cs2, ss2, err := resumeOnce(next, f.tk, cache, at2)
	if err != nil {
		t.Fatalf("second resume: %v", err)
	}
	if cs2.ID() == cs.ID() || ss2.ID() != cs2.ID() {
		t.Fatal("second resume: session IDs")
	}
	// Past the chain's end, no ticket is issued.
	if _, err := f.tk.IssueTicket(ss2, testNow.Add(TicketLifetime)); !errors.Is(err, ErrExpired) {
		t.Fatalf("ticket after the chain's end: %v", err)
	}
	// A session gives one ticket, and pairs one.
	if _, err := f.tk.IssueTicket(f.ss, testNow); err == nil {
		t.Fatal("a session issued two tickets")
	}
	if _, err := f.cs.Ticket(sealed, testNow); err == nil {
		t.Fatal("a session paired two tickets")
	}
}

func TestResumeRefused(t *testing.T) {
	at := testNow.Add(10 * time.Minute)
	type tc struct {
		name string
		want error
		// make returns the resume message to check, from a fresh fixture.
		make func(t *testing.T, f *resumeFixture) []byte
		tk   func(f *resumeFixture) *TicketKeys // nil: the fixture's
		at   time.Time                          // zero: at
	}
	build := func(f *resumeFixture, user UserID, device DeviceID, fp Fingerprint, when time.Time, ticket []byte) []byte {
		msg, err := buildResume(user, device, fp, when, bytes.Repeat([]byte{7}, resumeRandomSize), ticket, f.ticket.secret)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	genuine := func(t *testing.T, f *resumeFixture) []byte {
		return build(f, f.dev.User, f.dev.Device, f.tk.fp, at, f.ticket.sealed)
	}
	cases := []tc{
		{name: "genuine", make: genuine},
		{name: "ticket-for-another-device", want: ErrMismatch, make: func(t *testing.T, f *resumeFixture) []byte {
			// Another device of the same user presents this ticket, with
			// its secret: the ticket names the device it was issued to.
			return build(f, f.dev.User, NewDeviceID(), f.tk.fp, at, f.ticket.sealed)
		}},
		{name: "ticket-for-another-user", want: ErrMismatch, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, NewUserID(), f.dev.Device, f.tk.fp, at, f.ticket.sealed)
		}},
		{name: "tampered-ticket-id", want: ErrDecrypt, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, at, flip(f.ticket.sealed, 10))
		}},
		{name: "tampered-ticket-expiry", want: ErrDecrypt, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, at, flip(f.ticket.sealed, 25))
		}},
		{name: "tampered-ticket-ciphertext", want: ErrDecrypt, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, at, flip(f.ticket.sealed, TicketSize-20))
		}},
		{name: "tampered-ticket-epoch", want: ErrDecrypt, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, at, flip(f.ticket.sealed, 5))
		}},
		{name: "ticket-version-2", want: ErrVersion, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, at, flipTo(f.ticket.sealed, 0, 2))
		}},
		{name: "tampered-binder", want: ErrBadSignature, make: func(t *testing.T, f *resumeFixture) []byte {
			return flip(genuine(t, f), ResumeSize-1)
		}},
		{name: "tampered-random", want: ErrBadSignature, make: func(t *testing.T, f *resumeFixture) []byte {
			return flip(genuine(t, f), 70)
		}},
		{name: "binder-without-the-secret", want: ErrBadSignature, make: func(t *testing.T, f *resumeFixture) []byte {
			// Whoever stole the ticket alone cannot make a binder.
			msg, _ := buildResume(f.dev.User, f.dev.Device, f.tk.fp, at, make([]byte, 32), f.ticket.sealed, make([]byte, 32))
			return msg
		}},
		{name: "expired-ticket", want: ErrExpired, at: testNow.Add(TicketLifetime), make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, testNow.Add(TicketLifetime), f.ticket.sealed)
		}},
		{name: "ticket-key-retired", want: ErrExpired, at: testNow.Add(3 * TicketKeyPeriod), make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, testNow.Add(3*TicketKeyPeriod), f.ticket.sealed)
		}},
		{name: "stale-resume", want: ErrClockSkew, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, f.tk.fp, at.Add(-6*time.Minute), f.ticket.sealed)
		}},
		{name: "resume-for-another-server", want: ErrMismatch, make: func(t *testing.T, f *resumeFixture) []byte {
			return build(f, f.dev.User, f.dev.Device, ServerFingerprint(testKey(t, 6).Public()), at, f.ticket.sealed)
		}},
		{name: "ticket-of-another-server-key", want: ErrDecrypt,
			tk: func(f *resumeFixture) *TicketKeys { return NewTicketKeys(testKey(t, 6)) },
			make: func(t *testing.T, f *resumeFixture) []byte {
				return build(f, f.dev.User, f.dev.Device, ServerFingerprint(testKey(t, 6).Public()), at, f.ticket.sealed)
			}},
		{name: "restarted-server", make: genuine,
			// Ticket keys are derived from the server key: a new instance
			// (a restart, another node of the cluster) opens the ticket.
			tk: func(f *resumeFixture) *TicketKeys { return NewTicketKeys(f.server) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newResumeFixture(t, testNow)
			when := at
			if !c.at.IsZero() {
				when = c.at
			}
			tk := f.tk
			if c.tk != nil {
				tk = c.tk(f)
			}
			q, err := ParseResume(c.make(t, f))
			mustOK(t, "parse", err)
			err = tk.Check(q, when)
			if c.want == nil {
				mustOK(t, "check", err)
				_, _, err = AcceptResume(q, &MemoryReplayCache{}, time.Hour, when)
				mustOK(t, "accept", err)
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if _, _, err := AcceptResume(q, &MemoryReplayCache{}, time.Hour, when); err == nil {
				t.Fatal("an unchecked resume was accepted")
			}
		})
	}
}

// A ticket is good for one resume: the same message again, or a new
// message with the same ticket, is a replay, on this node or any node that
// shares the replay memory.
func TestResumeReplay(t *testing.T) {
	f := newResumeFixture(t, testNow)
	at := testNow.Add(time.Minute)
	secret := bytes.Clone(f.ticket.secret)
	res, msg, err := Resume(f.ticket, at)
	mustOK(t, "resume", err)
	cache := &MemoryReplayCache{}
	accept := func(msg []byte, tk *TicketKeys) ([]byte, error) {
		q, err := ParseResume(msg)
		if err != nil {
			return nil, err
		}
		if err := tk.Check(q, at); err != nil {
			return nil, err
		}
		_, answer, err := AcceptResume(q, cache, time.Hour, at)
		return answer, err
	}
	answer, err := accept(msg, f.tk)
	mustOK(t, "first resume", err)
	if _, err := accept(msg, f.tk); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed resume: %v", err)
	}
	other := NewTicketKeys(f.server) // another node of the cluster
	if _, err := accept(msg, other); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed resume on another node: %v", err)
	}
	again, err := buildResume(f.dev.User, f.dev.Device, f.tk.fp, at, make([]byte, 32), f.ticket.sealed, secret)
	mustOK(t, "second message", err)
	if _, err := accept(again, f.tk); !errors.Is(err, ErrReplay) {
		t.Fatalf("ticket used twice: %v", err)
	}
	// The device cannot use a ticket twice either.
	if _, _, err := Resume(f.ticket, at); err == nil {
		t.Fatal("Resume used a ticket twice")
	}
	if _, err := res.Finish(answer, at); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Finish(answer, at); !errors.Is(err, ErrReplay) {
		t.Fatalf("second Finish: %v", err)
	}

	// A server that lost its replay memory (one node, restarted) accepts
	// the same message again, but with a fresh random of its own: the two
	// sessions never share keys, and the replayer, who lacks the ticket's
	// secret, can open neither.
	q1, _ := ParseResume(msg)
	q2, _ := ParseResume(msg)
	mustOK(t, "check", f.tk.Check(q1, at))
	mustOK(t, "check", f.tk.Check(q2, at))
	s1, _, err := AcceptResume(q1, &MemoryReplayCache{}, time.Hour, at)
	mustOK(t, "accept", err)
	s2, _, err := AcceptResume(q2, &MemoryReplayCache{}, time.Hour, at)
	mustOK(t, "accept", err)
	if s1.ID() == s2.ID() {
		t.Fatal("two acceptances of one resume gave the same session")
	}
}

func TestResumeAnswerRefused(t *testing.T) {
	f := newResumeFixture(t, testNow)
	res, msg, err := Resume(f.ticket, testNow)
	mustOK(t, "resume", err)
	q, _ := ParseResume(msg)
	mustOK(t, "check", f.tk.Check(q, testNow))
	_, answer, err := AcceptResume(q, &MemoryReplayCache{}, time.Hour, testNow)
	mustOK(t, "accept", err)
	for _, c := range []struct {
		name   string
		answer []byte
		want   error
	}{
		{"version-2", flipTo(answer, 0, 2), ErrVersion},
		{"truncated", answer[:len(answer)-1], ErrMalformed},
		{"wrong-type", flipTo(answer, 1, typeChannelFrame), ErrMalformed},
		{"tampered-random", flip(answer, 5), ErrMismatch}, // another session ID
		{"tampered-confirmation", flip(answer, len(answer)-1), ErrDecrypt},
		{"empty", nil, ErrMalformed},
	} {
		if _, err := res.Finish(c.answer, testNow); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := res.Finish(answer, testNow); err != nil {
		t.Fatalf("the genuine answer after refused ones: %v", err)
	}
}

func TestParseResumeRefuses(t *testing.T) {
	f := newResumeFixture(t, testNow)
	_, msg, err := Resume(f.ticket, testNow)
	mustOK(t, "resume", err)
	for _, c := range []struct {
		name string
		p    []byte
		want error
	}{
		{"version-2-any-size", []byte{2, typeResume, 0}, ErrVersion},
		{"empty", nil, ErrMalformed},
		{"truncated", msg[:len(msg)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(msg), 0), ErrMalformed},
		{"setup-type", flipTo(msg, 1, typeChannelSetup), ErrMalformed},
	} {
		if _, err := ParseResume(c.p); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if !IsResume(msg) || IsResume(flipTo(msg, 1, typeChannelSetup)) || IsResume(nil) {
		t.Error("IsResume")
	}
	if _, err := f.cs.Ticket(append([]byte{Version, typeTicket}, make([]byte, TicketSize-3)...), testNow); !errors.Is(err, ErrMalformed) {
		t.Errorf("short ticket: %v", err)
	}
}

// Ticket keys: one per period, the same for every instance of one server
// key, different for another key.
func TestTicketKeys(t *testing.T) {
	a, b, c := NewTicketKeys(testKey(t, 7)), NewTicketKeys(testKey(t, 7)), NewTicketKeys(testKey(t, 6))
	k1, _ := ticketKey(a.ikm, a.fp, 20783)
	k2, _ := ticketKey(b.ikm, b.fp, 20783)
	k3, _ := ticketKey(a.ikm, a.fp, 20784)
	k4, _ := ticketKey(c.ikm, c.fp, 20783)
	if !bytes.Equal(k1, k2) || bytes.Equal(k1, k3) || bytes.Equal(k1, k4) {
		t.Fatal("ticket keys: same key and period must agree, others differ")
	}
	if got := ticketEpoch(testNow); got != 20783 {
		t.Fatalf("epoch of %s: %d", testNow, got)
	}
	for e := uint32(0); e < 10; e++ {
		a.aead(20783 + e)
	}
	if len(a.aeads) > 7 {
		t.Fatalf("%d ticket keys kept in memory", len(a.aeads))
	}
}

func encodeResume(q *ResumeRequest) []byte {
	b := wire.NewBuilder(ResumeSize)
	b.U8(Version)
	b.U8(typeResume)
	b.Raw(q.User[:])
	b.Raw(q.Device[:])
	b.Raw(q.ServerFP[:])
	b.I64(q.Time.UnixMilli())
	b.Raw(q.random)
	b.Raw(q.ticket)
	b.Raw(q.binder)
	return b.Bytes()
}

// FuzzParseResume: a resume message parses to one encoding only, and
// nothing but a genuine message passes the server's checks; a genuine one
// is accepted once.
func FuzzParseResume(f *testing.F) {
	var fx *resumeFixture
	var genuine [][]byte
	fixedRand(8, func() {
		fx = newResumeFixture(f, testNow)
		secret := bytes.Clone(fx.ticket.secret)
		_, msg, err := Resume(fx.ticket, testNow)
		mustOK(f, "resume", err)
		genuine = append(genuine, msg)
		msg2, err := buildResume(fx.dev.User, fx.dev.Device, fx.tk.fp, testNow.Add(time.Minute), make([]byte, 32), fx.ticket.sealed, secret)
		mustOK(f, "resume", err)
		genuine = append(genuine, msg2)
	})
	g := genuine[0]
	seeds := append(bytes.Clone(genuine[1]), 0)
	addSeeds(f, byteSeeds(g, genuine[1], seeds, g[:len(g)-1], flip(g, 0), flip(g, 1), flip(g, 20), flip(g, 60),
		flip(g, 100), flip(g, 200), flip(g, len(g)-1), nil)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		q, err := ParseResume(p)
		if err != nil {
			if containsBytes(genuine, p) {
				t.Fatalf("genuine resume refused: %v", err)
			}
			return
		}
		if got := encodeResume(q); !bytes.Equal(got, p) {
			t.Fatalf("accepted a non-canonical encoding: %s", diff(p, got))
		}
		if err := fx.tk.Check(q, testNow); err != nil {
			if containsBytes(genuine, p) {
				t.Fatalf("genuine resume refused: %v", err)
			}
			return
		}
		if !containsBytes(genuine, p) {
			t.Fatalf("a resume that was never made passed the checks: %x", p)
		}
		cache := &MemoryReplayCache{}
		ss, answer, err := AcceptResume(q, cache, time.Hour, testNow)
		if err != nil || ss.User != q.User || ss.Device != q.Device || len(answer) != ResumeAnswerSize {
			t.Fatalf("genuine resume: %v", err)
		}
		q2, _ := ParseResume(p)
		mustOK(t, "check", fx.tk.Check(q2, testNow))
		if _, _, err := AcceptResume(q2, cache, time.Hour, testNow); !errors.Is(err, ErrReplay) {
			t.Fatalf("resume accepted twice: %v", err)
		}
	})
}

// BenchmarkResume: a whole resume, both ends, against BenchmarkChannelSetup
// (the full setup it replaces): the device builds the message, the server
// checks the ticket and the binder, accepts and issues the next ticket,
// and the device checks the answer and pairs the ticket. No RSA.
func BenchmarkResume(b *testing.B) {
	f := newResumeFixture(b, time.Now())
	cache := &MemoryReplayCache{}
	ticket := f.ticket
	for b.Loop() {
		now := time.Now()
		res, msg, err := Resume(ticket, now)
		if err != nil {
			b.Fatal(err)
		}
		q, err := ParseResume(msg)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.tk.Check(q, now); err != nil {
			b.Fatal(err)
		}
		ss, answer, err := AcceptResume(q, cache, time.Hour, now)
		if err != nil {
			b.Fatal(err)
		}
		sealed, err := f.tk.IssueTicket(ss, now)
		if err != nil {
			b.Fatal(err)
		}
		cs, err := res.Finish(answer, now)
		if err != nil {
			b.Fatal(err)
		}
		if ticket, err = cs.Ticket(sealed, now); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "resumes/s")
}

// BenchmarkResumeServer: the server's part of a resume alone (check,
// accept, issue), which is what a reconnect storm costs the server, against
// the RSA-OAEP unwrap and RSA-PSS verification of a full setup.
func BenchmarkResumeServer(b *testing.B) {
	f := newResumeFixture(b, time.Now())
	now := time.Now()
	_, msg, err := Resume(f.ticket, now)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		q, err := ParseResume(msg)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.tk.Check(q, now); err != nil {
			b.Fatal(err)
		}
		// The same message each time: a fresh replay memory (a map of
		// one entry, noise next to the rest).
		ss, _, err := AcceptResume(q, &MemoryReplayCache{}, time.Hour, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.tk.IssueTicket(ss, now); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "resumes/s")
}

// A ticket saved and restored (a device restarting) resumes like the
// original, once.
func TestTicketSaved(t *testing.T) {
	f := newResumeFixture(t, testNow)
	saved, err := f.ticket.MarshalBinary()
	mustOK(t, "marshal", err)
	restored, err := ParseTicket(saved)
	mustOK(t, "parse", err)
	if restored.User != f.ticket.User || restored.Device != f.ticket.Device || restored.Server != f.ticket.Server || !restored.Expires.Equal(f.ticket.Expires) {
		t.Fatalf("restored %+v, saved %+v", restored, f.ticket)
	}
	cache := &MemoryReplayCache{}
	if _, _, err := resumeOnce(restored, f.tk, cache, testNow.Add(time.Minute)); err != nil {
		t.Fatalf("restored ticket: %v", err)
	}
	if _, _, err := resumeOnce(f.ticket, f.tk, cache, testNow.Add(time.Minute)); !errors.Is(err, ErrReplay) {
		t.Fatalf("the original after the restored one: %v", err)
	}
	if _, err := restored.MarshalBinary(); err == nil {
		t.Fatal("a used ticket was saved")
	}
	for _, bad := range [][]byte{nil, saved[:len(saved)-1], append(bytes.Clone(saved), 0), flipTo(saved, 0, 2), flipTo(saved, 1+16+8+32, 2)} {
		if _, err := ParseTicket(bad); err == nil {
			t.Errorf("bad saved ticket %x... parsed", bad[:min(len(bad), 8)])
		}
	}
}
