package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// Content types of the messages the SDK sends. Every one of them is an
// end-to-end encrypted message like any other: the server cannot tell a
// receipt from text.
const (
	ContentText    = "text/plain; charset=utf-8"
	ContentReceipt = "application/x.qrtalk.receipt+json"
	ContentTyping  = "application/x.qrtalk.typing"
	ContentGroup   = "application/x.qrtalk.group+json"
)

// Signature statuses shown for every message.
const (
	SigVerified      = "verified"       // signed by a verified contact (or by this user)
	SigUnverifiedKey = "unverified key" // signed, but the key was not verified in person, or the sender is unknown
	SigUnsigned      = "unsigned"       // the sender chose not to sign: it proves nothing about who sent it
	SigInvalid       = "invalid"        // a signature that does not verify: never shown as content
)

// SendOptions tune a send.
type SendOptions struct {
	// TTL is the message's time to live (default 1 hour, at most 7 days).
	TTL time.Duration
	// Unsigned sends without the identity signature.
	Unsigned bool
	// Files are attached: each is encrypted, uploaded with the message's
	// TTL and referenced from inside the message.
	Files []string
	// Progress, if set, is called as attachments upload.
	Progress func(name string, done, total int64)
	// ContentType overrides ContentText.
	ContentType string
}

// SendResult says what became of a message.
type SendResult struct {
	ID      protocol.MessageID
	Expires time.Time
	Devices []api.DeviceResult
}

// A conversation is a contact or a group.
type conversation struct {
	key     string // "u:<user ID>" or "g:<group ID hex>"
	name    string
	groupID []byte
	members []*Contact
}

// Send sends a message to a contact or a group (by name or ID): sealed
// once for every device of every recipient, this user's other devices
// included, and kept in the local store.
func (a *Account) Send(ctx context.Context, to string, body []byte, opts SendOptions) (*SendResult, error) {
	conv, err := a.resolve(ctx, to)
	if err != nil {
		return nil, err
	}
	if opts.TTL == 0 {
		opts.TTL = time.Hour
	}
	if opts.ContentType == "" {
		opts.ContentType = ContentText
	}
	msg := &protocol.Message{ContentType: opts.ContentType, Body: body, GroupID: conv.groupID}
	return a.sendTo(ctx, conv, msg, opts)
}

