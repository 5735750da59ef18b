package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// benchEnvelopeSize is a typical small message: a 1 KiB body wrapped for a
// few devices with RSA-3072 (384 bytes per device).
const benchEnvelopeSize = 2048

// benchSenders is how many goroutines the concurrent benchmarks send from
// (at least: RunParallel starts a multiple of GOMAXPROCS).
const benchSenders = 32

// Bench runs the store benchmarks of the queue's hot paths on the store
// that open returns (a new, empty one each call): queue insert, alone, in
// batches and through the QueueWriter's group commit; and the drain of a
// device coming online, the old way (read the head, acknowledge one
// message per transaction) against the server's (read by cursor,
// acknowledge a page in one transaction). Each reports messages per
// second, and a ratio to its baseline in the same run where it has one
// (x-direct, x-head).
//
// An implementation's benchmark calls it:
//
//	func BenchmarkStore(b *testing.B) {
//		storetest.Bench(b, func(b *testing.B) store.Store { return openTemp(b) })
//	}
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("Enqueue/batch=%d", size), func(b *testing.B) {
			s := open(b)
			d := benchAccount(b, s)
			env := benchEnvelope()
			batch := make([]store.QueuedMessage, size)
			ctx := context.Background()
			for b.Loop() {
				for i := range batch {
					batch[i] = benchMessage(d, env)
				}
				if err := s.Enqueue(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N*size)
		})
	}

	// Many senders at once, each with one message: one transaction each,
	// then the QueueWriter's group commit.
	var direct float64
	for _, grouped := range []bool{false, true} {
		name := "ConcurrentEnqueue/direct"
		if grouped {
			name = "ConcurrentEnqueue/QueueWriter"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b)
			d := benchAccount(b, s)
			env := benchEnvelope()
			ctx := context.Background()
			w := store.NewQueueWriter(s, store.QueueWriterOptions{})
			defer w.Close()
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((benchSenders + procs - 1) / procs)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := benchMessage(d, env)
					var err error
					if grouped {
						err = w.Enqueue(ctx, m)
					} else {
						err = s.Enqueue(ctx, []store.QueuedMessage{m})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			rate := reportRate(b, b.N)
			if !grouped {
				direct = rate
				return
			}
			if st := w.Stats(); st.Batches > 0 {
				b.ReportMetric(float64(st.Messages)/float64(st.Batches), "msgs/txn")
			}
			if direct > 0 {
				b.ReportMetric(rate/direct, "x-direct")
			}
		})
	}

	// The drain of a device coming online with its queue full.
	var head float64
	for _, cursor := range []bool{false, true} {
		name := "Drain/head+Ack"
		if cursor {
			name = "Drain/cursor+AckMany"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b)
			d := benchAccount(b, s)
			ctx := context.Background()
			env := benchEnvelope()
			const page = 256
			queued := 0
			var after int64
			for b.Loop() {
				if queued == 0 {
					b.StopTimer()
					batch := make([]store.QueuedMessage, 4*page)
					for i := range batch {
						batch[i] = benchMessage(d, env)
					}
					if err := s.Enqueue(ctx, batch); err != nil {
						b.Fatal(err)
					}
					queued, after = len(batch), 0
					b.StartTimer()
				}
				if !cursor {
					// One message per iteration: the head, then its ack.
					msgs, err := s.Pending(ctx, d.User, d.ID, benchNow, 1)
					if err != nil || len(msgs) != 1 {
						b.Fatalf("Pending: %d, %v", len(msgs), err)
					}
					if err := s.Ack(ctx, d.User, d.ID, msgs[0].ID); err != nil {
						b.Fatal(err)
					}
					queued--
					continue
				}
				// One page per iteration, counted per message below.
				msgs, err := s.PendingAfter(ctx, d.User, d.ID, after, benchNow, page)
				if err != nil || len(msgs) == 0 {
					b.Fatalf("PendingAfter: %d, %v", len(msgs), err)
				}
				refs := make([]store.MessageRef, len(msgs))
				for i, m := range msgs {
					refs[i] = store.MessageRef{User: m.User, Device: m.Device, ID: m.ID}
					after = m.Seq
				}
				if n, err := s.AckMany(ctx, refs); err != nil || n != len(refs) {
					b.Fatalf("AckMany: %d of %d, %v", n, len(refs), err)
				}
				queued -= len(msgs)
			}
			n := b.N
			if cursor {
				n *= page
			}
			rate := reportRate(b, n)
			if !cursor {
				head = rate
			} else if head > 0 {
				b.ReportMetric(rate/head, "x-head")
			}
		})
	}
}

var benchNow = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

func benchEnvelope() []byte {
	b := make([]byte, benchEnvelopeSize)
	rand.Read(b)
	return b
}

func benchAccount(b *testing.B, s store.Store) store.Device {
	b.Helper()
	u := store.User{ID: protocol.NewUserID(), IdentityKey: make([]byte, 422), Created: benchNow}
	d := store.Device{User: u.ID, ID: protocol.NewDeviceID(), Certificate: make([]byte, 600),
		EncryptionKey: make([]byte, 422), AuthKey: make([]byte, 422), Created: benchNow}
	if err := s.Register(context.Background(), u, d, nil, benchNow); err != nil {
		b.Fatal(err)
	}
	return d
}

func benchMessage(d store.Device, envelope []byte) store.QueuedMessage {
	return store.QueuedMessage{User: d.User, Device: d.ID, ID: protocol.NewMessageID(), Envelope: envelope, Expires: benchNow.Add(time.Hour)}
}

func reportRate(b *testing.B, msgs int) float64 {
	s := b.Elapsed().Seconds()
	if s <= 0 {
		return 0
	}
	rate := float64(msgs) / s
	b.ReportMetric(rate, "msgs/s")
	return rate
}
