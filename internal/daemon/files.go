package daemon

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/protocol"
)

// Names of what qrtalkd keeps in its data directory.
const (
	KeyFile = "server.key" // the server key, PKCS #8 PEM, mode 0600
	DBFile  = "qrtalkd.db" // the SQLite store (and its -wal and -shm files)
	BlobDir = "blobs"      // encrypted blob contents, one file each
	ACMEDir = "acme"       // Let's Encrypt account and certificates (autocert cache)
)

// ErrNoKey is returned by LoadKey when the data directory has no server key
// yet, that is, when the server never started there.
var ErrNoKey = errors.New("no server key")

// KeyPath returns the path of the server key in data directory dir.
func KeyPath(dir string) string { return filepath.Join(dir, KeyFile) }

// DBPath returns the path of the database in data directory dir.
func DBPath(dir string) string { return filepath.Join(dir, DBFile) }

// LoadKey reads the server key of data directory dir. It refuses a key
// file that group or others may read or write: that key may have leaked,
// and qrtalkd would not notice later either.
func LoadKey(dir string) (*protocol.PrivateKey, error) {
	path := KeyPath(dir)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, config.WithHint(fmt.Errorf("%w in %s", ErrNoKey, dir),
			"start the server once in that data directory (qrtalkd serve --data "+dir+"), or point --data at the right one")
	}
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("server key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, config.WithHint(
			fmt.Errorf("server key %s is accessible by group or others (mode %04o)", path, perm),
			fmt.Sprintf("run 'chmod 600 %s'; if anyone else could read it, consider the key compromised: "+
				"move it away to make a new one, and send every user a new invite", path))
	}
	pemBytes, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	key, err := protocol.ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		return nil, config.WithHint(fmt.Errorf("server key %s: %w", path, err),
			"restore server.key from a backup; a new key would change the fingerprint that every client pinned")
	}
	return key, nil
}

// loadOrCreateKey returns the server key of dir, creating it with gen if
// there is none. created reports whether it did.
func loadOrCreateKey(dir string, gen func() (*protocol.PrivateKey, error)) (key *protocol.PrivateKey, created bool, err error) {
	key, err = LoadKey(dir)
	if !errors.Is(err, ErrNoKey) {
		return key, false, err
	}
	key, err = gen()
	if err != nil {
		return nil, false, err
	}
	// Write to a temporary file (CreateTemp makes it 0600), then link it
	// into place: the key appears whole or not at all, and a key another
	// process created meanwhile is never overwritten.
	tmp, err := os.CreateTemp(dir, ".server.key-*")
	if err != nil {
		return nil, false, fmt.Errorf("server key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("server key: %w", err)
	}
	if _, err := tmp.Write(key.PEM()); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("server key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("server key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, false, fmt.Errorf("server key: %w", err)
	}
	if err := os.Link(tmp.Name(), KeyPath(dir)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			key, err = LoadKey(dir)
			return key, false, err
		}
		return nil, false, fmt.Errorf("server key: %w", err)
	}
	syncDir(dir)
	return key, true, nil
}

// syncDir makes a new directory entry durable. Failure is not fatal: some
// file systems cannot sync directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// makeDataDir creates the data directory, private to its owner. It returns
// a warning if an existing directory is open to others.
func makeDataDir(dir string) (warning string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", config.WithHint(fmt.Errorf("data directory: %w", err),
			"choose a directory this user can create with --data or "+config.EnvName("data"))
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("data directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Sprintf("data directory %s is open to group or others (mode %04o); chmod 700 it", dir, fi.Mode().Perm()), nil
	}
	return "", nil
}
