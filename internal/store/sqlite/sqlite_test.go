package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/storetest"
	"github.com/qrtalk/qrtalk/protocol"
)

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "qrtalk.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

var now = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

// account registers a user with one device and returns the device.
func account(t testing.TB, s store.Store) store.Device {
	t.Helper()
	u := store.User{ID: protocol.NewUserID(), IdentityKey: []byte("identity key"), Created: now}
	d := store.Device{User: u.ID, ID: protocol.NewDeviceID(), Certificate: []byte("cert"),
		EncryptionKey: []byte("enc key"), AuthKey: []byte("auth key"), Created: now}
	if err := s.Register(context.Background(), u, d, nil, now); err != nil {
		t.Fatal(err)
	}
	return d
}

func message(d store.Device, envelope []byte) store.QueuedMessage {
	return store.QueuedMessage{User: d.User, Device: d.ID, ID: protocol.NewMessageID(), Envelope: envelope, Expires: now.Add(time.Hour)}
}

func pragma(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

// TestSettings checks the settings durability and deletion depend on, on
// the connection that writes.
func TestSettings(t *testing.T) {
	s := openTemp(t)
	for name, want := range map[string]string{
		"journal_mode":  "wal",
		"synchronous":   "2", // FULL
		"secure_delete": "1",
		"auto_vacuum":   "2", // INCREMENTAL
		"foreign_keys":  "1",
		"temp_store":    "2", // MEMORY
	} {
		if got := pragma(t, s.w, name); got != want {
			t.Errorf("writer PRAGMA %s = %s, want %s", name, got, want)
		}
	}
	if got := pragma(t, s.r, "query_only"); got != "1" {
		t.Errorf("reader PRAGMA query_only = %s, want 1", got)
	}
	if _, err := s.r.Exec("DELETE FROM queue"); err == nil {
		t.Error("a reader connection could write")
	}
	for _, name := range []string{s.path, s.path + "-wal"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(name), perm)
		}
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qrtalk.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE schema_version SET version = ?", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	db.Close()

	_, err = Open(context.Background(), path, Options{})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open(newer schema) = %v, want ErrSchemaTooNew", err)
	}
}

func TestSchemaVersionRecorded(t *testing.T) {
	s := openTemp(t)
	if got := pragma(t, s.w, "user_version"); got != "0" {
		t.Logf("user_version = %s (unused)", got)
	}
	var v int
	if err := s.w.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion() {
		t.Fatalf("schema_version = %d, want %d", v, SchemaVersion())
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "qrtalk.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := account(t, s)
	m := message(d, []byte("still here"))
	if err := s.Enqueue(ctx, []store.QueuedMessage{m}); err != nil {
		t.Fatal(err)
	}
	inv := store.Invite{TokenHash: [32]byte{1}, Uses: 2, Expires: now.Add(time.Hour), Created: now}
	if err := s.CreateInvite(ctx, inv); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.Device(ctx, d.User, d.ID); err != nil {
		t.Fatalf("device after reopen: %v", err)
	}
	got, err := s.Pending(ctx, d.User, d.ID, now, 10)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Envelope, m.Envelope) {
		t.Fatalf("queue after reopen: %v, %v", got, err)
	}
	if n, err := s.ConsumeInvite(ctx, inv.TokenHash, now); err != nil || n != 1 {
		t.Fatalf("invite after reopen: %d, %v", n, err)
	}
}

func TestOpenRefusesAmbiguousPath(t *testing.T) {
	for _, p := range []string{"", filepath.Join(t.TempDir(), "a?mode=ro"), filepath.Join(t.TempDir(), "a#b")} {
		if s, err := Open(context.Background(), p, Options{}); !errors.Is(err, store.ErrInvalid) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrInvalid", p, err)
		}
	}
}

// TestConvertsToIncrementalVacuum: a file made without auto_vacuum (by hand,
// or by a tool) would keep freed pages forever; Open converts it.
func TestConvertsToIncrementalVacuum(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qrtalk.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE unrelated (x)"); err != nil {
		t.Fatal(err)
	}
	if got := pragma(t, db, "auto_vacuum"); got != "0" {
		t.Fatalf("test setup: auto_vacuum = %s, want 0", got)
	}
	db.Close()

	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pragma(t, s.w, "auto_vacuum"); got != "2" {
		t.Fatalf("auto_vacuum after Open = %s, want 2", got)
	}
}

