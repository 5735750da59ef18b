package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// linkFixture is one complete, genuine provisioning exchange, made from a
// seeded random stream so that it comes out the same in every process (the
// fuzz targets depend on that; see fixedRand).
type linkFixture struct {
	code      LinkCode
	identity  *PrivateKey
	req       *LinkRequest
	cert      *DeviceCert
	resp      LinkResponse
	sealedReq []byte
	sealedRsp []byte
}

func newLinkFixture(tb testing.TB) *linkFixture {
	tb.Helper()
	fx := &linkFixture{identity: testKey(tb, 0)}
	fixedRand(7, func() {
		var err error
		fx.code, err = NewLinkCode("https://chat.example:8443/qrtalk", ServerFingerprint(testKey(tb, 7).Public()), NewUserID())
		mustOK(tb, "link code", err)
		fx.req = &LinkRequest{Device: NewDeviceID(), EncryptionKey: testKey(tb, 1).Public(), AuthKey: testKey(tb, 2).Public()}
		fx.sealedReq, err = SealLinkRequest(fx.code, *fx.req)
		mustOK(tb, "link request", err)
		fx.cert, err = CertifyDevice(fx.identity, fx.code.User, fx.req.Device, fx.req.EncryptionKey, fx.req.AuthKey, testNow)
		mustOK(tb, "certificate", err)
		fx.resp = LinkResponse{User: fx.code.User, Identity: fx.identity, Cert: fx.cert}
		fx.sealedRsp, err = SealLinkResponse(fx.code, fx.req, fx.resp)
		mustOK(tb, "link response", err)
	})
	return fx
}

func wantErr(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got %v, want %v", what, err, sentinel)
	}
}

func TestLinkCodeURI(t *testing.T) {
	user := NewUserID()
	sfp := ServerFingerprint(testKey(t, 7).Public())
	c, err := NewLinkCode("https://Chat.Example:8443/qrtalk/", sfp, user)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "https://chat.example:8443/qrtalk" {
		t.Fatalf("server URL not canonical: %q", c.Server)
	}
	c2, err := NewLinkCode(c.Server, sfp, user)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Mailbox == c.Mailbox || c2.Secret == c.Secret {
		t.Fatal("two codes share a mailbox or a secret")
	}
	uri := c.URI()
	got, err := ParseLinkCode(uri)
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Fatalf("round trip: %s, want %s", got, c)
	}
	if !strings.HasPrefix(uri, "qrtalk:link?v=1&s=https%3A%2F%2Fchat.example%3A8443%2Fqrtalk&sfp=") {
		t.Fatalf("URI %q", uri)
	}
	// The secret stays out of the forms that end up in logs.
	k := base64.RawURLEncoding.EncodeToString(c.Secret[:])
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, k) || strings.Contains(s, hex.EncodeToString(c.Secret[:])) {
			t.Fatalf("secret in %q", s)
		}
	}

	if _, err := NewLinkCode("http://chat.example", sfp, user); !errors.Is(err, ErrMalformed) {
		t.Fatalf("http server URL: %v", err)
	}
	if _, err := NewLinkCode("https://chat.example", sfp, UserID{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero user: %v", err)
	}

	m := base64.RawURLEncoding.EncodeToString(c.Mailbox[:])
	bad := []struct {
		name, uri string
		want      error
	}{
		{"invite", strings.Replace(uri, "link", "invite", 1), ErrMalformed},
		{"version 2", strings.Replace(uri, "v=1", "v=2", 1), ErrVersion},
		{"no secret", strings.Replace(uri, "&k="+k, "", 1), ErrMalformed},
		{"two secrets", uri + "&k=" + k, ErrMalformed},
		{"unknown parameter", uri + "&x=1", ErrMalformed},
		{"short mailbox", strings.Replace(uri, "m="+m, "m="+m[:21], 1), ErrMalformed},
		{"padded mailbox", strings.Replace(uri, "m="+m, "m="+m+"==", 1), ErrMalformed},
		{"std base64 secret", strings.Replace(uri, "k="+k, "k="+base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), 1), ErrMalformed},
		{"non-canonical secret", strings.Replace(uri, "k="+k, "k="+k[:42]+"B", 1), ErrMalformed}, // "B" sets one of the 2 unused low bits
		{"zero secret", strings.Replace(uri, "k="+k, "k="+strings.Repeat("A", 43), 1), ErrMalformed},
		{"zero mailbox", strings.Replace(uri, "m="+m, "m="+strings.Repeat("A", 22), 1), ErrMalformed},
		{"http", strings.Replace(uri, "https", "http", 1), ErrMalformed},
		{"too long", uri + "&pad=" + strings.Repeat("x", MaxURISize), ErrTooLarge},
	}
	for _, b := range bad {
		if _, err := ParseLinkCode(b.uri); !errors.Is(err, b.want) {
			t.Errorf("%s: %q gives %v, want %v", b.name, b.uri, err, b.want)
		}
	}
}

