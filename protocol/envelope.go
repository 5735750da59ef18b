package protocol

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// Limits of protocol v1 envelopes.
const (
	MinTTL              = time.Second
	MaxTTL              = 7 * 24 * time.Hour
	MaxRecipientUsers   = 2048
	MaxRecipientDevices = 2048
	// MaxClockSkew is how far in the future a send time, or any other
	// timestamp, may be before it is refused.
	MaxClockSkew = 5 * time.Minute

	typeEnvelope   = 3
	nonceSize      = 12
	commitmentSize = 32
	wrappedEntry   = UserIDSize + DeviceIDSize + KeySize
	// MaxCiphertextSize bounds the encrypted message inside an envelope.
	MaxCiphertextSize = maxPlaintextSize + padBlock + 16
	// MaxEnvelopeSize bounds a whole envelope, as a sender submits it.
	MaxEnvelopeSize = headerFixedSize + MaxRecipientUsers*UserIDSize + 2 + MaxRecipientDevices*wrappedEntry +
		nonceSize + commitmentSize + 4 + MaxCiphertextSize + 2 + KeySize

	headerFixedSize = 2 + MessageIDSize + UserIDSize + DeviceIDSize + 8 + 4 + 1 + 2
	// flagSigned, in the header's flags byte, says the envelope carries a
	// signature. The header is the AEAD's associated data, so a relay that
	// strips the signature cannot pass the message off as unsigned.
	flagSigned = 1
	// parallelWrapMin: from this many recipient devices on, Seal wraps
	// keys on all cores.
	parallelWrapMin = 8
)

// A Sender is the device that seals a message. Identity may be nil for a
// device that sends only unsigned messages.
type Sender struct {
	User     UserID
	Device   DeviceID
	Identity *PrivateKey
}

// A DeviceRecipient is one device a message is sealed for, with the
// encryption key from its verified DeviceCert.
type DeviceRecipient struct {
	User   UserID
	Device DeviceID
	Key    *PublicKey
}

// SealOptions are the routing fields of a new message.
type SealOptions struct {
	// ID is the message ID; the zero ID means a fresh random one.
	ID MessageID
	// Sent is the send time; expiry is Sent + TTL. Stored in milliseconds.
	Sent time.Time
	// TTL is the time to live, from MinTTL to MaxTTL, in whole seconds.
	TTL time.Duration
	// Unsigned leaves the envelope without the sender's signature.
	Unsigned bool
}

// An Envelope is a parsed, sealed message: routing fields in the clear,
// the message key wrapped for each recipient device, the encrypted Message
// and the sender's signature.
type Envelope struct {
	ID           MessageID
	Sender       UserID
	SenderDevice DeviceID
	Sent         time.Time // millisecond precision
	TTL          time.Duration
	// Recipients is the signed set of recipient users, ascending.
	Recipients []UserID
	// Devices lists the devices this copy of the envelope has a key for,
	// ascending by user then device. A server delivers to each device an
	// envelope that has only its own entry.
	Devices []DeviceAddress

	raw        []byte
	header     []byte // version .. recipient users: the AEAD's associated data
	keys       []byte // the wrapped-key entries, without their count
	tail       []byte // nonce .. signature
	nonce      []byte
	commitment []byte
	ciphertext []byte
	sig        []byte
}

// A DeviceAddress is a (user, device) pair.
type DeviceAddress struct {
	User   UserID
	Device DeviceID
}

func (a DeviceAddress) compare(b DeviceAddress) int {
	if c := bytes.Compare(a.User[:], b.User[:]); c != 0 {
		return c
	}
	return bytes.Compare(a.Device[:], b.Device[:])
}

