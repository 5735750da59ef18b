package protocol

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// Secure channel parameters of protocol v1.
const (
	// MaxSessionLifetime is the longest a channel session may live; a
	// client sets up a new one (new keys) before its session ends.
	MaxSessionLifetime = time.Hour
	// ReplayWindow is how far behind the highest counter seen a frame may
	// arrive (concurrent requests are not ordered) and still be accepted once.
	ReplayWindow = 1024
	// MaxFrameSize bounds a channel frame; it fits the largest envelope.
	MaxFrameSize = MaxEnvelopeSize + 1024
	// SessionIDSize is the size of a session ID in bytes.
	SessionIDSize = 16

	typeChannelSetup = 4
	typeChannelFrame = 5
	setupTBSSize     = 2 + UserIDSize + DeviceIDSize + FingerprintSize + 8 + 16 + KeySize
	// ChannelSetupSize is the exact size of a channel setup message.
	ChannelSetupSize = setupTBSSize + KeySize
	frameHeaderSize  = 2 + SessionIDSize + 8

	dirClientToServer = 1
	dirServerToClient = 2

	// Frame kinds, bound into every frame's associated data, so that no
	// frame can be taken for one of another kind.
	kindConfirm  = 1
	kindRequest  = 2
	kindResponse = 3
	kindPush     = 4

	// maxCounter: a session never gets near 2^63 frames; counters from
	// there on are refused, so that no counter arithmetic can wrap.
	maxCounter = 1 << 63

	// MaxMethodPath bounds the method and the path a frame is bound to.
	MaxMethodPath = 1024
)

// A SessionID names a channel session. Both ends derive it from the setup
// message, so the server never chooses it.
type SessionID [SessionIDSize]byte

func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// A ChannelDevice is the device end of a channel: its IDs and the
// authentication key its DeviceCert binds.
type ChannelDevice struct {
	User    UserID
	Device  DeviceID
	AuthKey *PrivateKey
}

// A ChannelSetup is a parsed setup message: a device asks for a session.
// The server looks up the device's authentication key by User and Device,
// then calls AcceptSession.
type ChannelSetup struct {
	User     UserID
	Device   DeviceID
	ServerFP Fingerprint
	Time     time.Time // millisecond precision
	Nonce    [16]byte

	raw     []byte
	wrapped []byte
	sig     []byte
}

// ParseChannelSetup decodes a setup message without checking it.
func ParseChannelSetup(p []byte) (*ChannelSetup, error) {
	if len(p) > 0 && p[0] != Version {
		return nil, fmt.Errorf("%w: channel setup version %d", ErrVersion, p[0])
	}
	if len(p) != ChannelSetupSize {
		return nil, fmt.Errorf("%w: channel setup must be %d bytes, got %d", ErrMalformed, ChannelSetupSize, len(p))
	}
	r := wire.NewReader(p)
	if err := readHeader(r, typeChannelSetup, "channel setup"); err != nil {
		return nil, err
	}
	s := &ChannelSetup{raw: p}
	r.Into(s.User[:])
	r.Into(s.Device[:])
	r.Into(s.ServerFP[:])
	s.Time = time.UnixMilli(r.I64()).UTC()
	r.Into(s.Nonce[:])
	s.wrapped = r.Fixed(KeySize)
	s.sig = r.Fixed(KeySize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: channel setup: %v", ErrMalformed, err)
	}
	return s, nil
}

// A ReplayCache remembers keys until they expire. Seen records key and
// reports whether it was already there; now is the clock of the caller
// (AcceptSession's), so that the cache and the time check agree. The
// server's implementation must be shared by every node that accepts
// setups for the same server key.
type ReplayCache interface {
	Seen(key [16]byte, now, expires time.Time) bool
}

// MemoryReplayCache is a ReplayCache for a single process.
type MemoryReplayCache struct {
	mu   sync.Mutex
	keys map[[16]byte]time.Time
	next time.Time // when to drop expired keys next
}

