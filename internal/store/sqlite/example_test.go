package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/sqlite"
	"github.com/qrtalk/qrtalk/protocol"
)

// A device is offline: its message is queued through the group-commit
// writer, delivered when it comes back, acknowledged, and the sweeper's
// Vacuum leaves no trace of it in the files.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "qrtalk-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	s, err := sqlite.Open(ctx, filepath.Join(dir, "qrtalk.db"), sqlite.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	now := time.Now()
	u := store.User{ID: protocol.NewUserID(), IdentityKey: []byte("identity public key, DER"), Created: now}
	d := store.Device{User: u.ID, ID: protocol.NewDeviceID(), Certificate: []byte("signed certificate"),
		EncryptionKey: []byte("encryption key, DER"), AuthKey: []byte("auth key, DER"), Created: now}
	if err := s.Register(ctx, u, d, nil, now); err != nil {
		fmt.Println(err)
		return
	}

	w := store.NewQueueWriter(s, store.QueueWriterOptions{})
	defer w.Close()
	m := store.QueuedMessage{User: u.ID, Device: d.ID, ID: protocol.NewMessageID(),
		Envelope: []byte("opaque ciphertext"), Expires: now.Add(time.Hour)}
	if err := w.Enqueue(ctx, m); err != nil { // durable once this returns
		fmt.Println(err)
		return
	}

	pending, err := s.Pending(ctx, u.ID, d.ID, time.Now(), 100)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range pending {
		fmt.Printf("deliver %d bytes\n", len(p.Envelope))
		if err := s.Ack(ctx, p.User, p.Device, p.ID); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := s.Vacuum(ctx); err != nil {
		fmt.Println(err)
		return
	}
	n, _ := s.QueueDepth(ctx)
	fmt.Println("queued:", n)
	// Output:
	// deliver 17 bytes
	// queued: 0
}
