package protocol

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// Session resumption (docs/PROTOCOL.md, section 18): a device that had a
// session resumes with a ticket the server sealed for it, and gets a new
// session with new keys without any RSA operation on either side.
const (
	// TicketLifetime bounds a chain of resumptions: every ticket of the
	// chain expires this long after the full setup that started it, so
	// that a device proves its authentication key at least that often.
	TicketLifetime = 24 * time.Hour
	// TicketKeyPeriod is how long one ticket key seals new tickets. A
	// server opens tickets of the current period and the two beside it.
	TicketKeyPeriod = 24 * time.Hour
	// TicketSize is the exact size of a ticket.
	TicketSize = 2 + 4 + 16 + 8 + nonceSize + ticketPlainSize + 16
	// ResumeSize is the exact size of a resume message.
	ResumeSize = resumeMACedSize + sha256.Size
	// ResumeAnswerSize is the exact size of the server's answer to a resume.
	ResumeAnswerSize = 2 + resumeRandomSize + confirmFrameSize

	typeResume       = 9
	typeResumeAnswer = 10
	typeTicket       = 11

	ticketPlainSize  = UserIDSize + DeviceIDSize + 8 + resumeSecretSize
	ticketAADSize    = 2 + 4 + 16 + 8 + nonceSize
	resumeSecretSize = 32
	resumeRandomSize = 32
	resumeMACedSize  = 2 + UserIDSize + DeviceIDSize + FingerprintSize + 8 + resumeRandomSize + TicketSize
	confirmFrameSize = frameHeaderSize + 8 + 16

	labelTicketKey        = "qrtalk/v1/ticket-key"
	labelTicket           = "qrtalk/v1/ticket"
	labelResume           = "qrtalk/v1/resume"
	labelResumeBinder     = "qrtalk/v1/resume-binder"
	labelResumeSecret     = "qrtalk/v1/resume-secret"
	labelResumedSessionID = "qrtalk/v1/resumed-session-id"
)

// resumptionSecret derives a session's resumption secret from its secret:
// HKDF with the session ID as salt and "qrtalk/v1/channel-keys resumption"
// as info, like the two direction keys.
func resumptionSecret(secret []byte, id SessionID) ([]byte, error) {
	return hkdfKey(secret, id, "resumption")
}

// TicketKeys seal and open resumption tickets. Their keys are derived from
// the server's private key, one per TicketKeyPeriod, so that every node of
// a cluster (which holds the same server key) and a restarted server
// accept each other's tickets without sharing any state. It is safe for
// concurrent use.
type TicketKeys struct {
	ikm []byte // the server key, PKCS #8
	fp  Fingerprint

	mu    sync.Mutex
	aeads map[uint32]cipher.AEAD
}

// NewTicketKeys returns the ticket keys of the server key.
func NewTicketKeys(server *PrivateKey) *TicketKeys {
	return &TicketKeys{ikm: server.Bytes(), fp: ServerFingerprint(server.Public()), aeads: map[uint32]cipher.AEAD{}}
}

// ticketEpoch is the number of the ticket key period at t.
func ticketEpoch(t time.Time) uint32 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint32(ms / TicketKeyPeriod.Milliseconds())
}

// ticketKey derives the key of one period: HKDF(server key PKCS #8, salt =
// server fingerprint, info = labeled(TICKET_KEY, u32(epoch))).
func ticketKey(ikm []byte, fp Fingerprint, epoch uint32) ([]byte, error) {
	var e [4]byte
	binary.BigEndian.PutUint32(e[:], epoch)
	return hkdf.Key(sha256.New, ikm, fp[:], string(labeled(labelTicketKey, e[:])), 32)
}

func (k *TicketKeys) aead(epoch uint32) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if a, ok := k.aeads[epoch]; ok {
		return a, nil
	}
	key, err := ticketKey(k.ikm, k.fp, epoch)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	// Keep only the periods a server still uses: a key of a period long
	// past stays out of memory.
	for e := range k.aeads {
		if e+3 < epoch || e > epoch+3 {
			delete(k.aeads, e)
		}
	}
	a := newGCM(key)
	k.aeads[epoch] = a
	return a, nil
}

