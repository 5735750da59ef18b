package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// A Received is a message as shown: decrypted from the local store on
// demand, with its signature status. Message is nil when the status is
// SigInvalid: an invalid message is never shown as content.
type Received struct {
	ID           protocol.MessageID
	Conversation string // a contact's or group's name
	From         protocol.UserID
	FromName     string
	Outgoing     bool
	Sent         time.Time
	Expires      time.Time
	Signature    string
	// Checked: the signature was verified under a key this device has
	// pinned (its own user's or a contact's). A signed message from a
	// stranger is SigUnverifiedKey and not Checked: nothing vouches for
	// who sent it. Group changes and receipts count only when Checked.
	Checked bool
	Message *protocol.Message
	// State of an outgoing message: "", "delivered" or "read" (from receipts).
	State string
	// Event is set instead of Message for a receipt or typing event:
	// "delivered", "read" or "typing".
	Event string
	// EventIDs are the messages a receipt is about.
	EventIDs []protocol.MessageID
}

// Expire deletes every message whose TTL has ended from the local store,
// and its downloaded attachments. Every read path calls it first.
func (a *Account) Expire(ctx context.Context) (int, error) {
	now := a.now().UnixMilli()
	rows, err := a.db.QueryContext(ctx, `SELECT id FROM messages WHERE expires <= ?`, now)
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		os.RemoveAll(filepath.Join(a.dir, attachmentDir, id))
	}
	res, err := a.db.ExecContext(ctx, `DELETE FROM messages WHERE expires <= ?`, now)
	if err != nil {
		return 0, err
	}
	if _, err := a.db.ExecContext(ctx, `DELETE FROM seen WHERE expires <= ?`, now); err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Receive handles one envelope as delivered by the server: it opens it,
// keeps it (encrypted) in the local store and applies receipts and group
// changes. It returns nil, nil for a message already received (delivery is
// at least once) or already expired; the caller acknowledges it either way.
func (a *Account) Receive(ctx context.Context, raw []byte) (*Received, error) {
	env, err := protocol.ParseEnvelope(raw)
	if err != nil {
		return nil, err
	}
	if _, err := a.Expire(ctx); err != nil {
		return nil, err
	}
	var seen int
	if err := a.db.QueryRowContext(ctx, `SELECT count(*) FROM seen WHERE id = ?`, env.ID.String()).Scan(&seen); err != nil {
		return nil, err
	}
	if seen > 0 || !a.now().Before(env.Expires()) {
		return nil, nil
	}
	r, msg := a.open(ctx, env)
	if r.Signature != SigInvalid && msg != nil && isControl(msg.ContentType) {
		if _, err := a.db.ExecContext(ctx, `INSERT INTO seen (id, expires) VALUES (?, ?) ON CONFLICT DO NOTHING`, env.ID.String(), env.Expires().UnixMilli()); err != nil {
			return nil, err
		}
		return r, a.applyControl(ctx, env, msg, r)
	}
	conv := a.conversationOf(ctx, env, msg)
	if err := a.storeEnvelope(ctx, conv, env.Sender == a.dev.User, env, raw); err != nil {
		return nil, err
	}
	r.Conversation = a.conversationName(ctx, conv)
	if msg != nil && r.Signature != SigInvalid && len(msg.Attachments) > 0 && env.Sender != a.dev.User {
		// Fetch now: the server deletes a blob once every device has it.
		// It stays encrypted here until it is saved, and goes at expiry.
		if err := a.fetchAttachments(ctx, env.ID, msg); err != nil {
			return r, err
		}
	}
	if r.Signature != SigInvalid && env.Sender != a.dev.User {
		a.sendReceipt(ctx, env, "delivered")
	}
	return r, nil
}

