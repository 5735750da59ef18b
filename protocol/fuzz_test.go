package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// Fuzz tests: one per decoder, and for Open and the channel. Each checks
// three things: no input panics; whatever parses re-encodes to exactly the
// input (so every value has one encoding, as in age's FuzzMalleability);
// and nothing the fuzzer makes passes a signature or an AEAD unless it is
// byte for byte one of the genuine seeds.
//
// Under plain `go test` the seeds run as unit tests. To fuzz one target:
//
//	go test -run '^$' -fuzz '^FuzzOpen$' -fuzztime 60s ./protocol/

// fuzzSeed is the argument list of one f.Add call.
type fuzzSeed []any

// addSeeds adds seeds to f's corpus. A fuzz test whose corpus went empty
// tests nothing while looking green, so no seeds is a failure.
func addSeeds(f *testing.F, seeds ...fuzzSeed) {
	f.Helper()
	if len(seeds) == 0 {
		f.Fatal("no seeds: a fuzz test must start from a non-empty seed corpus")
	}
	for _, s := range seeds {
		f.Add(s...)
	}
}

// byteSeeds and stringSeeds make one-argument seeds.
func byteSeeds(ps ...[]byte) []fuzzSeed {
	out := make([]fuzzSeed, len(ps))
	for i, p := range ps {
		out[i] = fuzzSeed{p}
	}
	return out
}

func stringSeeds(ss ...string) []fuzzSeed {
	out := make([]fuzzSeed, len(ss))
	for i, s := range ss {
		out[i] = fuzzSeed{s}
	}
	return out
}

// fixedRand runs fn with crypto/rand.Reader replaced by a seeded stream.
// Seal, signatures, IDs and channel setups then come out the same in every
// process: the fuzzing engine runs a test's setup once in the coordinator
// and again in each worker, and a seed sealed by the coordinator must be a
// genuine seed in the workers too (and a crasher must reproduce). It does
// what testing/cryptotest.SetGlobalRandom does, which needs a *testing.T
// that fuzz setup does not have. Safe because fuzz targets run after all
// tests, parallel ones included, have finished.
func fixedRand(seed uint64, fn func()) {
	prev := rand.Reader
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	rand.Reader = &lockedChaCha{r: mathrand.NewChaCha8(s)}
	defer func() { rand.Reader = prev }()
	fn()
}

type lockedChaCha struct {
	mu sync.Mutex
	r  *mathrand.ChaCha8
}

func (l *lockedChaCha) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// mustOK fails the fuzz setup when a seed meant to be valid is not.
func mustOK(tb testing.TB, what string, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("seed %s: %v", what, err)
	}
}

// overwrite returns a copy of p with the bytes from off replaced by b.
func overwrite(p []byte, off int, b ...byte) []byte {
	q := bytes.Clone(p)
	copy(q[off:], b)
	return q
}

// diff describes how a re-encoding differs from the input.
func diff(in, out []byte) string {
	i := 0
	for i < len(in) && i < len(out) && in[i] == out[i] {
		i++
	}
	return fmt.Sprintf("input of %d bytes re-encodes to %d bytes, first difference at byte %d", len(in), len(out), i)
}

func containsBytes(set [][]byte, p []byte) bool {
	for _, q := range set {
		if bytes.Equal(q, p) {
			return true
		}
	}
	return false
}

// TestFuzzFixturesAreDeterministic: the engine compares the seeds that the
// coordinator made with the genuine values that each worker makes, so the
// fixtures must come out the same every time.
func TestFuzzFixturesAreDeterministic(t *testing.T) {
	a, b := newEnvelopeFixture(t), newEnvelopeFixture(t)
	if len(a.seeds) != len(b.seeds) {
		t.Fatalf("%d envelope seeds, then %d", len(a.seeds), len(b.seeds))
	}
	for i := range a.seeds {
		if !bytes.Equal(a.seeds[i], b.seeds[i]) {
			t.Fatalf("envelope seed %d differs between two runs", i)
		}
	}
	_, _, fa := newChannelFixture(t)
	_, _, fb := newChannelFixture(t)
	for i := range fa {
		if !bytes.Equal(fa[i].frame, fb[i].frame) {
			t.Fatalf("channel frame %d differs between two runs", i)
		}
	}
}

// ---- keys ----