// IssueTicket seals a ticket for session s, which AcceptSession or
// AcceptResume has just returned. A session gives one ticket: its
// resumption secret is forgotten once sealed.
func (k *TicketKeys) IssueTicket(s *ServerSession, now time.Time) ([]byte, error) {
	s.rsMu.Lock()
	rs := s.rs
	s.rs = nil
	s.rsMu.Unlock()
	if rs == nil {
		return nil, fmt.Errorf("%w: session %s has already had its ticket", ErrMalformed, s.k.id)
	}
	defer clear(rs)
	expires := s.authTime.Add(TicketLifetime)
	if !now.Before(expires) {
		return nil, fmt.Errorf("%w: the session's resumption chain ended at %s", ErrExpired, expires.Format(time.RFC3339))
	}
	epoch := ticketEpoch(now)
	aead, err := k.aead(epoch)
	if err != nil {
		return nil, err
	}
	var id [16]byte
	rand.Read(id[:])
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	b := wire.NewBuilder(TicketSize)
	b.U8(Version)
	b.U8(typeTicket)
	b.U32(epoch)
	b.Raw(id[:])
	b.I64(expires.UnixMilli())
	b.Raw(nonce)
	aad := labeled(labelTicket, b.Bytes())
	plain := wire.NewBuilder(ticketPlainSize)
	plain.Raw(s.User[:])
	plain.Raw(s.Device[:])
	plain.I64(s.authTime.UnixMilli())
	plain.Raw(rs)
	out := aead.Seal(b.Bytes(), nonce, plain.Bytes(), aad)
	clear(plain.Bytes())
	return out, nil
}

// A Ticket is what a device keeps to resume its session: the server's
// sealed ticket and the resumption secret it holds itself. It is as
// sensitive as the device's authentication key for as long as it lasts
// (until Expires): keep it in memory, or wherever that key is kept.
type Ticket struct {
	User    UserID
	Device  DeviceID
	Server  Fingerprint // the server key it is good for
	Expires time.Time   // as the server sealed it; millisecond precision

	sealed []byte
	secret []byte
}

// Ticket pairs the ticket the server issued with this session (the
// QRTalk-Ticket answer header) with the session's resumption secret. A
// session pairs one ticket; the secret is forgotten then.
func (c *ClientSession) Ticket(sealed []byte, now time.Time) (*Ticket, error) {
	if !c.confirmed.Load() {
		return nil, errNotConfirmed
	}
	_, expires, err := parseTicketHeader(sealed)
	if err != nil {
		return nil, err
	}
	if !now.Before(expires) {
		return nil, fmt.Errorf("%w: ticket ended at %s", ErrExpired, expires.Format(time.RFC3339))
	}
	c.rsMu.Lock()
	rs := c.rs
	c.rs = nil
	c.rsMu.Unlock()
	if rs == nil {
		return nil, fmt.Errorf("%w: session %s has already paired a ticket", ErrMalformed, c.k.id)
	}
	return &Ticket{User: c.user, Device: c.device, Server: c.serverFP, Expires: expires, sealed: append([]byte(nil), sealed...), secret: rs}, nil
}

// parseTicketHeader checks what a device can check of a ticket: its size,
// version and type, and returns the key period and expiry it names.
func parseTicketHeader(p []byte) (uint32, time.Time, error) {
	if len(p) > 0 && p[0] != Version {
		return 0, time.Time{}, fmt.Errorf("%w: ticket version %d", ErrVersion, p[0])
	}
	if len(p) != TicketSize {
		return 0, time.Time{}, fmt.Errorf("%w: ticket must be %d bytes, got %d", ErrMalformed, TicketSize, len(p))
	}
	if p[1] != typeTicket {
		return 0, time.Time{}, fmt.Errorf("%w: not a ticket (type %d)", ErrMalformed, p[1])
	}
	epoch := binary.BigEndian.Uint32(p[2:])
	expires := time.UnixMilli(int64(binary.BigEndian.Uint64(p[22:]))).UTC()
	return epoch, expires, nil
}