// Seen implements ReplayCache.
func (c *MemoryReplayCache) Seen(key [16]byte, now, expires time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = make(map[[16]byte]time.Time)
	}
	if now.After(c.next) || now.Before(c.next.Add(-2*time.Minute)) {
		for k, exp := range c.keys {
			if now.After(exp) {
				delete(c.keys, k)
			}
		}
		c.next = now.Add(time.Minute)
	}
	if _, ok := c.keys[key]; ok {
		return true
	}
	c.keys[key] = expires
	return false
}

// channelKeys are one session's state shared by both ends.
type channelKeys struct {
	id      SessionID
	expires time.Time
	send    cipher.AEAD
	recv    cipher.AEAD
	sendDir byte
	recvDir byte
	sendCtr atomic.Uint64
	window  replayWindow
}

// hkdfKey derives the key of one direction: HKDF-SHA256 with the session
// ID as salt and "<label> <direction>" as info.
func hkdfKey(secret []byte, id SessionID, direction string) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, id[:], labelChannelKeys+" "+direction, 32)
}

func deriveKeys(secret []byte, id SessionID, client bool) (*channelKeys, error) {
	c2s, err := hkdfKey(secret, id, "client-to-server")
	if err != nil {
		return nil, err
	}
	s2c, err := hkdfKey(secret, id, "server-to-client")
	if err != nil {
		return nil, err
	}
	k := &channelKeys{id: id}
	if client {
		k.send, k.recv, k.sendDir, k.recvDir = newGCM(c2s), newGCM(s2c), dirClientToServer, dirServerToClient
	} else {
		k.send, k.recv, k.sendDir, k.recvDir = newGCM(s2c), newGCM(c2s), dirServerToClient, dirClientToServer
	}
	clear(c2s)
	clear(s2c)
	return k, nil
}

func frameNonce(dir byte, ctr uint64) []byte {
	n := make([]byte, nonceSize)
	n[0] = dir
	binary.BigEndian.PutUint64(n[4:], ctr)
	return n
}

// frameAAD binds a frame to its session, direction, kind, counter, the
// request it answers (0 for other kinds) and the HTTP method and path.
func frameAAD(id SessionID, dir, kind byte, ctr, reqCtr uint64, method, path string) []byte {
	b := wire.NewBuilder(64 + len(method) + len(path))
	b.Str(labelChannelFrame)
	b.U8(0)
	b.Raw(id[:])
	b.U8(dir)
	b.U8(kind)
	b.U64(ctr)
	b.U64(reqCtr)
	b.Var16([]byte(method))
	b.Var16([]byte(path))
	return b.Bytes()
}

func (k *channelKeys) seal(kind byte, reqCtr uint64, method, path string, body []byte) []byte {
	ctr := k.sendCtr.Add(1) - 1
	out := make([]byte, frameHeaderSize, frameHeaderSize+len(body)+16)
	out[0], out[1] = Version, typeChannelFrame
	copy(out[2:], k.id[:])
	binary.BigEndian.PutUint64(out[2+SessionIDSize:], ctr)
	return k.send.Seal(out, frameNonce(k.sendDir, ctr), body, frameAAD(k.id, k.sendDir, kind, ctr, reqCtr, method, path))
}

func (k *channelKeys) open(kind byte, reqCtr uint64, method, path string, frame []byte, now time.Time) ([]byte, uint64, error) {
	if len(method) > MaxMethodPath || len(path) > MaxMethodPath {
		return nil, 0, fmt.Errorf("%w: method or path longer than %d bytes", ErrTooLarge, MaxMethodPath)
	}
	if !now.Before(k.expires) {
		return nil, 0, fmt.Errorf("%w: channel session %s ended at %s", ErrExpired, k.id, k.expires.Format(time.RFC3339))
	}
	id, ctr, err := ParseFrameHeader(frame)
	if err != nil {
		return nil, 0, err
	}
	if id != k.id {
		return nil, 0, fmt.Errorf("%w: frame is for session %s, not %s", ErrMismatch, id, k.id)
	}
	if ctr >= maxCounter || !k.window.check(ctr) {
		return nil, 0, fmt.Errorf("%w: frame %d", ErrReplay, ctr)
	}
	body, err := k.recv.Open(nil, frameNonce(k.recvDir, ctr), frame[frameHeaderSize:], frameAAD(k.id, k.recvDir, kind, ctr, reqCtr, method, path))
	if err != nil {
		return nil, 0, ErrDecrypt
	}
	// Only an authentic frame moves the window, so forgeries cannot
	// push genuine frames out of it.
	if !k.window.accept(ctr) {
		return nil, 0, fmt.Errorf("%w: frame %d", ErrReplay, ctr)
	}
	return body, ctr, nil
}