func FuzzParsePublicKey(f *testing.F) {
	var seeds [][]byte
	for i := 0; i < 3; i++ {
		seeds = append(seeds, testKey(f, i).Public().Bytes())
	}
	n := testKey(f, 0).Public().k.N
	small, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: new(big.Int).Rsh(n, 1024), E: KeyExponent})
	mustOK(f, "2048-bit key", err)
	e3, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 3})
	mustOK(f, "e=3 key", err)
	ed, err := x509.MarshalPKIXPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	mustOK(f, "ed25519 key", err)
	good := seeds[0]
	seeds = append(seeds, small, e3, ed,
		x509.MarshalPKCS1PublicKey(testKey(f, 0).Public().k), // not SPKI
		append(bytes.Clone(good), 0),                         // trailing data
		good[:len(good)-1], nil)
	addSeeds(f, byteSeeds(seeds...)...)

	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := ParsePublicKey(der)
		if err != nil {
			return
		}
		if !bytes.Equal(k.Bytes(), der) {
			t.Fatalf("accepted a non-canonical encoding: %s", diff(der, k.Bytes()))
		}
		if k.k.N.BitLen() != KeyBits || k.k.E != KeyExponent {
			t.Fatalf("accepted a %d-bit key with e = %d", k.k.N.BitLen(), k.k.E)
		}
		k2, err := ParsePublicKeyPEM(k.PEM())
		if err != nil || !k2.Equal(k) {
			t.Fatalf("PEM round trip: %v", err)
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	k0, k1 := testKey(f, 0), testKey(f, 1)
	good := k0.Bytes()
	pkcs1 := x509.MarshalPKCS1PrivateKey(k0.k)
	addSeeds(f, byteSeeds(good, k1.Bytes(),
		pkcs1,                   // PKCS #1, not PKCS #8
		k0.Public().Bytes(),     // a public key
		flip(good, len(good)/2), // inconsistent key material
		good[:len(good)-10], nil)...)

	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := ParsePrivateKey(der)
		if err != nil {
			return
		}
		if !bytes.Equal(k.Bytes(), der) {
			t.Fatalf("accepted a non-canonical encoding: %s", diff(der, k.Bytes()))
		}
		if _, err := ParsePublicKey(k.Public().Bytes()); err != nil {
			t.Fatalf("public half of a parsed key does not parse: %v", err)
		}
	})
}

// pemOnly reports whether p is one PEM block of type typ with nothing but
// white space around it, as the parsers' documentation promises.
func pemOnly(p []byte, typ string) bool {
	p = bytes.TrimSpace(p)
	return bytes.HasPrefix(p, []byte("-----BEGIN "+typ+"-----")) &&
		bytes.Count(p, []byte("-----BEGIN")) == 1 && bytes.Count(p, []byte("-----END")) == 1
}

func FuzzParsePEM(f *testing.F) {
	pub := testKey(f, 0).Public().PEM()
	priv := testKey(f, 1).PEM()
	withHeader := bytes.Replace(pub, []byte("-----\n"), []byte("-----\nProc-Type: 4,ENCRYPTED\n\n"), 1)
	addSeeds(f, byteSeeds(pub, priv,
		append([]byte(" \n\t"), append(bytes.Clone(pub), "\r\n\n"...)...), // white space around: fine
		bytes.ReplaceAll(pub, []byte("\n"), []byte("\r\n")),
		append(bytes.Clone(pub), priv...), // two blocks
		bytes.Replace(pub, []byte("PUBLIC KEY"), []byte("RSA PUBLIC KEY"), 2),
		withHeader,
		pub[:len(pub)-10], nil)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		if k, err := ParsePublicKeyPEM(p); err == nil {
			if !pemOnly(p, "PUBLIC KEY") {
				t.Fatalf("accepted data around the PEM block: %q", p)
			}
			if k2, err := ParsePublicKey(k.Bytes()); err != nil || !k2.Equal(k) {
				t.Fatalf("DER of a PEM-parsed key does not round-trip: %v", err)
			}
			if k2, err := ParsePublicKeyPEM(k.PEM()); err != nil || !k2.Equal(k) {
				t.Fatalf("PEM round trip: %v", err)
			}
		}
		if k, err := ParsePrivateKeyPEM(p); err == nil {
			if !pemOnly(p, "PRIVATE KEY") {
				t.Fatalf("accepted data around the PEM block: %q", p)
			}
			if k2, err := ParsePrivateKeyPEM(k.PEM()); err != nil || !bytes.Equal(k2.Bytes(), k.Bytes()) {
				t.Fatalf("PEM round trip: %v", err)
			}
		}
	})
}

// ---- identifiers and fingerprints ----