// A Resumption is a resume in flight: the device sent its message and
// waits for the server's answer.
type Resumption struct {
	msg    []byte
	at     time.Time
	secret []byte // the ticket's resumption secret
	user   UserID
	device DeviceID
	fp     Fingerprint
}

// Resume starts resuming with ticket t and returns the message to send
// (POST /v1/session). A ticket is good for one resume that the server
// answers, and Resume forgets t's secret: a device that got no answer at
// all may try again with a copy of t saved before (MarshalBinary).
func Resume(t *Ticket, now time.Time) (*Resumption, []byte, error) {
	if t == nil || t.secret == nil {
		return nil, nil, fmt.Errorf("%w: no ticket, or a ticket already used", ErrMalformed)
	}
	if !now.Before(t.Expires) {
		return nil, nil, fmt.Errorf("%w: ticket ended at %s", ErrExpired, t.Expires.Format(time.RFC3339))
	}
	secret := t.secret
	t.secret = nil
	var random [resumeRandomSize]byte
	rand.Read(random[:])
	msg, err := buildResume(t.User, t.Device, t.Server, now, random[:], t.sealed, secret)
	if err != nil {
		return nil, nil, err
	}
	return &Resumption{msg: msg, at: now, secret: secret, user: t.User, device: t.Device, fp: t.Server}, msg, nil
}

// binderKey is K_bind = HKDF(RS, salt = ticket ID, info = RESUME_BINDER).
func binderKey(secret, ticketID []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, ticketID, labelResumeBinder, 32)
}

func binder(secret, ticketID, maced []byte) ([]byte, error) {
	k, err := binderKey(secret, ticketID)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	m := hmac.New(sha256.New, k)
	m.Write(labeled(labelResume, maced))
	return m.Sum(nil), nil
}

func buildResume(user UserID, device DeviceID, fp Fingerprint, now time.Time, random, ticket, secret []byte) ([]byte, error) {
	b := wire.NewBuilder(ResumeSize)
	b.U8(Version)
	b.U8(typeResume)
	b.Raw(user[:])
	b.Raw(device[:])
	b.Raw(fp[:])
	b.I64(now.UnixMilli())
	b.Raw(random)
	b.Raw(ticket)
	mac, err := binder(secret, ticket[6:22], b.Bytes())
	if err != nil {
		return nil, err
	}
	b.Raw(mac)
	return b.Bytes(), nil
}

// resumedKeys derives a resumed session's ID and secret from the resume
// message, the server's random and the ticket's resumption secret.
func resumedKeys(msg, serverRandom, rs []byte) (SessionID, []byte, error) {
	h := sha256.Sum256(labeled(labelResumedSessionID, msg, serverRandom))
	var id SessionID
	copy(id[:], h[:])
	secret, err := hkdf.Key(sha256.New, rs, id[:], labelResumeSecret, 32)
	return id, secret, err
}

// Finish checks the server's answer to the resume and returns the new,
// confirmed session.
func (r *Resumption) Finish(answer []byte, now time.Time) (*ClientSession, error) {
	if len(answer) > 0 && answer[0] != Version {
		return nil, fmt.Errorf("%w: resume answer version %d", ErrVersion, answer[0])
	}
	if len(answer) != ResumeAnswerSize {
		return nil, fmt.Errorf("%w: resume answer must be %d bytes, got %d", ErrMalformed, ResumeAnswerSize, len(answer))
	}
	if answer[1] != typeResumeAnswer {
		return nil, fmt.Errorf("%w: not a resume answer (type %d)", ErrMalformed, answer[1])
	}
	if r.secret == nil {
		return nil, fmt.Errorf("%w: resumption already finished", ErrReplay)
	}
	id, secret, err := resumedKeys(r.msg, answer[2:2+resumeRandomSize], r.secret)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	cs, err := newClientEnd(secret, id, r.at, r.user, r.device, r.fp)
	if err != nil {
		return nil, err
	}
	if err := cs.Confirm(answer[2+resumeRandomSize:], now); err != nil {
		return nil, fmt.Errorf("resumed session: %w", err)
	}
	clear(r.secret)
	r.secret = nil
	return cs, nil
}

