package server

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// sessionTable maps session IDs to live channel sessions. Sessions live in
// memory only: after a restart, clients set up new ones.
type sessionTable struct {
	mu       sync.RWMutex
	sessions map[protocol.SessionID]*protocol.ServerSession
	drops    uint64 // bumped by every dropDevice (see addActive)

	// Resumption tickets: keys derived from the server key, so that a
	// restarted server and every node of a cluster open each other's
	// tickets with nothing stored or shared (docs/PROTOCOL.md, 18).
	ticketOnce sync.Once
	tk         *protocol.TicketKeys
}

// ticketKeys returns the ticket keys of the server key, made on first use.
func (t *sessionTable) ticketKeys(key *protocol.PrivateKey) *protocol.TicketKeys {
	t.ticketOnce.Do(func() { t.tk = protocol.NewTicketKeys(key) })
	return t.tk
}

func newSessionTable() *sessionTable {
	return &sessionTable{sessions: map[protocol.SessionID]*protocol.ServerSession{}}
}

func (t *sessionTable) add(s *protocol.ServerSession) {
	t.mu.Lock()
	t.sessions[s.ID()] = s
	t.mu.Unlock()
}

// dropCount returns the number of dropDevice calls so far.
func (t *sessionTable) dropCount() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.drops
}

func (t *sessionTable) remove(id protocol.SessionID) {
	t.mu.Lock()
	delete(t.sessions, id)
	t.mu.Unlock()
}

// addActive adds a session whose device was read as active after
// dropCount returned drops. A revocation commits, then drops the device's
// sessions (here, or on other nodes from the bus notice): if no drop
// happened since that read, a later one will find the session; if one
// did, it may have been this device's, committed after the read, and the
// device is read again. Without this, a session set up across a
// revocation would serve the revoked device until it expires.
func (s *Server) addActive(ctx context.Context, sess *protocol.ServerSession, drops uint64) *api.Error {
	s.sessions.add(sess)
	if s.sessions.dropCount() == drops {
		return nil
	}
	dev, err := s.opts.Store.Device(ctx, sess.User, sess.Device)
	if err == nil && !dev.IsRevoked() {
		return nil
	}
	s.sessions.remove(sess.ID())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return s.storeError("looking up device", err)
	}
	return api.ErrDeviceUnknown
}

func (t *sessionTable) get(id protocol.SessionID) *protocol.ServerSession {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.sessions[id]
}

func (t *sessionTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.sessions)
}

// dropDevice ends every session of a device (revocation, account deletion).
func (t *sessionTable) dropDevice(u protocol.UserID, d protocol.DeviceID, all bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drops++
	for id, s := range t.sessions {
		if s.User == u && (all || s.Device == d) {
			delete(t.sessions, id)
		}
	}
}

func (t *sessionTable) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, s := range t.sessions {
		if !now.Before(s.Expires()) {
			delete(t.sessions, id)
		}
	}
}

// handleSession sets up a channel session: the body is a setup message;
// the answer is the confirmation frame. Or it resumes one: the body is a
// resume message (handleResume). Either answer carries the new session's
// resumption ticket in the TicketHeader.
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	body, aerr := readBody(w, r, protocol.ChannelSetupSize+1)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if protocol.IsResume(body) {
		s.handleResume(w, r, body)
		return
	}
	setup, err := protocol.ParseChannelSetup(body)
	if err != nil {
		writeError(w, protocolError(err, api.ErrMalformed))
		return
	}
	drops := s.sessions.dropCount()
	dev, err := s.opts.Store.Device(r.Context(), setup.User, setup.Device)
	if err != nil || dev.IsRevoked() {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			writeError(w, s.storeError("looking up device", err))
			return
		}
		writeError(w, api.ErrDeviceUnknown)
		return
	}
	authKey, err := protocol.ParsePublicKey(dev.AuthKey)
	if err != nil {
		s.internalError(w, r, "stored auth key", err)
		return
	}
	sess, confirm, err := protocol.AcceptSession(setup, s.opts.Key, authKey, s.opts.ReplayCache, s.opts.SessionLifetime, s.opts.Now())
	if err != nil {
		switch {
		case errors.Is(err, protocol.ErrMismatch):
			writeError(w, api.ErrMalformed.With("setup is for another server key; check the server fingerprint you pinned"))
		case errors.Is(err, protocol.ErrDecrypt):
			writeError(w, api.ErrMalformed.With("setup key does not decrypt"))
		default:
			writeError(w, protocolError(err, api.ErrMalformed))
		}
		return
	}
	if aerr := s.addActive(r.Context(), sess, drops); aerr != nil {
		writeError(w, aerr)
		return
	}
	s.metrics.sessionsCreated.Inc()
	s.issueTicket(w, sess)
	w.Header().Set("Content-Type", api.ContentFrame)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(confirm)
}