// TestLinkKnownAnswers checks the mailbox and key derivations and the
// message layout against values computed with Python (hashlib, hmac and
// pyca/cryptography's AESGCM), not with this package.
func TestLinkKnownAnswers(t *testing.T) {
	var c LinkCode
	for i := range c.Mailbox {
		c.Mailbox[i] = byte(1 + i)
	}
	for i := range c.Secret {
		c.Secret[i] = byte(32 + i)
	}
	check := func(what string, got []byte, want string) {
		t.Helper()
		if hex.EncodeToString(got) != want {
			t.Errorf("%s = %x, want %s", what, got, want)
		}
	}
	rm := c.ResponseMailbox()
	check("response mailbox", rm[:], "fbd7e293be63249fadcf0448ff599499")
	rq := c.RequestMailbox()
	check("request mailbox", rq[:], "0102030405060708090a0b0c0d0e0f10")
	check("request key", c.linkKey(typeLinkRequest), "b09a399ffb70163b48ec74ec3cc02968ea6ccdeb691a31185e33a0411393f613")
	check("response key", c.linkKey(typeLinkResponse), "1a9693fe57152be65a47ed00807703a2598b6ceb88b21ff9241aa9ac4f451115")

	// A request sealed by hand with a fixed nonce: 0x01 0x07, the nonce,
	// then AES-256-GCM under the request key with associated data
	// "qrtalk/v1/provisioning" 0x00 0x07 m.
	var dev DeviceID
	for i := range dev {
		dev[i] = byte(0x11 + i)
	}
	plain := (&LinkRequest{Device: dev, EncryptionKey: testKey(t, 1).Public(), AuthKey: testKey(t, 2).Public()}).marshal()
	nonce := make([]byte, nonceSize)
	for i := range nonce {
		nonce[i] = byte(0xa0 + i)
	}
	aad := append([]byte("qrtalk/v1/provisioning\x00\x07"), c.Mailbox[:]...)
	msg := newGCM(c.linkKey(typeLinkRequest)).Seal(append([]byte{1, 7}, nonce...), nonce, plain, aad)
	sum := sha256.Sum256(msg)
	if len(msg) != 886 {
		t.Errorf("sealed request is %d bytes, want 886", len(msg))
	}
	check("SHA-256 of the sealed request", sum[:], "1d3d7725eff0b88790c956dcede71d28483501cbb286b56f143ff4a34e3dae8f")
	req, err := OpenLinkRequest(c, msg)
	if err != nil {
		t.Fatal(err)
	}
	if req.Device != dev || !req.EncryptionKey.Equal(testKey(t, 1).Public()) || !req.AuthKey.Equal(testKey(t, 2).Public()) {
		t.Fatal("known-answer request opens to other values")
	}
}

func TestLinkRoundTrip(t *testing.T) {
	fx := newLinkFixture(t)
	if fx.code.RequestMailbox() == fx.code.ResponseMailbox() {
		t.Fatal("request and response mailboxes are the same")
	}
	req, err := OpenLinkRequest(fx.code, fx.sealedReq)
	if err != nil {
		t.Fatal(err)
	}
	if req.Device != fx.req.Device || !req.EncryptionKey.Equal(fx.req.EncryptionKey) || !req.AuthKey.Equal(fx.req.AuthKey) {
		t.Fatalf("request opens to %+v, want %+v", req, fx.req)
	}
	resp, err := OpenLinkResponse(fx.code, fx.req, fx.sealedRsp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.User != fx.code.User || !bytes.Equal(resp.Identity.Bytes(), fx.identity.Bytes()) || !bytes.Equal(resp.Cert.Bytes(), fx.cert.Bytes()) {
		t.Fatal("response opens to other values")
	}
	if err := resp.Cert.Verify(fx.identity.Public()); err != nil {
		t.Fatal(err)
	}
	// Each seal has its own nonce.
	again, err := SealLinkRequest(fx.code, *fx.req)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again, fx.sealedReq) {
		t.Fatal("two seals of one request are identical")
	}
	for _, m := range [][]byte{fx.sealedReq, fx.sealedRsp} {
		if err := CheckLinkMessage(m); err != nil {
			t.Fatalf("CheckLinkMessage refuses a genuine message: %v", err)
		}
	}
	if len(fx.sealedRsp) > MaxLinkMessageSize || MaxLinkMessageSize > 16<<10 {
		t.Fatalf("response of %d bytes, bound %d: the server takes at most 16 KiB", len(fx.sealedRsp), MaxLinkMessageSize)
	}
}