// A ResumeRequest is a parsed resume message. The server checks it with
// TicketKeys.Check, looks the device up (it must exist and not be
// revoked), then calls AcceptResume.
type ResumeRequest struct {
	User     UserID
	Device   DeviceID
	ServerFP Fingerprint
	Time     time.Time // millisecond precision

	raw    []byte
	random []byte
	ticket []byte
	binder []byte

	// Set by Check, from the ticket.
	checked  bool
	ticketID [16]byte
	expires  time.Time
	authTime time.Time
	secret   []byte
}

// ParseResume decodes a resume message without checking it.
func ParseResume(p []byte) (*ResumeRequest, error) {
	if len(p) > 0 && p[0] != Version {
		return nil, fmt.Errorf("%w: resume version %d", ErrVersion, p[0])
	}
	if len(p) != ResumeSize {
		return nil, fmt.Errorf("%w: resume must be %d bytes, got %d", ErrMalformed, ResumeSize, len(p))
	}
	r := wire.NewReader(p)
	if err := readHeader(r, typeResume, "resume"); err != nil {
		return nil, err
	}
	q := &ResumeRequest{raw: p}
	r.Into(q.User[:])
	r.Into(q.Device[:])
	r.Into(q.ServerFP[:])
	q.Time = time.UnixMilli(r.I64()).UTC()
	q.random = r.Fixed(resumeRandomSize)
	q.ticket = r.Fixed(TicketSize)
	q.binder = r.Fixed(sha256.Size)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: resume: %v", ErrMalformed, err)
	}
	return q, nil
}

// IsResume reports whether a body sent to the session route is a resume
// message rather than a setup (the type byte; ParseResume checks the rest).
func IsResume(p []byte) bool { return len(p) >= 2 && p[0] == Version && p[1] == typeResume }

// Check opens the ticket of q and checks everything about q that needs no
// state: the server key, the time, the ticket (its key period, its
// authentication, its device and its expiry) and the binder, which proves
// that the sender holds the ticket's resumption secret.
func (k *TicketKeys) Check(q *ResumeRequest, now time.Time) error {
	if !q.ServerFP.Equal(k.fp) {
		return fmt.Errorf("%w: resume is for another server key", ErrMismatch)
	}
	if d := now.Sub(q.Time); d > MaxClockSkew || d < -MaxClockSkew {
		return fmt.Errorf("%w: resume time %s", ErrClockSkew, q.Time.Format(time.RFC3339))
	}
	epoch, expires, err := parseTicketHeader(q.ticket)
	if err != nil {
		return fmt.Errorf("resume ticket: %w", err)
	}
	if cur := ticketEpoch(now); epoch+1 < cur || epoch > cur+1 {
		return fmt.Errorf("%w: ticket key period %d is not in use (now %d)", ErrExpired, epoch, cur)
	}
	aead, err := k.aead(epoch)
	if err != nil {
		return err
	}
	head := q.ticket[:ticketAADSize]
	plain, err := aead.Open(nil, head[ticketAADSize-nonceSize:], q.ticket[ticketAADSize:], labeled(labelTicket, head))
	if err != nil {
		return fmt.Errorf("resume ticket: %w", ErrDecrypt)
	}
	defer clear(plain)
	var user UserID
	var device DeviceID
	copy(user[:], plain)
	copy(device[:], plain[UserIDSize:])
	if user != q.User || device != q.Device {
		return fmt.Errorf("%w: ticket is for another device", ErrMismatch)
	}
	authTime := time.UnixMilli(int64(binary.BigEndian.Uint64(plain[UserIDSize+DeviceIDSize:]))).UTC()
	if !now.Before(expires) {
		return fmt.Errorf("%w: ticket ended at %s", ErrExpired, expires.Format(time.RFC3339))
	}
	if expires.After(authTime.Add(TicketLifetime)) {
		return fmt.Errorf("%w: ticket outlives its chain", ErrMalformed)
	}
	secret := plain[UserIDSize+DeviceIDSize+8:]
	want, err := binder(secret, q.ticket[6:22], q.raw[:resumeMACedSize])
	if err != nil {
		return err
	}
	if !hmac.Equal(want, q.binder) {
		return fmt.Errorf("resume of %s/%s: %w", q.User, q.Device, ErrBadSignature)
	}
	copy(q.ticketID[:], q.ticket[6:22])
	q.expires, q.authTime = expires, authTime
	q.secret = append([]byte(nil), secret...)
	q.checked = true
	return nil
}

