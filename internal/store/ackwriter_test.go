package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/qrtalk/qrtalk/protocol"
)

// fakeAcker records batches; the first call waits for release, so that a
// test can pile up submissions behind a batch in flight.
type fakeAcker struct {
	release chan struct{}
	entered chan int

	mu      sync.Mutex
	batches [][]MessageRef
	err     error
}

func (f *fakeAcker) AckMany(ctx context.Context, refs []MessageRef) (int, error) {
	f.entered <- len(refs)
	f.mu.Lock()
	first := len(f.batches) == 0
	f.batches = append(f.batches, slices.Clone(refs))
	err := f.err
	f.mu.Unlock()
	if first {
		<-f.release
	}
	if err != nil {
		return 0, err
	}
	return len(refs), nil
}

func ref() MessageRef {
	return MessageRef{User: protocol.NewUserID(), Device: protocol.NewDeviceID(), ID: protocol.NewMessageID()}
}

func TestAckWriterGroups(t *testing.T) {
	f := &fakeAcker{release: make(chan struct{}), entered: make(chan int, 100)}
	var deleted int
	var dmu sync.Mutex
	w := NewAckWriter(f, AckWriterOptions{MaxBatch: 5, Deleted: func(n int) { dmu.Lock(); deleted += n; dmu.Unlock() }})

	results := make(chan error, 10)
	done := func(err error) { results <- err }
	if err := w.Submit([]MessageRef{ref()}, done); err != nil {
		t.Fatal(err)
	}
	if n := <-f.entered; n != 1 {
		t.Fatalf("first batch has %d, want 1", n)
	}
	// While it is written, four submissions of 2 gather: batches of at
	// most 5 acknowledgements, whole submissions only.
	for range 4 {
		if err := w.Submit([]MessageRef{ref(), ref()}, done); err != nil {
			t.Fatal(err)
		}
	}
	close(f.release)
	for range 5 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	f.mu.Lock()
	var sizes []int
	for _, b := range f.batches {
		sizes = append(sizes, len(b))
	}
	f.mu.Unlock()
	if !slices.Equal(sizes, []int{1, 4, 4}) {
		t.Fatalf("batch sizes %v, want [1 4 4]", sizes)
	}
	dmu.Lock()
	defer dmu.Unlock()
	if deleted != 9 {
		t.Fatalf("Deleted counted %d, want 9", deleted)
	}
}

func TestAckWriterErrorsAndClose(t *testing.T) {
	f := &fakeAcker{release: make(chan struct{}), entered: make(chan int, 100), err: errors.New("disk on fire")}
	close(f.release)
	w := NewAckWriter(f, AckWriterOptions{})
	if err := w.Ack(context.Background(), []MessageRef{ref()}); err == nil {
		t.Fatal("a failed batch reported success")
	}
	if err := w.Submit([]MessageRef{ref(), {}}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a zero reference: got %v, want ErrInvalid", err)
	}
	if err := w.Ack(context.Background(), nil); err != nil {
		t.Fatalf("nothing to acknowledge: %v", err)
	}
	w.Close()
	w.Close()
	if err := w.Submit([]MessageRef{ref()}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: got %v, want ErrClosed", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 1 {
		t.Fatalf("%d batches written, want 1 (the invalid submission must not reach the store)", len(f.batches))
	}
}
