package protocol

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

// Sizes of the identifiers of protocol v1, in bytes.
const (
	UserIDSize    = 16
	DeviceIDSize  = 8
	MessageIDSize = 16
)

// A UserID is a user's anonymous, random identifier (128 bits). Its text
// form is 26 lowercase base32 characters (RFC 4648 alphabet, no padding).
type UserID [UserIDSize]byte

// A DeviceID names one device of a user (64 random bits). Its text form is
// 16 lowercase hexadecimal characters.
type DeviceID [DeviceIDSize]byte

// A MessageID names one message (128 random bits). Its text form is 32
// lowercase hexadecimal characters.
type MessageID [MessageIDSize]byte

var userIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewUserID returns a fresh random user ID.
func NewUserID() (id UserID) { rand.Read(id[:]); return id }

// NewDeviceID returns a fresh random device ID.
func NewDeviceID() (id DeviceID) { rand.Read(id[:]); return id }

// NewMessageID returns a fresh random message ID.
func NewMessageID() (id MessageID) { rand.Read(id[:]); return id }

func (id UserID) String() string { return userIDEncoding.EncodeToString(id[:]) }

// IsZero reports whether id is the all-zero ID, which is never valid.
func (id UserID) IsZero() bool { return id == UserID{} }

func (id DeviceID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the all-zero ID, which is never valid.
func (id DeviceID) IsZero() bool { return id == DeviceID{} }

func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the all-zero ID, which is never valid.
func (id MessageID) IsZero() bool { return id == MessageID{} }

// MarshalText implements encoding.TextMarshaler.
func (id UserID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *UserID) UnmarshalText(b []byte) error {
	v, err := ParseUserID(string(b))
	*id = v
	return err
}

// MarshalText implements encoding.TextMarshaler.
func (id DeviceID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *DeviceID) UnmarshalText(b []byte) error {
	v, err := ParseDeviceID(string(b))
	*id = v
	return err
}

// MarshalText implements encoding.TextMarshaler.
func (id MessageID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *MessageID) UnmarshalText(b []byte) error {
	v, err := ParseMessageID(string(b))
	*id = v
	return err
}

// ParseUserID parses the text form of a user ID. Upper case and the
// separators '-' and ' ' that people add when they copy an ID are accepted;
// anything else is an error.
func ParseUserID(s string) (UserID, error) {
	var id UserID
	s = asciiLower(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(s) != 26 {
		return id, fmt.Errorf("%w: user ID must be 26 base32 characters, got %d", ErrMalformed, len(s))
	}
	b, err := userIDEncoding.DecodeString(s)
	if err != nil || len(b) != UserIDSize {
		return id, fmt.Errorf("%w: user ID is not valid base32", ErrMalformed)
	}
	copy(id[:], b)
	if id.String() != s { // the last character carries 2 unused bits, which must be zero
		return UserID{}, fmt.Errorf("%w: user ID is not canonical base32", ErrMalformed)
	}
	if id.IsZero() {
		return id, fmt.Errorf("%w: user ID is zero", ErrMalformed)
	}
	return id, nil
}

// ParseDeviceID parses the text form of a device ID.
func ParseDeviceID(s string) (DeviceID, error) {
	var id DeviceID
	if err := parseHexID(id[:], s, "device ID"); err != nil {
		return id, err
	}
	return id, nil
}

// ParseMessageID parses the text form of a message ID.
func ParseMessageID(s string) (MessageID, error) {
	var id MessageID
	if err := parseHexID(id[:], s, "message ID"); err != nil {
		return id, err
	}
	return id, nil
}

func parseHexID(dst []byte, s, what string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%w: %s must be %d hexadecimal characters, got %d", ErrMalformed, what, 2*len(dst), len(s))
	}
	if strings.ToLower(s) != s {
		return fmt.Errorf("%w: %s must be lowercase hexadecimal", ErrMalformed, what)
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%w: %s is not hexadecimal", ErrMalformed, what)
	}
	zero := true
	for _, b := range dst {
		zero = zero && b == 0
	}
	if zero {
		return fmt.Errorf("%w: %s is zero", ErrMalformed, what)
	}
	return nil
}

// asciiLower lowers ASCII letters only: Unicode case folding would let
// look-alikes (the Kelvin sign for k) pass for an ID's characters.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