// Seal encrypts msg once and wraps its key for every device in to (the
// sender's own other devices should be among them). Unless opts.Unsigned,
// it signs the envelope with from.Identity.
func Seal(msg *Message, from Sender, to []DeviceRecipient, opts SealOptions) ([]byte, error) {
	if from.User.IsZero() || from.Device.IsZero() {
		return nil, fmt.Errorf("%w: sender has a zero ID", ErrMalformed)
	}
	if !opts.Unsigned && from.Identity == nil {
		return nil, fmt.Errorf("%w: a signed message needs the sender's identity key", ErrMalformed)
	}
	if err := checkTTL(opts.TTL); err != nil {
		return nil, err
	}
	if len(to) == 0 || len(to) > MaxRecipientDevices {
		return nil, fmt.Errorf("%w: %d recipient devices, want 1 to %d", ErrTooLarge, len(to), MaxRecipientDevices)
	}
	to = slices.Clone(to)
	slices.SortFunc(to, func(a, b DeviceRecipient) int {
		return DeviceAddress{a.User, a.Device}.compare(DeviceAddress{b.User, b.Device})
	})
	users := make([]UserID, 0, len(to))
	for i, d := range to {
		if d.User.IsZero() || d.Device.IsZero() || d.Key == nil {
			return nil, fmt.Errorf("%w: recipient device with a zero ID or no key", ErrMalformed)
		}
		if i > 0 && to[i-1].User == d.User && to[i-1].Device == d.Device {
			return nil, fmt.Errorf("%w: device %s/%s listed twice", ErrMalformed, d.User, d.Device)
		}
		if len(users) == 0 || users[len(users)-1] != d.User {
			users = append(users, d.User)
		}
	}
	if len(users) > MaxRecipientUsers {
		return nil, fmt.Errorf("%w: %d recipient users, at most %d", ErrTooLarge, len(users), MaxRecipientUsers)
	}
	plaintext, err := msg.marshal()
	if err != nil {
		return nil, err
	}
	return sealPlaintext(plaintext, from, to, users, opts), nil
}

// sealPlaintext seals an encoded, padded Message for devices sorted and
// checked by Seal. Tests use it to build envelopes Seal would refuse.
func sealPlaintext(plaintext []byte, from Sender, to []DeviceRecipient, users []UserID, opts SealOptions) []byte {
	id := opts.ID
	if id.IsZero() {
		id = NewMessageID()
	}

	hb := wire.NewBuilder(headerFixedSize + len(users)*UserIDSize)
	hb.U8(Version)
	hb.U8(typeEnvelope)
	hb.Raw(id[:])
	hb.Raw(from.User[:])
	hb.Raw(from.Device[:])
	hb.I64(opts.Sent.UnixMilli())
	hb.U32(uint32(opts.TTL / time.Second))
	var flags byte
	if !opts.Unsigned {
		flags = flagSigned
	}
	hb.U8(flags)
	hb.U16(uint16(len(users)))
	for _, u := range users {
		hb.Raw(u[:])
	}
	header := hb.Bytes()

	key := make([]byte, 32)
	rand.Read(key)
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	commitment := keyCommitment(id, key)
	ciphertext := newGCM(key).Seal(nil, nonce, plaintext, labeled(labelEnvelopeAAD, header))
	wrapped := wrapAll(to, labeled(labelKeyWrap, id[:]), key)
	clear(key)

	var sig []byte
	if !opts.Unsigned {
		sig = sign(from.Identity, signedData(header, nonce, commitment, ciphertext))
	}

	b := wire.NewBuilder(len(header) + 2 + len(to)*wrappedEntry + nonceSize + commitmentSize + 4 + len(ciphertext) + 2 + len(sig))
	b.Raw(header)
	b.U16(uint16(len(to)))
	for i, d := range to {
		b.Raw(d.User[:])
		b.Raw(d.Device[:])
		b.Raw(wrapped[i])
	}
	b.Raw(nonce)
	b.Raw(commitment)
	b.Var32(ciphertext)
	b.Var16(sig)
	return b.Bytes()
}

// wrapAll wraps key for every device, on all cores when there are many:
// each RSA public operation is independent of the others.
func wrapAll(to []DeviceRecipient, label, key []byte) [][]byte {
	out := make([][]byte, len(to))
	workers := min(runtime.GOMAXPROCS(0), len(to))
	if len(to) < parallelWrapMin || workers < 2 {
		for i, d := range to {
			out[i] = wrapKey(d.Key, label, key)
		}
		return out
	}
	var wg sync.WaitGroup
	next := make(chan int, len(to))
	for i := range to {
		next <- i
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := range next {
				out[i] = wrapKey(to[i].Key, label, key)
			}
		})
	}
	wg.Wait()
	return out
}

func keyCommitment(id MessageID, key []byte) []byte {
	h := sha256.Sum256(labeled(labelCommitment, id[:], key))
	return h[:]
}

func signedData(header, nonce, commitment, ciphertext []byte) []byte {
	h := sha256.Sum256(ciphertext)
	return labeled(labelEnvelopeSig, header, nonce, commitment, h[:])
}

func checkTTL(ttl time.Duration) error {
	if ttl < MinTTL || ttl > MaxTTL || ttl%time.Second != 0 {
		return fmt.Errorf("%w: TTL must be whole seconds from 1s to 168h, got %v", ErrMalformed, ttl)
	}
	return nil
}