func TestLinkTampering(t *testing.T) {
	fx := newLinkFixture(t)
	for _, tc := range []struct {
		name string
		msg  []byte
		open func([]byte) error
	}{
		{"request", fx.sealedReq, func(m []byte) error { _, err := OpenLinkRequest(fx.code, m); return err }},
		{"response", fx.sealedRsp, func(m []byte) error { _, err := OpenLinkResponse(fx.code, fx.req, m); return err }},
	} {
		g := tc.msg
		wantErr(t, tc.name+" version", tc.open(flipTo(g, 0, 2)), ErrVersion)
		wantErr(t, tc.name+" type", tc.open(flipTo(g, 1, 3)), ErrMalformed)
		for _, i := range []int{2, linkHeaderSize - 1, linkHeaderSize, len(g) / 2, len(g) - linkTagSize, len(g) - 1} {
			wantErr(t, fmt.Sprintf("%s byte %d", tc.name, i), tc.open(flip(g, i)), ErrDecrypt)
		}
		wantErr(t, tc.name+" truncated", tc.open(g[:len(g)-1]), ErrDecrypt)
		wantErr(t, tc.name+" trailing byte", tc.open(append(bytes.Clone(g), 0)), ErrDecrypt)
		wantErr(t, tc.name+" header only", tc.open(g[:MinLinkMessageSize-1]), ErrMalformed)
		wantErr(t, tc.name+" empty", tc.open(nil), ErrMalformed)
		wantErr(t, tc.name+" too large", tc.open(append(bytes.Clone(g), make([]byte, MaxLinkMessageSize)...)), ErrTooLarge)
	}
	// One message cannot pass for the other: the type byte is checked,
	// and it also selects the key and is part of the associated data.
	_, err := OpenLinkResponse(fx.code, fx.req, fx.sealedReq)
	wantErr(t, "request opened as a response", err, ErrMalformed)
	_, err = OpenLinkRequest(fx.code, fx.sealedRsp)
	wantErr(t, "response opened as a request", err, ErrMalformed)
	_, err = OpenLinkRequest(fx.code, flipTo(fx.sealedRsp, 1, typeLinkRequest))
	wantErr(t, "response relabeled as a request", err, ErrDecrypt)
	_, err = OpenLinkResponse(fx.code, fx.req, flipTo(fx.sealedReq, 1, typeLinkResponse))
	wantErr(t, "request relabeled as a response", err, ErrDecrypt)
}

func TestLinkWrongCode(t *testing.T) {
	fx := newLinkFixture(t)
	otherSecret := fx.code
	otherSecret.Secret[0] ^= 1
	otherMailbox := fx.code
	otherMailbox.Mailbox[15] ^= 1
	for name, c := range map[string]LinkCode{"wrong secret": otherSecret, "wrong mailbox": otherMailbox} {
		_, err := OpenLinkRequest(c, fx.sealedReq)
		wantErr(t, name+" (request)", err, ErrDecrypt)
		_, err = OpenLinkResponse(c, fx.req, fx.sealedRsp)
		wantErr(t, name+" (response)", err, ErrDecrypt)
		if c.ResponseMailbox() == fx.code.ResponseMailbox() {
			t.Fatalf("%s: same response mailbox", name)
		}
	}
	// The server URL, its fingerprint and the user are not part of the
	// keys (the user is checked in the response instead).
	otherUser := fx.code
	otherUser.User = NewUserID()
	if _, err := OpenLinkRequest(otherUser, fx.sealedReq); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLinkResponse(otherUser, fx.req, fx.sealedRsp)
	wantErr(t, "response for another user than the code's", err, ErrMismatch)
}