// open decrypts an envelope for this device and names its signature status.
func (a *Account) open(ctx context.Context, env *protocol.Envelope) (*Received, *protocol.Message) {
	r := &Received{ID: env.ID, From: env.Sender, Outgoing: env.Sender == a.dev.User, Sent: env.Sent, Expires: env.Expires()}
	var key *protocol.PublicKey
	verified := false
	if env.Sender == a.dev.User {
		key, verified, r.FromName = a.dev.Identity.Public(), true, "me"
	} else if c, err := a.Contact(ctx, env.Sender.String()); err == nil {
		key, verified, r.FromName = c.Identity, c.Verified, c.Name
	} else {
		r.FromName = env.Sender.String()
	}
	msg, status, err := env.Open(a.dev.Recipient(), key, a.now())
	switch {
	case err != nil:
		r.Signature = SigInvalid
		return r, nil
	case status == protocol.Unsigned:
		r.Signature = SigUnsigned
	case status == protocol.Verified && verified:
		r.Signature, r.Checked = SigVerified, true
	default:
		r.Signature = SigUnverifiedKey
		r.Checked = status == protocol.Verified && key != nil
	}
	r.Message = msg
	return r, msg
}

// conversationOf is the group of a group message, else the other party.
func (a *Account) conversationOf(ctx context.Context, env *protocol.Envelope, msg *protocol.Message) string {
	if msg != nil && len(msg.GroupID) > 0 {
		// A group message goes to the group only from one of its members
		// (as this device knows them): a removed member, or anyone who
		// learnt the group's ID, writes to their own conversation.
		id := hex.EncodeToString(msg.GroupID)
		g, err := a.Group(ctx, id)
		if err != nil || env.Sender == a.dev.User || slices.Contains(g.Members, env.Sender) {
			return "g:" + id
		}
		return "u:" + env.Sender.String()
	}
	if env.Sender != a.dev.User {
		return "u:" + env.Sender.String()
	}
	for _, u := range env.Recipients { // a copy of what this user sent from another device
		if u != a.dev.User {
			return "u:" + u.String()
		}
	}
	return "u:" + a.dev.User.String()
}

func (a *Account) conversationName(ctx context.Context, conv string) string {
	kind, id, _ := strings.Cut(conv, ":")
	if kind == "g" {
		if g, err := a.Group(ctx, id); err == nil {
			return g.Name
		}
		return "group " + id[:8]
	}
	if c, err := a.Contact(ctx, id); err == nil {
		return c.Name
	}
	if id == a.dev.User.String() {
		return "me"
	}
	return id
}

func (a *Account) applyControl(ctx context.Context, env *protocol.Envelope, msg *protocol.Message, r *Received) error {
	r.Message = nil
	switch msg.ContentType {
	case ContentReceipt:
		var rc receipt
		if err := json.Unmarshal(msg.Body, &rc); err != nil || (rc.Kind != "delivered" && rc.Kind != "read") {
			return fmt.Errorf("malformed receipt from %s", env.Sender)
		}
		r.Event, r.EventIDs = rc.Kind, rc.IDs
		if !r.Checked {
			return nil // a receipt vouched for by no pinned key proves nothing
		}
		for _, id := range rc.IDs {
			// Only from a user the message went to; "read" wins over
			// "delivered"; only our own messages change.
			if !a.sentTo(ctx, id, env.Sender) {
				continue
			}
			if _, err := a.db.ExecContext(ctx, `UPDATE messages SET state = ? WHERE id = ? AND outgoing = 1 AND state != 'read'`, rc.Kind, id.String()); err != nil {
				return err
			}
		}
	case ContentTyping:
		r.Event = "typing"
	case ContentGroup:
		r.Event = "group"
		if !r.Checked {
			return nil // group changes must be signed, under a pinned key
		}
		return a.applyGroup(ctx, env.Sender, msg.GroupID, msg.Body)
	}
	return nil
}

// sentTo reports whether our own message id went to user.
func (a *Account) sentTo(ctx context.Context, id protocol.MessageID, user protocol.UserID) bool {
	var raw []byte
	if err := a.db.QueryRowContext(ctx, `SELECT envelope FROM messages WHERE id = ? AND outgoing = 1`, id.String()).Scan(&raw); err != nil {
		return false
	}
	env, err := protocol.ParseEnvelope(raw)
	return err == nil && slices.Contains(env.Recipients, user)
}

// sendReceipt tells the sender that a message arrived or was read.
func (a *Account) sendReceipt(ctx context.Context, env *protocol.Envelope, kind string) {
	a.sendReceipts(ctx, []*protocol.Envelope{env}, kind)
}