// ParseEnvelope decodes an envelope and checks its form: version, sizes,
// canonical order, no trailing data. It checks no signature and decrypts
// nothing; a server needs no more than this to route it.
func ParseEnvelope(p []byte) (*Envelope, error) {
	if len(p) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: envelope is %d bytes, at most %d", ErrTooLarge, len(p), MaxEnvelopeSize)
	}
	r := wire.NewReader(p)
	if err := readHeader(r, typeEnvelope, "envelope"); err != nil {
		return nil, err
	}
	e := &Envelope{raw: p}
	r.Into(e.ID[:])
	r.Into(e.Sender[:])
	r.Into(e.SenderDevice[:])
	e.Sent = time.UnixMilli(r.I64()).UTC()
	ttl := r.U32()
	e.TTL = time.Duration(ttl) * time.Second
	flags := r.U8()
	nu := int(r.U16())
	if r.Err() == nil && (nu == 0 || nu > MaxRecipientUsers) {
		return nil, fmt.Errorf("%w: envelope has %d recipient users, want 1 to %d", ErrMalformed, nu, MaxRecipientUsers)
	}
	users := r.Fixed(nu * UserIDSize)
	e.header = p[:len(p)-r.Len()]
	nd := int(r.U16())
	if r.Err() == nil && (nd == 0 || nd > MaxRecipientDevices) {
		return nil, fmt.Errorf("%w: envelope has %d recipient devices, want 1 to %d", ErrMalformed, nd, MaxRecipientDevices)
	}
	e.keys = r.Fixed(nd * wrappedEntry)
	tailStart := len(p) - r.Len()
	e.nonce = r.Fixed(nonceSize)
	e.commitment = r.Fixed(commitmentSize)
	e.ciphertext = r.Var32(MaxCiphertextSize)
	e.sig = r.Var16(KeySize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	e.tail = p[tailStart:]
	if e.ID.IsZero() || e.Sender.IsZero() || e.SenderDevice.IsZero() {
		return nil, fmt.Errorf("%w: envelope has a zero ID", ErrMalformed)
	}
	if ttl == 0 || e.TTL > MaxTTL {
		return nil, fmt.Errorf("%w: envelope TTL %ds is outside 1s to 7 days", ErrMalformed, ttl)
	}
	if len(e.ciphertext) < 16 {
		return nil, fmt.Errorf("%w: envelope ciphertext is too short", ErrMalformed)
	}
	if len(e.sig) != 0 && len(e.sig) != KeySize {
		return nil, fmt.Errorf("%w: envelope signature is %d bytes, want 0 or %d", ErrMalformed, len(e.sig), KeySize)
	}
	if flags&^flagSigned != 0 {
		return nil, fmt.Errorf("%w: envelope flags %#x", ErrMalformed, flags)
	}
	if (flags == flagSigned) != (len(e.sig) == KeySize) {
		return nil, fmt.Errorf("%w: envelope flags say signed=%v, but the signature is %d bytes", ErrMalformed, flags == flagSigned, len(e.sig))
	}
	e.Recipients = make([]UserID, nu)
	for i := range e.Recipients {
		copy(e.Recipients[i][:], users[i*UserIDSize:])
		if e.Recipients[i].IsZero() || i > 0 && bytes.Compare(e.Recipients[i-1][:], e.Recipients[i][:]) >= 0 {
			return nil, fmt.Errorf("%w: envelope recipient users are not strictly ascending", ErrMalformed)
		}
	}
	e.Devices = make([]DeviceAddress, nd)
	for i := range e.Devices {
		ent := e.keys[i*wrappedEntry:]
		d := &e.Devices[i]
		copy(d.User[:], ent)
		copy(d.Device[:], ent[UserIDSize:])
		if d.Device.IsZero() || i > 0 && e.Devices[i-1].compare(*d) >= 0 {
			return nil, fmt.Errorf("%w: envelope devices are not strictly ascending", ErrMalformed)
		}
		if _, ok := slices.BinarySearchFunc(e.Recipients, d.User, func(a, b UserID) int { return bytes.Compare(a[:], b[:]) }); !ok {
			return nil, fmt.Errorf("%w: envelope has a key for user %s, who is not a recipient", ErrMalformed, d.User)
		}
	}
	return e, nil
}

// Bytes returns the envelope's encoding. The caller must not modify it.
func (e *Envelope) Bytes() []byte { return e.raw }

