package protocol

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
)

// Key parameters of protocol v1. They are fixed: there is no negotiation,
// and keys of any other size or exponent are refused when parsed.
const (
	KeyBits     = 3072
	KeyExponent = 65537
	// KeySize is the size in bytes of a v1 modulus, and so of every RSA
	// ciphertext and signature.
	KeySize = KeyBits / 8

	maxPublicKeyDER  = 1024
	maxPrivateKeyDER = 4096
)

// A PublicKey is a validated v1 RSA public key (3072 bits, e = 65537).
type PublicKey struct {
	k   *rsa.PublicKey
	der []byte // DER SubjectPublicKeyInfo, canonical
}

// A PrivateKey is a validated v1 RSA private key.
type PrivateKey struct {
	k   *rsa.PrivateKey
	pub *PublicKey
}

// GenerateKey returns a new v1 key pair from crypto/rand.
func GenerateKey() (*PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	return newPrivateKey(k)
}

func newPrivateKey(k *rsa.PrivateKey) (*PrivateKey, error) {
	pub, err := newPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{k: k, pub: pub}, nil
}

func newPublicKey(k *rsa.PublicKey) (*PublicKey, error) {
	if err := checkRSA(k); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &PublicKey{k: k, der: der}, nil
}

func checkRSA(k *rsa.PublicKey) error {
	if k.N == nil || k.N.BitLen() != KeyBits {
		bits := 0
		if k.N != nil {
			bits = k.N.BitLen()
		}
		return fmt.Errorf("%w: got %d bits", ErrKeySize, bits)
	}
	if k.E != KeyExponent {
		return fmt.Errorf("%w: got %d", ErrKeyExponent, k.E)
	}
	return nil
}

// ParsePublicKey parses a DER-encoded SubjectPublicKeyInfo holding a v1 RSA
// key. The encoding must be canonical: re-encoding the key gives the same
// bytes, so one key has exactly one encoding (and one fingerprint).
func ParsePublicKey(der []byte) (*PublicKey, error) {
	if len(der) > maxPublicKeyDER {
		return nil, fmt.Errorf("%w: public key is %d bytes, at most %d", ErrTooLarge, len(der), maxPublicKeyDER)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrMalformed, err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: public key is %T, not RSA", ErrMalformed, k)
	}
	pub, err := newPublicKey(rk)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pub.der, der) {
		return nil, fmt.Errorf("%w: public key encoding is not canonical DER", ErrMalformed)
	}
	return pub, nil
}

// ParsePublicKeyPEM parses a PEM block of type "PUBLIC KEY" holding a v1
// RSA key, with nothing but white space around it.
func ParsePublicKeyPEM(p []byte) (*PublicKey, error) {
	der, err := decodePEM(p, "PUBLIC KEY", maxPublicKeyDER)
	if err != nil {
		return nil, err
	}
	return ParsePublicKey(der)
}

// ParsePrivateKey parses a DER-encoded PKCS #8 private key holding a v1 RSA
// key. The key's consistency is checked as it is parsed.
func ParsePrivateKey(der []byte) (*PrivateKey, error) {
	if len(der) > maxPrivateKeyDER {
		return nil, fmt.Errorf("%w: private key is %d bytes, at most %d", ErrTooLarge, len(der), maxPrivateKeyDER)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: private key: %v", ErrMalformed, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: private key is %T, not RSA", ErrMalformed, k)
	}
	// crypto/rsa checks p·q ≡ 0 (mod n) only, which a crafted key with
	// p·q = 2n passes; docs/PROTOCOL.md section 5.2 asks for p·q = n.
	if len(rk.Primes) != 2 || new(big.Int).Mul(rk.Primes[0], rk.Primes[1]).Cmp(rk.N) != 0 {
		return nil, fmt.Errorf("%w: private key primes do not multiply to its modulus", ErrMalformed)
	}
	// One key, one encoding: refuse attributes and other variations that
	// re-encoding would drop. Every malformed case comes before the size
	// and the exponent are judged (docs/PROTOCOL.md section 5.2).
	if canonical, err := x509.MarshalPKCS8PrivateKey(rk); err != nil || !bytes.Equal(canonical, der) {
		return nil, fmt.Errorf("%w: private key encoding is not canonical PKCS #8", ErrMalformed)
	}
	return newPrivateKey(rk)
}

// ParsePrivateKeyPEM parses a PEM block of type "PRIVATE KEY" (PKCS #8).
func ParsePrivateKeyPEM(p []byte) (*PrivateKey, error) {
	der, err := decodePEM(p, "PRIVATE KEY", maxPrivateKeyDER)
	if err != nil {
		return nil, err
	}
	return ParsePrivateKey(der)
}

func decodePEM(p []byte, typ string, max int) ([]byte, error) {
	if len(p) > 2*max {
		return nil, fmt.Errorf("%w: PEM input is %d bytes", ErrTooLarge, len(p))
	}
	block, rest := pem.Decode(p)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrMalformed)
	}
	// pem.Decode skips anything before the block it returns, malformed
	// blocks included: refuse all of it.
	if consumed := p[:len(p)-len(rest)]; bytes.Count(consumed, []byte("-----BEGIN")) != 1 ||
		!bytes.HasPrefix(bytes.TrimSpace(consumed), []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: data before the PEM block", ErrMalformed)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%w: PEM block is %q, want %q", ErrMalformed, block.Type, typ)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: PEM block has headers", ErrMalformed)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: data after the PEM block", ErrMalformed)
	}
	return block.Bytes, nil
}

// Bytes returns the canonical DER SubjectPublicKeyInfo encoding of k. The
// caller must not modify it.
func (k *PublicKey) Bytes() []byte { return k.der }

// PEM returns k as a PEM block of type "PUBLIC KEY".
func (k *PublicKey) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.der})
}

// Equal reports whether k and other are the same key, in constant time.
func (k *PublicKey) Equal(other *PublicKey) bool {
	if k == nil || other == nil {
		return k == other
	}
	return subtle.ConstantTimeCompare(k.der, other.der) == 1
}

// Public returns the public half of k.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// Bytes returns k as DER PKCS #8. Store it only encrypted or in a file that
// only its owner can read.
func (k *PrivateKey) Bytes() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.k)
	if err != nil {
		// A key that parsed or was generated always marshals.
		panic("protocol: marshaling a valid RSA key failed: " + err.Error())
	}
	return der
}

// PEM returns k as a PEM block of type "PRIVATE KEY" (PKCS #8).
func (k *PrivateKey) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Bytes()})
}