// asciiUserID is the canonical form of a user ID as people may type it:
// ASCII letters lowered, '-' and ' ' dropped; nothing else changes.
func asciiUserID(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == ' ':
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func FuzzParseIDs(f *testing.F) {
	var user UserID
	var dev DeviceID
	var msg MessageID
	fixedRand(1, func() { user, dev, msg = NewUserID(), NewDeviceID(), NewMessageID() })
	fp := IdentityFingerprint(testKey(f, 0).Public())
	u := user.String()
	addSeeds(f, stringSeeds(u, strings.ToUpper(u), u[:5]+"-"+u[5:10]+" "+u[10:], dev.String(), msg.String(), fp.String(), fp.Numeric(),
		u+"a", u[:25], u[:25]+"b", // 27 and 25 characters; last character with unused bits set
		strings.Repeat("a", 26), strings.Repeat("0", 16), strings.Repeat("0", 32), // zero IDs
		strings.ToUpper(dev.String()), fp.String()[:42]+"_", "", "\x00\xff")...)

	f.Fuzz(func(t *testing.T, s string) {
		if id, err := ParseUserID(s); err == nil {
			str := id.String()
			if len(str) != 26 || id.IsZero() {
				t.Fatalf("ParseUserID(%q) = %q", s, str)
			}
			if id2, err := ParseUserID(str); err != nil || id2 != id {
				t.Fatalf("ParseUserID(%q).String() = %q does not round-trip: %v", s, str, err)
			}
			// Only ASCII case and the separators may differ from the canonical form.
			if asciiUserID(s) != str {
				t.Fatalf("ParseUserID accepted %q, which is not %q up to ASCII case and separators", s, str)
			}
			var id3 UserID
			if err := id3.UnmarshalText([]byte(s)); err != nil || id3 != id {
				t.Fatalf("UnmarshalText(%q) = %v, %v", s, id3, err)
			}
		}
		if id, err := ParseDeviceID(s); err == nil && (id.String() != s || id.IsZero()) {
			t.Fatalf("ParseDeviceID(%q).String() = %q", s, id.String())
		}
		if id, err := ParseMessageID(s); err == nil && (id.String() != s || id.IsZero()) {
			t.Fatalf("ParseMessageID(%q).String() = %q", s, id.String())
		}
		if got, err := ParseFingerprint(s); err == nil && got.String() != s {
			t.Fatalf("ParseFingerprint(%q).String() = %q", s, got.String())
		}
		if fp.MatchesNumeric(s) {
			var digits []byte
			for i := 0; i < len(s); i++ {
				if s[i] >= '0' && s[i] <= '9' {
					digits = append(digits, s[i])
				}
			}
			if string(digits) != strings.ReplaceAll(fp.Numeric(), " ", "") {
				t.Fatalf("MatchesNumeric(%q) is true for %s", s, fp.Numeric())
			}
		}
	})
}

// ---- qrtalk: URIs ----

func FuzzParseURI(f *testing.F) {
	var user UserID
	fixedRand(2, func() { user = NewUserID() })
	sfp := ServerFingerprint(testKey(f, 7).Public())
	ifp := IdentityFingerprint(testKey(f, 0).Public())
	card := ContactCard{Server: "https://qrtalk.example", ServerFP: sfp, User: user, Identity: ifp}
	inv := Invite{Server: "https://chat.example:8443/qrtalk", ServerFP: sfp, Token: "tok_0123456789-abcdef"}
	cardURI, invURI := card.URI(), inv.URI()
	_, err := ParseContactCard(cardURI)
	mustOK(f, "contact card", err)
	_, err = ParseInvite(invURI)
	mustOK(f, "invite", err)
	raw := "qrtalk:contact?v=1&s=https://qrtalk.example/&sfp=" + sfp.String() + "&u=" + strings.ToUpper(user.String()) + "&fp=" + ifp.String()
	addSeeds(f, stringSeeds(cardURI, invURI, raw, " "+invURI+"\n",
		"qrtalk:contact?fp="+ifp.String()+"&u="+user.String()+"&sfp="+sfp.String()+"&s=https%3A%2F%2Fh&v=1", // any order
		strings.Replace(cardURI, "v=1", "v=2", 1),
		cardURI+"&x=1", cardURI+"&u="+user.String(),
		strings.Replace(invURI, "https", "http", 1),
		strings.Replace(cardURI, "contact", "invite", 1),
		"qrtalk:invite?v=1&s=https://user:pw@h&sfp="+sfp.String()+"&t=0123456789abcdef",
		"qrtalk:invite?v=1&s=https://h?q#f&sfp="+sfp.String()+"&t=0123456789abcdef",
		"")...)

	f.Fuzz(func(t *testing.T, s string) {
		if c, err := ParseContactCard(s); err == nil {
			if c.User.IsZero() {
				t.Fatalf("zero user ID in %q", s)
			}
			if got, err := CheckServerURL(c.Server); err != nil || got != c.Server {
				t.Fatalf("server URL %q of %q is not stable: CheckServerURL gives %q, %v", c.Server, s, got, err)
			}
			c2, err := ParseContactCard(c.URI())
			if err != nil || c2 != c {
				t.Fatalf("contact card %q: URI() = %q parses to %+v, %v; want %+v", s, c.URI(), c2, err, c)
			}
		}
		if i, err := ParseInvite(s); err == nil {
			if got, err := CheckServerURL(i.Server); err != nil || got != i.Server {
				t.Fatalf("server URL %q of %q is not stable: CheckServerURL gives %q, %v", i.Server, s, got, err)
			}
			i2, err := ParseInvite(i.URI())
			if err != nil || i2 != i {
				t.Fatalf("invite %q: URI() = %q parses to %+v, %v; want %+v", s, i.URI(), i2, err, i)
			}
		}
	})
}

// ---- device certificates and revocations ----

func encodeDeviceCert(c *DeviceCert) []byte {
	b := wire.NewBuilder(maxCertSize)
	b.U8(Version)
	b.U8(typeDeviceCert)
	b.Raw(c.User[:])
	b.Raw(c.Device[:])
	b.I64(c.Created.Unix())
	b.Var16(c.EncryptionKey.Bytes())
	b.Var16(c.AuthKey.Bytes())
	b.Raw(c.sig)
	return b.Bytes()
}

func FuzzParseDeviceCert(f *testing.F) {
	identity := testKey(f, 0)
	var genuine [][]byte
	fixedRand(3, func() {
		user := NewUserID()
		for i, created := range []time.Time{testNow, time.Unix(0, 0), time.Unix(-1, 0)} {
			c, err := CertifyDevice(identity, user, NewDeviceID(), testKey(f, 1+i).Public(), testKey(f, 2+i).Public(), created)
			mustOK(f, "device certificate", err)
			genuine = append(genuine, c.Bytes())
		}
	})
	for _, p := range genuine {
		c, err := ParseDeviceCert(p)
		mustOK(f, "device certificate", err)
		mustOK(f, "device certificate", c.Verify(identity.Public()))
	}
	g := genuine[0]
	addSeeds(f, append(byteSeeds(genuine...), byteSeeds(
		append(bytes.Clone(g), 0), g[:len(g)-1], flip(g, 0), flip(g, 1), flip(g, 40), flip(g, len(g)-1),
		overwrite(g, 2+UserIDSize+DeviceIDSize+8, 0xff), // key length out of range
		nil)...)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := ParseDeviceCert(p)
		if err != nil {
			if containsBytes(genuine, p) {
				t.Fatalf("genuine certificate refused: %v", err)
			}
			return
		}
		if !bytes.Equal(encodeDeviceCert(c), p) || !bytes.Equal(c.Bytes(), p) {
			t.Fatalf("accepted a non-canonical encoding: %x", p)
		}
		if c.User.IsZero() || c.Device.IsZero() {
			t.Fatalf("accepted a zero ID: %x", p)
		}
		err = c.Verify(identity.Public())
		if err == nil && !containsBytes(genuine, p) {
			t.Fatalf("a certificate that was never signed verifies: %x", p)
		}
		if err != nil && containsBytes(genuine, p) {
			t.Fatalf("genuine certificate does not verify: %v", err)
		}
	})
}

