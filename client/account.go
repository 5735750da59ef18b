package client

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	_ "modernc.org/sqlite" // the local message store

	"github.com/qrtalk/qrtalk/protocol"
)

// Files in an account directory.
const (
	keysPlain     = "device.json"     // the device's credentials, mode 0600
	keysEncrypted = "device.json.age" // the same, encrypted with a passphrase
	ticketFile    = "session.ticket"  // the session-resumption ticket, mode 0600, only beside device.json
	localDB       = "local.db"        // contacts, groups and received envelopes
	attachmentDir = "attachments"     // downloaded blobs, still encrypted
)

// Errors of the account layer.
var (
	// ErrNoAccount: the directory holds no account; join first.
	ErrNoAccount = errors.New("no account in this directory")
	// ErrExists: the directory already holds an account.
	ErrExists = errors.New("an account already exists in this directory")
	// ErrPassphrase: the key file is encrypted and the passphrase is
	// missing or wrong.
	ErrPassphrase = errors.New("wrong or missing passphrase")
)

// An Account is one device's whole state on disk: its credentials, the
// server it belongs to, its contacts and groups, and its messages, kept
// as received (encrypted) and deleted when their TTL ends.
type Account struct {
	dir  string
	dev  *Device
	srv  savedServer
	db   *sql.DB
	now  func() time.Time
	opts Options

	connMu sync.Mutex
	conn   *Conn
}

// AccountOptions tune an Account; the zero value is fine.
type AccountOptions struct {
	// Passphrase encrypts the key file (age, scrypt). Empty: the file is
	// only protected by its mode (0600).
	Passphrase string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient overrides the pinned default (tests).
	HTTPClient *http.Client
}

type savedServer struct {
	URL string               `json:"url"`
	FP  protocol.Fingerprint `json:"fingerprint"`
}

// keyFile is the on-disk form of the credentials.
type keyFile struct {
	Version  int                  `json:"version"`
	Server   savedServer          `json:"server"`
	User     protocol.UserID      `json:"user"`
	Device   protocol.DeviceID    `json:"device"`
	Identity []byte               `json:"identity_key"`
	Enc      []byte               `json:"encryption_key"`
	Auth     []byte               `json:"auth_key"`
	Cert     []byte               `json:"certificate"`
	Created  int64                `json:"created"`
	Own      protocol.Fingerprint `json:"own_fingerprint"`
}

func (o *AccountOptions) clock() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

// Join creates an account in dir from a qrtalk:invite URI: new identity
// and device keys, the server's key pinned from the invite, registration.
func Join(ctx context.Context, dir, invite string, opts AccountOptions) (*Account, error) {
	inv, err := protocol.ParseInvite(invite)
	if err != nil {
		return nil, fmt.Errorf("reading the invite: %w", err)
	}
	if err := checkEmpty(dir); err != nil {
		return nil, err
	}
	now := opts.clock()
	dev, err := NewUser(now())
	if err != nil {
		return nil, err
	}
	copts := Options{Server: inv.Server, ServerFP: inv.ServerFP, Now: now}
	if opts.HTTPClient != nil {
		copts.HTTPClient = opts.HTTPClient
	}
	conn, err := Register(ctx, copts, dev, inv.Token)
	if err != nil {
		return nil, err
	}
	return create(dir, dev, conn, opts)
}

// Adopt creates an account in dir for a device that already exists on the
// server (one linked with JoinLink), with its Conn.
func Adopt(dir string, dev *Device, conn *Conn, opts AccountOptions) (*Account, error) {
	if err := checkEmpty(dir); err != nil {
		return nil, err
	}
	return create(dir, dev, conn, opts)
}

func checkEmpty(dir string) error {
	for _, name := range []string{keysPlain, keysEncrypted} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, dir)
		}
	}
	return nil
}

func create(dir string, dev *Device, conn *Conn, opts AccountOptions) (*Account, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if opts.Passphrase == "" {
		conn.keepTicketsIn(fileTickets{filepath.Join(dir, ticketFile)})
	}
	a := &Account{dir: dir, dev: dev, srv: savedServer{URL: conn.opts.Server, FP: conn.opts.ServerFP}, now: opts.clock(), conn: conn, opts: conn.opts}
	if err := a.saveKeys(opts.Passphrase); err != nil {
		return nil, err
	}
	if err := a.openDB(); err != nil {
		return nil, err
	}
	return a, nil
}

