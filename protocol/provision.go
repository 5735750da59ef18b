package protocol

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// Provisioning: linking a new device to a user by QR code.
//
// The existing device shows a LinkCode. The new device scans it, makes its
// two keys and sends them, encrypted under the code's secret, to the
// code's request mailbox on the server. The existing device takes them
// from there, certifies the new device with the identity key, and answers
// in the response mailbox with the identity key and that certificate,
// encrypted the same way. The server relays two opaque messages: it never
// holds the secret, so it can neither read the identity key nor slip in a
// request of its own (docs/PROTOCOL.md, "Linking a device").
const (
	// LinkMailboxSize is the size of a provisioning mailbox ID in bytes.
	LinkMailboxSize = 16
	// LinkSecretSize is the size of a link code's secret in bytes.
	LinkSecretSize = 32
	// LinkLifetime is how long a link code is good for: the server keeps
	// a provisioning mailbox at most this long, and clients give up after it.
	LinkLifetime = 10 * time.Minute

	typeLinkRequest  = 7
	typeLinkResponse = 8

	linkHeaderSize = 2 + nonceSize
	linkTagSize    = 16

	maxLinkRequestPlain  = DeviceIDSize + 2*(2+maxPublicKeyDER)
	maxLinkResponsePlain = UserIDSize + 2 + maxPrivateKeyDER + 2 + maxCertSize

	// MaxLinkMessageSize bounds a sealed provisioning message (the larger,
	// a response, is about 6.5 KB with a v1 key; this is the bound).
	MaxLinkMessageSize = linkHeaderSize + maxLinkResponsePlain + linkTagSize
	// MinLinkMessageSize is the size of a sealed provisioning message with
	// an empty plaintext, which no genuine message is.
	MinLinkMessageSize = linkHeaderSize + linkTagSize
)

// A LinkMailbox names one provisioning mailbox on a server. Its text form
// (in API paths) is 32 lowercase hexadecimal characters.
type LinkMailbox [LinkMailboxSize]byte

func (m LinkMailbox) String() string { return hex.EncodeToString(m[:]) }

// ParseLinkMailbox parses the text form of a mailbox ID.
func ParseLinkMailbox(s string) (LinkMailbox, error) {
	var m LinkMailbox
	if err := parseHexID(m[:], s, "provisioning mailbox"); err != nil {
		return m, err
	}
	return m, nil
}

// A LinkCode is what an existing device shows, as a QR code, to link a new
// device of the same user:
//
//	qrtalk:link?v=1&s=<server URL>&sfp=<server fingerprint>&u=<user ID>&m=<mailbox>&k=<secret>
//
// m is 16 random bytes and k 32 random bytes, each in unpadded base64url.
// The secret is what keeps the server out: whoever sees the code can take
// part in the link, so it is shown only to the person linking, and only
// for LinkLifetime.
type LinkCode struct {
	Server   string      // https URL of the user's server, canonical (CheckServerURL)
	ServerFP Fingerprint // fingerprint of the server's key
	User     UserID      // the user the new device joins
	Mailbox  LinkMailbox // the request mailbox
	Secret   [LinkSecretSize]byte
}

// NewLinkCode makes a link code with a fresh random mailbox and secret.
// The server URL is checked and put in canonical form, so that the code's
// URI always parses.
func NewLinkCode(server string, serverFP Fingerprint, user UserID) (LinkCode, error) {
	var c LinkCode
	s, err := CheckServerURL(server)
	if err != nil {
		return c, err
	}
	if user.IsZero() {
		return c, fmt.Errorf("%w: zero user ID", ErrMalformed)
	}
	c = LinkCode{Server: s, ServerFP: serverFP, User: user}
	rand.Read(c.Mailbox[:])
	rand.Read(c.Secret[:])
	return c, nil
}

