package protocol

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
)

// FingerprintSize is the size of a Fingerprint in bytes.
const FingerprintSize = sha256.Size

// A Fingerprint identifies a public key: SHA-256 over a label and the key's
// canonical DER SubjectPublicKeyInfo. A user's fingerprint is that of the
// identity key, so it does not change when devices come and go.
type Fingerprint [FingerprintSize]byte

// IdentityFingerprint returns the fingerprint of a user's identity key.
func IdentityFingerprint(identity *PublicKey) Fingerprint {
	return sha256.Sum256(labeled(labelFingerprint, identity.der))
}

// ServerFingerprint returns the fingerprint of a server's key. Its label
// differs from that of users, so a user key never passes for a server key.
func ServerFingerprint(server *PublicKey) Fingerprint {
	return sha256.Sum256(labeled(labelServerFP, server.der))
}

// String returns the fingerprint in unpadded base64url (43 characters), the
// form used in qrtalk: URIs.
func (f Fingerprint) String() string { return base64.RawURLEncoding.EncodeToString(f[:]) }

// Numeric returns the form that people read aloud and compare: 40 digits in
// 8 groups of 5. Group i is the big-endian uint32 of bytes 4i..4i+3 modulo
// 100000, so all 32 bytes count (about 133 bits survive the reduction).
func (f Fingerprint) Numeric() string {
	var sb strings.Builder
	for i := 0; i < 8; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%05d", binary.BigEndian.Uint32(f[4*i:])%100000)
	}
	return sb.String()
}

// Equal reports whether f and g are equal, in constant time.
func (f Fingerprint) Equal(g Fingerprint) bool { return subtle.ConstantTimeCompare(f[:], g[:]) == 1 }

// MatchesNumeric reports whether typed, a numeric fingerprint as a person
// typed it (any spacing or dashes between digits), is f's numeric form. The
// comparison is constant-time in the digits.
func (f Fingerprint) MatchesNumeric(typed string) bool {
	digits := make([]byte, 0, 40)
	for i := 0; i < len(typed); i++ {
		c := typed[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == ' ' || c == '-' || c == '\t' || c == '\n':
		default:
			return false
		}
	}
	want := strings.ReplaceAll(f.Numeric(), " ", "")
	return subtle.ConstantTimeCompare(digits, []byte(want)) == 1
}

// ParseFingerprint parses the base64url form returned by String.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	if len(s) != base64.RawURLEncoding.EncodedLen(FingerprintSize) {
		return f, fmt.Errorf("%w: fingerprint must be %d base64url characters", ErrMalformed, base64.RawURLEncoding.EncodedLen(FingerprintSize))
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != FingerprintSize {
		return f, fmt.Errorf("%w: fingerprint is not canonical base64url", ErrMalformed)
	}
	copy(f[:], b)
	return f, nil
}

// MarshalText implements encoding.TextMarshaler.
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	v, err := ParseFingerprint(string(b))
	*f = v
	return err
}
