package client

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// Send submits a sealed envelope and returns what became of each device's
// copy.
func (c *Conn) Send(ctx context.Context, envelope []byte) (*api.SendResponse, error) {
	var resp api.SendResponse
	if err := c.call(ctx, "POST", "/v1/send", envelope, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Directory fetches a user's identity key and device list as the server
// holds them. Verify them against a pinned identity key with
// protocol.VerifyDeviceList before use; Devices does both.
func (c *Conn) Directory(ctx context.Context, user protocol.UserID) (*api.Directory, error) {
	var dir api.Directory
	if err := c.call(ctx, "POST", "/v1/directory/"+user.String(), nil, &dir); err != nil {
		return nil, err
	}
	if dir.User != user {
		return nil, fmt.Errorf("directory: asked for %s, got %s", user, dir.User)
	}
	return &dir, nil
}

// Devices fetches a user's devices and verifies them under the pinned
// identity key: a list that does not verify is refused whole.
func (c *Conn) Devices(ctx context.Context, user protocol.UserID, pinned *protocol.PublicKey) ([]*protocol.DeviceCert, error) {
	dir, err := c.Directory(ctx, user)
	if err != nil {
		return nil, err
	}
	key, err := protocol.ParsePublicKey(dir.IdentityKey)
	if err != nil {
		return nil, err
	}
	if !key.Equal(pinned) {
		return nil, fmt.Errorf("%w: the identity key of %s changed", protocol.ErrMismatch, user)
	}
	return protocol.VerifyDeviceList(pinned, user, dir.Devices, dir.Revocations)
}

// AddDevice registers a new device certificate of the Conn's user.
func (c *Conn) AddDevice(ctx context.Context, cert *protocol.DeviceCert) error {
	return c.call(ctx, "POST", "/v1/devices/add", mustJSON(api.AddDeviceRequest{DeviceCert: cert.Bytes()}), nil)
}

// Revoke revokes a device of the Conn's user (itself included).
func (c *Conn) Revoke(ctx context.Context, device protocol.DeviceID) error {
	rev, err := protocol.RevokeDevice(c.dev.Identity, c.dev.User, device, c.opts.Now())
	if err != nil {
		return err
	}
	return c.call(ctx, "POST", "/v1/devices/revoke", mustJSON(api.RevokeRequest{Revocation: rev.Bytes()}), nil)
}

// DeleteAccount deletes the user, all its devices, queues and blobs from
// the server.
func (c *Conn) DeleteAccount(ctx context.Context) error {
	return c.call(ctx, "POST", "/v1/account/delete", []byte("{}"), nil)
}

// Inbox fetches queued envelopes, waiting up to wait for one to arrive.
func (c *Conn) Inbox(ctx context.Context, limit int, wait time.Duration) (*api.InboxResponse, error) {
	var resp api.InboxResponse
	if err := c.call(ctx, "POST", "/v1/inbox", mustJSON(api.InboxRequest{Limit: limit, WaitMillis: wait.Milliseconds()}), &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Ack acknowledges received messages; the server deletes them at once.
func (c *Conn) Ack(ctx context.Context, ids ...protocol.MessageID) error {
	return c.call(ctx, "POST", "/v1/ack", mustJSON(api.AckRequest{IDs: ids}), nil)
}

// Upload stores an encrypted blob of size bytes read from r, fetchable by
// the given devices until ttl ends. sum is its SHA-256.
func (c *Conn) Upload(ctx context.Context, r io.Reader, size int64, sum [32]byte, ttl time.Duration, to []api.Address) (*api.UploadResponse, error) {
	hdr := mustJSON(api.UploadRequest{Size: size, SHA256: sum[:], TTLSeconds: int64(ttl / time.Second), Recipients: to})
	resp, sess, ctr, err := c.headerRequest(ctx, http.MethodPost, "/v1/blobs", hdr, r, size)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, err
	}
	plain, err := sess.OpenResponse(ctr, http.MethodPost, "/v1/blobs", data, c.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("server's answer does not authenticate: %w", err)
	}
	var out api.UploadResponse
	if err := json.Unmarshal(plain, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Download fetches a blob and checks it against its SHA-256 (from the
// message that referenced it) as it is read: the returned reader fails at
// the end if the bytes differ. Close it.
func (c *Conn) Download(ctx context.Context, id string, sum [32]byte) (io.ReadCloser, int64, error) {
	path := "/v1/blobs/" + id
	resp, _, _, err := c.headerRequest(ctx, http.MethodGet, path, []byte("{}"), nil, 0)
	if err != nil {
		return nil, 0, err
	}
	return &checkedReader{rc: resp.Body, h: sha256.New(), want: sum}, resp.ContentLength, nil
}

type checkedReader struct {
	rc io.ReadCloser
	h  interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	want [32]byte
}

func (r *checkedReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.h.Write(p[:n])
	if err == io.EOF {
		var got [32]byte
		copy(got[:], r.h.Sum(nil))
		if got != r.want {
			return n, fmt.Errorf("%w: blob does not match its SHA-256", protocol.ErrDecrypt)
		}
	}
	return n, err
}

func (r *checkedReader) Close() error { return r.rc.Close() }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("client: marshaling a request failed: " + err.Error())
	}
	return b
}