func encodeRevocation(v *Revocation) []byte {
	b := wire.NewBuilder(revocationSize)
	b.U8(Version)
	b.U8(typeRevocation)
	b.Raw(v.User[:])
	b.Raw(v.Device[:])
	b.I64(v.Revoked.Unix())
	b.Raw(v.sig)
	return b.Bytes()
}

func FuzzParseRevocation(f *testing.F) {
	identity := testKey(f, 0)
	var genuine [][]byte
	fixedRand(4, func() {
		user := NewUserID()
		for _, at := range []time.Time{testNow, time.Unix(0, 0), time.Unix(-1<<40, 0)} {
			rev, err := RevokeDevice(identity, user, NewDeviceID(), at)
			if err != nil {
				f.Fatal(err)
			}
			genuine = append(genuine, rev.Bytes())
		}
	})
	for _, p := range genuine {
		v, err := ParseRevocation(p)
		mustOK(f, "revocation", err)
		mustOK(f, "revocation", v.Verify(identity.Public()))
	}
	g := genuine[0]
	addSeeds(f, append(byteSeeds(genuine...), byteSeeds(
		append(bytes.Clone(g), 0), g[:len(g)-1], flip(g, 0), flip(g, 1), flip(g, 30), flip(g, len(g)-1), nil)...)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		v, err := ParseRevocation(p)
		if err != nil {
			if containsBytes(genuine, p) {
				t.Fatalf("genuine revocation refused: %v", err)
			}
			return
		}
		if !bytes.Equal(encodeRevocation(v), p) || !bytes.Equal(v.Bytes(), p) {
			t.Fatalf("accepted a non-canonical encoding: %x", p)
		}
		if v.User.IsZero() || v.Device.IsZero() {
			t.Fatalf("accepted a zero ID: %x", p)
		}
		err = v.Verify(identity.Public())
		if err == nil && !containsBytes(genuine, p) {
			t.Fatalf("a revocation that was never signed verifies: %x", p)
		}
		if err != nil && containsBytes(genuine, p) {
			t.Fatalf("genuine revocation does not verify: %v", err)
		}
	})
}

// ---- envelopes ----

// encodeEnvelope re-encodes a parsed envelope from its fields.
func encodeEnvelope(e *Envelope) []byte {
	b := wire.NewBuilder(len(e.raw))
	b.U8(Version)
	b.U8(typeEnvelope)
	b.Raw(e.ID[:])
	b.Raw(e.Sender[:])
	b.Raw(e.SenderDevice[:])
	b.I64(e.Sent.UnixMilli())
	b.U32(uint32(e.TTL / time.Second))
	if e.Signed() {
		b.U8(flagSigned)
	} else {
		b.U8(0)
	}
	b.U16(uint16(len(e.Recipients)))
	for _, u := range e.Recipients {
		b.Raw(u[:])
	}
	b.U16(uint16(len(e.Devices)))
	for i, d := range e.Devices {
		b.Raw(d.User[:])
		b.Raw(d.Device[:])
		b.Raw(e.keys[i*wrappedEntry+UserIDSize+DeviceIDSize : (i+1)*wrappedEntry])
	}
	b.Raw(e.nonce)
	b.Raw(e.commitment)
	b.Var32(e.ciphertext)
	b.Var16(e.sig)
	return b.Bytes()
}

