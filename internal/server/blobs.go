package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// maxBlobRecipients bounds the devices one blob may be fetched by.
const maxBlobRecipients = protocol.MaxRecipientDevices

// handleUpload stores an encrypted blob. The sealed header frame says its
// size, SHA-256, TTL and recipients; the body is the blob, streamed to a
// file and checked against the header before it is kept.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	req, aerr := s.headerFrame(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var in api.UploadRequest
	if aerr := decodeJSON(req.body, &in); aerr != nil {
		writeError(w, aerr)
		return
	}
	switch {
	case in.Size <= 0 || in.Size > s.opts.MaxBlobSize:
		writeError(w, api.ErrTooLarge.With("blob size must be from 1 to %d bytes", s.opts.MaxBlobSize))
		return
	case len(in.SHA256) != sha256.Size:
		writeError(w, api.ErrMalformed.With("sha256 must be 32 bytes"))
		return
	case in.TTLSeconds < 1 || in.TTLSeconds > int64(protocol.MaxTTL/time.Second):
		writeError(w, api.ErrBadTTL)
		return
	case len(in.Recipients) == 0 || len(in.Recipients) > maxBlobRecipients:
		writeError(w, api.ErrMalformed.With("a blob needs 1 to %d recipient devices", maxBlobRecipients))
		return
	}
	if r.ContentLength >= 0 && r.ContentLength != in.Size {
		writeError(w, api.ErrMalformed.With("body is %d bytes, header says %d", r.ContentLength, in.Size))
		return
	}
	var id store.BlobID
	rand.Read(id[:])
	final := filepath.Join(s.opts.BlobDir, id.String())
	tmp, err := os.CreateTemp(s.opts.BlobDir, "upload-*")
	if err != nil {
		s.internalError(w, r, "creating blob file", err)
		return
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // no-op once renamed
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r.Body, in.Size+1))
	if err != nil {
		writeError(w, api.ErrMalformed.With("reading blob: %v", err))
		return
	}
	s.metrics.blobBytes.WithLabelValues("up").Add(float64(n))
	if n != in.Size {
		writeError(w, api.ErrMalformed.With("blob is %d bytes, header says %d", n, in.Size))
		return
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), in.SHA256) != 1 {
		writeError(w, api.ErrMalformed.With("blob does not match its SHA-256"))
		return
	}
	if err := tmp.Sync(); err != nil {
		s.internalError(w, r, "syncing blob", err)
		return
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		s.internalError(w, r, "storing blob", err)
		return
	}
	now := s.opts.Now()
	b := store.Blob{ID: id, OwnerUser: req.sess.User, OwnerDevice: req.sess.Device, Size: in.Size,
		Expires: now.Add(time.Duration(in.TTLSeconds) * time.Second), Created: now}
	for _, rc := range in.Recipients {
		b.Recipients = append(b.Recipients, store.BlobRecipient{User: rc.User, Device: rc.Device})
	}
	if err := s.opts.Store.CreateBlob(r.Context(), b); err != nil {
		os.Remove(final)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, api.ErrDeviceUnknown.With("a recipient device does not exist"))
		case errors.Is(err, store.ErrInvalid):
			writeError(w, api.ErrMalformed.With("%v", err))
		default:
			s.internalError(w, r, "storing blob metadata", err)
		}
		return
	}
	w.Header().Set("Content-Type", api.ContentFrame)
	w.Write(req.sess.SealResponse(req.ctr, r.Method, r.URL.Path, marshal(api.UploadResponse{ID: id.String(), Expires: b.Expires.UnixMilli()})))
}

// handleDownload streams a blob to one of its recipient devices. Once every
// recipient has fetched it, it is deleted.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	req, aerr := s.headerFrame(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	raw, err := hex.DecodeString(r.PathValue("id"))
	if err != nil || len(raw) != store.BlobIDSize {
		writeError(w, api.ErrMalformed.With("blob ID must be 32 hexadecimal characters"))
		return
	}
	var id store.BlobID
	copy(id[:], raw)
	b, err := s.opts.Store.Blob(r.Context(), id, s.opts.Now())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, api.ErrNotFound.With("no such blob, or it expired"))
		return
	}
	if err != nil {
		s.internalError(w, r, "reading blob metadata", err)
		return
	}
	allowed := false
	for _, rc := range b.Recipients {
		allowed = allowed || (rc.User == req.sess.User && rc.Device == req.sess.Device)
	}
	if !allowed {
		// The same answer as for a blob that does not exist.
		writeError(w, api.ErrNotFound.With("no such blob, or it expired"))
		return
	}
	f, err := os.Open(filepath.Join(s.opts.BlobDir, id.String()))
	if errors.Is(err, os.ErrNotExist) {
		// Deleted since the metadata was read: by another request or, in a
		// cluster sharing the blob directory, by another node's sweeper.
		writeError(w, api.ErrNotFound.With("no such blob, or it expired"))
		return
	}
	if err != nil {
		s.internalError(w, r, "opening blob", err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", api.ContentBlob)
	w.Header().Set("Content-Length", strconv.FormatInt(b.Size, 10))
	w.Header().Set("Cache-Control", "no-store")
	n, err := io.Copy(w, f)
	s.metrics.blobBytes.WithLabelValues("down").Add(float64(n))
	if err != nil || n != b.Size {
		return // the client saw a short body and will fetch again
	}
	// The response is complete; the fetch counts even if the client then
	// goes away, since it has every byte.
	ctx := context.WithoutCancel(r.Context())
	remaining, err := s.opts.Store.MarkBlobFetched(ctx, id, req.sess.User, req.sess.Device)
	if err != nil {
		s.opts.Logger.Error("marking blob fetched", "err", err)
		return
	}
	if remaining == 0 {
		if err := s.opts.Store.DeleteBlob(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.opts.Logger.Error("deleting fetched blob", "err", err)
		}
		s.removeBlobFiles([]store.BlobID{id})
	}
}