// sendReceipts sends one receipt about messages of one sender. It is best
// effort: a failed receipt is not worth failing a receive.
func (a *Account) sendReceipts(ctx context.Context, envs []*protocol.Envelope, kind string) {
	if len(envs) == 0 {
		return
	}
	c, err := a.Contact(ctx, envs[0].Sender.String())
	if err != nil {
		return // receipts go to contacts only
	}
	var ids []protocol.MessageID
	var last time.Time
	for _, env := range envs {
		ids = append(ids, env.ID)
		if env.Expires().After(last) {
			last = env.Expires()
		}
	}
	ttl := min(last.Sub(a.now()).Truncate(time.Second), 24*time.Hour)
	if ttl < time.Second {
		return
	}
	conv := &conversation{key: "u:" + c.User.String(), name: c.Name, members: []*Contact{c}}
	body := marshalJSON(receipt{Kind: kind, IDs: ids})
	a.sendTo(ctx, conv, &protocol.Message{ContentType: ContentReceipt, Body: body}, SendOptions{TTL: ttl})
}

// SendTyping tells a contact or group that this user is typing.
func (a *Account) SendTyping(ctx context.Context, to string) error {
	conv, err := a.resolve(ctx, to)
	if err != nil {
		return err
	}
	_, err = a.sendTo(ctx, conv, &protocol.Message{ContentType: ContentTyping, GroupID: conv.groupID}, SendOptions{TTL: 10 * time.Second})
	return err
}

// Messages returns a conversation's unexpired messages, oldest first,
// decrypted for display, and marks incoming ones read (sending read
// receipts) when markRead is set.
func (a *Account) Messages(ctx context.Context, who string, markRead bool) ([]*Received, error) {
	conv, err := a.resolve(ctx, who)
	if err != nil {
		return nil, err
	}
	if _, err := a.Expire(ctx); err != nil {
		return nil, err
	}
	rows, err := a.db.QueryContext(ctx, `SELECT envelope, state FROM messages WHERE conversation = ? AND expires > ? ORDER BY sent, id`, conv.key, a.now().UnixMilli())
	if err != nil {
		return nil, err
	}
	type stored struct {
		raw   []byte
		state string
	}
	var all []stored
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.raw, &s.state); err != nil {
			rows.Close()
			return nil, err
		}
		all = append(all, s)
	}
	rows.Close()
	var out []*Received
	unread := map[protocol.UserID][]*protocol.Envelope{}
	for _, s := range all {
		env, err := protocol.ParseEnvelope(s.raw)
		if err != nil {
			continue
		}
		r, _ := a.open(ctx, env)
		r.Conversation, r.State = conv.name, s.state
		out = append(out, r)
		if markRead && !r.Outgoing && r.Signature != SigInvalid && s.state != "read" {
			a.db.ExecContext(ctx, `UPDATE messages SET state = 'read' WHERE id = ?`, env.ID.String())
			unread[env.Sender] = append(unread[env.Sender], env)
		}
	}
	// One read receipt per sender, listing every message just read.
	for _, envs := range unread {
		a.sendReceipts(ctx, envs, "read")
	}
	return out, nil
}

// Sync fetches every message queued on the server, handles each, and
// acknowledges them. With wait > 0 it waits that long for the first one.
func (a *Account) Sync(ctx context.Context, wait time.Duration) ([]*Received, error) {
	conn, err := a.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Received
	for {
		inbox, err := conn.Inbox(ctx, 100, wait)
		if err != nil {
			return out, err
		}
		wait = 0
		var ids []protocol.MessageID
		for _, raw := range inbox.Envelopes {
			r, err := a.Receive(ctx, raw)
			if err != nil && !errors.Is(err, protocol.ErrMalformed) {
				return out, err
			}
			if env, perr := protocol.ParseEnvelope(raw); perr == nil {
				ids = append(ids, env.ID)
			}
			if r != nil {
				out = append(out, r)
			}
		}
		if len(ids) > 0 {
			if err := conn.Ack(ctx, ids...); err != nil {
				return out, err
			}
		}
		if !inbox.More {
			return out, nil
		}
	}
}

