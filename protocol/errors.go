package protocol

import "errors"

// Errors returned by the protocol package. Each is wrapped with detail
// (errors.Is finds them); docs/PROTOCOL.md lists when each one occurs.
var (
	// ErrMalformed: the input is not a well-formed v1 encoding (wrong length,
	// trailing data, a field out of range, not canonical).
	ErrMalformed = errors.New("malformed input")
	// ErrVersion: the input names a protocol version other than 1.
	ErrVersion = errors.New("unsupported protocol version")
	// ErrTooLarge: the input exceeds a size limit of the protocol.
	ErrTooLarge = errors.New("input too large")
	// ErrKeySize: an RSA key is not 3072 bits.
	ErrKeySize = errors.New("RSA key must be 3072 bits")
	// ErrKeyExponent: an RSA key's public exponent is not 65537.
	ErrKeyExponent = errors.New("RSA public exponent must be 65537")
	// ErrBadSignature: a signature does not verify under the expected key.
	ErrBadSignature = errors.New("bad signature")
	// ErrNotRecipient: the opening user or device is not among the recipients.
	ErrNotRecipient = errors.New("not a recipient")
	// ErrExpired: a message's TTL has ended (or a session's lifetime has).
	ErrExpired = errors.New("expired")
	// ErrDecrypt: authenticated decryption failed: the data was tampered
	// with, moved from another message, or sealed for another key.
	ErrDecrypt = errors.New("decryption failed")
	// ErrReplay: a channel frame or setup was seen before, or is outside
	// the replay window.
	ErrReplay = errors.New("replayed or out-of-window message")
	// ErrClockSkew: a timestamp is further from the local clock than allowed.
	ErrClockSkew = errors.New("timestamp outside the allowed clock skew")
	// ErrMismatch: a key, fingerprint or identifier differs from the one
	// expected (for example a pinned fingerprint).
	ErrMismatch = errors.New("mismatch")
)
