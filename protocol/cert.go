package protocol

import (
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// Protocol version byte, and the type bytes of signed statements.
const (
	Version = 1

	typeDeviceCert = 1
	typeRevocation = 2

	maxCertSize = 2 + UserIDSize + DeviceIDSize + 8 + 2*(2+maxPublicKeyDER) + KeySize
)

// A DeviceCert is a user's identity key vouching for one device: it binds
// the user ID, the device ID, the device's encryption key (RSA-OAEP, for
// message keys) and its authentication key (RSA-PSS, for the secure
// channel), and the time it was made. Two keys, not one, because a key
// should serve one purpose, and because WebCrypto fixes each key to one
// algorithm.
type DeviceCert struct {
	User          UserID
	Device        DeviceID
	Created       time.Time // whole seconds
	EncryptionKey *PublicKey
	AuthKey       *PublicKey

	raw []byte // the whole encoding, signature included
	tbs []byte // the signed prefix of raw
	sig []byte
}

// CertifyDevice signs a certificate for a device with the user's identity key.
func CertifyDevice(identity *PrivateKey, user UserID, device DeviceID, enc, auth *PublicKey, created time.Time) (*DeviceCert, error) {
	if user.IsZero() || device.IsZero() {
		return nil, fmt.Errorf("%w: zero user or device ID", ErrMalformed)
	}
	if enc == nil || auth == nil {
		return nil, fmt.Errorf("%w: missing device key", ErrMalformed)
	}
	b := wire.NewBuilder(maxCertSize)
	b.U8(Version)
	b.U8(typeDeviceCert)
	b.Raw(user[:])
	b.Raw(device[:])
	b.I64(created.Unix())
	b.Var16(enc.der)
	b.Var16(auth.der)
	tbs := b.Bytes()
	sig := sign(identity, labeled(labelDeviceCert, tbs))
	b.Raw(sig)
	raw := b.Bytes()
	return &DeviceCert{
		User: user, Device: device, Created: time.Unix(created.Unix(), 0).UTC(),
		EncryptionKey: enc, AuthKey: auth,
		raw: raw, tbs: raw[:len(tbs)], sig: raw[len(tbs):],
	}, nil
}

// ParseDeviceCert decodes a certificate without verifying its signature:
// call Verify with the pinned identity key before trusting it.
func ParseDeviceCert(p []byte) (*DeviceCert, error) {
	if len(p) > maxCertSize {
		return nil, fmt.Errorf("%w: device certificate is %d bytes", ErrTooLarge, len(p))
	}
	r := wire.NewReader(p)
	if err := readHeader(r, typeDeviceCert, "device certificate"); err != nil {
		return nil, err
	}
	c := &DeviceCert{}
	r.Into(c.User[:])
	r.Into(c.Device[:])
	created := r.I64()
	encDER := r.Var16(maxPublicKeyDER)
	authDER := r.Var16(maxPublicKeyDER)
	tbsLen := len(p) - r.Len()
	c.sig = r.Fixed(KeySize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: device certificate: %v", ErrMalformed, err)
	}
	if c.User.IsZero() || c.Device.IsZero() {
		return nil, fmt.Errorf("%w: device certificate has a zero ID", ErrMalformed)
	}
	var err error
	if c.EncryptionKey, err = ParsePublicKey(encDER); err != nil {
		return nil, fmt.Errorf("device certificate encryption key: %w", err)
	}
	if c.AuthKey, err = ParsePublicKey(authDER); err != nil {
		return nil, fmt.Errorf("device certificate authentication key: %w", err)
	}
	c.Created = time.Unix(created, 0).UTC()
	c.raw = p
	c.tbs = p[:tbsLen]
	return c, nil
}

// readHeader reads and checks the version and type bytes of a statement.
func readHeader(r *wire.Reader, typ byte, what string) error {
	v, t := r.U8(), r.U8()
	if r.Err() != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, r.Err())
	}
	if v != Version {
		return fmt.Errorf("%w: %s version %d", ErrVersion, what, v)
	}
	if t != typ {
		return fmt.Errorf("%w: not a %s (type %d)", ErrMalformed, what, t)
	}
	return nil
}

// Verify checks the certificate's signature under the pinned identity key.
func (c *DeviceCert) Verify(identity *PublicKey) error {
	if err := verify(identity, labeled(labelDeviceCert, c.tbs), c.sig); err != nil {
		return fmt.Errorf("device certificate %s/%s: %w", c.User, c.Device, err)
	}
	return nil
}