// Listen holds the live channel open, reconnecting as needed, and calls fn
// for every message and event until ctx ends. Each message is stored
// before it is acknowledged.
func (a *Account) Listen(ctx context.Context, fn func(*Received)) error {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := a.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			backoff = 500 * time.Millisecond
			continue
		}
		// Permanent: a server that is not ours, or a device revoked or
		// deleted. Retrying would fail forever.
		if errors.Is(err, ErrServerKey) || errors.Is(err, api.ErrDeviceUnknown) {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return ctx.Err()
}

func (a *Account) listenOnce(ctx context.Context, fn func(*Received)) error {
	conn, err := a.Conn(ctx)
	if err != nil {
		return err
	}
	live, err := conn.Live(ctx)
	if err != nil {
		return err
	}
	acks := live.Acker()
	// The channel is read without ctx: the WebSocket library drops the
	// connection at once when a read's context ends, and a connection
	// dropped with data in flight can lose the last acknowledgements.
	// When ctx ends, or the loop does, the queued acknowledgements are
	// sent first, then the channel closes with a closing handshake.
	closed := make(chan struct{})
	var closeOnce sync.Once
	shut := func() {
		closeOnce.Do(func() {
			acks.Close()
			live.Close()
			close(closed)
		})
	}
	stop := context.AfterFunc(ctx, shut)
	defer func() {
		stop()
		shut()
		<-closed
	}()
	for {
		ev, err := live.Next(context.Background())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return err
		}
		switch ev.Type {
		case EventClosing:
			return nil
		case EventEnvelope:
			r, err := a.Receive(ctx, ev.Envelope)
			if err != nil && !errors.Is(err, protocol.ErrMalformed) {
				return err
			}
			if env, perr := protocol.ParseEnvelope(ev.Envelope); perr == nil {
				if err := acks.Ack(env.ID); err != nil {
					return err
				}
			}
			if r != nil {
				fn(r)
			}
		}
	}
}

// fetchAttachments downloads a message's blobs, checked against their
// SHA-256 but still encrypted, into the account's attachment directory.
func (a *Account) fetchAttachments(ctx context.Context, id protocol.MessageID, msg *protocol.Message) error {
	conn, err := a.Conn(ctx)
	if err != nil {
		return err
	}
	dir := filepath.Join(a.dir, attachmentDir, id.String())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, att := range msg.Attachments {
		path := filepath.Join(dir, hex.EncodeToString(att.BlobID[:]))
		if _, err := os.Stat(path); err == nil {
			continue
		}
		rc, _, err := conn.Download(ctx, hex.EncodeToString(att.BlobID[:]), att.SHA256)
		if err != nil {
			return fmt.Errorf("attachment %s: %w", att.Name, err)
		}
		err = copyToFile(path, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("attachment %s: %w", att.Name, err)
		}
	}
	return nil
}

// SaveAttachments decrypts a message's attachments into dir and returns
// the paths written. Names are reduced to their base, so that a sender
// cannot write outside dir.
func (a *Account) SaveAttachments(ctx context.Context, r *Received, dir string) ([]string, error) {
	if r.Message == nil {
		return nil, nil
	}
	if !r.Outgoing {
		if err := a.fetchAttachments(ctx, r.ID, r.Message); err != nil {
			return nil, err
		}
	}
	var paths []string
	for _, att := range r.Message.Attachments {
		name := filepath.Base(filepath.Clean("/" + att.Name))
		if name == "/" || name == "." || name == "" {
			name = hex.EncodeToString(att.BlobID[:8])
		}
		if r.Outgoing {
			continue // the sender has the original file
		}
		f, err := os.Open(filepath.Join(a.dir, attachmentDir, r.ID.String(), hex.EncodeToString(att.BlobID[:])))
		if err != nil {
			return paths, err
		}
		plain, err := protocol.DecryptBlob(f, att.Key)
		if err == nil {
			err = copyToFile(filepath.Join(dir, name), plain)
		}
		f.Close()
		if err != nil {
			return paths, fmt.Errorf("attachment %s: %w", name, err)
		}
		paths = append(paths, filepath.Join(dir, name))
	}
	return paths, nil
}

// copyToFile writes r to path atomically, mode 0600.
func copyToFile(path string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