// URI returns the code as a qrtalk: URI, to show as a QR code. It holds
// the secret: do not log it.
func (c LinkCode) URI() string {
	return "qrtalk:link?v=1&s=" + url.QueryEscape(c.Server) + "&sfp=" + c.ServerFP.String() +
		"&u=" + c.User.String() +
		"&m=" + base64.RawURLEncoding.EncodeToString(c.Mailbox[:]) +
		"&k=" + base64.RawURLEncoding.EncodeToString(c.Secret[:])
}

// String describes the code without its mailbox and secret, so that a
// code that ends up in a log or an error message gives nothing away.
func (c LinkCode) String() string {
	return fmt.Sprintf("link code for user %s on %s (mailbox and secret hidden)", c.User, c.Server)
}

// GoString hides the secret from %#v too.
func (c LinkCode) GoString() string { return "protocol.LinkCode{" + c.String() + "}" }

// ParseLinkCode parses a qrtalk:link URI. The mailbox and the secret must
// be canonical unpadded base64url of the right length, and not all zero.
func ParseLinkCode(s string) (LinkCode, error) {
	var c LinkCode
	q, err := parseURI(s, "link", "s", "sfp", "u", "m", "k")
	if err != nil {
		return c, err
	}
	if c.Server, err = CheckServerURL(q["s"]); err != nil {
		return c, err
	}
	if c.ServerFP, err = ParseFingerprint(q["sfp"]); err != nil {
		return c, err
	}
	if c.User, err = ParseUserID(q["u"]); err != nil {
		return c, err
	}
	if err := decodeB64Fixed(c.Mailbox[:], q["m"], "link mailbox"); err != nil {
		return LinkCode{}, err
	}
	if err := decodeB64Fixed(c.Secret[:], q["k"], "link secret"); err != nil {
		return LinkCode{}, err
	}
	return c, nil
}

// decodeB64Fixed decodes canonical unpadded base64url of exactly len(dst)
// bytes, not all zero.
func decodeB64Fixed(dst []byte, s, what string) error {
	enc := base64.RawURLEncoding.Strict()
	if len(s) != enc.EncodedLen(len(dst)) {
		return fmt.Errorf("%w: %s must be %d base64url characters", ErrMalformed, what, enc.EncodedLen(len(dst)))
	}
	b, err := enc.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("%w: %s is not canonical base64url", ErrMalformed, what)
	}
	zero := true
	for _, x := range b {
		zero = zero && x == 0
	}
	if zero {
		return fmt.Errorf("%w: %s is zero", ErrMalformed, what)
	}
	copy(dst, b)
	return nil
}

// RequestMailbox returns the mailbox the new device's request goes to: m.
func (c LinkCode) RequestMailbox() LinkMailbox { return c.Mailbox }

// ResponseMailbox returns the mailbox the existing device answers in: the
// first 16 bytes of SHA-256(labeled(provisioning-mailbox, m, k)). Only the
// holders of the secret know it before the answer arrives, so nobody else
// can fill it first.
func (c LinkCode) ResponseMailbox() LinkMailbox {
	h := sha256.Sum256(labeled(labelProvisioningMailbox, c.Mailbox[:], c.Secret[:]))
	var m LinkMailbox
	copy(m[:], h[:LinkMailboxSize])
	return m
}

// linkKey derives the key of one direction: HKDF-SHA256 with the secret as
// input keying material, the mailbox as salt, and "<label> request" or
// "<label> response" as info.
func (c LinkCode) linkKey(typ byte) []byte {
	info := labelProvisioning + " request"
	if typ == typeLinkResponse {
		info = labelProvisioning + " response"
	}
	k, err := hkdf.Key(sha256.New, c.Secret[:], c.Mailbox[:], info, 32)
	if err != nil {
		panic("protocol: HKDF of 32 bytes failed: " + err.Error())
	}
	return k
}

// linkAAD binds a message to its type and to the code's mailbox.
func (c LinkCode) linkAAD(typ byte) []byte {
	return labeled(labelProvisioning, []byte{typ}, c.Mailbox[:])
}

