package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// handleRegister creates an account from an identity key and a first
// device certificate signed by it, consuming an invite unless
// registration is open.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if s.opts.Registration == RegistrationClosed {
		writeError(w, api.ErrRegistration)
		return
	}
	body, aerr := readBody(w, r, maxJSONBody)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var req api.RegisterRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		writeError(w, aerr)
		return
	}
	identity, err := protocol.ParsePublicKey(req.IdentityKey)
	if err != nil {
		writeError(w, protocolError(err, api.ErrBadKey))
		return
	}
	cert, err := protocol.ParseDeviceCert(req.DeviceCert)
	if err != nil {
		writeError(w, protocolError(err, api.ErrMalformed))
		return
	}
	if err := cert.Verify(identity); err != nil {
		writeError(w, protocolError(err, api.ErrBadSignature))
		return
	}
	var inviteHash *[32]byte
	if s.opts.Registration == RegistrationInvite {
		if protocol.CheckToken(req.Invite) != nil {
			writeError(w, api.ErrInvite)
			return
		}
		h := sha256.Sum256([]byte(req.Invite))
		inviteHash = &h
	}
	now := s.opts.Now()
	err = s.opts.Store.Register(r.Context(),
		store.User{ID: cert.User, IdentityKey: identity.Bytes(), Created: now},
		deviceFromCert(cert), inviteHash, now)
	switch {
	case errors.Is(err, store.ErrInviteInvalid):
		writeError(w, api.ErrInvite)
	case errors.Is(err, store.ErrExists):
		writeError(w, api.ErrExists.With("user ID is taken; choose another at random"))
	case err != nil:
		s.internalError(w, r, "registering", err)
	default:
		s.opts.Logger.Info("user registered")
		writeJSON(w, http.StatusOK, api.RegisterResponse{User: cert.User, Device: cert.Device})
	}
}

func deviceFromCert(c *protocol.DeviceCert) store.Device {
	return store.Device{
		User: c.User, ID: c.Device, Certificate: c.Bytes(),
		EncryptionKey: c.EncryptionKey.Bytes(), AuthKey: c.AuthKey.Bytes(), Created: c.Created,
	}
}

// handleDirectory returns a user's identity key and device certificates
// to an authenticated device, within its directory rate limit.
func (s *Server) handleDirectory(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error) {
	if !s.allowDirectoryShared(ctx, req.sess.User, req.sess.Device, s.opts.Now()) {
		s.metrics.rateLimited.WithLabelValues("directory").Inc()
		return nil, api.ErrRateLimited.With("key directory lookups are limited per device")
	}
	user, err := protocol.ParseUserID(r.PathValue("user"))
	if err != nil {
		return nil, api.ErrMalformed.With("%v", err)
	}
	u, err := s.opts.Store.User(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.ErrUserUnknown
	}
	if err != nil {
		return nil, s.storeError("reading user", err)
	}
	devs, err := s.opts.Store.Devices(ctx, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, s.storeError("reading devices", err)
	}
	dir := api.Directory{User: u.ID, IdentityKey: u.IdentityKey, Devices: [][]byte{}, Revocations: [][]byte{}}
	for _, d := range devs {
		dir.Devices = append(dir.Devices, d.Certificate)
		if d.IsRevoked() {
			dir.Revocations = append(dir.Revocations, d.Revocation)
		}
	}
	return marshal(dir), nil
}

