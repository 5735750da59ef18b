package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// fakeDst records batches. When hold is set, each call waits until a value
// is sent on release, so that a test can pile up callers behind a batch in
// flight.
type fakeDst struct {
	hold    bool
	release chan struct{}
	entered chan int // receives each batch's size as the call starts

	mu      sync.Mutex
	batches [][]QueuedMessage
	err     error
}

func newFake(hold bool) *fakeDst {
	return &fakeDst{hold: hold, release: make(chan struct{}), entered: make(chan int, 1000)}
}

func (f *fakeDst) Enqueue(ctx context.Context, msgs []QueuedMessage) error {
	f.entered <- len(msgs)
	if f.hold {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, slices.Clone(msgs))
	return f.err
}

func (f *fakeDst) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []int
	for _, b := range f.batches {
		s = append(s, len(b))
	}
	return s
}

func qmsg() QueuedMessage {
	return QueuedMessage{User: protocol.NewUserID(), Device: protocol.NewDeviceID(), ID: protocol.NewMessageID(),
		Envelope: []byte("envelope"), Expires: time.Now().Add(time.Hour)}
}

// waitFor polls cond until it holds or the deadline passes: no sleeping
// for a guessed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (w *QueueWriter) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// enqueueAsync starts n callers and returns their results' channel.
func enqueueAsync(ctx context.Context, w *QueueWriter, n int) chan error {
	errc := make(chan error, n)
	for range n {
		go func() { errc <- w.Enqueue(ctx, qmsg()) }()
	}
	return errc
}

func collect(t *testing.T, errc chan error, n int) []error {
	t.Helper()
	var errs []error
	for range n {
		select {
		case err := <-errc:
			errs = append(errs, err)
		case <-time.After(10 * time.Second):
			t.Fatal("a caller did not return")
		}
	}
	return errs
}