// ParseFrameHeader returns the session ID and counter of a channel frame,
// so that a server can find the session a request belongs to.
func ParseFrameHeader(frame []byte) (SessionID, uint64, error) {
	var id SessionID
	if len(frame) > MaxFrameSize {
		return id, 0, fmt.Errorf("%w: frame is %d bytes, at most %d", ErrTooLarge, len(frame), MaxFrameSize)
	}
	if len(frame) < frameHeaderSize+16 {
		return id, 0, fmt.Errorf("%w: frame is too short", ErrMalformed)
	}
	if frame[0] != Version {
		return id, 0, fmt.Errorf("%w: frame version %d", ErrVersion, frame[0])
	}
	if frame[1] != typeChannelFrame {
		return id, 0, fmt.Errorf("%w: not a channel frame (type %d)", ErrMalformed, frame[1])
	}
	copy(id[:], frame[2:])
	return id, binary.BigEndian.Uint64(frame[2+SessionIDSize:]), nil
}

// replayWindow accepts each counter at most once, and none more than
// ReplayWindow behind the highest accepted.
type replayWindow struct {
	mu   sync.Mutex
	top  uint64 // highest accepted counter + 1; 0 when none yet
	bits [ReplayWindow / 64]uint64
}

func (w *replayWindow) check(n uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fresh(n)
}

func (w *replayWindow) fresh(n uint64) bool {
	if n >= w.top {
		return true
	}
	if w.top-n > ReplayWindow {
		return false
	}
	return w.bits[(n/64)%uint64(len(w.bits))]&(1<<(n%64)) == 0
}

func (w *replayWindow) accept(n uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.fresh(n) {
		return false
	}
	if n >= w.top {
		// Counters top..n enter the window; their slots may still hold
		// the marks of counters ReplayWindow earlier.
		start := w.top
		if n-start >= ReplayWindow {
			start = n - ReplayWindow + 1
		}
		for c := start; ; c++ {
			w.bits[(c/64)%uint64(len(w.bits))] &^= 1 << (c % 64)
			if c == n {
				break
			}
		}
		w.top = n + 1
	}
	w.bits[(n/64)%uint64(len(w.bits))] |= 1 << (n % 64)
	return true
}

// A ClientSession is the device end of a channel session.
type ClientSession struct {
	k         *channelKeys
	confirmed atomic.Bool
	confirmMu sync.Mutex // Confirm runs once

	// For resumption (resume.go): who the session is for, and its
	// resumption secret until Ticket pairs it with the server's ticket.
	user     UserID
	device   DeviceID
	serverFP Fingerprint
	rsMu     sync.Mutex
	rs       []byte
}

// NewClientSession starts a session with the server whose key the device
// pinned: it returns the session and the setup message to send.
func NewClientSession(dev ChannelDevice, server *PublicKey, now time.Time) (*ClientSession, []byte, error) {
	if dev.User.IsZero() || dev.Device.IsZero() || dev.AuthKey == nil || server == nil {
		return nil, nil, fmt.Errorf("%w: channel device or server key missing", ErrMalformed)
	}
	var nonce [16]byte
	rand.Read(nonce[:])
	secret := make([]byte, 32)
	rand.Read(secret)
	defer clear(secret)
	fp := ServerFingerprint(server)
	b := wire.NewBuilder(ChannelSetupSize)
	b.U8(Version)
	b.U8(typeChannelSetup)
	b.Raw(dev.User[:])
	b.Raw(dev.Device[:])
	b.Raw(fp[:])
	b.I64(now.UnixMilli())
	b.Raw(nonce[:])
	b.Raw(wrapKey(server, labeled(labelChannelWrap, nonce[:]), secret))
	b.Raw(sign(dev.AuthKey, labeled(labelChannelSetup, b.Bytes())))
	setup := b.Bytes()
	cs, err := newClientEnd(secret, sessionID(setup), now, dev.User, dev.Device, fp)
	if err != nil {
		return nil, nil, err
	}
	return cs, setup, nil
}