// sealedSeed is a genuine envelope and the message sealed in it.
type sealedSeed struct {
	env *Envelope
	msg *Message
}

type envelopeFixture struct {
	sender  *PublicKey  // alice's identity key
	me      []Recipient // the devices Open is tried as
	genuine []sealedSeed
	seeds   [][]byte // genuine envelopes first, then malformed ones
}

// newEnvelopeFixture seals, with a fixed random stream, envelopes from
// alice to bob (one device) and to alice's second device, bob and carol
// (three devices), signed and unsigned, plus each three-device
// envelope's per-device copies and one expired envelope.
func newEnvelopeFixture(f testing.TB) *envelopeFixture {
	fx := &envelopeFixture{}
	fixedRand(5, func() {
		alice, bob, carol := newTestUsers(f)
		fx.sender = alice.identity.Public()
		fx.me = []Recipient{bob.recipient(0), alice.recipient(1), carol.recipient(0)}
		short := &Message{ContentType: "text/plain; charset=utf-8", Body: []byte("meet at noon")}
		long := &Message{ContentType: "application/x.qrtalk.group", GroupID: bytes.Repeat([]byte{7}, GroupIDSize),
			Body: bytes.Repeat([]byte("body "), 100),
			Attachments: []Attachment{{BlobID: [BlobIDSize]byte{1}, Key: NewBlobKey(), Size: 1234, Name: "carte.png", MediaType: "image/png"},
				{Name: "é", Size: 1 << 40}}}
		three := append(append(alice.recipients()[1:], bob.recipients()...), carol.recipients()...)
		cases := []struct {
			msg  *Message
			to   []DeviceRecipient
			opts SealOptions
		}{
			{short, bob.recipients(), SealOptions{Sent: testNow, TTL: time.Hour}},
			{short, bob.recipients(), SealOptions{Sent: testNow, TTL: time.Hour, Unsigned: true}},
			{long, three, SealOptions{Sent: testNow, TTL: MaxTTL}},
			{long, three, SealOptions{Sent: testNow, TTL: 10 * time.Minute, Unsigned: true}},
			{short, bob.recipients(), SealOptions{Sent: testNow.Add(-time.Hour), TTL: 10 * time.Second}}, // expired
		}
		for _, c := range cases {
			raw, err := Seal(c.msg, alice.sender(), c.to, c.opts)
			mustOK(f, "envelope", err)
			env, err := ParseEnvelope(raw)
			mustOK(f, "envelope", err)
			fx.genuine = append(fx.genuine, sealedSeed{env, c.msg})
			for i := range env.Devices {
				if len(env.Devices) > 1 {
					one, err := ParseEnvelope(env.For(i))
					mustOK(f, "delivered envelope", err)
					fx.genuine = append(fx.genuine, sealedSeed{one, c.msg})
				}
			}
		}
	})
	for _, g := range fx.genuine {
		fx.seeds = append(fx.seeds, g.env.raw)
	}
	g := fx.genuine[0].env.raw
	three := fx.genuine[2].env
	// The offset of the first device entry, to make the device order wrong.
	keys := len(three.header) + 2
	swapped := bytes.Clone(three.raw)
	copy(swapped[keys:], three.raw[keys+wrappedEntry:keys+2*wrappedEntry])
	copy(swapped[keys+wrappedEntry:], three.raw[keys:keys+wrappedEntry])
	fx.seeds = append(fx.seeds,
		append(bytes.Clone(g), 0), g[:len(g)-1], flip(g, 0), flip(g, 1),
		overwrite(g, headerFixedSize-2, 0, 0),       // no recipient users
		overwrite(g, headerFixedSize-6, 0, 0, 0, 0), // TTL of 0 s
		overwrite(g, len(g)-KeySize-2, 0x01, 0x7f),  // signature of the wrong size
		g[:len(g)-KeySize-2],                        // no signature field
		swapped, nil)
	return fx
}

func FuzzParseEnvelope(f *testing.F) {
	fx := newEnvelopeFixture(f)
	addSeeds(f, byteSeeds(fx.seeds...)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := ParseEnvelope(p)
		if err != nil {
			return
		}
		if got := encodeEnvelope(e); !bytes.Equal(got, p) || !bytes.Equal(e.Bytes(), p) {
			t.Fatalf("accepted a non-canonical encoding: %s", diff(p, got))
		}
		if e.TTL < MinTTL || e.TTL > MaxTTL || len(e.Recipients) == 0 || len(e.Devices) == 0 {
			t.Fatalf("accepted TTL %v, %d users, %d devices", e.TTL, len(e.Recipients), len(e.Devices))
		}
		for i, d := range e.Devices {
			one, err := ParseEnvelope(e.For(i))
			if err != nil {
				t.Fatalf("For(%d) does not parse: %v", i, err)
			}
			if len(one.Devices) != 1 || one.Devices[0] != d || !bytes.Equal(one.header, e.header) ||
				!bytes.Equal(one.tail, e.tail) || !bytes.Equal(one.keys, e.keys[i*wrappedEntry:(i+1)*wrappedEntry]) {
				t.Fatalf("For(%d) changed the envelope", i)
			}
			if !e.IsRecipient(d.User) {
				t.Fatalf("device %d of a user who is not a recipient", i)
			}
		}
	})
}

