package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"

	"github.com/qrtalk/qrtalk/internal/store"
)

// envelopeSize is a typical small message: a 1 KiB body wrapped for a few
// devices with RSA-3072 (384 bytes per device).
const envelopeSize = 2048

// senders is how many goroutines BenchmarkConcurrentEnqueue sends from.
const senders = 32

func benchEnvelope() []byte {
	b := make([]byte, envelopeSize)
	rand.Read(b)
	return b
}

func reportRate(b *testing.B, msgs int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(msgs)/s, "msgs/s")
	}
}

// The benchmarks run against the database of QRTALK_TEST_POSTGRES, each on
// a schema of its own, and report messages per second. Every commit waits
// for PostgreSQL's WAL flush (synchronous_commit=on), as in production.

// BenchmarkEnqueue: one statement (one commit, one WAL flush) per batch; the
// per-message rate is what group commit buys.
func BenchmarkEnqueue(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := openTemp(b)
			d := account(b, s)
			env := benchEnvelope()
			batch := make([]store.QueuedMessage, size)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				for i := range batch {
					batch[i] = message(d, env)
				}
				if err := s.Enqueue(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N*size)
		})
	}
}

// BenchmarkPendingAck: the delivery path of a device coming online: fetch
// what is queued, acknowledge each message (one transaction per Ack).
func BenchmarkPendingAck(b *testing.B) {
	s := openTemp(b)
	d := account(b, s)
	ctx := context.Background()
	env := benchEnvelope()
	total := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if total == 0 {
			batch := make([]store.QueuedMessage, 256)
			for i := range batch {
				batch[i] = message(d, env)
			}
			if err := s.Enqueue(ctx, batch); err != nil {
				b.Fatal(err)
			}
			total = len(batch)
		}
		b.StartTimer()
		msgs, err := s.Pending(ctx, d.User, d.ID, now, 1)
		if err != nil || len(msgs) != 1 {
			b.Fatalf("Pending: %d, %v", len(msgs), err)
		}
		if err := s.Ack(ctx, d.User, d.ID, msgs[0].ID); err != nil {
			b.Fatal(err)
		}
		total--
	}
	reportRate(b, b.N)
}

// BenchmarkConcurrentEnqueue: 32 senders at once (at least: RunParallel
// starts a multiple of GOMAXPROCS), each with one message, with and without
// the QueueWriter. Without it, each sender needs a connection of
// the pool (default size: the larger of 4 and the CPU count) and a commit of
// its own.
func BenchmarkConcurrentEnqueue(b *testing.B) {
	for _, grouped := range []bool{false, true} {
		name := "direct"
		if grouped {
			name = "QueueWriter"
		}
		b.Run(name, func(b *testing.B) {
			s := openTemp(b)
			d := account(b, s)
			env := benchEnvelope()
			ctx := context.Background()
			w := store.NewQueueWriter(s, store.QueueWriterOptions{})
			defer w.Close()
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((senders + procs - 1) / procs)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := message(d, env)
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
			reportRate(b, b.N)
			b.ReportMetric(float64(((senders+procs-1)/procs)*procs), "senders")
			if st := w.Stats(); grouped && st.Batches > 0 {
				b.ReportMetric(float64(st.Messages)/float64(st.Batches), "msgs/txn")
			}
		})
	}
}
