package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// An AckManyer deletes acknowledged messages in one transaction; Store is
// one.
type AckManyer interface {
	AckMany(ctx context.Context, refs []MessageRef) (int, error)
}

// AckWriterOptions tune an AckWriter. The zero value is usable.
type AckWriterOptions struct {
	// MaxBatch bounds how many acknowledgements go into one transaction.
	// Default 1024.
	MaxBatch int
	// Timeout bounds one batch's write. Default 30s.
	Timeout time.Duration
	// Deleted, if set, is called after each batch with how many messages
	// it deleted (for metrics).
	Deleted func(n int)
}

// An AckWriter is group commit for acknowledgements, as QueueWriter is for
// queueing: every acknowledgement deletes a queued message, one write
// transaction (one fsync) each if done alone. Acknowledgements that arrive
// while a batch is being written, from any device, are written together in
// the next one. There is no timer: when nothing is being written, a
// submission is written at once.
//
// It is safe for concurrent use.
type AckWriter struct {
	dst      AckManyer
	maxBatch int
	timeout  time.Duration
	deleted  func(int)

	mu      sync.Mutex
	pending []ackRequest
	closed  bool
	wake    chan struct{} // capacity 1
	done    chan struct{} // closed when the flusher has exited
}

type ackRequest struct {
	refs []MessageRef
	done func(error) // may be nil
}

// NewAckWriter returns an AckWriter that writes to dst. Close it to flush
// and stop its goroutine.
func NewAckWriter(dst AckManyer, opts AckWriterOptions) *AckWriter {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	w := &AckWriter{
		dst:      dst,
		maxBatch: opts.MaxBatch,
		timeout:  opts.Timeout,
		deleted:  opts.Deleted,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go w.flusher()
	return w
}

// Submit hands refs to the next batch and returns at once. done, if not
// nil, is called once that batch is committed (nil) or failed, from the
// writer's goroutine: it must not block. Invalid references are refused
// (ErrInvalid) before anything is submitted, and so is everything after
// Close (ErrClosed); done is then not called.
func (w *AckWriter) Submit(refs []MessageRef, done func(error)) error {
	for i := range refs {
		if err := ValidateMessageRef(&refs[i]); err != nil {
			return err
		}
	}
	if len(refs) == 0 {
		if done != nil {
			done(nil)
		}
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("ack writer: %w", ErrClosed)
	}
	w.pending = append(w.pending, ackRequest{refs: refs, done: done})
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// Ack submits refs and waits until their batch is committed. If ctx ends
// first, it returns ctx's error; the acknowledgements may still be written.
func (w *AckWriter) Ack(ctx context.Context, refs []MessageRef) error {
	result := make(chan error, 1)
	if err := w.Submit(refs, func(err error) { result <- err }); err != nil {
		return err
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what was submitted, refuses new submissions with ErrClosed
// and returns once the last batch is committed. It does not close the
// destination. Calling it again does nothing.
func (w *AckWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.wake)
	}
	w.mu.Unlock()
	<-w.done
	return nil
}

func (w *AckWriter) flusher() {
	defer close(w.done)
	for range w.wake {
		w.drain()
	}
	w.drain()
}

// drain writes batches until nothing is pending. A batch takes whole
// submissions, at least one, until MaxBatch acknowledgements.
func (w *AckWriter) drain() {
	for {
		w.mu.Lock()
		if len(w.pending) == 0 {
			w.mu.Unlock()
			return
		}
		n, count := 0, 0
		for n < len(w.pending) && (n == 0 || count+len(w.pending[n].refs) <= w.maxBatch) {
			count += len(w.pending[n].refs)
			n++
		}
		batch := make([]ackRequest, n)
		copy(batch, w.pending)
		rest := copy(w.pending, w.pending[n:])
		clear(w.pending[rest:])
		w.pending = w.pending[:rest]
		w.mu.Unlock()

		refs := make([]MessageRef, 0, count)
		for _, r := range batch {
			refs = append(refs, r.refs...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		deleted, err := w.dst.AckMany(ctx, refs)
		cancel()
		if err != nil {
			err = fmt.Errorf("ack writer: batch of %d: %w", len(refs), err)
		} else if w.deleted != nil && deleted > 0 {
			w.deleted(deleted)
		}
		for _, r := range batch {
			if r.done != nil {
				r.done(err)
			}
		}
	}
}