// FuzzOpen opens what parses as every device it names that we hold a key
// for. Whatever opens must carry, in every byte that the AEAD, the key
// commitment or the signature covers, a genuine envelope, and yield its
// message; the genuine envelopes themselves must open.
func FuzzOpen(f *testing.F) {
	fx := newEnvelopeFixture(f)
	at := testNow.Add(time.Minute)
	addSeeds(f, byteSeeds(fx.seeds...)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		var genuine *sealedSeed
		for i := range fx.genuine {
			if bytes.Equal(fx.genuine[i].env.raw, p) {
				genuine = &fx.genuine[i]
			}
		}
		e, err := ParseEnvelope(p)
		if err != nil {
			if genuine != nil {
				t.Fatalf("genuine envelope refused: %v", err)
			}
			return
		}
		for _, me := range fx.me {
			idx := -1
			for i, d := range e.Devices {
				if d.User == me.User && d.Device == me.Device {
					idx = i
				}
			}
			if idx < 0 {
				continue
			}
			m, status, err := e.Open(me, fx.sender, at)
			if err != nil {
				if genuine != nil && at.Before(genuine.env.Expires()) {
					t.Fatalf("genuine envelope does not open for %s/%s: %v", me.User, me.Device, err)
				}
				continue
			}
			entry := e.keys[idx*wrappedEntry : (idx+1)*wrappedEntry]
			var from *sealedSeed
			for i := range fx.genuine {
				g := fx.genuine[i].env
				if bytes.Equal(g.header, e.header) && bytes.Equal(g.nonce, e.nonce) && bytes.Equal(g.commitment, e.commitment) &&
					bytes.Equal(g.ciphertext, e.ciphertext) && hasEntry(g, entry) {
					from = &fx.genuine[i]
				}
			}
			if from == nil {
				t.Fatalf("Open (%v) accepted an envelope that was never sealed: %x", status, p)
			}
			switch status {
			case Verified:
				if !bytes.Equal(e.sig, from.env.sig) {
					t.Fatalf("Verified with a signature that was never made: %x", p)
				}
			case Unsigned:
				if e.Signed() {
					t.Fatal("a signed envelope opened as Unsigned")
				}
			default:
				t.Fatalf("status %v with a sender key", status)
			}
			want, _ := from.msg.marshal()
			got, err := m.marshal()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("opened a message other than the one sealed: %+v", m)
			}
			if genuine != nil && genuine.env.Signed() != (status == Verified) {
				t.Fatalf("genuine envelope (signed: %v) opened with status %v", genuine.env.Signed(), status)
			}
		}
	})
}

// hasEntry reports whether entry is one of e's wrapped-key entries.
func hasEntry(e *Envelope, entry []byte) bool {
	for i := range e.Devices {
		if bytes.Equal(e.keys[i*wrappedEntry:(i+1)*wrappedEntry], entry) {
			return true
		}
	}
	return false
}

// ---- message plaintext ----

func FuzzUnmarshalMessage(f *testing.F) {
	msgs := []*Message{
		{ContentType: "text/plain", Body: []byte("hi")},
		{ContentType: "a", Body: bytes.Repeat([]byte{'x'}, padBlock-9)}, // exactly one block, no padding
		{ContentType: "application/x.qrtalk.receipt"},
		{ContentType: "text/plain; charset=utf-8", GroupID: bytes.Repeat([]byte{1}, GroupIDSize), Body: []byte("to the group"),
			Attachments: []Attachment{{BlobID: [BlobIDSize]byte{9}, Key: [BlobKeySize]byte{8}, SHA256: [32]byte{7}, Size: 99, Name: "ünï.txt", MediaType: "text/plain"}, {}}},
	}
	var good [][]byte
	for _, m := range msgs {
		p, err := m.marshal()
		mustOK(f, "message", err)
		_, err = unmarshalMessage(p)
		mustOK(f, "message", err)
		good = append(good, p)
	}
	g := good[0]
	addSeeds(f, append(byteSeeds(good...), byteSeeds(
		overwrite(g, len(g)-1, 1),                         // padding not zero
		append(bytes.Clone(g), make([]byte, padBlock)...), // a block too many
		g[:len(g)-1], g[:10],
		overwrite(g, 0, 0), // empty content type
		overwrite(g, 0, MaxContentTypeLen+1),
		overwrite(good[3], 1+len(msgs[3].ContentType), 3), // group ID of 3 bytes
		nil)...)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := unmarshalMessage(p)
		if err != nil {
			return
		}
		got, err := m.marshal()
		if err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("accepted a non-canonical encoding: %s", diff(p, got))
		}
	})
}