// newClientEnd makes the device end of a session from its secret. Until the
// server confirms, the session may not outlive its setup's (or resume's)
// own validity.
func newClientEnd(secret []byte, id SessionID, at time.Time, user UserID, device DeviceID, fp Fingerprint) (*ClientSession, error) {
	k, err := deriveKeys(secret, id, true)
	if err != nil {
		return nil, err
	}
	rs, err := resumptionSecret(secret, id)
	if err != nil {
		return nil, err
	}
	k.expires = at.Add(MaxSessionLifetime)
	return &ClientSession{k: k, user: user, device: device, serverFP: fp, rs: rs}, nil
}

func sessionID(setup []byte) SessionID {
	h := sha256.Sum256(labeled(labelSessionID, setup))
	var id SessionID
	copy(id[:], h[:])
	return id
}

// confirmation frames: method and path bound into the AAD.
const confirmMethod, confirmPath = "SETUP", "/"

// Confirm checks the server's answer to the setup: the first server frame,
// which proves that the server holds its private key and says when the
// session ends.
func (c *ClientSession) Confirm(confirm []byte, now time.Time) error {
	c.confirmMu.Lock()
	defer c.confirmMu.Unlock()
	if c.confirmed.Load() {
		return fmt.Errorf("%w: channel session is already confirmed", ErrReplay)
	}
	body, ctr, err := c.k.open(kindConfirm, 0, confirmMethod, confirmPath, confirm, now)
	if err != nil {
		return fmt.Errorf("channel confirmation: %w", err)
	}
	if ctr != 0 || len(body) != 8 {
		return fmt.Errorf("%w: channel confirmation", ErrMalformed)
	}
	ms := binary.BigEndian.Uint64(body)
	if ms > math.MaxInt64 {
		return fmt.Errorf("%w: channel confirmation expiry", ErrMalformed)
	}
	exp := time.UnixMilli(int64(ms)).UTC()
	if exp.After(c.k.expires) {
		exp = c.k.expires
	}
	c.k.expires = exp
	c.confirmed.Store(true)
	return nil
}

var errNotConfirmed = fmt.Errorf("%w: channel session is not confirmed", ErrMalformed)

// ID returns the session ID.
func (c *ClientSession) ID() SessionID { return c.k.id }

// Expires returns when the session ends.
func (c *ClientSession) Expires() time.Time { return c.k.expires }

// SealRequest encrypts a request body for method and path. It returns the
// frame and its counter, which the response is bound to.
func (c *ClientSession) SealRequest(method, path string, body []byte) ([]byte, uint64, error) {
	if !c.confirmed.Load() {
		return nil, 0, errNotConfirmed
	}
	if len(method) > MaxMethodPath || len(path) > MaxMethodPath {
		return nil, 0, fmt.Errorf("%w: method or path longer than %d bytes", ErrTooLarge, MaxMethodPath)
	}
	frame := c.k.seal(kindRequest, 0, method, path, body)
	_, ctr, _ := ParseFrameHeader(frame)
	return frame, ctr, nil
}

// OpenResponse decrypts the response to the request with counter reqCtr.
func (c *ClientSession) OpenResponse(reqCtr uint64, method, path string, frame []byte, now time.Time) ([]byte, error) {
	if !c.confirmed.Load() {
		return nil, errNotConfirmed
	}
	body, _, err := c.k.open(kindResponse, reqCtr, method, path, frame, now)
	return body, err
}

// pushMethod: server pushes on the live channel answer no request.
const pushMethod, pushPath = "PUSH", "/"

// OpenPush decrypts a frame the server pushed on the live channel.
func (c *ClientSession) OpenPush(frame []byte, now time.Time) ([]byte, error) {
	if !c.confirmed.Load() {
		return nil, errNotConfirmed
	}
	body, _, err := c.k.open(kindPush, 0, pushMethod, pushPath, frame, now)
	return body, err
}

