package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// Contact errors.
var (
	// ErrNoContact: no contact has that name or ID.
	ErrNoContact = errors.New("no such contact")
	// ErrKeyChanged: the server now gives another identity key for the
	// contact. Sending stops until the user accepts the new key (after
	// checking it with the contact).
	ErrKeyChanged = errors.New("the contact's identity key changed")
	// ErrOtherServer: the contact is on another server; this client talks
	// to one server only.
	ErrOtherServer = errors.New("the contact is on another server")
)

// A Contact is another user, with the identity key pinned on first use.
type Contact struct {
	User     protocol.UserID
	Name     string
	Identity *protocol.PublicKey
	// Verified: the identity key's fingerprint was checked in person (a
	// scanned QR code, or the numeric form compared).
	Verified bool
	// Changed: the server now shows another key (see ErrKeyChanged).
	Changed bool
	// Pending is that other key, as the server showed it when the change
	// was found; nil unless Changed. AcceptKeyChange pins it.
	Pending *protocol.PublicKey
	Added   time.Time
}

// Fingerprint returns the pinned identity key's fingerprint.
func (c *Contact) Fingerprint() protocol.Fingerprint { return protocol.IdentityFingerprint(c.Identity) }

// Trust returns "verified", "unverified" or "CHANGED".
func (c *Contact) Trust() string {
	switch {
	case c.Changed:
		return "CHANGED"
	case c.Verified:
		return "verified"
	}
	return "unverified"
}

// AddContact adds a contact from a qrtalk:contact URI (scanned: the key is
// verified by it) or a user ID (the key is pinned unverified). The
// contact's device list must verify under the key.
func (a *Account) AddContact(ctx context.Context, ref, name string) (*Contact, error) {
	var user protocol.UserID
	var card *protocol.ContactCard
	if strings.HasPrefix(strings.TrimSpace(ref), "qrtalk:") {
		c, err := protocol.ParseContactCard(ref)
		if err != nil {
			return nil, err
		}
		if c.Server != a.srv.URL || !c.ServerFP.Equal(a.srv.FP) {
			return nil, fmt.Errorf("%w: %s (this account is on %s)", ErrOtherServer, c.Server, a.srv.URL)
		}
		card, user = &c, c.User
	} else {
		u, err := protocol.ParseUserID(ref)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a user ID nor a qrtalk:contact code: %w", ref, err)
		}
		user = u
	}
	if user == a.dev.User {
		return nil, errors.New("that is your own ID")
	}
	conn, err := a.Conn(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := conn.Directory(ctx, user)
	if err != nil {
		return nil, err
	}
	key, err := protocol.ParsePublicKey(dir.IdentityKey)
	if err != nil {
		return nil, fmt.Errorf("the server's key for %s: %w", user, err)
	}
	if card != nil {
		if err := card.Verify(key); err != nil {
			return nil, fmt.Errorf("the server gives a key for %s that is not the one in the code you scanned: do not trust this contact (%w)", user, err)
		}
	}
	if _, err := protocol.VerifyDeviceList(key, user, dir.Devices, dir.Revocations); err != nil {
		return nil, fmt.Errorf("the device list of %s does not verify: %w", user, err)
	}
	name = sanitizeName(name)
	if name == "" {
		name = user.String()[:8]
	}
	c := &Contact{User: user, Name: name, Identity: key, Verified: card != nil, Added: a.now()}
	_, err = a.db.ExecContext(ctx, `INSERT INTO contacts (user, name, identity, verified, added) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user) DO UPDATE SET name = excluded.name, verified = max(verified, excluded.verified)
		WHERE identity = excluded.identity`,
		user.String(), name, key.Bytes(), c.Verified, c.Added.Unix())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return nil, fmt.Errorf("a contact named %q exists already; choose another name", name)
		}
		return nil, err
	}
	return a.Contact(ctx, user.String())
}

// Contact finds a contact by name or user ID.
func (a *Account) Contact(ctx context.Context, who string) (*Contact, error) {
	row := a.db.QueryRowContext(ctx, `SELECT user, name, identity, verified, pending, added FROM contacts WHERE name = ? OR user = ?`,
		sanitizeName(who), strings.ToLower(strings.TrimSpace(who)))
	c, err := scanContact(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", ErrNoContact, who)
	}
	return c, err
}

type scanner interface{ Scan(...any) error }