// ---- the secure channel ----

func encodeChannelSetup(s *ChannelSetup) []byte {
	b := wire.NewBuilder(ChannelSetupSize)
	b.U8(Version)
	b.U8(typeChannelSetup)
	b.Raw(s.User[:])
	b.Raw(s.Device[:])
	b.Raw(s.ServerFP[:])
	b.I64(s.Time.UnixMilli())
	b.Raw(s.Nonce[:])
	b.Raw(s.wrapped)
	b.Raw(s.sig)
	return b.Bytes()
}

func FuzzParseChannelSetup(f *testing.F) {
	server, auth := testKey(f, 7), testKey(f, 2)
	var genuine, seeds [][]byte
	fixedRand(6, func() {
		dev := ChannelDevice{User: NewUserID(), Device: NewDeviceID(), AuthKey: auth}
		for _, now := range []time.Time{testNow, testNow.Add(-time.Minute)} {
			_, setup, err := NewClientSession(dev, server.Public(), now)
			mustOK(f, "channel setup", err)
			genuine = append(genuine, setup)
		}
		// Well-formed, but for another server, or too old.
		_, other, err := NewClientSession(dev, testKey(f, 6).Public(), testNow)
		mustOK(f, "channel setup", err)
		_, old, err := NewClientSession(dev, server.Public(), testNow.Add(-time.Hour))
		mustOK(f, "channel setup", err)
		seeds = append(seeds, other, old)
	})
	for _, p := range genuine {
		s, err := ParseChannelSetup(p)
		mustOK(f, "channel setup", err)
		_, _, err = AcceptSession(s, server, auth.Public(), &MemoryReplayCache{}, time.Hour, testNow)
		mustOK(f, "channel setup", err)
	}
	g := genuine[0]
	seeds = append(append(genuine, seeds...),
		append(bytes.Clone(g), 0), g[:len(g)-1], flip(g, 0), flip(g, 1), flip(g, 100), flip(g, len(g)-1), nil)
	addSeeds(f, byteSeeds(seeds...)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := ParseChannelSetup(p)
		if err != nil {
			if containsBytes(genuine, p) {
				t.Fatalf("genuine setup refused: %v", err)
			}
			return
		}
		if got := encodeChannelSetup(s); !bytes.Equal(got, p) {
			t.Fatalf("accepted a non-canonical encoding: %s", diff(p, got))
		}
		ss, confirm, err := AcceptSession(s, server, auth.Public(), &MemoryReplayCache{}, time.Hour, testNow)
		if err != nil {
			if containsBytes(genuine, p) {
				t.Fatalf("genuine setup refused: %v", err)
			}
			return
		}
		if !containsBytes(genuine, p) {
			t.Fatalf("accepted a setup that was never made: %x", p)
		}
		if ss.User != s.User || ss.Device != s.Device || ss.ID() != sessionID(p) || len(confirm) == 0 {
			t.Fatal("session does not match its setup")
		}
	})
}

// A channelFrame is a genuine frame and what it was sealed for: its
// direction, and the request counter, method and path bound into its
// associated data. A push is a server frame for (0, "PUSH", "/").
type channelFrame struct {
	fromClient   bool
	push         bool // a push, not a response: frame kinds never mix
	method, path string
	reqCtr       uint64
	frame, body  []byte
}

// newChannelFixture sets up one session with a fixed random stream, and
// seals two requests, their responses and a push.
func newChannelFixture(f testing.TB) (cs *ClientSession, ss *ServerSession, genuine []channelFrame) {
	fixedRand(7, func() {
		cs, ss = newTestChannel(f)
		req := func(method, path string, body []byte) uint64 {
			frame, ctr, err := cs.SealRequest(method, path, body)
			mustOK(f, "request", err)
			genuine = append(genuine, channelFrame{true, false, method, path, 0, frame, body})
			return ctr
		}
		resp := func(ctr uint64, method, path string, body []byte) {
			genuine = append(genuine, channelFrame{false, false, method, path, ctr, ss.SealResponse(ctr, method, path, body), body})
		}
		c1 := req("POST", "/v1/send", []byte("request body"))
		c2 := req("GET", "/v1/inbox", nil)
		resp(c1, "POST", "/v1/send", []byte("ok"))
		resp(c2, "GET", "/v1/inbox", bytes.Repeat([]byte("m"), 1000))
		genuine = append(genuine, channelFrame{false, true, pushMethod, pushPath, 0, ss.SealPush([]byte("pushed")), []byte("pushed")})
	})
	return cs, ss, genuine
}