// A ServerSession is the server end of a channel session. It is safe for
// concurrent use.
type ServerSession struct {
	k      *channelKeys
	User   UserID
	Device DeviceID

	// For resumption (resume.go): when the device last proved its
	// authentication key (the full setup that started the chain), and the
	// session's resumption secret until IssueTicket seals it.
	authTime time.Time
	rsMu     sync.Mutex
	rs       []byte
}

// AcceptSession checks a setup message and starts the server end of the
// session: the setup must name this server's key, be recent (within
// MaxClockSkew of now), be new to replay, and be signed by the device's
// authentication key (from its verified, unrevoked DeviceCert). It returns
// the session and the confirmation frame to send back.
func AcceptSession(s *ChannelSetup, server *PrivateKey, deviceAuth *PublicKey, replay ReplayCache, lifetime time.Duration, now time.Time) (*ServerSession, []byte, error) {
	if !s.ServerFP.Equal(ServerFingerprint(server.Public())) {
		return nil, nil, fmt.Errorf("%w: setup is for another server key", ErrMismatch)
	}
	if d := now.Sub(s.Time); d > MaxClockSkew || d < -MaxClockSkew {
		return nil, nil, fmt.Errorf("%w: setup time %s", ErrClockSkew, s.Time.Format(time.RFC3339))
	}
	tbs := s.raw[:setupTBSSize]
	if err := verify(deviceAuth, labeled(labelChannelSetup, tbs), s.sig); err != nil {
		return nil, nil, fmt.Errorf("channel setup of %s/%s: %w", s.User, s.Device, err)
	}
	id := sessionID(s.raw)
	if replay.Seen(id, now, s.Time.Add(MaxClockSkew)) {
		return nil, nil, fmt.Errorf("%w: channel setup", ErrReplay)
	}
	secret, err := unwrapKey(server, labeled(labelChannelWrap, s.Nonce[:]), s.wrapped, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("channel setup: %w", err)
	}
	defer clear(secret)
	return newServerEnd(secret, id, s.User, s.Device, now, lifetime, now)
}

// newServerEnd makes the server end of a session from its secret and seals
// the confirmation: the session ends at now + lifetime (at most one hour).
func newServerEnd(secret []byte, id SessionID, user UserID, device DeviceID, authTime time.Time, lifetime time.Duration, now time.Time) (*ServerSession, []byte, error) {
	k, err := deriveKeys(secret, id, false)
	if err != nil {
		return nil, nil, err
	}
	rs, err := resumptionSecret(secret, id)
	if err != nil {
		return nil, nil, err
	}
	if lifetime <= 0 || lifetime > MaxSessionLifetime {
		lifetime = MaxSessionLifetime
	}
	k.expires = now.Add(lifetime)
	var body [8]byte
	binary.BigEndian.PutUint64(body[:], uint64(k.expires.UnixMilli()))
	confirm := k.seal(kindConfirm, 0, confirmMethod, confirmPath, body[:])
	return &ServerSession{k: k, User: user, Device: device, authTime: authTime, rs: rs}, confirm, nil
}

// ID returns the session ID.
func (s *ServerSession) ID() SessionID { return s.k.id }

// Expires returns when the session ends.
func (s *ServerSession) Expires() time.Time { return s.k.expires }

// OpenRequest decrypts a request frame received for method and path and
// returns its body and counter.
func (s *ServerSession) OpenRequest(method, path string, frame []byte, now time.Time) ([]byte, uint64, error) {
	return s.k.open(kindRequest, 0, method, path, frame, now)
}

// SealResponse encrypts the response to the request with counter reqCtr.
func (s *ServerSession) SealResponse(reqCtr uint64, method, path string, body []byte) []byte {
	return s.k.seal(kindResponse, reqCtr, method, path, body)
}

// SealPush encrypts a frame to push on the live channel.
func (s *ServerSession) SealPush(body []byte) []byte {
	return s.k.seal(kindPush, 0, pushMethod, pushPath, body)
}