func scanContact(row scanner) (*Contact, error) {
	var c Contact
	var user string
	var key, pending []byte
	var added int64
	if err := row.Scan(&user, &c.Name, &key, &c.Verified, &pending, &added); err != nil {
		return nil, err
	}
	var err error
	if c.User, err = protocol.ParseUserID(user); err != nil {
		return nil, err
	}
	if c.Identity, err = protocol.ParsePublicKey(key); err != nil {
		return nil, err
	}
	if pending != nil {
		c.Changed = true
		if c.Pending, err = protocol.ParsePublicKey(pending); err != nil {
			return nil, err
		}
	}
	c.Added = time.Unix(added, 0)
	return &c, nil
}

// Contacts lists the contacts by name.
func (a *Account) Contacts(ctx context.Context) ([]*Contact, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT user, name, identity, verified, pending, added FROM contacts ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Contact
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// VerifyContact marks a contact verified when fingerprint (the numeric
// form read out by the contact, or their qrtalk:contact code) matches the
// pinned key. A mismatch is an error and changes nothing.
func (a *Account) VerifyContact(ctx context.Context, who, fingerprint string) (*Contact, error) {
	c, err := a.Contact(ctx, who)
	if err != nil {
		return nil, err
	}
	fp := c.Fingerprint()
	ok := false
	if strings.HasPrefix(strings.TrimSpace(fingerprint), "qrtalk:") {
		card, err := protocol.ParseContactCard(fingerprint)
		if err != nil {
			return nil, err
		}
		ok = card.User == c.User && card.Verify(c.Identity) == nil
	} else {
		ok = fp.MatchesNumeric(fingerprint)
	}
	if !ok {
		return nil, fmt.Errorf("%w: the fingerprint does not match %s's pinned key; do not trust this contact until you know why", protocol.ErrMismatch, c.Name)
	}
	if _, err := a.db.ExecContext(ctx, `UPDATE contacts SET verified = 1 WHERE user = ?`, c.User.String()); err != nil {
		return nil, err
	}
	c.Verified = true
	return c, nil
}

// AcceptKeyChange pins the new identity key a contact's server showed
// (Contact.Pending), once the user has checked it with them. seen is the
// fingerprint the user was shown and compared: if the pending key is not
// that one (the server showed yet another key in between), nothing is
// pinned and the error wraps ErrKeyChanged. The new key starts unverified.
func (a *Account) AcceptKeyChange(ctx context.Context, who string, seen protocol.Fingerprint) (*Contact, error) {
	c, err := a.Contact(ctx, who)
	if err != nil {
		return nil, err
	}
	if !c.Changed {
		return nil, fmt.Errorf("%s's key has not changed", c.Name)
	}
	if !protocol.IdentityFingerprint(c.Pending).Equal(seen) {
		return nil, fmt.Errorf("%w: %s's new key is not the one whose fingerprint was shown; nothing accepted", ErrKeyChanged, c.Name)
	}
	res, err := a.db.ExecContext(ctx, `UPDATE contacts SET identity = pending, pending = NULL, verified = 0 WHERE user = ? AND pending = ?`,
		c.User.String(), c.Pending.Bytes())
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return nil, fmt.Errorf("%w: %s's pending key changed while accepting; nothing accepted", ErrKeyChanged, c.Name)
	}
	return a.Contact(ctx, who)
}

// RemoveContact forgets a contact (and keeps the messages until they expire).
func (a *Account) RemoveContact(ctx context.Context, who string) error {
	c, err := a.Contact(ctx, who)
	if err != nil {
		return err
	}
	_, err = a.db.ExecContext(ctx, `DELETE FROM contacts WHERE user = ?`, c.User.String())
	return err
}

// contactDevices fetches a contact's devices, verified under the pinned
// key. A different key on the server marks the contact changed and stops.
func (a *Account) contactDevices(ctx context.Context, c *Contact) ([]*protocol.DeviceCert, error) {
	conn, err := a.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if c.Changed {
		return nil, fmt.Errorf("%w: %s; check the new fingerprint with them, then accept it", ErrKeyChanged, c.Name)
	}
	dir, err := conn.Directory(ctx, c.User)
	if err != nil {
		return nil, err
	}
	key, err := protocol.ParsePublicKey(dir.IdentityKey)
	if err != nil {
		return nil, err
	}
	if !key.Equal(c.Identity) {
		if _, err := a.db.ExecContext(ctx, `UPDATE contacts SET pending = ? WHERE user = ?`, key.Bytes(), c.User.String()); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s; check the new fingerprint with them, then accept it", ErrKeyChanged, c.Name)
	}
	return protocol.VerifyDeviceList(key, c.User, dir.Devices, dir.Revocations)
}