// AcceptResume starts the session a checked resume asks for. The ticket
// is good once: replay remembers its ID until it expires, and a second
// resume with it is ErrReplay. It returns the session and the answer to
// send back; then issue the session's own ticket (TicketKeys.IssueTicket).
func AcceptResume(q *ResumeRequest, replay ReplayCache, lifetime time.Duration, now time.Time) (*ServerSession, []byte, error) {
	var random [resumeRandomSize]byte
	rand.Read(random[:])
	return acceptResume(q, replay, lifetime, now, random[:])
}

func acceptResume(q *ResumeRequest, replay ReplayCache, lifetime time.Duration, now time.Time, random []byte) (*ServerSession, []byte, error) {
	if !q.checked || q.secret == nil {
		return nil, nil, fmt.Errorf("%w: resume not checked, or already accepted", ErrMalformed)
	}
	secretRS := q.secret
	q.secret = nil
	defer clear(secretRS)
	if replay.Seen(q.ticketID, now, q.expires) {
		return nil, nil, fmt.Errorf("%w: ticket already used", ErrReplay)
	}
	id, secret, err := resumedKeys(q.raw, random, secretRS)
	if err != nil {
		return nil, nil, err
	}
	defer clear(secret)
	ss, confirm, err := newServerEnd(secret, id, q.User, q.Device, q.authTime, lifetime, now)
	if err != nil {
		return nil, nil, err
	}
	answer := make([]byte, 0, ResumeAnswerSize)
	answer = append(answer, Version, typeResumeAnswer)
	answer = append(answer, random...)
	answer = append(answer, confirm...)
	return ss, answer, nil
}

// ticketStateSize is the size of a Ticket's saved form.
const ticketStateSize = 1 + UserIDSize + DeviceIDSize + FingerprintSize + TicketSize + resumeSecretSize

// MarshalBinary returns the ticket with its resumption secret, for a device
// that keeps it across restarts. It is a local format, not part of the
// protocol; store it as the device's authentication key is stored.
func (t *Ticket) MarshalBinary() ([]byte, error) {
	if t.secret == nil {
		return nil, fmt.Errorf("%w: ticket already used", ErrMalformed)
	}
	b := wire.NewBuilder(ticketStateSize)
	b.U8(Version)
	b.Raw(t.User[:])
	b.Raw(t.Device[:])
	b.Raw(t.Server[:])
	b.Raw(t.sealed)
	b.Raw(t.secret)
	return b.Bytes(), nil
}

// ParseTicket restores a ticket saved with MarshalBinary.
func ParseTicket(p []byte) (*Ticket, error) {
	if len(p) != ticketStateSize || p[0] != Version {
		return nil, fmt.Errorf("%w: saved ticket", ErrMalformed)
	}
	t := &Ticket{}
	r := wire.NewReader(p[1:])
	r.Into(t.User[:])
	r.Into(t.Device[:])
	r.Into(t.Server[:])
	t.sealed = bytes.Clone(r.Fixed(TicketSize))
	t.secret = bytes.Clone(r.Fixed(resumeSecretSize))
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: saved ticket: %v", ErrMalformed, err)
	}
	_, exp, err := parseTicketHeader(t.sealed)
	if err != nil {
		return nil, err
	}
	t.Expires = exp
	return t, nil
}