// TestGoneFromFile is the promise of the brief: once a message is
// acknowledged and the sweeper has run Vacuum, its bytes are in neither the
// database file nor the WAL. Two cases: the envelope had been checkpointed
// into the database file (a message that waited), or was only in the WAL.
func TestGoneFromFile(t *testing.T) {
	for _, checkpointFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("checkpointed=%v", checkpointFirst), func(t *testing.T) {
			ctx := context.Background()
			s := openTemp(t)
			d := account(t, s)
			secret := make([]byte, 4096)
			rand.Read(secret)
			// Neighbours on the same pages, which must survive.
			var others []store.QueuedMessage
			for range 20 {
				env := make([]byte, 300)
				rand.Read(env)
				others = append(others, message(d, env))
			}
			target := message(d, secret)
			batch := append(append(others[:10:10], target), others[10:]...)
			if err := s.Enqueue(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if checkpointFirst {
				if err := s.Vacuum(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if !containsAnyWindow(t, s.path, secret) {
				t.Fatal("control: the envelope is not in the files before it is deleted; the test would prove nothing")
			}

			if err := s.Ack(ctx, d.User, d.ID, target.ID); err != nil {
				t.Fatal(err)
			}
			t.Logf("after Ack, before Vacuum, the envelope is still in the files: %v", containsAnyWindow(t, s.path, secret))
			if err := s.Vacuum(ctx); err != nil {
				t.Fatal(err)
			}
			if containsAnyWindow(t, s.path, secret) {
				t.Fatal("a 64-byte piece of the acknowledged envelope is still in the database or WAL file")
			}
			if fi, err := os.Stat(s.path + "-wal"); err == nil && fi.Size() != 0 {
				t.Errorf("WAL is %d bytes after Vacuum, want 0", fi.Size())
			}
			got, err := s.Pending(ctx, d.User, d.ID, now, 100)
			if err != nil || len(got) != len(others) {
				t.Fatalf("neighbours after Vacuum: %d, %v; want %d", len(got), err, len(others))
			}
		})
	}
}

// containsAnyWindow reports whether any 64-byte window of secret occurs in
// the database file or its WAL.
func containsAnyWindow(t *testing.T, dbPath string, secret []byte) bool {
	t.Helper()
	const window = 64
	found := false
	for _, name := range []string{dbPath, dbPath + "-wal", dbPath + "-journal"} {
		data, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+window <= len(secret); off++ {
			if bytes.Contains(data, secret[off:off+window]) {
				t.Logf("%s holds the 64 bytes at offset %d", filepath.Base(name), off)
				found = true
				break
			}
		}
	}
	return found
}

// TestQueuedSurvivesKill: a message whose Enqueue returned is in the
// database after the process is killed with SIGKILL. The child process (this
// test binary again) enqueues one message per transaction and reports each
// one after Enqueue returns; the parent kills it mid-stream and checks that
// every reported message is there.
func TestQueuedSurvivesKill(t *testing.T) {
	if path := os.Getenv("QRTALK_SQLITE_KILL_CHILD"); path != "" {
		killChild(path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "qrtalk.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := account(t, s)
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestQueuedSurvivesKill$")
	cmd.Env = append(os.Environ(), "QRTALK_SQLITE_KILL_CHILD="+path)
	cmd.Stdin = bytes.NewReader([]byte(d.User.String() + " " + d.ID.String() + "\n"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []protocol.MessageID
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 30 {
		id, err := protocol.ParseMessageID(sc.Text())
		if err != nil {
			continue // test framework chatter
		}
		acked = append(acked, id)
	}
	cmd.Process.Kill() // SIGKILL: no deferred Close, no flush
	cmd.Wait()
	if len(acked) < 30 {
		t.Fatalf("child reported only %d messages before exiting", len(acked))
	}

	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	got, err := s.Pending(ctx, d.User, d.ID, now, 100000)
	if err != nil {
		t.Fatal(err)
	}
	have := map[protocol.MessageID]bool{}
	for _, m := range got {
		have[m.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("message %s was reported queued but is gone after SIGKILL", id)
		}
	}
	t.Logf("%d reported messages all present (%d in the queue)", len(acked), len(got))
}

func killChild(path string) {
	var us, ds string
	if _, err := fmt.Scan(&us, &ds); err != nil {
		os.Exit(2)
	}
	u, err1 := protocol.ParseUserID(us)
	d, err2 := protocol.ParseDeviceID(ds)
	if err1 != nil || err2 != nil {
		os.Exit(2)
	}
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for range 10000 { // the parent kills us long before
		m := store.QueuedMessage{User: u, Device: d, ID: protocol.NewMessageID(), Envelope: []byte("x"), Expires: now.Add(time.Hour)}
		if err := s.Enqueue(context.Background(), []store.QueuedMessage{m}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(m.ID)
	}
	os.Exit(0)
}

func TestQueueWriterOnSQLite(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	d := account(t, s)
	w := store.NewQueueWriter(s, store.QueueWriterOptions{})
	const n = 200
	errc := make(chan error, n)
	for range n {
		go func() { errc <- w.Enqueue(ctx, message(d, []byte("hello"))) }()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	depth, err := s.QueueDepth(ctx)
	if err != nil || depth != n {
		t.Fatalf("QueueDepth = %d, %v; want %d", depth, err, n)
	}
	st := w.Stats()
	t.Logf("%d messages in %d transactions", st.Messages, st.Batches)
	if st.Messages != n || st.Batches > n {
		t.Fatalf("stats %+v", st)
	}
}

// TestVacuumWithReader: a read transaction that stays open keeps the WAL
// from being truncated; Vacuum says so instead of claiming success, and the
// next Vacuum, once the reader is done, completes.
func TestVacuumWithReader(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "qrtalk.db"), Options{BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := account(t, s)
	m := message(d, []byte("to be acknowledged"))
	if err := s.Enqueue(ctx, []store.QueuedMessage{m}); err != nil {
		t.Fatal(err)
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM queue").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, d.User, d.ID, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Vacuum(ctx); !errors.Is(err, ErrCheckpointBusy) {
		t.Fatalf("Vacuum with an open reader = %v, want ErrCheckpointBusy", err)
	}
	tx.Rollback()
	if err := s.Vacuum(ctx); err != nil {
		t.Fatalf("Vacuum after the reader is done: %v", err)
	}
}