// handleAddDevice links a new device to the caller's user: its certificate
// must be signed by the user's identity key.
func (s *Server) handleAddDevice(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error) {
	var in api.AddDeviceRequest
	if aerr := decodeJSON(req.body, &in); aerr != nil {
		return nil, aerr
	}
	cert, err := protocol.ParseDeviceCert(in.DeviceCert)
	if err != nil {
		return nil, protocolError(err, api.ErrMalformed)
	}
	if cert.User != req.sess.User {
		return nil, api.ErrForbidden.With("a device can only link devices of its own user")
	}
	identity, aerr := s.identityKey(ctx, req.sess.User)
	if aerr != nil {
		return nil, aerr
	}
	if err := cert.Verify(identity); err != nil {
		return nil, protocolError(err, api.ErrBadSignature)
	}
	err = s.opts.Store.AddDevice(ctx, deviceFromCert(cert))
	if errors.Is(err, store.ErrExists) {
		return nil, api.ErrExists.With("device ID is taken")
	}
	if err != nil {
		return nil, s.storeError("adding device", err)
	}
	s.devices.invalidate(cert.User)
	return marshal(api.OK{OK: true}), nil
}

// handleRevoke revokes a device of the caller's user (itself or another)
// on the strength of a revocation signed by the identity key.
func (s *Server) handleRevoke(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error) {
	var in api.RevokeRequest
	if aerr := decodeJSON(req.body, &in); aerr != nil {
		return nil, aerr
	}
	rev, err := protocol.ParseRevocation(in.Revocation)
	if err != nil {
		return nil, protocolError(err, api.ErrMalformed)
	}
	if rev.User != req.sess.User {
		return nil, api.ErrForbidden.With("a device can only revoke devices of its own user")
	}
	identity, aerr := s.identityKey(ctx, req.sess.User)
	if aerr != nil {
		return nil, aerr
	}
	if err := rev.Verify(identity); err != nil {
		return nil, protocolError(err, api.ErrBadSignature)
	}
	err = s.opts.Store.RevokeDevice(ctx, rev.User, rev.Device, rev.Bytes(), s.opts.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, api.ErrNotFound.With("no such device")
	case errors.Is(err, store.ErrRevoked):
		return nil, api.ErrExists.With("device is already revoked")
	case err != nil:
		return nil, s.storeError("revoking device", err)
	}
	// After the commit, before the answer: from now on no send on this
	// node routes to the device (see deviceCache); other nodes hear it
	// from hub.dropDevice's bus notice.
	s.devices.invalidate(rev.User)
	s.sessions.dropDevice(rev.User, rev.Device, false)
	s.hub.dropDevice(rev.User, rev.Device, false)
	s.opts.Logger.Info("device revoked")
	return marshal(api.OK{OK: true}), nil
}

// handleDeleteAccount deletes the caller's user with everything the server
// holds for it: keys, devices, queues and blobs, at once.
func (s *Server) handleDeleteAccount(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error) {
	blobs, err := s.opts.Store.DeleteUser(ctx, req.sess.User)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, s.storeError("deleting account", err)
	}
	s.devices.invalidate(req.sess.User)
	s.removeBlobFiles(blobs)
	s.sessions.dropDevice(req.sess.User, req.sess.Device, true)
	s.hub.dropDevice(req.sess.User, req.sess.Device, true)
	s.opts.Logger.Info("account deleted")
	return marshal(api.OK{OK: true}), nil
}

func (s *Server) removeBlobFiles(ids []store.BlobID) {
	for _, id := range ids {
		if err := os.Remove(filepath.Join(s.opts.BlobDir, id.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.opts.Logger.Error("removing blob file", "err", err)
		}
	}
}

func (s *Server) identityKey(ctx context.Context, user protocol.UserID) (*protocol.PublicKey, *api.Error) {
	u, err := s.opts.Store.User(ctx, user)
	if err != nil {
		return nil, s.storeError("reading user", err)
	}
	k, err := protocol.ParsePublicKey(u.IdentityKey)
	if err != nil {
		return nil, s.storeError("stored identity key", err)
	}
	return k, nil
}

func (s *Server) storeError(what string, err error) *api.Error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return api.ErrUnavailable.With("request ended")
	}
	if errors.Is(err, store.ErrNotFound) {
		return api.ErrNotFound
	}
	s.opts.Logger.Error("store error", "what", what, "err", err)
	return api.ErrUnavailable.With("storage is not answering")
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("server: marshaling a response failed: " + err.Error())
	}
	return b
}