// sealLink encrypts plain as a provisioning message of type typ.
func (c LinkCode) sealLink(typ byte, plain []byte) []byte {
	key := c.linkKey(typ)
	defer clear(key)
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	out := make([]byte, 0, linkHeaderSize+len(plain)+linkTagSize)
	out = append(out, Version, typ)
	out = append(out, nonce...)
	return newGCM(key).Seal(out, nonce, plain, c.linkAAD(typ))
}

// CheckLinkMessage checks what a server can check of a provisioning
// message without the secret: version, type and size.
func CheckLinkMessage(msg []byte) error {
	_, err := linkMessageType(msg)
	return err
}

func linkMessageType(msg []byte) (byte, error) {
	if len(msg) > 0 && msg[0] != Version {
		return 0, fmt.Errorf("%w: provisioning message version %d", ErrVersion, msg[0])
	}
	if len(msg) > MaxLinkMessageSize {
		return 0, fmt.Errorf("%w: provisioning message is %d bytes, at most %d", ErrTooLarge, len(msg), MaxLinkMessageSize)
	}
	if len(msg) < MinLinkMessageSize {
		return 0, fmt.Errorf("%w: provisioning message is too short", ErrMalformed)
	}
	if t := msg[1]; t != typeLinkRequest && t != typeLinkResponse {
		return 0, fmt.Errorf("%w: not a provisioning message (type %d)", ErrMalformed, t)
	}
	return msg[1], nil
}

// openLink checks the header of a provisioning message of type typ and
// decrypts it.
func (c LinkCode) openLink(typ byte, msg []byte, what string) ([]byte, error) {
	t, err := linkMessageType(msg)
	if err != nil {
		return nil, err
	}
	if t != typ {
		return nil, fmt.Errorf("%w: not a %s (type %d)", ErrMalformed, what, t)
	}
	key := c.linkKey(typ)
	defer clear(key)
	plain, err := newGCM(key).Open(nil, msg[2:linkHeaderSize], msg[linkHeaderSize:], c.linkAAD(typ))
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not open with this link code", ErrDecrypt, what)
	}
	return plain, nil
}

// A LinkRequest is the new device asking to be linked: its ID and the two
// public keys its certificate is to bind.
type LinkRequest struct {
	Device        DeviceID
	EncryptionKey *PublicKey
	AuthKey       *PublicKey
}

func (r *LinkRequest) check() error {
	if r.Device.IsZero() {
		return fmt.Errorf("%w: link request has a zero device ID", ErrMalformed)
	}
	if r.EncryptionKey == nil || r.AuthKey == nil {
		return fmt.Errorf("%w: link request lacks a key", ErrMalformed)
	}
	// One key, one purpose: a device whose two keys are one is refused.
	if r.EncryptionKey.Equal(r.AuthKey) {
		return fmt.Errorf("%w: link request has the same key for encryption and authentication", ErrMalformed)
	}
	return nil
}

func (r *LinkRequest) marshal() []byte {
	b := wire.NewBuilder(maxLinkRequestPlain)
	b.Raw(r.Device[:])
	b.Var16(r.EncryptionKey.Bytes())
	b.Var16(r.AuthKey.Bytes())
	return b.Bytes()
}

func parseLinkRequest(p []byte) (*LinkRequest, error) {
	r := wire.NewReader(p)
	req := &LinkRequest{}
	r.Into(req.Device[:])
	encDER := r.Var16(maxPublicKeyDER)
	authDER := r.Var16(maxPublicKeyDER)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: link request: %v", ErrMalformed, err)
	}
	var err error
	if req.EncryptionKey, err = ParsePublicKey(encDER); err != nil {
		return nil, fmt.Errorf("link request encryption key: %w", err)
	}
	if req.AuthKey, err = ParsePublicKey(authDER); err != nil {
		return nil, fmt.Errorf("link request authentication key: %w", err)
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	return req, nil
}

// SealLinkRequest encrypts the new device's request under the code, for
// its request mailbox.
func SealLinkRequest(code LinkCode, req LinkRequest) ([]byte, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	return code.sealLink(typeLinkRequest, req.marshal()), nil
}