// Expires returns the end of the message's life: Sent + TTL.
func (e *Envelope) Expires() time.Time { return e.Sent.Add(e.TTL) }

// Signed reports whether the envelope carries a signature.
func (e *Envelope) Signed() bool { return len(e.sig) != 0 }

// IsRecipient reports whether user is in the signed recipient set.
func (e *Envelope) IsRecipient(user UserID) bool {
	_, ok := slices.BinarySearchFunc(e.Recipients, user, func(a, b UserID) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// For returns the envelope as delivered to device i of e.Devices: the same
// encoding with that device's key entry alone. Every field the signature
// and the AEAD cover stays the same.
func (e *Envelope) For(i int) []byte {
	if len(e.Devices) == 1 {
		return e.raw
	}
	out := make([]byte, 0, len(e.header)+2+wrappedEntry+len(e.tail))
	out = append(out, e.header...)
	out = append(out, 0, 1)
	out = append(out, e.keys[i*wrappedEntry:(i+1)*wrappedEntry]...)
	return append(out, e.tail...)
}

// SignatureStatus says what Open learned of an envelope's signature.
type SignatureStatus int

const (
	// Verified: signed, and the signature verifies under the identity key
	// given to Open.
	Verified SignatureStatus = iota + 1
	// Unsigned: the sender chose not to sign. A client must say so.
	Unsigned
	// Unchecked: signed, but Open had no identity key for the sender.
	Unchecked
)

func (s SignatureStatus) String() string {
	switch s {
	case Verified:
		return "verified"
	case Unsigned:
		return "unsigned"
	case Unchecked:
		return "unchecked"
	}
	return fmt.Sprintf("SignatureStatus(%d)", int(s))
}

// A Recipient is the device that opens a message, with its encryption key.
type Recipient struct {
	User   UserID
	Device DeviceID
	Key    *PrivateKey
}

// Open checks and decrypts the envelope for one device. senderIdentity is
// the identity key the recipient pinned for e.Sender, or nil if it has
// none. A signature that does not verify is an error (never content);
// otherwise the returned status says whether it was checked.
//
// Checks, in order: expiry (now before Sent + TTL, Sent not more than
// MaxClockSkew ahead of now), that the recipient is in the signed set and
// has a key entry, the signature, the key commitment, then decryption.
func (e *Envelope) Open(me Recipient, senderIdentity *PublicKey, now time.Time) (*Message, SignatureStatus, error) {
	if !now.Before(e.Expires()) {
		return nil, 0, fmt.Errorf("%w: message expired at %s", ErrExpired, e.Expires().Format(time.RFC3339))
	}
	if e.Sent.After(now.Add(MaxClockSkew)) {
		return nil, 0, fmt.Errorf("%w: message sent at %s, in the future", ErrClockSkew, e.Sent.Format(time.RFC3339))
	}
	if !e.IsRecipient(me.User) {
		return nil, 0, fmt.Errorf("%w: user %s is not in the signed recipient set", ErrNotRecipient, me.User)
	}
	idx, ok := slices.BinarySearchFunc(e.Devices, DeviceAddress{me.User, me.Device}, DeviceAddress.compare)
	if !ok {
		return nil, 0, fmt.Errorf("%w: no key for device %s", ErrNotRecipient, me.Device)
	}
	status := Unsigned
	if e.Signed() {
		status = Unchecked
		if senderIdentity != nil {
			if err := verify(senderIdentity, signedData(e.header, e.nonce, e.commitment, e.ciphertext), e.sig); err != nil {
				return nil, 0, fmt.Errorf("envelope from %s: %w", e.Sender, err)
			}
			status = Verified
		}
	}
	entry := e.keys[idx*wrappedEntry : (idx+1)*wrappedEntry]
	key, err := unwrapKey(me.Key, labeled(labelKeyWrap, e.ID[:]), entry[UserIDSize+DeviceIDSize:], 32)
	if err != nil {
		return nil, 0, fmt.Errorf("unwrapping the message key: %w", err)
	}
	defer clear(key)
	if subtle.ConstantTimeCompare(keyCommitment(e.ID, key), e.commitment) != 1 {
		return nil, 0, fmt.Errorf("%w: key commitment does not match", ErrDecrypt)
	}
	plaintext, err := newGCM(key).Open(nil, e.nonce, e.ciphertext, labeled(labelEnvelopeAAD, e.header))
	if err != nil {
		return nil, 0, ErrDecrypt
	}
	m, err := unmarshalMessage(plaintext)
	if err != nil {
		return nil, 0, err
	}
	return m, status, nil
}