// handleResume resumes a session with a ticket: no RSA. The ticket and the
// binder are checked first (AES-GCM and HMAC, cheap), then the device must
// still exist and not be revoked, then the ticket is spent in the replay
// cache, which every node of a cluster shares. Any refusal tells the
// client to set up a full session.
func (s *Server) handleResume(w http.ResponseWriter, r *http.Request, body []byte) {
	q, err := protocol.ParseResume(body)
	if err != nil {
		writeError(w, protocolError(err, api.ErrMalformed))
		return
	}
	now := s.opts.Now()
	if err := s.sessions.ticketKeys(s.opts.Key).Check(q, now); err != nil {
		writeError(w, resumeRefused(err))
		return
	}
	drops := s.sessions.dropCount()
	dev, err := s.opts.Store.Device(r.Context(), q.User, q.Device)
	if err != nil || dev.IsRevoked() {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			writeError(w, s.storeError("looking up device", err))
			return
		}
		writeError(w, api.ErrDeviceUnknown)
		return
	}
	sess, answer, err := protocol.AcceptResume(q, s.opts.ReplayCache, s.opts.SessionLifetime, now)
	if err != nil {
		writeError(w, resumeRefused(err))
		return
	}
	if aerr := s.addActive(r.Context(), sess, drops); aerr != nil {
		writeError(w, aerr)
		return
	}
	s.metrics.sessionsCreated.Inc()
	s.issueTicket(w, sess)
	w.Header().Set("Content-Type", api.ContentResume)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(answer)
}

// resumeRefused: a clock too far off is the device's to fix (a full setup
// would fail the same way); any other refusal of a resume means "set up a
// full session", with the reason for the logs. That includes a ticket of
// another version (docs/PROTOCOL.md 18.8: steps 3 to 8 are 40101); the
// resume message's own version is answered before, by ParseResume.
func resumeRefused(err error) *api.Error {
	if errors.Is(err, protocol.ErrClockSkew) {
		return protocolError(err, api.ErrMalformed)
	}
	return api.ErrSessionUnknown.With("resumption refused (%v); set up a full session", err)
}

// issueTicket adds the session's resumption ticket to the answer. A
// session whose chain has ended (24 hours after its full setup) gets none:
// the device sets up a full session next time.
func (s *Server) issueTicket(w http.ResponseWriter, sess *protocol.ServerSession) {
	t, err := s.sessions.ticketKeys(s.opts.Key).IssueTicket(sess, s.opts.Now())
	if err != nil {
		return
	}
	w.Header().Set(api.TicketHeader, base64.RawURLEncoding.EncodeToString(t))
}

// An authRequest is a request whose frame opened under a session.
type authRequest struct {
	sess *protocol.ServerSession
	body []byte
	ctr  uint64
}

// authHandler answers an authenticated request with a response body to
// seal, or an error.
type authHandler func(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error)

// authed wraps a handler with the secure channel: the body is a frame,
// opened for the request's method and path; the handler's answer is sealed
// for the same.
func (s *Server) authed(limit int64, h authHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, aerr := readBody(w, r, limit)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		req, aerr := s.openFrame(r, body)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		resp, aerr := h(r.Context(), r, req)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		w.Header().Set("Content-Type", api.ContentFrame)
		w.Header().Set("Cache-Control", "no-store")
		w.Write(req.sess.SealResponse(req.ctr, r.Method, r.URL.Path, resp))
	}
}

// headerFrame opens the frame a blob route carries in its FrameHeader.
func (s *Server) headerFrame(r *http.Request) (*authRequest, *api.Error) {
	h := r.Header.Get(api.FrameHeader)
	if h == "" {
		return nil, api.ErrUnauthorized.With("missing %s header", api.FrameHeader)
	}
	if len(h) > 64<<10 {
		return nil, api.ErrTooLarge.With("%s header too large", api.FrameHeader)
	}
	frame, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, api.ErrMalformed.With("%s header is not base64url", api.FrameHeader)
	}
	return s.openFrame(r, frame)
}

func (s *Server) openFrame(r *http.Request, frame []byte) (*authRequest, *api.Error) {
	id, _, err := protocol.ParseFrameHeader(frame)
	if err != nil {
		return nil, protocolError(err, api.ErrUnauthorized)
	}
	sess := s.sessions.get(id)
	if sess == nil {
		return nil, api.ErrSessionUnknown
	}
	now := s.opts.Now()
	body, ctr, err := sess.OpenRequest(r.Method, r.URL.Path, frame, now)
	if err != nil {
		switch {
		case errors.Is(err, protocol.ErrExpired):
			return nil, api.ErrSessionUnknown
		case errors.Is(err, protocol.ErrReplay):
			return nil, api.ErrReplay
		default:
			return nil, api.ErrFrame
		}
	}
	if !s.allowDeviceShared(r.Context(), sess.User, sess.Device, now) {
		s.metrics.rateLimited.WithLabelValues("device").Inc()
		return nil, api.ErrRateLimited
	}
	return &authRequest{sess: sess, body: body, ctr: ctr}, nil
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		writeError(w, api.ErrUnavailable.With("request ended"))
		return
	}
	s.opts.Logger.Error("internal error", "route", r.Pattern, "what", what, "err", err)
	writeError(w, api.ErrInternal)
}
