package protocol

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
	"testing/cryptotest"
	"time"
)

// The test vectors in testdata/vectors.json are data shared by every
// implementation of protocol v1 (docs/PROTOCOL.md, "Test vectors").
// TestVectors checks them all; TestGenerateVectors rebuilds them from a
// seeded random source:
//
//	go test ./protocol -run TestGenerateVectors -update-vectors
var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/vectors.json")

const vectorsPath = "testdata/vectors.json"

type vectorFile struct {
	Comment      string           `json:"comment"`
	Keys         []keyVector      `json:"keys"`
	Certificates []certVector     `json:"certificates"`
	Revocations  []certVector     `json:"revocations"`
	Envelopes    []envelopeVector `json:"envelopes"`
	Channels     []channelVector  `json:"channels"`
	URIs         []uriVector      `json:"uris"`
	Blobs        []blobVector     `json:"blobs"`
	Resumptions  []resumeVector   `json:"resumptions"`
}

// keyVector: a key, and the fingerprints of its public half. A vector
// with Error set holds a public key that parsing must refuse.
type keyVector struct {
	Name                string `json:"name"`
	PrivatePKCS8        []byte `json:"private_pkcs8,omitempty"`
	PublicSPKI          []byte `json:"public_spki"`
	IdentityFingerprint string `json:"identity_fingerprint,omitempty"`
	Numeric             string `json:"identity_fingerprint_numeric,omitempty"`
	ServerFingerprint   string `json:"server_fingerprint,omitempty"`
	Error               string `json:"error,omitempty"`
}

// certVector: a device certificate or revocation and the identity key it
// is checked against.
type certVector struct {
	Name          string `json:"name"`
	IdentityKey   string `json:"identity_key"`
	Data          []byte `json:"data"`
	User          string `json:"user,omitempty"`
	Device        string `json:"device,omitempty"`
	Time          int64  `json:"time,omitempty"`
	EncryptionKey string `json:"encryption_key,omitempty"`
	AuthKey       string `json:"auth_key,omitempty"`
	Error         string `json:"error,omitempty"`
}

type envelopeVector struct {
	Name           string `json:"name"`
	Envelope       []byte `json:"envelope"`
	RecipientUser  string `json:"recipient_user"`
	RecipientDev   string `json:"recipient_device"`
	RecipientKey   string `json:"recipient_key"`
	SenderIdentity string `json:"sender_identity_key,omitempty"`
	NowMillis      int64  `json:"now_ms"`
	// Intermediate values, for implementers to debug with.
	MessageKey string `json:"message_key,omitempty"`
	Plaintext  []byte `json:"plaintext,omitempty"`
	// Expected result.
	Status      string             `json:"status,omitempty"`
	ContentType string             `json:"content_type,omitempty"`
	Body        []byte             `json:"body,omitempty"`
	GroupID     []byte             `json:"group_id,omitempty"`
	Attachments []attachmentVector `json:"attachments,omitempty"`
	Error       string             `json:"error,omitempty"`
}

// attachmentVector: an Attachment with its binary fields in hex and its
// size as a decimal string (JSON numbers lose precision above 2^53).
type attachmentVector struct {
	BlobID    string `json:"blob_id"`
	Key       string `json:"key"`
	SHA256    string `json:"sha256"`
	Size      uint64 `json:"size,string"`
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
}

func toAttachmentVector(a Attachment) attachmentVector {
	return attachmentVector{BlobID: hex.EncodeToString(a.BlobID[:]), Key: hex.EncodeToString(a.Key[:]), SHA256: hex.EncodeToString(a.SHA256[:]),
		Size: a.Size, Name: a.Name, MediaType: a.MediaType}
}