// OpenLinkRequest decrypts and checks a request taken from the code's
// request mailbox. A request that opens was made by someone who saw the
// code; the existing device then certifies exactly its keys.
func OpenLinkRequest(code LinkCode, msg []byte) (*LinkRequest, error) {
	plain, err := code.openLink(typeLinkRequest, msg, "link request")
	if err != nil {
		return nil, err
	}
	return parseLinkRequest(plain)
}

// A LinkResponse is the existing device's answer: the user ID, the
// identity key (private: every device of a user holds it) and the new
// device's certificate, signed by it.
type LinkResponse struct {
	User     UserID
	Identity *PrivateKey
	Cert     *DeviceCert
}

func (r *LinkResponse) marshal() []byte {
	b := wire.NewBuilder(maxLinkResponsePlain)
	b.Raw(r.User[:])
	b.Var16(r.Identity.Bytes())
	b.Var16(r.Cert.Bytes())
	return b.Bytes()
}

// check: the response names the code's user; its certificate names that
// user and the requesting device, binds exactly the request's two keys,
// and verifies under the identity key it carries.
func (r *LinkResponse) check(code LinkCode, req *LinkRequest) error {
	if r.Identity == nil || r.Cert == nil {
		return fmt.Errorf("%w: link response lacks the identity key or the certificate", ErrMalformed)
	}
	if r.User != code.User {
		return fmt.Errorf("%w: link response is for user %s, the code for %s", ErrMismatch, r.User, code.User)
	}
	c := r.Cert
	if c.User != r.User || c.Device != req.Device {
		return fmt.Errorf("%w: certificate is for %s/%s, not %s/%s", ErrMismatch, c.User, c.Device, r.User, req.Device)
	}
	if !c.EncryptionKey.Equal(req.EncryptionKey) || !c.AuthKey.Equal(req.AuthKey) {
		return fmt.Errorf("%w: certificate does not bind the keys of the request", ErrMismatch)
	}
	return c.Verify(r.Identity.Public())
}

func parseLinkResponse(code LinkCode, req *LinkRequest, p []byte) (*LinkResponse, error) {
	r := wire.NewReader(p)
	resp := &LinkResponse{}
	r.Into(resp.User[:])
	keyDER := r.Var16(maxPrivateKeyDER)
	certDER := r.Var16(maxCertSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: link response: %v", ErrMalformed, err)
	}
	var err error
	if resp.Identity, err = ParsePrivateKey(keyDER); err != nil {
		return nil, fmt.Errorf("link response identity key: %w", err)
	}
	// ParseDeviceCert keeps the slice it is given: give it its own copy,
	// since the plaintext (which holds the private key) is cleared.
	if resp.Cert, err = ParseDeviceCert(append([]byte(nil), certDER...)); err != nil {
		return nil, fmt.Errorf("link response: %w", err)
	}
	if err := resp.check(code, req); err != nil {
		return nil, err
	}
	return resp, nil
}

// SealLinkResponse encrypts the existing device's answer to req under the
// code, for its response mailbox. It makes the same checks as
// OpenLinkResponse first, so that a wrong answer is never sent.
func SealLinkResponse(code LinkCode, req *LinkRequest, resp LinkResponse) ([]byte, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no link request to answer", ErrMalformed)
	}
	if err := resp.check(code, req); err != nil {
		return nil, err
	}
	plain := resp.marshal()
	defer clear(plain)
	return code.sealLink(typeLinkResponse, plain), nil
}

// OpenLinkResponse decrypts and checks the answer to req taken from the
// code's response mailbox: it must name the code's user, carry a valid
// identity key, and a certificate signed by that key for req's device and
// exactly req's keys.
func OpenLinkResponse(code LinkCode, req *LinkRequest, msg []byte) (*LinkResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no link request to match the response to", ErrMalformed)
	}
	plain, err := code.openLink(typeLinkResponse, msg, "link response")
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return parseLinkResponse(code, req, plain)
}