// Bytes returns the certificate's encoding. The caller must not modify it.
func (c *DeviceCert) Bytes() []byte { return c.raw }

// A Revocation is a user's identity key declaring one of its devices
// revoked from a point in time on.
type Revocation struct {
	User    UserID
	Device  DeviceID
	Revoked time.Time // whole seconds

	raw, tbs, sig []byte
}

const revocationSize = 2 + UserIDSize + DeviceIDSize + 8 + KeySize

// RevokeDevice signs a revocation of a device with the identity key.
func RevokeDevice(identity *PrivateKey, user UserID, device DeviceID, at time.Time) (*Revocation, error) {
	if user.IsZero() || device.IsZero() {
		return nil, fmt.Errorf("%w: zero user or device ID", ErrMalformed)
	}
	b := wire.NewBuilder(revocationSize)
	b.U8(Version)
	b.U8(typeRevocation)
	b.Raw(user[:])
	b.Raw(device[:])
	b.I64(at.Unix())
	n := len(b.Bytes())
	b.Raw(sign(identity, labeled(labelRevocation, b.Bytes())))
	raw := b.Bytes()
	return &Revocation{User: user, Device: device, Revoked: time.Unix(at.Unix(), 0).UTC(), raw: raw, tbs: raw[:n], sig: raw[n:]}, nil
}

// ParseRevocation decodes a revocation without verifying it.
func ParseRevocation(p []byte) (*Revocation, error) {
	if len(p) > 0 && p[0] != Version {
		return nil, fmt.Errorf("%w: revocation version %d", ErrVersion, p[0])
	}
	if len(p) != revocationSize {
		return nil, fmt.Errorf("%w: revocation must be %d bytes, got %d", ErrMalformed, revocationSize, len(p))
	}
	r := wire.NewReader(p)
	if err := readHeader(r, typeRevocation, "revocation"); err != nil {
		return nil, err
	}
	v := &Revocation{raw: p}
	r.Into(v.User[:])
	r.Into(v.Device[:])
	v.Revoked = time.Unix(r.I64(), 0).UTC()
	n := len(p) - r.Len()
	v.sig = r.Fixed(KeySize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: revocation: %v", ErrMalformed, err)
	}
	v.tbs = p[:n]
	if v.User.IsZero() || v.Device.IsZero() {
		return nil, fmt.Errorf("%w: revocation has a zero ID", ErrMalformed)
	}
	return v, nil
}

// Verify checks the revocation's signature under the pinned identity key.
func (v *Revocation) Verify(identity *PublicKey) error {
	if err := verify(identity, labeled(labelRevocation, v.tbs), v.sig); err != nil {
		return fmt.Errorf("revocation of %s/%s: %w", v.User, v.Device, err)
	}
	return nil
}

// Bytes returns the revocation's encoding. The caller must not modify it.
func (v *Revocation) Bytes() []byte { return v.raw }

// VerifyDeviceList checks a user's device list as fetched from a server
// against the identity key the client pinned: every certificate and every
// revocation must verify and name user; the result holds the devices not
// revoked. One bad entry fails the whole list, because a server that adds
// one device it made up is lying about all of them.
func VerifyDeviceList(identity *PublicKey, user UserID, certs, revocations [][]byte) ([]*DeviceCert, error) {
	revoked := make(map[DeviceID]bool, len(revocations))
	for _, p := range revocations {
		v, err := ParseRevocation(p)
		if err != nil {
			return nil, err
		}
		if v.User != user {
			return nil, fmt.Errorf("%w: revocation for user %s in the list of %s", ErrMismatch, v.User, user)
		}
		if err := v.Verify(identity); err != nil {
			return nil, err
		}
		revoked[v.Device] = true
	}
	out := make([]*DeviceCert, 0, len(certs))
	seen := make(map[DeviceID]bool, len(certs))
	for _, p := range certs {
		c, err := ParseDeviceCert(p)
		if err != nil {
			return nil, err
		}
		if c.User != user {
			return nil, fmt.Errorf("%w: certificate for user %s in the list of %s", ErrMismatch, c.User, user)
		}
		if err := c.Verify(identity); err != nil {
			return nil, err
		}
		if seen[c.Device] {
			return nil, fmt.Errorf("%w: device %s listed twice", ErrMalformed, c.Device)
		}
		seen[c.Device] = true
		if !revoked[c.Device] {
			out = append(out, c)
		}
	}
	return out, nil
}
