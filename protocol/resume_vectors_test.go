package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"
)

// resumeVector: a resume message as the server receives it (section 18.11
// of docs/PROTOCOL.md), with every derived value on success.
type resumeVector struct {
	Name           string `json:"name"`
	ServerKey      string `json:"server_key"`
	NowMillis      int64  `json:"now_ms"`
	LifetimeSecond int64  `json:"lifetime_s"`
	// Ticket keys and the session the ticket came from.
	TicketKeyPeriod  uint32 `json:"ticket_key_period,omitempty"`
	TicketKey        string `json:"ticket_key,omitempty"`
	OriginSecret     string `json:"origin_secret,omitempty"`
	OriginSessionID  string `json:"origin_session_id,omitempty"`
	ResumptionSecret string `json:"resumption_secret,omitempty"`
	TicketUser       string `json:"ticket_user,omitempty"`
	TicketDevice     string `json:"ticket_device,omitempty"`
	TicketAuthMillis int64  `json:"ticket_auth_time_ms,omitempty"`
	TicketExpMillis  int64  `json:"ticket_expires_ms,omitempty"`
	// The resume and the server's answer.
	Resume        []byte `json:"resume"`
	ServerRandom  string `json:"server_random,omitempty"`
	SessionID     string `json:"session_id,omitempty"`
	Secret        string `json:"secret,omitempty"`
	C2SKey        string `json:"client_to_server_key,omitempty"`
	S2CKey        string `json:"server_to_client_key,omitempty"`
	NextRS        string `json:"next_resumption_secret,omitempty"`
	ExpiresMillis int64  `json:"expires_ms,omitempty"`
	Answer        []byte `json:"answer,omitempty"`
	NextTicket    []byte `json:"next_ticket,omitempty"`
	Error         string `json:"error,omitempty"`
}

func hexOf(p []byte) string { return hex.EncodeToString(p) }

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func checkResumptionVector(t *testing.T, rv resumeVector, keys map[string]*PrivateKey) {
	now := time.UnixMilli(rv.NowMillis)
	lifetime := time.Duration(rv.LifetimeSecond) * time.Second
	server := keys[rv.ServerKey]
	if server == nil {
		t.Fatalf("no key %q", rv.ServerKey)
	}
	tk := NewTicketKeys(server)
	cache := &MemoryReplayCache{}
	accept := func(random []byte) (*ServerSession, []byte, error) {
		q, err := ParseResume(rv.Resume)
		if err != nil {
			return nil, nil, err
		}
		if err := tk.Check(q, now); err != nil {
			return nil, nil, err
		}
		return acceptResume(q, cache, lifetime, now, random)
	}
	random := make([]byte, resumeRandomSize)
	if rv.ServerRandom != "" {
		random = mustHex(t, rv.ServerRandom)
	}
	if rv.Error == "replay" {
		if _, _, err := accept(random); err != nil {
			t.Fatalf("first acceptance: %v", err)
		}
	}
	ss, answer, err := accept(random)
	if got := errorName(err); got != rv.Error {
		t.Fatalf("resume: got error %q (%v), want %q", got, err, rv.Error)
	}
	if err != nil {
		return
	}
	// Known answers: the ticket key, the RS of the origin session, the
	// resumed session's values.
	key, _ := ticketKey(tk.ikm, tk.fp, rv.TicketKeyPeriod)
	if ticketEpoch(now) != rv.TicketKeyPeriod || hexOf(key) != rv.TicketKey {
		t.Fatalf("ticket key of period %d differs", rv.TicketKeyPeriod)
	}
	var origin SessionID
	copy(origin[:], mustHex(t, rv.OriginSessionID))
	rs, _ := resumptionSecret(mustHex(t, rv.OriginSecret), origin)
	if hexOf(rs) != rv.ResumptionSecret {
		t.Fatal("resumption secret of the origin session differs")
	}
	id, secret, _ := resumedKeys(rv.Resume, random, rs)
	c2s, _ := hkdfKey(secret, id, "client-to-server")
	s2c, _ := hkdfKey(secret, id, "server-to-client")
	next, _ := resumptionSecret(secret, id)
	if ss.ID().String() != rv.SessionID || id != ss.ID() || hexOf(secret) != rv.Secret || hexOf(c2s) != rv.C2SKey || hexOf(s2c) != rv.S2CKey ||
		hexOf(next) != rv.NextRS || ss.Expires().UnixMilli() != rv.ExpiresMillis || !bytes.Equal(answer, rv.Answer) {
		t.Fatal("resumed session differs")
	}
	// The device's side.
	q, _ := ParseResume(rv.Resume)
	res := &Resumption{msg: rv.Resume, at: q.Time, secret: rs, user: q.User, device: q.Device, fp: q.ServerFP}
	cs, err := res.Finish(rv.Answer, now)
	if err != nil {
		t.Fatalf("device: %v", err)
	}
	if cs.ID() != ss.ID() || cs.Expires().UnixMilli() != rv.ExpiresMillis {
		t.Fatal("device: session differs")
	}
	// The next ticket holds the chain's auth time and expiry, and the new RS.
	aead, _ := tk.aead(rv.TicketKeyPeriod)
	nt := rv.NextTicket
	if len(nt) != TicketSize || binary.BigEndian.Uint32(nt[2:]) != rv.TicketKeyPeriod || int64(binary.BigEndian.Uint64(nt[22:])) != rv.TicketExpMillis {
		t.Fatal("next ticket: header differs")
	}
	plain, err := aead.Open(nil, nt[30:42], nt[42:], labeled(labelTicket, nt[:42]))
	if err != nil {
		t.Fatalf("next ticket: %v", err)
	}
	var user UserID
	var dev DeviceID
	copy(user[:], plain)
	copy(dev[:], plain[16:])
	if user.String() != rv.TicketUser || dev.String() != rv.TicketDevice || int64(binary.BigEndian.Uint64(plain[24:])) != rv.TicketAuthMillis ||
		hexOf(plain[32:]) != rv.NextRS {
		t.Fatal("next ticket: plaintext differs")
	}
}

