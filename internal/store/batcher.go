package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// An Enqueuer stores a batch of messages in one transaction; Store is one.
type Enqueuer interface {
	Enqueue(ctx context.Context, msgs []QueuedMessage) error
}

// QueueWriterOptions tune a QueueWriter. The zero value is usable.
type QueueWriterOptions struct {
	// MaxBatch bounds how many messages go into one transaction, so that
	// one commit cannot hold the single SQLite writer for long. Default 256.
	MaxBatch int
	// Timeout bounds one batch's write. Callers wait for a batch that is
	// already being written whatever their own context says (so that their
	// answer is exact), and this keeps that wait finite. Default 30s.
	Timeout time.Duration
}

// QueueWriterStats count what a QueueWriter did, for metrics and tests.
type QueueWriterStats struct {
	Batches  uint64 // transactions written, failed ones included
	Messages uint64 // messages handed to those transactions
	Failed   uint64 // batches whose write returned an error
}

// A QueueWriter is group commit for the offline queue. Every queued message
// must be durable before the server answers "queued", which costs one fsync
// per transaction; many goroutines each calling Store.Enqueue with one
// message would pay one fsync each. A QueueWriter lets them share: while one
// batch is being written, new messages gather, and they are written together
// as soon as it is done. When nothing is being written a message is written
// at once: there is no timer, so an idle server adds no latency.
//
// It is safe for concurrent use.
type QueueWriter struct {
	dst      Enqueuer
	maxBatch int
	timeout  time.Duration

	mu      sync.Mutex
	pending []*queueRequest // waiting for the next batch, in arrival order
	closed  bool
	stats   QueueWriterStats
	wake    chan struct{} // capacity 1: "pending is not empty"
	done    chan struct{} // closed when the flusher has exited
}

type queueRequest struct {
	msg    QueuedMessage
	result chan error // capacity 1, so the flusher never blocks on it
}

// NewQueueWriter returns a QueueWriter that writes to dst. Close it to flush
// and stop its goroutine.
func NewQueueWriter(dst Enqueuer, opts QueueWriterOptions) *QueueWriter {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	w := &QueueWriter{
		dst:      dst,
		maxBatch: opts.MaxBatch,
		timeout:  opts.Timeout,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go w.flusher()
	return w
}

// Enqueue stores m and returns once the transaction holding it is committed,
// or with that transaction's error. An invalid message is refused alone
// (ErrInvalid), before it can fail a batch shared with others.
//
// If ctx ends while m still waits for its batch, m is withdrawn and ctx's
// error returned: m was not stored. Once m's batch is being written, Enqueue
// waits for the outcome, so that nil always means stored and an error means
// not stored as far as the store can tell.
func (w *QueueWriter) Enqueue(ctx context.Context, m QueuedMessage) error {
	if err := ValidateQueuedMessage(&m); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &queueRequest{msg: m, result: make(chan error, 1)}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return fmt.Errorf("queue writer: %w", ErrClosed)
	}
	w.pending = append(w.pending, req)
	// Under the lock, because Close closes wake under it too.
	select {
	case w.wake <- struct{}{}:
	default: // the flusher is already told
	}
	w.mu.Unlock()

	select {
	case err := <-req.result:
		return err
	case <-ctx.Done():
	}
	w.mu.Lock()
	for i, p := range w.pending {
		if p == req {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			w.mu.Unlock()
			return ctx.Err()
		}
	}
	w.mu.Unlock()
	// Already taken into a batch: its outcome is coming.
	return <-req.result
}

// Stats returns the counters so far.
func (w *QueueWriter) Stats() QueueWriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Close writes the messages still waiting, refuses new ones with ErrClosed,
// and returns once the last batch is committed. It does not close the
// destination store. Calling it again does nothing.
func (w *QueueWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.wake) // the flusher drains pending, then exits
	}
	w.mu.Unlock()
	<-w.done
	return nil
}

// flusher is the one goroutine that writes: one batch at a time, which is
// what makes later arrivals gather behind the batch in flight.
func (w *QueueWriter) flusher() {
	defer close(w.done)
	for range w.wake {
		w.drain()
	}
	w.drain() // after Close: whatever arrived before closed was set
}

// drain writes batches until nothing is pending.
func (w *QueueWriter) drain() {
	for {
		w.mu.Lock()
		n := min(len(w.pending), w.maxBatch)
		if n == 0 {
			w.mu.Unlock()
			return
		}
		batch := make([]*queueRequest, n)
		copy(batch, w.pending)
		// Shift rather than reslice, so the backing array does not keep
		// envelopes (ciphertext, but still) alive longer than needed.
		rest := copy(w.pending, w.pending[n:])
		clear(w.pending[rest:])
		w.pending = w.pending[:rest]
		w.stats.Batches++
		w.stats.Messages += uint64(n)
		w.mu.Unlock()

		msgs := make([]QueuedMessage, n)
		for i, r := range batch {
			msgs[i] = r.msg
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		err := w.dst.Enqueue(ctx, msgs)
		cancel()
		if err != nil {
			err = fmt.Errorf("queue writer: batch of %d: %w", n, err)
			w.mu.Lock()
			w.stats.Failed++
			w.mu.Unlock()
		}
		for _, r := range batch {
			r.result <- err
		}
	}
}