func TestQueueWriterCoalesces(t *testing.T) {
	f := newFake(true)
	w := NewQueueWriter(f, QueueWriterOptions{})
	defer w.Close()
	ctx := context.Background()

	first := enqueueAsync(ctx, w, 1)
	if n := <-f.entered; n != 1 {
		t.Fatalf("first batch has %d messages, want 1 (written at once when idle)", n)
	}
	const n = 50
	rest := enqueueAsync(ctx, w, n)
	waitFor(t, "callers to gather behind the batch in flight", func() bool { return w.waiting() == n })
	select {
	case err := <-first:
		t.Fatalf("first caller returned (%v) before its batch was committed", err)
	default:
	}
	f.release <- struct{}{}
	f.release <- struct{}{}
	for _, err := range collect(t, first, 1) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range collect(t, rest, n) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.sizes(); !slices.Equal(got, []int{1, n}) {
		t.Fatalf("batch sizes %v, want [1 %d]", got, n)
	}
	if st := w.Stats(); st.Batches != 2 || st.Messages != n+1 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestQueueWriterMaxBatch(t *testing.T) {
	f := newFake(true)
	w := NewQueueWriter(f, QueueWriterOptions{MaxBatch: 3})
	defer w.Close()
	ctx := context.Background()
	first := enqueueAsync(ctx, w, 1)
	<-f.entered
	rest := enqueueAsync(ctx, w, 10)
	waitFor(t, "10 waiting callers", func() bool { return w.waiting() == 10 })
	for range 5 {
		f.release <- struct{}{}
	}
	collect(t, first, 1)
	collect(t, rest, 10)
	if got := f.sizes(); !slices.Equal(got, []int{1, 3, 3, 3, 1}) {
		t.Fatalf("batch sizes %v, want [1 3 3 3 1]", got)
	}
}

func TestQueueWriterBatchError(t *testing.T) {
	f := newFake(false)
	boom := errors.New("disk full")
	f.err = boom
	w := NewQueueWriter(f, QueueWriterOptions{})
	defer w.Close()
	if err := w.Enqueue(context.Background(), qmsg()); !errors.Is(err, boom) {
		t.Fatalf("Enqueue = %v, want the batch's error", err)
	}
	if st := w.Stats(); st.Failed != 1 {
		t.Fatalf("stats %+v, want one failed batch", st)
	}
}

func TestQueueWriterRefusesInvalidAlone(t *testing.T) {
	f := newFake(false)
	w := NewQueueWriter(f, QueueWriterOptions{})
	defer w.Close()
	bad := qmsg()
	bad.ID = protocol.MessageID{}
	if err := w.Enqueue(context.Background(), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Enqueue(zero ID) = %v, want ErrInvalid", err)
	}
	if got := f.sizes(); len(got) != 0 {
		t.Fatalf("an invalid message reached the store: batches %v", got)
	}
}

// TestQueueWriterWithdrawsCanceled: a caller whose context ends while it
// waits for a batch returns at once, and its message is not written.
func TestQueueWriterWithdrawsCanceled(t *testing.T) {
	f := newFake(true)
	w := NewQueueWriter(f, QueueWriterOptions{})
	defer w.Close()
	first := enqueueAsync(context.Background(), w, 1)
	<-f.entered

	ctx, cancel := context.WithCancel(context.Background())
	m := qmsg()
	errc := make(chan error, 1)
	go func() { errc <- w.Enqueue(ctx, m) }()
	waitFor(t, "the second caller to wait", func() bool { return w.waiting() == 1 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled Enqueue = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("canceled Enqueue did not return while a batch was in flight")
	}
	f.release <- struct{}{}
	collect(t, first, 1)
	w.Close()
	if got := f.sizes(); !slices.Equal(got, []int{1}) {
		t.Fatalf("batch sizes %v, want only the first message's batch", got)
	}

	// Already canceled: refused before joining.
	if err := w.Enqueue(ctx, qmsg()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue(canceled) = %v", err)
	}
}

func TestQueueWriterCloseFlushes(t *testing.T) {
	f := newFake(true)
	w := NewQueueWriter(f, QueueWriterOptions{})
	ctx := context.Background()
	first := enqueueAsync(ctx, w, 1)
	<-f.entered
	rest := enqueueAsync(ctx, w, 5)
	waitFor(t, "5 waiting callers", func() bool { return w.waiting() == 5 })

	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	waitFor(t, "Close to start", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.closed
	})
	if err := w.Enqueue(ctx, qmsg()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue during Close = %v, want ErrClosed", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned before the waiting messages were written")
	default:
	}
	f.release <- struct{}{}
	f.release <- struct{}{}
	<-closed
	for _, err := range append(collect(t, first, 1), collect(t, rest, 5)...) {
		if err != nil {
			t.Fatalf("a message waiting at Close: %v", err)
		}
	}
	if got := f.sizes(); !slices.Equal(got, []int{1, 5}) {
		t.Fatalf("batch sizes %v, want [1 5]", got)
	}
	w.Close() // again: nothing happens
}

// TestQueueWriterConcurrent: many callers at once, each message written
// exactly once, none lost; run with -race.
func TestQueueWriterConcurrent(t *testing.T) {
	f := newFake(false)
	w := NewQueueWriter(f, QueueWriterOptions{MaxBatch: 16})
	const callers, each = 32, 25
	var wg sync.WaitGroup
	sent := make(chan protocol.MessageID, callers*each)
	for range callers {
		wg.Go(func() {
			for range each {
				m := qmsg()
				if err := w.Enqueue(context.Background(), m); err != nil {
					t.Error(err)
					return
				}
				sent <- m.ID
			}
		})
	}
	wg.Wait()
	w.Close()
	close(sent)
	seen := map[protocol.MessageID]int{}
	for _, b := range f.batches {
		if len(b) > 16 {
			t.Fatalf("batch of %d exceeds MaxBatch 16", len(b))
		}
		for _, m := range b {
			seen[m.ID]++
		}
	}
	for id := range sent {
		if seen[id] != 1 {
			t.Fatalf("message %s written %d times, want 1", id, seen[id])
		}
	}
	if len(seen) != callers*each {
		t.Fatalf("%d messages written, want %d", len(seen), callers*each)
	}
	st := w.Stats()
	t.Logf("%d messages in %d batches", st.Messages, st.Batches)
}