// generateResumptionVectors: a session's ticket, then resumes of it at
// now, good and bad.
func generateResumptionVectors(t *testing.T, v *vectorFile) []resumeVector {
	keys := map[string]*PrivateKey{}
	for _, kv := range v.Keys {
		if kv.PrivatePKCS8 != nil {
			k, err := ParsePrivateKey(kv.PrivatePKCS8)
			if err != nil {
				t.Fatal(err)
			}
			keys[kv.Name] = k
		}
	}
	server := keys["server"]
	tk := NewTicketKeys(server)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	authTime := now.Add(-30 * time.Minute)
	user, device := NewUserID(), NewDeviceID()
	ok, oid := NewBlobKey(), NewMessageID()
	originSecret := ok[:]
	originID := SessionID(oid)
	// The session the ticket was issued for, as the server holds it.
	origin, _, err := newServerEnd(originSecret, originID, user, device, authTime, time.Hour, authTime)
	if err != nil {
		t.Fatal(err)
	}
	rs := bytes.Clone(origin.rs)
	sealed, err := tk.IssueTicket(origin, authTime)
	if err != nil {
		t.Fatal(err)
	}
	fp := ServerFingerprint(server.Public())
	random := func() []byte { b := NewBlobKey(); return b[:] }
	build := func(u UserID, d DeviceID, fp Fingerprint, at time.Time, ticket, secret []byte) []byte {
		msg, err := buildResume(u, d, fp, at, random(), ticket, secret)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	good := build(user, device, fp, now, sealed, rs)

	// The good one, with every derived value.
	q, err := ParseResume(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Check(q, now); err != nil {
		t.Fatal(err)
	}
	serverRandom := random()
	ss, answer, err := acceptResume(q, &MemoryReplayCache{}, 30*time.Minute, now, serverRandom)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := resumedKeys(good, serverRandom, rs)
	c2s, _ := hkdfKey(secret, id, "client-to-server")
	s2c, _ := hkdfKey(secret, id, "server-to-client")
	next, err := tk.IssueTicket(ss, now)
	if err != nil {
		t.Fatal(err)
	}
	nextRS, _ := resumptionSecret(secret, id)
	key, _ := ticketKey(tk.ikm, tk.fp, ticketEpoch(now))
	out := []resumeVector{{Name: "resume", ServerKey: "server", NowMillis: now.UnixMilli(), LifetimeSecond: 1800,
		TicketKeyPeriod: ticketEpoch(now), TicketKey: hexOf(key),
		OriginSecret: hexOf(originSecret), OriginSessionID: originID.String(), ResumptionSecret: hexOf(rs),
		TicketUser: user.String(), TicketDevice: device.String(), TicketAuthMillis: authTime.UnixMilli(), TicketExpMillis: authTime.Add(TicketLifetime).UnixMilli(),
		Resume: good, ServerRandom: hexOf(serverRandom), SessionID: id.String(), Secret: hexOf(secret), C2SKey: hexOf(c2s), S2CKey: hexOf(s2c),
		NextRS: hexOf(nextRS), ExpiresMillis: ss.Expires().UnixMilli(), Answer: answer, NextTicket: next}}

	// Refused ones. A ticket sealed with another key's ticket keys.
	otherKeys := NewTicketKeys(keys["bob-identity"])
	o2, _, _ := newServerEnd(originSecret, originID, user, device, authTime, time.Hour, authTime)
	otherTicket, err := otherKeys.IssueTicket(o2, authTime)
	if err != nil {
		t.Fatal(err)
	}
	end := authTime.Add(TicketLifetime)
	later := now.Add(3 * TicketKeyPeriod)
	bad := func(name, e string, at time.Time, msg []byte) resumeVector {
		return resumeVector{Name: name, ServerKey: "server", NowMillis: at.UnixMilli(), LifetimeSecond: 1800, Resume: msg, Error: e}
	}
	out = append(out,
		bad("replayed", "replay", now, good),
		bad("ticket-for-another-device", "mismatch", now, build(user, NewDeviceID(), fp, now, sealed, rs)),
		bad("ticket-for-another-user", "mismatch", now, build(NewUserID(), device, fp, now, sealed, rs)),
		bad("tampered-ticket", "decrypt", now, build(user, device, fp, now, flip(sealed, 60), rs)),
		bad("tampered-ticket-expiry", "decrypt", now, build(user, device, fp, now, flip(sealed, 29), rs)),
		bad("ticket-of-another-server-key", "decrypt", now, build(user, device, fp, now, otherTicket, rs)),
		bad("tampered-binder", "bad_signature", now, flip(good, ResumeSize-1)),
		bad("tampered-client-random", "bad_signature", now, flip(good, 80)),
		bad("binder-without-the-secret", "bad_signature", now, build(user, device, fp, now, sealed, make([]byte, 32))),
		bad("expired-ticket", "expired", end, build(user, device, fp, end, sealed, rs)),
		bad("retired-ticket-key", "expired", later, build(user, device, fp, later, sealed, rs)),
		bad("stale-resume", "clock_skew", now, build(user, device, fp, now.Add(-6*time.Minute), sealed, rs)),
		bad("resume-for-another-server", "mismatch", now, build(user, device, ServerFingerprint(keys["bob-identity"].Public()), now, sealed, rs)),
		bad("ticket-version-2", "version", now, build(user, device, fp, now, flipTo(sealed, 0, 2), rs)),
		bad("ticket-wrong-type", "malformed", now, build(user, device, fp, now, flipTo(sealed, 1, typeResume), rs)),
		bad("version-2", "version", now, flipTo(good, 0, 2)),
		bad("truncated", "malformed", now, good[:len(good)-1]),
		bad("setup-type", "malformed", now, flipTo(good, 1, typeChannelSetup)),
	)
	return out
}
