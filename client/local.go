package client

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// The local store: contacts and groups (names stay on the device), and
// every message as its envelope, encrypted as received. The plaintext is
// never written; a message is decrypted each time it is shown.
var localSchema = []string{
	`CREATE TABLE IF NOT EXISTS contacts (
		user      TEXT PRIMARY KEY,
		name      TEXT NOT NULL UNIQUE,
		identity  BLOB NOT NULL,
		verified  INTEGER NOT NULL DEFAULT 0,
		pending   BLOB,
		added     INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS groups (
		id       BLOB PRIMARY KEY,
		name     TEXT NOT NULL UNIQUE,
		members  TEXT NOT NULL,
		version  INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS messages (
		id           TEXT PRIMARY KEY,
		conversation TEXT NOT NULL,
		outgoing     INTEGER NOT NULL,
		envelope     BLOB NOT NULL,
		sent         INTEGER NOT NULL,
		expires      INTEGER NOT NULL,
		state        TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, sent)`,
	`CREATE INDEX IF NOT EXISTS messages_expires ON messages (expires)`,
	// seen: IDs of messages opened, kept until they expire, so that a
	// message delivered twice (at-least-once) or replayed is shown once.
	`CREATE TABLE IF NOT EXISTS seen (
		id      TEXT PRIMARY KEY,
		expires INTEGER NOT NULL
	)`,
}

func (a *Account) openDB() error {
	path := filepath.Join(a.dir, localDB)
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "secure_delete(ON)", "busy_timeout(5000)", "foreign_keys(ON)"} {
		q.Add("_pragma", p)
	}
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	for _, stmt := range localSchema {
		if _, err := db.Exec(stmt); err != nil {
			db.Close()
			return fmt.Errorf("local store %s: %w", path, err)
		}
	}
	a.db = db
	return nil
}