func (a *Account) sendTo(ctx context.Context, conv *conversation, msg *protocol.Message, opts SendOptions) (*SendResult, error) {
	if opts.TTL < protocol.MinTTL || opts.TTL > protocol.MaxTTL || opts.TTL%time.Second != 0 {
		return nil, fmt.Errorf("TTL must be whole seconds from 1s to 7 days (168h), not %v", opts.TTL)
	}
	conn, err := a.Conn(ctx)
	if err != nil {
		return nil, err
	}
	// Receipts and typing events concern the other party only; messages
	// and group changes go to this user's other devices too.
	ownToo := msg.ContentType != ContentReceipt && msg.ContentType != ContentTyping
	rcpts, err := a.recipientDevices(ctx, conv, ownToo)
	if err != nil {
		return nil, err
	}
	for _, path := range opts.Files {
		att, err := a.upload(ctx, conn, path, opts, rcpts)
		if err != nil {
			return nil, err
		}
		msg.Attachments = append(msg.Attachments, *att)
	}
	now := a.now()
	env, err := protocol.Seal(msg, a.dev.Sender(), rcpts, protocol.SealOptions{Sent: now, TTL: opts.TTL, Unsigned: opts.Unsigned})
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseEnvelope(env)
	if err != nil {
		return nil, err
	}
	// Keep our own copy, as the envelope sealed for this device, before
	// sending: a receipt can come back before Send returns, and must find
	// the message to mark. A send that fails takes the copy away again.
	kept := false
	if !isControl(msg.ContentType) {
		for i, d := range parsed.Devices {
			if d.User == a.dev.User && d.Device == a.dev.ID {
				if err := a.storeEnvelope(ctx, conv.key, true, parsed, parsed.For(i)); err != nil {
					return nil, err
				}
				kept = true
			}
		}
	}
	resp, err := conn.Send(ctx, env)
	if err != nil {
		if kept {
			_, _ = a.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM messages WHERE id = ?`, parsed.ID.String())
		}
		return nil, err
	}
	res := &SendResult{ID: resp.ID, Expires: time.UnixMilli(resp.Expires)}
	for _, r := range resp.Results {
		if r.Status != api.StatusSelf {
			res.Devices = append(res.Devices, r)
		}
	}
	return res, nil
}

func isControl(ct string) bool {
	return ct == ContentReceipt || ct == ContentTyping || ct == ContentGroup
}

// recipientDevices: every verified device of every member, and every
// device of this user (this one included, for the local copy: the server
// does not route it).
func (a *Account) recipientDevices(ctx context.Context, conv *conversation, ownToo bool) ([]protocol.DeviceRecipient, error) {
	var out []protocol.DeviceRecipient
	for _, c := range conv.members {
		certs, err := a.contactDevices(ctx, c)
		if err != nil {
			return nil, err
		}
		for _, cert := range certs {
			out = append(out, protocol.DeviceRecipient{User: cert.User, Device: cert.Device, Key: cert.EncryptionKey})
		}
	}
	if !ownToo {
		if len(out) == 0 {
			return nil, fmt.Errorf("%s has no device to send to", conv.name)
		}
		return out, nil
	}
	own, err := a.ownDevices(ctx)
	if err != nil {
		return nil, err
	}
	for _, cert := range own {
		out = append(out, protocol.DeviceRecipient{User: cert.User, Device: cert.Device, Key: cert.EncryptionKey})
	}
	return out, nil
}

// ownDevices lists this user's devices, verified under its own identity key.
func (a *Account) ownDevices(ctx context.Context) ([]*protocol.DeviceCert, error) {
	conn, err := a.Conn(ctx)
	if err != nil {
		return nil, err
	}
	certs, err := conn.Devices(ctx, a.dev.User, a.dev.Identity.Public())
	if err != nil {
		return nil, fmt.Errorf("your own device list: %w", err)
	}
	for _, c := range certs {
		if c.Device == a.dev.ID {
			return certs, nil
		}
	}
	return nil, errors.New("this device is not in your device list: it was revoked")
}

// resolve finds a contact or a group by name or ID.
func (a *Account) resolve(ctx context.Context, who string) (*conversation, error) {
	if c, err := a.Contact(ctx, who); err == nil {
		return &conversation{key: "u:" + c.User.String(), name: c.Name, members: []*Contact{c}}, nil
	} else if !errors.Is(err, ErrNoContact) {
		return nil, err
	}
	if g, err := a.Group(ctx, who); err == nil {
		conv := &conversation{key: "g:" + hex.EncodeToString(g.ID), name: g.Name, groupID: g.ID}
		for _, u := range g.Members {
			if u == a.dev.User {
				continue
			}
			c, err := a.Contact(ctx, u.String())
			if err != nil {
				return nil, fmt.Errorf("group %s: member %s is not a contact; add them first", g.Name, u)
			}
			conv.members = append(conv.members, c)
		}
		return conv, nil
	} else if !errors.Is(err, ErrNoGroup) {
		return nil, err
	}
	return nil, fmt.Errorf("%w or group: %q", ErrNoContact, who)
}

// upload encrypts a file and uploads it for the recipient devices.
func (a *Account) upload(ctx context.Context, conn *Conn, path string, opts SendOptions, rcpts []protocol.DeviceRecipient) (*protocol.Attachment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	// Encrypt to a temporary file first: the upload needs its size and hash.
	tmp, err := os.CreateTemp(a.dir, ".upload-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	key := protocol.NewBlobKey()
	h := sha256.New()
	w, err := protocol.EncryptBlob(io.MultiWriter(tmp, h), key)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, f); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	var to []api.Address
	for _, r := range rcpts {
		if r.User == a.dev.User && r.Device == a.dev.ID {
			continue
		}
		to = append(to, api.Address{User: r.User, Device: r.Device})
	}
	var body io.Reader = tmp
	if opts.Progress != nil {
		body = &progressReader{r: tmp, total: size, name: filepath.Base(path), fn: opts.Progress}
	}
	up, err := conn.Upload(ctx, body, size, sum, opts.TTL, to)
	if err != nil {
		return nil, fmt.Errorf("uploading %s: %w", filepath.Base(path), err)
	}
	att := &protocol.Attachment{Key: key, SHA256: sum, Size: uint64(st.Size()), Name: filepath.Base(path), MediaType: mediaType(path)}
	raw, err := hex.DecodeString(up.ID)
	if err != nil || len(raw) != protocol.BlobIDSize {
		return nil, fmt.Errorf("server returned a bad blob ID %q", up.ID)
	}
	copy(att.BlobID[:], raw)
	return att, nil
}

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	name  string
	fn    func(string, int64, int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.fn(p.name, p.done, p.total)
	return n, err
}

func mediaType(path string) string {
	switch filepath.Ext(path) {
	case ".png":
		return "image/png"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".txt":
		return "text/plain"
	case ".pdf":
		return "application/pdf"
	}
	return "application/octet-stream"
}

// storeEnvelope keeps a message in the local store, encrypted as it came.
func (a *Account) storeEnvelope(ctx context.Context, conv string, outgoing bool, env *protocol.Envelope, raw []byte) error {
	_, err := a.db.ExecContext(ctx, `INSERT INTO messages (id, conversation, outgoing, envelope, sent, expires) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`,
		env.ID.String(), conv, outgoing, raw, env.Sent.UnixMilli(), env.Expires().UnixMilli())
	if err == nil {
		_, err = a.db.ExecContext(ctx, `INSERT INTO seen (id, expires) VALUES (?, ?) ON CONFLICT DO NOTHING`, env.ID.String(), env.Expires().UnixMilli())
	}
	return err
}

// receipt is the body of a ContentReceipt message.
type receipt struct {
	Kind string               `json:"kind"` // "delivered" or "read"
	IDs  []protocol.MessageID `json:"ids"`
}

func marshalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
