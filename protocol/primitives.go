package protocol

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
)

// Labels: every signature, wrapped key and derived key of protocol v1 is
// bound to one purpose by one of these byte strings.
const (
	labelDeviceCert   = "qrtalk/v1/device-certificate"
	labelRevocation   = "qrtalk/v1/device-revocation"
	labelEnvelopeSig  = "qrtalk/v1/envelope-signature"
	labelEnvelopeAAD  = "qrtalk/v1/envelope"
	labelKeyWrap      = "qrtalk/v1/key-wrap"
	labelCommitment   = "qrtalk/v1/key-commitment"
	labelFingerprint  = "qrtalk/v1/identity-fingerprint"
	labelServerFP     = "qrtalk/v1/server-fingerprint"
	labelChannelSetup = "qrtalk/v1/channel-setup"
	labelChannelWrap  = "qrtalk/v1/channel-key-wrap"
	labelChannelKeys  = "qrtalk/v1/channel-keys"
	labelChannelFrame = "qrtalk/v1/channel-frame"
	labelSessionID    = "qrtalk/v1/session-id"

	// Provisioning (linking a device by QR code): the associated data of
	// both messages, the prefix of their HKDF info strings, and the
	// derivation of the response mailbox.
	labelProvisioning        = "qrtalk/v1/provisioning"
	labelProvisioningMailbox = "qrtalk/v1/provisioning-mailbox"
)

// pssOptions: the salt is as long as the hash, which is what WebCrypto's
// RSA-PSS with saltLength 32 produces and verifies.
var pssOptions = &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256}

// sign signs tbs (which starts with its label) with RSA-PSS-SHA256.
func sign(k *PrivateKey, tbs []byte) []byte {
	h := sha256.Sum256(tbs)
	sig, err := rsa.SignPSS(rand.Reader, k.k, crypto.SHA256, h[:], pssOptions)
	if err != nil {
		panic("protocol: RSA-PSS signing with a valid key failed: " + err.Error())
	}
	return sig
}

// verify checks an RSA-PSS-SHA256 signature of exactly KeySize bytes.
func verify(k *PublicKey, tbs, sig []byte) error {
	if len(sig) != KeySize {
		return fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadSignature, len(sig), KeySize)
	}
	h := sha256.Sum256(tbs)
	if err := rsa.VerifyPSS(k.k, crypto.SHA256, h[:], sig, pssOptions); err != nil {
		return ErrBadSignature
	}
	return nil
}

// wrapKey encrypts a symmetric key to k with RSA-OAEP-SHA256 and label.
func wrapKey(k *PublicKey, label, key []byte) []byte {
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.k, key, label)
	if err != nil {
		panic("protocol: RSA-OAEP encryption of a short key failed: " + err.Error())
	}
	return ct
}

// unwrapKey decrypts a key wrapped by wrapKey and checks its size.
func unwrapKey(k *PrivateKey, label, wrapped []byte, size int) ([]byte, error) {
	if len(wrapped) != KeySize {
		return nil, fmt.Errorf("%w: wrapped key is %d bytes, want %d", ErrMalformed, len(wrapped), KeySize)
	}
	key, err := rsa.DecryptOAEP(sha256.New(), nil, k.k, wrapped, label)
	if err != nil || len(key) != size {
		return nil, ErrDecrypt
	}
	return key, nil
}

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("protocol: AES key of wrong size: " + err.Error())
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("protocol: GCM: " + err.Error())
	}
	return aead
}

// labeled returns label || 0x00 || data..., the form in which labels are
// hashed, signed and used as associated data. The zero byte ends the label,
// so no label is a prefix of another's input.
func labeled(label string, parts ...[]byte) []byte {
	n := len(label) + 1
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, label...)
	b = append(b, 0)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