// FuzzChannelOpen feeds frames to both ends of one session. The replay
// windows are reset for every input, so that each input meets a session
// in the same state (and a genuine frame opens every time).
func FuzzChannelOpen(f *testing.F) {
	cs, ss, genuine := newChannelFixture(f)
	at := testNow.Add(time.Minute)
	var seeds []fuzzSeed
	for _, g := range genuine {
		seeds = append(seeds, fuzzSeed{g.frame, g.method, g.path, g.reqCtr})
	}
	r, resp := genuine[0], genuine[2]
	seeds = append(seeds,
		fuzzSeed{r.frame, "POST", "/v1/other", uint64(0)},
		fuzzSeed{resp.frame, resp.method, resp.path, resp.reqCtr + 1},
		fuzzSeed{flip(r.frame, 0), r.method, r.path, uint64(0)},
		fuzzSeed{flip(r.frame, 3), r.method, r.path, uint64(0)},  // other session
		fuzzSeed{flip(r.frame, 25), r.method, r.path, uint64(0)}, // other counter
		fuzzSeed{r.frame[:frameHeaderSize+15], r.method, r.path, uint64(0)},
		fuzzSeed{[]byte(nil), "", "", uint64(0)})
	addSeeds(f, seeds...)

	// check opens frame as sealed by the client (fromClient) or the server
	// for (reqCtr, method, path): it must open exactly when a genuine frame
	// matches, give that frame's body, and open only once.
	check := func(t *testing.T, fromClient, push bool, frame []byte, method, path string, reqCtr uint64, open func() ([]byte, error)) {
		var g *channelFrame
		for i := range genuine {
			c := &genuine[i]
			if c.fromClient == fromClient && c.push == push && bytes.Equal(c.frame, frame) && c.method == method && c.path == path && c.reqCtr == reqCtr {
				g = c
			}
		}
		body, err := open()
		if err != nil {
			if g != nil {
				t.Fatalf("genuine frame refused: %v", err)
			}
			return
		}
		if g == nil {
			t.Fatalf("opened a frame that was never sealed (from client: %v): %x %q %q %d", fromClient, frame, method, path, reqCtr)
		}
		if !bytes.Equal(body, g.body) {
			t.Fatalf("body %q, sealed %q", body, g.body)
		}
		if _, err := open(); !errors.Is(err, ErrReplay) {
			t.Fatalf("replayed frame: got %v, want ErrReplay", err)
		}
	}

	f.Fuzz(func(t *testing.T, frame []byte, method, path string, reqCtr uint64) {
		ss.k.window = replayWindow{}
		cs.k.window = replayWindow{}
		check(t, true, false, frame, method, path, 0, func() ([]byte, error) {
			body, _, err := ss.OpenRequest(method, path, frame, at)
			return body, err
		})
		check(t, false, false, frame, method, path, reqCtr, func() ([]byte, error) {
			return cs.OpenResponse(reqCtr, method, path, frame, at)
		})
		cs.k.window = replayWindow{}
		check(t, false, true, frame, pushMethod, pushPath, 0, func() ([]byte, error) {
			return cs.OpenPush(frame, at)
		})
	})
}

// ---- blobs ----

func encryptBlobBytes(tb testing.TB, key [BlobKeySize]byte, plain []byte) []byte {
	var buf bytes.Buffer
	w, err := EncryptBlob(&buf, key)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzDecryptBlob(f *testing.F) {
	key := [BlobKeySize]byte{1, 2, 3, 4, 5, 6, 7, 8}
	var good [][]byte
	for _, size := range []int{0, 1, 1000, BlobChunkSize, BlobChunkSize + 1} {
		good = append(good, encryptBlobBytes(f, key, bytes.Repeat([]byte{byte(size)}, size)))
	}
	g, two := good[2], good[4]
	addSeeds(f, append(byteSeeds(good...), byteSeeds(
		append(bytes.Clone(g), 0), g[:len(g)-1], flip(g, 0), flip(g, 1), flip(g, 10),
		two[:blobHeaderSize+BlobChunkSize+blobTagSize], // cut after the first chunk
		append(bytes.Clone(two[:blobHeaderSize+BlobChunkSize+blobTagSize]), two[blobHeaderSize:blobHeaderSize+17]...),
		encryptBlobBytes(f, [BlobKeySize]byte{9}, []byte("other key")),
		good[0][:blobHeaderSize], nil)...)...)

	f.Fuzz(func(t *testing.T, ct []byte) {
		r, err := DecryptBlob(bytes.NewReader(ct), key)
		if err != nil {
			return
		}
		plain, err := io.ReadAll(r)
		if err != nil {
			// Only whole chunks that authenticated may come out before the error.
			if len(plain)%BlobChunkSize != 0 || !errors.Is(err, ErrDecrypt) {
				t.Fatalf("%d bytes then %v", len(plain), err)
			}
			return
		}
		// Encryption is deterministic under one key: what decrypts is
		// exactly the encryption of what it decrypts to.
		if got := encryptBlobBytes(t, key, plain); !bytes.Equal(got, ct) {
			t.Fatalf("accepted a blob that is not the encryption of its plaintext (%d bytes in, %d re-encrypted)", len(ct), len(got))
		}
	})
}
