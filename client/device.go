package client

import (
	"context"
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// A Device holds one device's credentials: its IDs, the user's identity
// key (every linked device holds it), its own encryption and
// authentication keys, and its certificate.
type Device struct {
	User     protocol.UserID
	ID       protocol.DeviceID
	Identity *protocol.PrivateKey
	Enc      *protocol.PrivateKey
	Auth     *protocol.PrivateKey
	Cert     *protocol.DeviceCert
}

// NewUser makes the credentials of a new user and its first device: a
// random user ID and fresh identity, encryption and authentication keys.
// Key generation takes a moment (three RSA-3072 keys).
func NewUser(now time.Time) (*Device, error) {
	identity, err := protocol.GenerateKey()
	if err != nil {
		return nil, err
	}
	return NewDevice(protocol.NewUserID(), identity, now)
}

// NewDevice makes the credentials of a new device of an existing user,
// certified by the user's identity key.
func NewDevice(user protocol.UserID, identity *protocol.PrivateKey, now time.Time) (*Device, error) {
	enc, err := protocol.GenerateKey()
	if err != nil {
		return nil, err
	}
	auth, err := protocol.GenerateKey()
	if err != nil {
		return nil, err
	}
	return NewDeviceFromKeys(user, protocol.NewDeviceID(), identity, enc, auth, now)
}

// NewDeviceFromKeys certifies a device made of keys the caller already has
// (restored from storage, or provisioned).
func NewDeviceFromKeys(user protocol.UserID, id protocol.DeviceID, identity, enc, auth *protocol.PrivateKey, now time.Time) (*Device, error) {
	cert, err := protocol.CertifyDevice(identity, user, id, enc.Public(), auth.Public(), now)
	if err != nil {
		return nil, err
	}
	return &Device{User: user, ID: id, Identity: identity, Enc: enc, Auth: auth, Cert: cert}, nil
}

func (d *Device) channelDevice() protocol.ChannelDevice {
	return protocol.ChannelDevice{User: d.User, Device: d.ID, AuthKey: d.Auth}
}

// Recipient returns the device as the opener of envelopes.
func (d *Device) Recipient() protocol.Recipient {
	return protocol.Recipient{User: d.User, Device: d.ID, Key: d.Enc}
}

// Sender returns the device as the sealer of envelopes.
func (d *Device) Sender() protocol.Sender {
	return protocol.Sender{User: d.User, Device: d.ID, Identity: d.Identity}
}

// Fingerprint returns the user's identity fingerprint.
func (d *Device) Fingerprint() protocol.Fingerprint {
	return protocol.IdentityFingerprint(d.Identity.Public())
}

// Register creates the device's user on the server, with an invite token
// (empty on a server with open registration), and returns a Conn for it.
func Register(ctx context.Context, opts Options, dev *Device, inviteToken string) (*Conn, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	info, key, err := fetchInfo(ctx, &opts)
	if err != nil {
		return nil, err
	}
	req := api.RegisterRequest{Invite: inviteToken, IdentityKey: dev.Identity.Public().Bytes(), DeviceCert: dev.Cert.Bytes()}
	var resp api.RegisterResponse
	if err := plainCall(ctx, &opts, "POST", "/v1/register", req, &resp); err != nil {
		return nil, fmt.Errorf("registering: %w", err)
	}
	if resp.User != dev.User || resp.Device != dev.ID {
		return nil, fmt.Errorf("registering: server confirmed %s/%s, not %s/%s", resp.User, resp.Device, dev.User, dev.ID)
	}
	return &Conn{opts: opts, dev: dev, serverKey: key, info: *info}, nil
}