type channelVector struct {
	Name           string `json:"name"`
	ServerKey      string `json:"server_key"`
	DeviceAuthKey  string `json:"device_auth_key"`
	Setup          []byte `json:"setup"`
	NowMillis      int64  `json:"now_ms"`
	LifetimeSecond int64  `json:"lifetime_s"`
	// Intermediate values.
	Secret    string `json:"secret,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	C2SKey    string `json:"client_to_server_key,omitempty"`
	S2CKey    string `json:"server_to_client_key,omitempty"`
	// The server's answer and the frames that follow.
	Confirm       []byte         `json:"confirm,omitempty"`
	ExpiresMillis int64          `json:"expires_ms,omitempty"`
	Frames        []frameVector  `json:"frames,omitempty"`
	Error         string         `json:"error,omitempty"`
	replayOf      *channelVector // the setup was accepted once before
}

type frameVector struct {
	Direction      string `json:"direction"` // "client-to-server" or "server-to-client"
	Kind           string `json:"kind"`      // "request", "response" or "push"
	Method         string `json:"method,omitempty"`
	Path           string `json:"path,omitempty"`
	RequestCounter uint64 `json:"request_counter"`
	NowMillis      int64  `json:"now_ms"`
	Frame          []byte `json:"frame"`
	Body           []byte `json:"body,omitempty"`
	Error          string `json:"error,omitempty"`
}

type uriVector struct {
	URI      string `json:"uri"`
	Kind     string `json:"kind"` // "contact" or "invite"
	Server   string `json:"server,omitempty"`
	ServerFP string `json:"server_fingerprint,omitempty"`
	User     string `json:"user,omitempty"`
	Identity string `json:"identity_fingerprint,omitempty"`
	Token    string `json:"token,omitempty"`
	Error    string `json:"error,omitempty"`
}

type blobVector struct {
	Name      string `json:"name"`
	Key       string `json:"key"`
	Plaintext []byte `json:"plaintext,omitempty"`
	Encrypted []byte `json:"encrypted"`
	Error     string `json:"error,omitempty"`
}

// errorNames are the names vectors use for the errors of docs/PROTOCOL.md.
var errorNames = []struct {
	name string
	err  error
}{
	{"version", ErrVersion},
	{"too_large", ErrTooLarge},
	{"key_size", ErrKeySize},
	{"key_exponent", ErrKeyExponent},
	{"bad_signature", ErrBadSignature},
	{"not_recipient", ErrNotRecipient},
	{"expired", ErrExpired},
	{"decrypt", ErrDecrypt},
	{"replay", ErrReplay},
	{"clock_skew", ErrClockSkew},
	{"mismatch", ErrMismatch},
	{"malformed", ErrMalformed},
}

func errorName(err error) string {
	if err == nil {
		return ""
	}
	for _, e := range errorNames {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "other: " + err.Error()
}

func loadVectors(t *testing.T) *vectorFile {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("reading vectors: %v", err)
	}
	var v vectorFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding vectors: %v", err)
	}
	// A vector file that lost a section would let every check pass.
	if len(v.Keys) < 5 || len(v.Certificates) < 3 || len(v.Revocations) < 2 || len(v.Envelopes) < 10 ||
		len(v.Channels) < 3 || len(v.URIs) < 5 || len(v.Blobs) < 3 || len(v.Resumptions) < 5 {
		t.Fatalf("vector file is missing vectors: %d keys, %d certificates, %d revocations, %d envelopes, %d channels, %d URIs, %d blobs",
			len(v.Keys), len(v.Certificates), len(v.Revocations), len(v.Envelopes), len(v.Channels), len(v.URIs), len(v.Blobs))
	}
	return &v
}

func TestVectors(t *testing.T) {
	v := loadVectors(t)
	keys := map[string]*PrivateKey{}
	pubs := map[string]*PublicKey{}
	t.Run("keys", func(t *testing.T) {
		for _, kv := range v.Keys {
			pub, err := ParsePublicKey(kv.PublicSPKI)
			if got := errorName(err); got != kv.Error {
				t.Errorf("%s: parse public key: got error %q, want %q", kv.Name, got, kv.Error)
				continue
			}
			if err != nil {
				continue
			}
			pubs[kv.Name] = pub
			if kv.PrivatePKCS8 != nil {
				k, err := ParsePrivateKey(kv.PrivatePKCS8)
				if err != nil {
					t.Errorf("%s: %v", kv.Name, err)
					continue
				}
				if !k.Public().Equal(pub) {
					t.Errorf("%s: private and public keys differ", kv.Name)
				}
				keys[kv.Name] = k
			}
			fp := IdentityFingerprint(pub)
			if fp.String() != kv.IdentityFingerprint || fp.Numeric() != kv.Numeric || ServerFingerprint(pub).String() != kv.ServerFingerprint {
				t.Errorf("%s: fingerprints differ", kv.Name)
			}
			if !fp.MatchesNumeric(kv.Numeric) {
				t.Errorf("%s: numeric fingerprint does not match itself", kv.Name)
			}
		}
	})
	t.Run("certificates", func(t *testing.T) {
		for _, cv := range v.Certificates {
			c, err := ParseDeviceCert(cv.Data)
			if err == nil {
				err = c.Verify(pubs[cv.IdentityKey])
			}
			if got := errorName(err); got != cv.Error {
				t.Errorf("%s: got error %q, want %q", cv.Name, got, cv.Error)
				continue
			}
			if err == nil && (c.User.String() != cv.User || c.Device.String() != cv.Device || c.Created.Unix() != cv.Time ||
				!c.EncryptionKey.Equal(pubs[cv.EncryptionKey]) || !c.AuthKey.Equal(pubs[cv.AuthKey])) {
				t.Errorf("%s: fields differ", cv.Name)
			}
		}
	})
	t.Run("revocations", func(t *testing.T) {
		for _, rv := range v.Revocations {
			r, err := ParseRevocation(rv.Data)
			if err == nil {
				err = r.Verify(pubs[rv.IdentityKey])
			}
			if got := errorName(err); got != rv.Error {
				t.Errorf("%s: got error %q, want %q", rv.Name, got, rv.Error)
				continue
			}
			if err == nil && (r.User.String() != rv.User || r.Device.String() != rv.Device || r.Revoked.Unix() != rv.Time) {
				t.Errorf("%s: fields differ", rv.Name)
			}
		}
	})
	t.Run("envelopes", func(t *testing.T) {
		for _, ev := range v.Envelopes {
			t.Run(ev.Name, func(t *testing.T) {
				m, status, err := openVector(ev, keys, pubs)
				if got := errorName(err); got != ev.Error {
					t.Fatalf("got error %q (%v), want %q", got, err, ev.Error)
				}
				if err != nil {
					return
				}
				if status.String() != ev.Status || m.ContentType != ev.ContentType || !bytes.Equal(m.Body, ev.Body) ||
					!bytes.Equal(m.GroupID, ev.GroupID) || len(m.Attachments) != len(ev.Attachments) {
					t.Fatalf("got %v %+v", status, m)
				}
				for i := range m.Attachments {
					if toAttachmentVector(m.Attachments[i]) != ev.Attachments[i] {
						t.Fatalf("attachment %d differs", i)
					}
				}
			})
		}
	})
	t.Run("channels", func(t *testing.T) {
		for _, cv := range v.Channels {
			t.Run(cv.Name, func(t *testing.T) { checkChannelVector(t, cv, keys, pubs) })
		}
	})
	t.Run("uris", func(t *testing.T) {
		for _, uv := range v.URIs {
			got := parseURIVector(uv.URI, uv.Kind)
			got.URI = uv.URI
			if got != uv {
				t.Errorf("%s:\n got %+v\nwant %+v", uv.URI, got, uv)
			}
		}
	})
	t.Run("resumptions", func(t *testing.T) {
		for _, rv := range v.Resumptions {
			t.Run(rv.Name, func(t *testing.T) { checkResumptionVector(t, rv, keys) })
		}
	})
	t.Run("blobs", func(t *testing.T) {
		for _, bv := range v.Blobs {
			var key [BlobKeySize]byte
			hex.Decode(key[:], []byte(bv.Key))
			plain, err := decryptAll(bv.Encrypted, key)
			if got := errorName(err); got != bv.Error {
				t.Errorf("%s: got error %q, want %q", bv.Name, got, bv.Error)
				continue
			}
			if err == nil && !bytes.Equal(plain, bv.Plaintext) {
				t.Errorf("%s: plaintext differs", bv.Name)
			}
		}
	})
}

func openVector(ev envelopeVector, keys map[string]*PrivateKey, pubs map[string]*PublicKey) (*Message, SignatureStatus, error) {
	env, err := ParseEnvelope(ev.Envelope)
	if err != nil {
		return nil, 0, err
	}
	user, err := ParseUserID(ev.RecipientUser)
	if err != nil {
		return nil, 0, err
	}
	dev, err := ParseDeviceID(ev.RecipientDev)
	if err != nil {
		return nil, 0, err
	}
	var sender *PublicKey
	if ev.SenderIdentity != "" {
		sender = pubs[ev.SenderIdentity]
	}
	return env.Open(Recipient{User: user, Device: dev, Key: keys[ev.RecipientKey]}, sender, time.UnixMilli(ev.NowMillis))
}

func checkChannelVector(t *testing.T, cv channelVector, keys map[string]*PrivateKey, pubs map[string]*PublicKey) {
	now := time.UnixMilli(cv.NowMillis)
	cache := &MemoryReplayCache{}
	setup, err := ParseChannelSetup(cv.Setup)
	var ss *ServerSession
	var confirm []byte
	if err == nil {
		// A "replayed" vector is a setup this server already accepted.
		if cv.Error == "replay" {
			if _, _, err := AcceptSession(setup, keys[cv.ServerKey], pubs[cv.DeviceAuthKey], cache, time.Duration(cv.LifetimeSecond)*time.Second, now); err != nil {
				t.Fatalf("first acceptance: %v", err)
			}
		}
		ss, confirm, err = AcceptSession(setup, keys[cv.ServerKey], pubs[cv.DeviceAuthKey], cache, time.Duration(cv.LifetimeSecond)*time.Second, now)
	}
	if got := errorName(err); got != cv.Error {
		t.Fatalf("setup: got error %q (%v), want %q", got, err, cv.Error)
	}
	if err != nil {
		return
	}
	// The confirmation frame is sealed with fresh state, so it is
	// identical to the vector's.
	if !bytes.Equal(confirm, cv.Confirm) || ss.ID().String() != cv.SessionID || ss.Expires().UnixMilli() != cv.ExpiresMillis {
		t.Fatalf("confirmation differs")
	}
	// Rebuild the client end from the secret, as the device that made the
	// setup would hold it.
	secret, _ := hex.DecodeString(cv.Secret)
	ck, err := deriveKeys(secret, ss.ID(), true)
	if err != nil {
		t.Fatal(err)
	}
	ck.expires = now.Add(MaxSessionLifetime)
	cs := &ClientSession{k: ck}
	if err := cs.Confirm(cv.Confirm, now); err != nil {
		t.Fatalf("client confirm: %v", err)
	}
	for i, fv := range cv.Frames {
		at := time.UnixMilli(fv.NowMillis)
		var body []byte
		var err error
		switch fv.Kind {
		case "request":
			body, _, err = ss.OpenRequest(fv.Method, fv.Path, fv.Frame, at)
		case "response":
			body, err = cs.OpenResponse(fv.RequestCounter, fv.Method, fv.Path, fv.Frame, at)
		case "push":
			body, err = cs.OpenPush(fv.Frame, at)
		default:
			t.Fatalf("frame %d: kind %q", i, fv.Kind)
		}
		if got := errorName(err); got != fv.Error {
			t.Fatalf("frame %d: got error %q (%v), want %q", i, got, err, fv.Error)
		}
		if err == nil && !bytes.Equal(body, fv.Body) {
			t.Fatalf("frame %d: body differs", i)
		}
	}
}

func parseURIVector(s, kind string) uriVector {
	out := uriVector{Kind: kind}
	switch kind {
	case "contact":
		c, err := ParseContactCard(s)
		if err != nil {
			out.Error = errorName(err)
			return out
		}
		out.Server, out.ServerFP, out.User, out.Identity = c.Server, c.ServerFP.String(), c.User.String(), c.Identity.String()
	case "invite":
		i, err := ParseInvite(s)
		if err != nil {
			out.Error = errorName(err)
			return out
		}
		out.Server, out.ServerFP, out.Token = i.Server, i.ServerFP.String(), i.Token
	}
	return out
}

func decryptAll(enc []byte, key [BlobKeySize]byte) ([]byte, error) {
	r, err := DecryptBlob(bytes.NewReader(enc), key)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// TestGenerateVectors rebuilds testdata/vectors.json. Everything random in
// it comes from cryptotest.SetGlobalRandom, so the same seed gives the
// same file (as long as the standard library uses randomness the same way).
func TestGenerateVectors(t *testing.T) {
	if !*updateVectors {
		t.Skip("run with -update-vectors to rewrite " + vectorsPath)
	}
	cryptotest.SetGlobalRandom(t, 20261126)
	v := generateVectors(t)
	// Resumption (section 18) came later: a random stream of its own, so
	// that the sections above stay byte for byte what they were.
	cryptotest.SetGlobalRandom(t, 20261127)
	v.Resumptions = generateResumptionVectors(t, v)
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsPath, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func generateVectors(t *testing.T) *vectorFile {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := now.Add(90 * time.Second)
	v := &vectorFile{Comment: "QRTalk protocol v1 test vectors: see docs/PROTOCOL.md, section 'Test vectors'. " +
		"Binary values are standard base64; keys, secrets and IDs in their text forms. Regenerate with: " +
		"go test ./protocol -run TestGenerateVectors -update-vectors"}

	names := []string{"alice-identity", "alice-phone-enc", "alice-phone-auth", "alice-laptop-enc", "bob-identity", "bob-phone-enc", "bob-phone-auth", "server"}
	keys := map[string]*PrivateKey{}
	for _, name := range names {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
		pub := k.Public()
		v.Keys = append(v.Keys, keyVector{Name: name, PrivatePKCS8: k.Bytes(), PublicSPKI: pub.der,
			IdentityFingerprint: IdentityFingerprint(pub).String(), Numeric: IdentityFingerprint(pub).Numeric(),
			ServerFingerprint: ServerFingerprint(pub).String()})
	}
	for _, bad := range []struct {
		name, err string
		bits, e   int
	}{{"rsa-2048", "key_size", 2048, 65537}, {"rsa-4096", "key_size", 4096, 65537}, {"rsa-3072-e3", "key_exponent", 3072, 3}} {
		k, err := rsa.GenerateKey(nil, bad.bits)
		if err != nil {
			t.Fatal(err)
		}
		pub := k.PublicKey
		if bad.e != 65537 {
			pub.E = bad.e // a public key that merely claims e = 3 is enough to test refusal
		}
		der, err := x509.MarshalPKIXPublicKey(&pub)
		if err != nil {
			t.Fatal(err)
		}
		v.Keys = append(v.Keys, keyVector{Name: bad.name, PublicSPKI: der, Error: bad.err})
	}

	alice, bob := NewUserID(), NewUserID()
	alicePhone, aliceLaptop, bobPhone := NewDeviceID(), NewDeviceID(), NewDeviceID()
	pub := func(n string) *PublicKey { return keys[n].Public() }

	// Certificates and revocations.
	cert, err := CertifyDevice(keys["alice-identity"], alice, alicePhone, pub("alice-phone-enc"), pub("alice-phone-auth"), now)
	if err != nil {
		t.Fatal(err)
	}
	bobCert, _ := CertifyDevice(keys["bob-identity"], bob, bobPhone, pub("bob-phone-enc"), pub("bob-phone-auth"), now)
	certVec := func(name, identity string, data []byte, c *DeviceCert, e string) certVector {
		cv := certVector{Name: name, IdentityKey: identity, Data: data, Error: e}
		if e == "" {
			cv.User, cv.Device, cv.Time = c.User.String(), c.Device.String(), c.Created.Unix()
			for n, k := range keys {
				if k.Public().Equal(c.EncryptionKey) {
					cv.EncryptionKey = n
				}
				if k.Public().Equal(c.AuthKey) {
					cv.AuthKey = n
				}
			}
		}
		return cv
	}
	v.Certificates = []certVector{
		certVec("alice-phone", "alice-identity", cert.Bytes(), cert, ""),
		certVec("bob-phone", "bob-identity", bobCert.Bytes(), bobCert, ""),
		certVec("signed-by-another-identity", "bob-identity", cert.Bytes(), nil, "bad_signature"),
		certVec("tampered-device-id", "alice-identity", flip(cert.Bytes(), 2+UserIDSize), nil, "bad_signature"),
		certVec("trailing-data", "alice-identity", append(bytes.Clone(cert.Bytes()), 0), nil, "malformed"),
		certVec("version-2", "alice-identity", flipTo(cert.Bytes(), 0, 2), nil, "version"),
	}
	rev, err := RevokeDevice(keys["alice-identity"], alice, aliceLaptop, now)
	if err != nil {
		t.Fatal(err)
	}
	v.Revocations = []certVector{
		{Name: "alice-laptop", IdentityKey: "alice-identity", Data: rev.Bytes(), User: alice.String(), Device: aliceLaptop.String(), Time: now.Unix()},
		{Name: "signed-by-another-identity", IdentityKey: "bob-identity", Data: rev.Bytes(), Error: "bad_signature"},
		{Name: "tampered-time", IdentityKey: "alice-identity", Data: flip(rev.Bytes(), 2+UserIDSize+DeviceIDSize+7), Error: "bad_signature"},
		{Name: "version-2", IdentityKey: "alice-identity", Data: flipTo(rev.Bytes(), 0, 2), Error: "version"},
		{Name: "truncated", IdentityKey: "alice-identity", Data: rev.Bytes()[:len(rev.Bytes())-1], Error: "malformed"},
	}

	// Envelopes.
	sender := Sender{User: alice, Device: alicePhone, Identity: keys["alice-identity"]}
	bobRcpt := DeviceRecipient{User: bob, Device: bobPhone, Key: pub("bob-phone-enc")}
	laptopRcpt := DeviceRecipient{User: alice, Device: aliceLaptop, Key: pub("alice-laptop-enc")}
	text := &Message{ContentType: "text/plain; charset=utf-8", Body: []byte("Meet at the north gate at noon.")}
	groupMsg := &Message{ContentType: "text/plain; charset=utf-8", GroupID: bytes.Repeat([]byte{0x42}, GroupIDSize), Body: []byte("Photo attached."),
		Attachments: []Attachment{{BlobID: [16]byte{1, 2, 3}, Key: [32]byte{4, 5, 6}, SHA256: [32]byte{7, 8, 9}, Size: 123456, Name: "gate.jpg", MediaType: "image/jpeg"}}}
	seal := func(m *Message, to []DeviceRecipient, opts SealOptions) []byte {
		if opts.Sent.IsZero() {
			opts.Sent = now
		}
		if opts.TTL == 0 {
			opts.TTL = time.Hour
		}
		p, err := Seal(m, sender, to, opts)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	one := seal(text, []DeviceRecipient{bobRcpt}, SealOptions{})
	several := seal(groupMsg, []DeviceRecipient{bobRcpt, laptopRcpt}, SealOptions{TTL: 5 * time.Minute})
	unsigned := seal(text, []DeviceRecipient{bobRcpt}, SealOptions{Unsigned: true, TTL: 2 * time.Minute})
	other := seal(text, []DeviceRecipient{bobRcpt}, SealOptions{})
	severalEnv, _ := ParseEnvelope(several)
	bobIdx := 0
	if severalEnv.Devices[0].User != bob {
		bobIdx = 1
	}
	envVec := func(name string, data []byte, user UserID, dev DeviceID, key string, senderKey string, nowAt time.Time, e string) envelopeVector {
		ev := envelopeVector{Name: name, Envelope: data, RecipientUser: user.String(), RecipientDev: dev.String(),
			RecipientKey: key, SenderIdentity: senderKey, NowMillis: nowAt.UnixMilli(), Error: e}
		if e == "" {
			env, err := ParseEnvelope(data)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			idx := 0
			for i, d := range env.Devices {
				if d.User == user && d.Device == dev {
					idx = i
				}
			}
			entry := env.keys[idx*wrappedEntry : (idx+1)*wrappedEntry]
			mk, err := unwrapKey(keys[key], labeled(labelKeyWrap, env.ID[:]), entry[UserIDSize+DeviceIDSize:], 32)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ev.MessageKey = hex.EncodeToString(mk)
			ev.Plaintext, _ = newGCM(mk).Open(nil, env.nonce, env.ciphertext, labeled(labelEnvelopeAAD, env.header))
			m, status, err := env.Open(Recipient{User: user, Device: dev, Key: keys[key]}, pubOrNil(keys, senderKey), nowAt)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ev.Status, ev.ContentType, ev.Body, ev.GroupID = status.String(), m.ContentType, m.Body, m.GroupID
			for _, a := range m.Attachments {
				ev.Attachments = append(ev.Attachments, toAttachmentVector(a))
			}
		}
		return ev
	}
	// Moving a wrapped key: the entry for bob from another message, put
	// into this one.
	moved := bytes.Clone(one)
	oneEnv, _ := ParseEnvelope(one)
	otherEnv, _ := ParseEnvelope(other)
	copy(moved[len(oneEnv.header)+2:], otherEnv.keys)
	// A key entry for a user outside the signed set: change the user of
	// bob's entry (the header still lists bob).
	outsider := bytes.Clone(one)
	outsider[len(oneEnv.header)+2] ^= 0x80
	unsignedEnv, _ := ParseEnvelope(unsigned)
	// Plaintexts that Seal would never produce, sealed and signed.
	plain, err := text.marshal()
	if err != nil {
		t.Fatal(err)
	}
	craft := func(p []byte) []byte {
		return sealPlaintext(p, sender, []DeviceRecipient{bobRcpt}, []UserID{bob}, SealOptions{Sent: now, TTL: time.Hour, ID: NewMessageID()})
	}
	padTooLong := craft(append(bytes.Clone(plain), make([]byte, padBlock)...))
	notZero := bytes.Clone(plain)
	notZero[len(notZero)-1] = 1
	padNotZero := craft(notZero)
	stripped := append(bytes.Clone(one[:len(one)-2-KeySize]), 0, 0)
	strippedFlag := bytes.Clone(stripped)
	strippedFlag[2+MessageIDSize+UserIDSize+DeviceIDSize+8+4] = 0
	v.Envelopes = []envelopeVector{
		envVec("one-recipient-signed", one, bob, bobPhone, "bob-phone-enc", "alice-identity", at, ""),
		envVec("one-recipient-signed-sender-unknown", one, bob, bobPhone, "bob-phone-enc", "", at, ""),
		envVec("two-devices-group-with-attachment-bob", several, bob, bobPhone, "bob-phone-enc", "alice-identity", at, ""),
		envVec("two-devices-group-with-attachment-own-laptop", several, alice, aliceLaptop, "alice-laptop-enc", "alice-identity", at, ""),
		envVec("two-devices-as-delivered-to-bob", severalEnv.For(bobIdx), bob, bobPhone, "bob-phone-enc", "alice-identity", at, ""),
		envVec("unsigned", unsigned, bob, bobPhone, "bob-phone-enc", "alice-identity", at, ""),
		envVec("expired", unsigned, bob, bobPhone, "bob-phone-enc", "alice-identity", now.Add(2*time.Minute), "expired"),
		envVec("sent-in-the-future", one, bob, bobPhone, "bob-phone-enc", "alice-identity", now.Add(-6*time.Minute), "clock_skew"),
		envVec("tampered-ciphertext", flip(one, len(one)-2-KeySize-1), bob, bobPhone, "bob-phone-enc", "alice-identity", at, "bad_signature"),
		envVec("tampered-ciphertext-unsigned", flip(unsigned, len(unsigned)-3), bob, bobPhone, "bob-phone-enc", "alice-identity", at, "decrypt"),
		envVec("tampered-ttl", flipTo(one, 2+MessageIDSize+UserIDSize+DeviceIDSize+8+1, 0x01), bob, bobPhone, "bob-phone-enc", "alice-identity", at, "bad_signature"),
		envVec("tampered-ttl-unsigned", flipTo(unsigned, 2+MessageIDSize+UserIDSize+DeviceIDSize+8+1, 0x01), bob, bobPhone, "bob-phone-enc", "alice-identity", at, "decrypt"),
		envVec("wrapped-key-moved-from-another-message", moved, bob, bobPhone, "bob-phone-enc", "alice-identity", at, "decrypt"),
		envVec("key-for-a-user-outside-the-signed-set", outsider, bob, bobPhone, "bob-phone-enc", "alice-identity", at, "malformed"),
		envVec("opened-by-a-user-not-in-the-signed-set", one, alice, aliceLaptop, "alice-laptop-enc", "alice-identity", at, "not_recipient"),
		envVec("signed-by-another-identity", one, bob, bobPhone, "bob-phone-enc", "bob-identity", at, "bad_signature"),
		envVec("version-2", flipTo(one, 0, 2), bob, bobPhone, "bob-phone-enc", "alice-identity", at, "version"),
		envVec("trailing-data", append(bytes.Clone(one), 0), bob, bobPhone, "bob-phone-enc", "alice-identity", at, "malformed"),
		envVec("truncated", one[:len(one)-1], bob, bobPhone, "bob-phone-enc", "alice-identity", at, "malformed"),
		// The key commitment is not in the AEAD's associated data: only
		// its own check catches this.
		envVec("tampered-commitment-unsigned", flip(unsigned, len(unsignedEnv.header)+2+wrappedEntry+nonceSize+5), bob, bobPhone, "bob-phone-enc", "alice-identity", at, "decrypt"),
		// A signature stripped off: the flags byte, in the AEAD's
		// associated data, still says signed.
		envVec("signature-stripped", stripped, bob, bobPhone, "bob-phone-enc", "alice-identity", at, "malformed"),
		envVec("signature-stripped-and-flag-cleared", strippedFlag, bob, bobPhone, "bob-phone-enc", "alice-identity", at, "decrypt"),
		envVec("plaintext-padding-too-long", padTooLong, bob, bobPhone, "bob-phone-enc", "alice-identity", at, "malformed"),
		envVec("plaintext-padding-not-zero", padNotZero, bob, bobPhone, "bob-phone-enc", "alice-identity", at, "malformed"),
	}

	// Channel transcripts.
	dev := ChannelDevice{User: alice, Device: alicePhone, AuthKey: keys["alice-phone-auth"]}
	v.Channels = append(v.Channels, channelTranscript(t, dev, keys, now))
	_, stale, _ := NewClientSession(dev, pub("server"), now.Add(-6*time.Minute))
	_, replayed, _ := NewClientSession(dev, pub("server"), now)
	_, otherServer, _ := NewClientSession(dev, pub("bob-identity"), now)
	_, wrongDevice, _ := NewClientSession(ChannelDevice{User: alice, Device: alicePhone, AuthKey: keys["bob-phone-auth"]}, pub("server"), now)
	for _, c := range []struct {
		name, e string
		setup   []byte
	}{
		{"stale-setup", "clock_skew", stale}, {"replayed-setup", "replay", replayed},
		{"setup-for-another-server", "mismatch", otherServer}, {"setup-signed-by-another-key", "bad_signature", wrongDevice},
		{"setup-truncated", "malformed", replayed[:len(replayed)-1]},
	} {
		v.Channels = append(v.Channels, channelVector{Name: c.name, ServerKey: "server", DeviceAuthKey: "alice-phone-auth",
			Setup: c.setup, NowMillis: now.UnixMilli(), LifetimeSecond: 3600, Error: c.e})
	}

	// URIs.
	serverFP := ServerFingerprint(pub("server"))
	card := ContactCard{Server: "https://chat.example.org:8443", ServerFP: serverFP, User: alice, Identity: IdentityFingerprint(pub("alice-identity"))}
	inv := Invite{Server: "https://chat.example.org:8443", ServerFP: serverFP, Token: "Zq3vK9xR2mT8wLp4Yh6NcE"}
	for _, u := range []struct{ uri, kind string }{
		{card.URI(), "contact"}, {inv.URI(), "invite"},
		{"qrtalk:contact?v=2&s=https%3A%2F%2Fchat.example.org&sfp=" + serverFP.String() + "&u=" + alice.String() + "&fp=" + card.Identity.String(), "contact"},
		{"qrtalk:contact?v=1&s=http%3A%2F%2Fchat.example.org&sfp=" + serverFP.String() + "&u=" + alice.String() + "&fp=" + card.Identity.String(), "contact"},
		{card.URI() + "&x=1", "contact"},
		{inv.URI(), "contact"},
		{"qrtalk:invite?v=1&s=https%3A%2F%2FChat.Example.ORG%3A8443%2Fqrtalk%2F&sfp=" + serverFP.String() + "&t=" + inv.Token, "invite"},
		{"qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org%3F&sfp=" + serverFP.String() + "&t=" + inv.Token, "invite"},
		{"qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org%3A99999&sfp=" + serverFP.String() + "&t=" + inv.Token, "invite"},
		{"qrtalk:invite?v=1&s=https%3A%2F%2Fuser%40chat.example.org&sfp=" + serverFP.String() + "&t=" + inv.Token, "invite"},
		{"qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org&sfp=" + serverFP.String() + "&t=short", "invite"},
		{"qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org&sfp=" + serverFP.String()[:42] + "&t=" + inv.Token, "invite"},
	} {
		uv := parseURIVector(u.uri, u.kind)
		uv.URI = u.uri
		v.URIs = append(v.URIs, uv)
	}

	// Blobs.
	blobKey := NewBlobKey()
	for _, size := range []int{0, 100, BlobChunkSize + 10} {
		plain := make([]byte, size)
		for i := range plain {
			plain[i] = byte(i * 7)
		}
		var buf bytes.Buffer
		w, _ := EncryptBlob(&buf, blobKey)
		w.Write(plain)
		w.Close()
		v.Blobs = append(v.Blobs, blobVector{Name: fmt.Sprintf("%d-bytes", size), Key: hex.EncodeToString(blobKey[:]), Plaintext: plain, Encrypted: buf.Bytes()})
		if size == BlobChunkSize+10 {
			enc := buf.Bytes()
			v.Blobs = append(v.Blobs,
				blobVector{Name: "truncated-after-first-chunk", Key: hex.EncodeToString(blobKey[:]), Encrypted: enc[:blobHeaderSize+BlobChunkSize+blobTagSize], Error: "decrypt"},
				blobVector{Name: "chunk-modified", Key: hex.EncodeToString(blobKey[:]), Encrypted: flip(enc, 1000)[:blobHeaderSize+BlobChunkSize+blobTagSize+100], Error: "decrypt"})
			// A full chunk then an empty last chunk: only an empty blob may
			// end with an empty chunk.
			aead := newGCM(blobKey[:])
			crafted := []byte{Version, typeBlob}
			crafted = aead.Seal(crafted, blobNonce(0, false), plain[:BlobChunkSize], nil)
			crafted = aead.Seal(crafted, blobNonce(1, true), nil, nil)
			// A single chunk without the last-chunk flag.
			unflagged := aead.Seal([]byte{Version, typeBlob}, blobNonce(0, false), plain[:100], nil)
			v.Blobs = append(v.Blobs,
				blobVector{Name: "empty-last-chunk-after-a-full-chunk", Key: hex.EncodeToString(blobKey[:]), Encrypted: crafted, Error: "decrypt"},
				blobVector{Name: "last-chunk-not-flagged", Key: hex.EncodeToString(blobKey[:]), Encrypted: unflagged, Error: "decrypt"},
				blobVector{Name: "version-2", Key: hex.EncodeToString(blobKey[:]), Encrypted: flipTo(unflagged, 0, 2), Error: "version"})
		}
	}
	return v
}

func pubOrNil(keys map[string]*PrivateKey, name string) *PublicKey {
	if name == "" {
		return nil
	}
	return keys[name].Public()
}

func flipTo(p []byte, i int, b byte) []byte {
	q := bytes.Clone(p)
	q[i] = b
	return q
}

// channelTranscript: a setup, its confirmation, two requests with their
// responses, a push, and frames that must be refused.
func channelTranscript(t *testing.T, dev ChannelDevice, keys map[string]*PrivateKey, now time.Time) channelVector {
	cs, setup, err := NewClientSession(dev, keys["server"].Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := ParseChannelSetup(setup)
	ss, confirm, err := AcceptSession(parsed, keys["server"], dev.AuthKey.Public(), &MemoryReplayCache{}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Confirm(confirm, now); err != nil {
		t.Fatal(err)
	}
	secret, _ := unwrapKey(keys["server"], labeled(labelChannelWrap, parsed.Nonce[:]), parsed.wrapped, 32)
	id := ss.ID()
	c2s, _ := hkdfKey(secret, id, "client-to-server")
	s2c, _ := hkdfKey(secret, id, "server-to-client")
	cv := channelVector{Name: "transcript", ServerKey: "server", DeviceAuthKey: "alice-phone-auth", Setup: setup,
		NowMillis: now.UnixMilli(), LifetimeSecond: 3600, Secret: hex.EncodeToString(secret), SessionID: id.String(),
		C2SKey: hex.EncodeToString(c2s), S2CKey: hex.EncodeToString(s2c), Confirm: confirm, ExpiresMillis: ss.Expires().UnixMilli()}
	at := now.Add(time.Second)
	frame := func(dir, kind, method, path string, reqCtr uint64, f, body []byte, at time.Time, e string) frameVector {
		return frameVector{Direction: dir, Kind: kind, Method: method, Path: path, RequestCounter: reqCtr, NowMillis: at.UnixMilli(), Frame: f, Body: body, Error: e}
	}
	r1, c1, _ := cs.SealRequest("POST", "/v1/send", []byte(`{"hello":"server"}`))
	r2, c2, _ := cs.SealRequest("POST", "/v1/keys", []byte("second request"))
	resp2 := ss.SealResponse(c2, "POST", "/v1/keys", []byte("second response"))
	resp1 := ss.SealResponse(c1, "POST", "/v1/send", []byte(`{"status":"ok"}`))
	push := ss.SealPush([]byte("pushed delivery"))
	r3, _, _ := cs.SealRequest("POST", "/v1/send", []byte("late"))
	cv.Frames = []frameVector{
		// Out of order within the window is fine.
		frame("client-to-server", "request", "POST", "/v1/keys", 0, r2, []byte("second request"), at, ""),
		frame("client-to-server", "request", "POST", "/v1/send", 0, r1, []byte(`{"hello":"server"}`), at, ""),
		frame("client-to-server", "request", "POST", "/v1/send", 0, r1, nil, at, "replay"),
		frame("server-to-client", "response", "POST", "/v1/send", c1, resp1, []byte(`{"status":"ok"}`), at, ""),
		frame("server-to-client", "response", "POST", "/v1/keys", c1, resp2, nil, at, "decrypt"),
		frame("server-to-client", "response", "POST", "/v1/keys", c2, resp2, []byte("second response"), at, ""),
		// Frame kinds never mix: a push is not the response to request 0.
		frame("server-to-client", "response", pushMethod, pushPath, 0, push, nil, at, "decrypt"),
		frame("server-to-client", "push", "", "", 0, push, []byte("pushed delivery"), at, ""),
		frame("client-to-server", "request", "POST", "/v1/other", 0, r3, nil, at, "decrypt"),
		frame("client-to-server", "request", "POST", "/v1/send", 0, r3, nil, now.Add(time.Hour), "expired"),
		frame("client-to-server", "request", "POST", "/v1/send", 0, r3, []byte("late"), at, ""),
		frame("client-to-server", "request", "POST", "/v1/send", 0, flipTo(r3, 0, 2), nil, at, "version"),
		frame("client-to-server", "request", "POST", "/v1/send", 0, r3[:frameHeaderSize+15], nil, at, "malformed"),
		frame("client-to-server", "request", "POST", "/v1/send", 0, flip(r3, 5), nil, at, "mismatch"),
	}
	return cv
}