// TestLinkResponseChecks: a response that opens but does not answer the
// request exactly is refused, by SealLinkResponse and by OpenLinkResponse.
func TestLinkResponseChecks(t *testing.T) {
	fx := newLinkFixture(t)
	certify := func(identity *PrivateKey, user UserID, dev DeviceID, enc, auth *PublicKey) *DeviceCert {
		c, err := CertifyDevice(identity, user, dev, enc, auth, testNow)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	k1, k2, k3 := testKey(t, 1).Public(), testKey(t, 2).Public(), testKey(t, 3).Public()
	user, dev := fx.code.User, fx.req.Device
	cases := []struct {
		name string
		resp LinkResponse
		want error
	}{
		{"other encryption key", LinkResponse{user, fx.identity, certify(fx.identity, user, dev, k3, k2)}, ErrMismatch},
		{"other authentication key", LinkResponse{user, fx.identity, certify(fx.identity, user, dev, k1, k3)}, ErrMismatch},
		{"keys swapped", LinkResponse{user, fx.identity, certify(fx.identity, user, dev, k2, k1)}, ErrMismatch},
		{"other device", LinkResponse{user, fx.identity, certify(fx.identity, user, NewDeviceID(), k1, k2)}, ErrMismatch},
		{"certificate for another user", LinkResponse{user, fx.identity, certify(fx.identity, NewUserID(), dev, k1, k2)}, ErrMismatch},
		{"signed by another key", LinkResponse{user, testKey(t, 4), fx.cert}, ErrBadSignature},
		{"no certificate", LinkResponse{user, fx.identity, nil}, ErrMalformed},
		{"no identity key", LinkResponse{user, nil, fx.cert}, ErrMalformed},
	}
	for _, tc := range cases {
		if _, err := SealLinkResponse(fx.code, fx.req, tc.resp); !errors.Is(err, tc.want) {
			t.Errorf("SealLinkResponse, %s: %v, want %v", tc.name, err, tc.want)
		}
		if tc.resp.Cert == nil || tc.resp.Identity == nil {
			continue
		}
		// Sealed without the checks, as a faulty or hostile device would.
		msg := fx.code.sealLink(typeLinkResponse, tc.resp.marshal())
		if _, err := OpenLinkResponse(fx.code, fx.req, msg); !errors.Is(err, tc.want) {
			t.Errorf("OpenLinkResponse, %s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := SealLinkResponse(fx.code, nil, fx.resp); !errors.Is(err, ErrMalformed) {
		t.Errorf("no request: %v", err)
	}
	if _, err := OpenLinkResponse(fx.code, nil, fx.sealedRsp); !errors.Is(err, ErrMalformed) {
		t.Errorf("no request: %v", err)
	}
}

// TestLinkStrictPlaintext: inside the encryption, the layouts are parsed as
// strictly as anything else.
func TestLinkStrictPlaintext(t *testing.T) {
	fx := newLinkFixture(t)
	reqPlain := fx.req.marshal()
	rspPlain := fx.resp.marshal()
	openReq := func(p []byte) error {
		_, err := OpenLinkRequest(fx.code, fx.code.sealLink(typeLinkRequest, p))
		return err
	}
	openRsp := func(p []byte) error {
		_, err := OpenLinkResponse(fx.code, fx.req, fx.code.sealLink(typeLinkResponse, p))
		return err
	}
	if err := openReq(reqPlain); err != nil {
		t.Fatal(err)
	}
	if err := openRsp(rspPlain); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "request, trailing byte", openReq(append(bytes.Clone(reqPlain), 0)), ErrMalformed)
	wantErr(t, "request, truncated", openReq(reqPlain[:len(reqPlain)-1]), ErrMalformed)
	wantErr(t, "request, key length out of range", openReq(overwrite(reqPlain, DeviceIDSize, 0xff, 0xff)), ErrMalformed)
	wantErr(t, "request, empty", openReq(nil), ErrMalformed)
	wantErr(t, "response, trailing byte", openRsp(append(bytes.Clone(rspPlain), 0)), ErrMalformed)
	wantErr(t, "response, truncated", openRsp(rspPlain[:len(rspPlain)-1]), ErrMalformed)
	wantErr(t, "response, key length out of range", openRsp(overwrite(rspPlain, UserIDSize, 0xff, 0xff)), ErrMalformed)

	b := wire.NewBuilder(0)
	b.Raw(fx.req.Device[:])
	b.Var16(testKey(t, 1).Bytes()) // a private key where a public one goes
	b.Var16(fx.req.AuthKey.Bytes())
	if err := openReq(b.Bytes()); err == nil {
		t.Fatal("request with a private key for a public one opens")
	}
	same := &LinkRequest{Device: fx.req.Device, EncryptionKey: fx.req.AuthKey, AuthKey: fx.req.AuthKey}
	wantErr(t, "request with one key for both purposes", openReq(same.marshal()), ErrMalformed)
	if _, err := SealLinkRequest(fx.code, *same); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SealLinkRequest with one key for both: %v", err)
	}
	zero := &LinkRequest{EncryptionKey: fx.req.EncryptionKey, AuthKey: fx.req.AuthKey}
	wantErr(t, "request with a zero device ID", openReq(zero.marshal()), ErrMalformed)
	if _, err := SealLinkRequest(fx.code, LinkRequest{Device: fx.req.Device}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SealLinkRequest without keys: %v", err)
	}

	b = wire.NewBuilder(0)
	b.Raw(fx.code.User[:])
	b.Var16(fx.identity.Public().Bytes()) // the public half only
	b.Var16(fx.cert.Bytes())
	if err := openRsp(b.Bytes()); err == nil {
		t.Fatal("response with a public identity key opens")
	}
}

func TestCheckLinkMessage(t *testing.T) {
	fx := newLinkFixture(t)
	wantErr(t, "version", CheckLinkMessage(flipTo(fx.sealedReq, 0, 0)), ErrVersion)
	wantErr(t, "type", CheckLinkMessage(flipTo(fx.sealedReq, 1, typeEnvelope)), ErrMalformed)
	wantErr(t, "short", CheckLinkMessage(fx.sealedReq[:MinLinkMessageSize-1]), ErrMalformed)
	wantErr(t, "large", CheckLinkMessage(make([]byte, MaxLinkMessageSize+1)), ErrVersion) // version first
	big := append([]byte{Version, typeLinkResponse}, make([]byte, MaxLinkMessageSize)...)
	wantErr(t, "large", CheckLinkMessage(big), ErrTooLarge)
	if err := CheckLinkMessage(big[:MaxLinkMessageSize]); err != nil {
		t.Fatalf("a message of the largest size: %v", err)
	}
}

func TestParseLinkMailbox(t *testing.T) {
	fx := newLinkFixture(t)
	m := fx.code.ResponseMailbox()
	got, err := ParseLinkMailbox(m.String())
	if err != nil || got != m {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, s := range []string{"", strings.ToUpper(m.String()), m.String()[:31], m.String() + "0", strings.Repeat("0", 32), strings.Repeat("g", 32)} {
		if _, err := ParseLinkMailbox(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseLinkMailbox(%q): %v", s, err)
		}
	}
}

// TestLinkFixtureIsDeterministic: the fuzz targets below compare what a
// worker opens with the seeds the coordinator made.
func TestLinkFixtureIsDeterministic(t *testing.T) {
	a, b := newLinkFixture(t), newLinkFixture(t)
	if a.code != b.code || !bytes.Equal(a.sealedReq, b.sealedReq) || !bytes.Equal(a.sealedRsp, b.sealedRsp) {
		t.Fatal("the link fixture differs between two runs")
	}
}

// ---- fuzzing ----
//
// Each target takes one byte string and uses it twice: as a sealed message
// (nothing but the genuine seed may open: the AEAD stands), and as the
// plaintext of a message sealed with the right key, so that the parser
// behind the AEAD is fuzzed too (whatever parses must re-encode to exactly
// the input, and must pass the same checks as a genuine message).
//
// A response holds a private key and a certificate, so each execution of
// FuzzOpenLinkResponse costs about a millisecond, and the engine's
// minimization of each new ~6 KB input takes most of a minute; bound it:
//
//	go test -run '^$' -fuzz '^FuzzOpenLinkResponse$' -fuzztime 60s -fuzzminimizetime 1s ./protocol/

func FuzzOpenLinkRequest(f *testing.F) {
	fx := newLinkFixture(f)
	plain := fx.req.marshal()
	g := fx.sealedReq
	addSeeds(f, byteSeeds(g, plain,
		flip(g, 0), flip(g, 1), flip(g, len(g)-1), g[:len(g)-1], append(bytes.Clone(g), 0),
		append(bytes.Clone(plain), 0), plain[:len(plain)-1], overwrite(plain, DeviceIDSize, 0xff),
		fx.sealedRsp, nil)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		if req, err := OpenLinkRequest(fx.code, p); err == nil {
			if !bytes.Equal(p, g) {
				t.Fatalf("a request that was never sealed opens: %x", p)
			}
			if req.Device != fx.req.Device {
				t.Fatal("genuine request opens to another device")
			}
		} else if bytes.Equal(p, g) {
			t.Fatalf("genuine request refused: %v", err)
		}
		if len(p) > MaxLinkMessageSize {
			return
		}
		req, err := OpenLinkRequest(fx.code, fx.code.sealLink(typeLinkRequest, p))
		if err != nil {
			if bytes.Equal(p, plain) {
				t.Fatalf("genuine request plaintext refused: %v", err)
			}
			return
		}
		if out := req.marshal(); !bytes.Equal(out, p) {
			t.Fatalf("accepted a non-canonical request: %s", diff(p, out))
		}
		if err := req.check(); err != nil {
			t.Fatalf("accepted a request that fails its checks: %v", err)
		}
	})
}

func FuzzOpenLinkResponse(f *testing.F) {
	fx := newLinkFixture(f)
	plain := fx.resp.marshal()
	g := fx.sealedRsp
	other, err := CertifyDevice(fx.identity, fx.code.User, fx.req.Device, fx.req.AuthKey, fx.req.EncryptionKey, testNow)
	mustOK(f, "certificate with swapped keys", err)
	swapped := (&LinkResponse{fx.code.User, fx.identity, other}).marshal()
	addSeeds(f, byteSeeds(g, plain, swapped,
		flip(g, 0), flip(g, 1), flip(g, len(g)-1), g[:len(g)-1], append(bytes.Clone(g), 0),
		append(bytes.Clone(plain), 0), plain[:len(plain)-1], flip(plain, 3), flip(plain, len(plain)-1),
		overwrite(plain, UserIDSize, 0xff), fx.sealedReq, nil)...)

	f.Fuzz(func(t *testing.T, p []byte) {
		if _, err := OpenLinkResponse(fx.code, fx.req, p); err == nil {
			if !bytes.Equal(p, g) {
				t.Fatalf("a response that was never sealed opens: %x", p)
			}
		} else if bytes.Equal(p, g) {
			t.Fatalf("genuine response refused: %v", err)
		}
		if len(p) > MaxLinkMessageSize {
			return
		}
		resp, err := OpenLinkResponse(fx.code, fx.req, fx.code.sealLink(typeLinkResponse, p))
		if err != nil {
			if bytes.Equal(p, plain) {
				t.Fatalf("genuine response plaintext refused: %v", err)
			}
			return
		}
		if out := resp.marshal(); !bytes.Equal(out, p) {
			t.Fatalf("accepted a non-canonical response: %s", diff(p, out))
		}
		// Only a certificate the identity key signed passes, so a response
		// that opens carries the genuine one.
		if !bytes.Equal(resp.Cert.Bytes(), fx.cert.Bytes()) {
			t.Fatalf("a certificate that was never signed passes: %x", resp.Cert.Bytes())
		}
		if err := resp.check(fx.code, fx.req); err != nil {
			t.Fatalf("accepted a response that fails its checks: %v", err)
		}
	})
}

func FuzzParseLinkCode(f *testing.F) {
	fx := newLinkFixture(f)
	uri := fx.code.URI()
	k := base64.RawURLEncoding.EncodeToString(fx.code.Secret[:])
	addSeeds(f, stringSeeds(uri, " "+uri+"\n",
		strings.Replace(uri, "v=1", "v=2", 1), strings.Replace(uri, "link", "contact", 1),
		strings.Replace(uri, "k="+k, "k="+k[:42]+"_", 1), uri+"&k="+k, uri+"&x=", "qrtalk:link?", "")...)

	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseLinkCode(s)
		if err != nil {
			return
		}
		if got, err := CheckServerURL(c.Server); err != nil || got != c.Server {
			t.Fatalf("server URL %q of %q is not stable: %q, %v", c.Server, s, got, err)
		}
		if c.User.IsZero() || c.Mailbox == (LinkMailbox{}) || c.Secret == ([LinkSecretSize]byte{}) {
			t.Fatalf("zero field accepted in %q", s)
		}
		c2, err := ParseLinkCode(c.URI())
		if err != nil || c2 != c {
			t.Fatalf("link code %q: URI() = %q parses to %v, %v; want %v", s, c.URI(), c2, err, c)
		}
	})
}