// OpenAccount opens the account in dir.
func OpenAccount(dir string, opts AccountOptions) (*Account, error) {
	raw, encrypted, err := readKeyFile(dir)
	if err != nil {
		return nil, err
	}
	if encrypted {
		if opts.Passphrase == "" {
			return nil, fmt.Errorf("%w: the key file is encrypted", ErrPassphrase)
		}
		id, err := age.NewScryptIdentity(opts.Passphrase)
		if err != nil {
			return nil, err
		}
		r, err := age.Decrypt(bytes.NewReader(raw), id)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrPassphrase, err)
		}
		if raw, err = io.ReadAll(io.LimitReader(r, 1<<20)); err != nil {
			return nil, err
		}
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil || kf.Version != 1 {
		return nil, fmt.Errorf("the key file in %s is damaged or of an unknown version", dir)
	}
	dev, err := kf.device()
	if err != nil {
		return nil, fmt.Errorf("the key file in %s: %w", dir, err)
	}
	a := &Account{dir: dir, dev: dev, srv: kf.Server, now: opts.clock()}
	a.opts = Options{Server: kf.Server.URL, ServerFP: kf.Server.FP, Now: a.now}
	if opts.HTTPClient != nil {
		a.opts.HTTPClient = opts.HTTPClient
	}
	if !encrypted {
		a.opts.Tickets = fileTickets{filepath.Join(dir, ticketFile)}
	}
	if err := a.openDB(); err != nil {
		return nil, err
	}
	// Whatever expired while the account was closed goes before anything
	// else is done with it.
	if _, err := a.Expire(context.Background()); err != nil {
		a.db.Close()
		return nil, fmt.Errorf("deleting expired messages: %w", err)
	}
	return a, nil
}

func readKeyFile(dir string) ([]byte, bool, error) {
	if raw, err := os.ReadFile(filepath.Join(dir, keysEncrypted)); err == nil {
		return raw, true, nil
	}
	raw, err := os.ReadFile(filepath.Join(dir, keysPlain))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("%w: %s", ErrNoAccount, dir)
	}
	return raw, false, err
}

func (kf *keyFile) device() (*Device, error) {
	identity, err := protocol.ParsePrivateKey(kf.Identity)
	if err != nil {
		return nil, err
	}
	enc, err := protocol.ParsePrivateKey(kf.Enc)
	if err != nil {
		return nil, err
	}
	auth, err := protocol.ParsePrivateKey(kf.Auth)
	if err != nil {
		return nil, err
	}
	cert, err := protocol.ParseDeviceCert(kf.Cert)
	if err != nil {
		return nil, err
	}
	if err := cert.Verify(identity.Public()); err != nil {
		return nil, err
	}
	if cert.User != kf.User || cert.Device != kf.Device || !cert.EncryptionKey.Equal(enc.Public()) || !cert.AuthKey.Equal(auth.Public()) {
		return nil, errors.New("certificate does not match the keys")
	}
	return &Device{User: kf.User, ID: kf.Device, Identity: identity, Enc: enc, Auth: auth, Cert: cert}, nil
}

// saveKeys writes the credentials, encrypted when a passphrase is given,
// atomically and with mode 0600.
func (a *Account) saveKeys(passphrase string) error {
	kf := keyFile{Version: 1, Server: a.srv, User: a.dev.User, Device: a.dev.ID,
		Identity: a.dev.Identity.Bytes(), Enc: a.dev.Enc.Bytes(), Auth: a.dev.Auth.Bytes(), Cert: a.dev.Cert.Bytes(),
		Created: a.now().Unix(), Own: a.dev.Fingerprint()}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	name := keysPlain
	if passphrase != "" {
		r, err := age.NewScryptRecipient(passphrase)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, r)
		if err != nil {
			return err
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			return err
		}
		clear(data)
		data, name = buf.Bytes(), keysEncrypted
	}
	return writeFileAtomic(filepath.Join(a.dir, name), data, 0o600)
}

// fileTickets keeps the session-resumption ticket in a file beside the
// key file, so that the next run of a program (each qrtalk command is
// one) resumes its session instead of setting up a new one with RSA on
// both sides. The ticket lets whoever reads it act as this device for up
// to a day, without being able to read its messages: that is why it is
// kept only when the keys themselves are on disk unencrypted, and never
// beside a passphrase-protected key file, which it would weaken.
type fileTickets struct{ path string }

func (f fileTickets) LoadTicket() []byte {
	b, err := os.ReadFile(f.path)
	if err != nil || len(b) > 4096 {
		return nil
	}
	return b
}

func (f fileTickets) SaveTicket(t []byte) {
	if t == nil {
		_ = os.Remove(f.path)
		return
	}
	_ = writeFileAtomic(f.path, t, 0o600) // at worst the next run sets up a full session
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Close releases the account's files.
func (a *Account) Close() error { return a.db.Close() }

// Dir returns the account directory.
func (a *Account) Dir() string { return a.dir }

// Device returns the device's credentials.
func (a *Account) Device() *Device { return a.dev }

// Server returns the server URL and the pinned fingerprint.
func (a *Account) Server() (string, protocol.Fingerprint) { return a.srv.URL, a.srv.FP }

// ContactCard returns what this user shows as a QR code to be added.
func (a *Account) ContactCard() protocol.ContactCard {
	return protocol.ContactCard{Server: a.srv.URL, ServerFP: a.srv.FP, User: a.dev.User, Identity: a.dev.Fingerprint()}
}

// Conn returns the account's connection to its server, dialing it on
// first use.
func (a *Account) Conn(ctx context.Context) (*Conn, error) {
	a.connMu.Lock()
	defer a.connMu.Unlock()
	if a.conn != nil {
		return a.conn, nil
	}
	c, err := Dial(ctx, a.opts, a.dev)
	if err != nil {
		return nil, err
	}
	a.conn = c
	return c, nil
}

// sanitizeName keeps nicknames to one printable line.
func sanitizeName(s string) string {
	s = strings.TrimSpace(s)
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
