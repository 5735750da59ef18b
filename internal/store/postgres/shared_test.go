package postgres

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Two nodes (two pools on one schema) share the replay cache: a key seen
// through one is seen through the other until it expires; when both race
// with a new key, exactly one sees it as new.
func TestReplayCacheShared(t *testing.T) {
	dsn := newSchema(t)
	a, b := openDSN(t, dsn, Options{}).ReplayCache(nil), openDSN(t, dsn, Options{}).ReplayCache(nil)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := now.Add(2 * time.Minute)
	key := [16]byte{1, 2, 3}
	if a.Seen(key, now, exp) {
		t.Fatal("a new key was seen")
	}
	if !b.Seen(key, now.Add(time.Second), exp) {
		t.Fatal("the other node did not see the key")
	}
	if !a.Seen(key, now.Add(time.Minute), exp) {
		t.Fatal("the first node forgot the key")
	}
	// Expired, not yet swept: new again.
	if b.Seen(key, exp, exp.Add(time.Minute)) {
		t.Fatal("an expired key was still seen")
	}
	if !a.Seen(key, exp, exp.Add(time.Minute)) {
		t.Fatal("the key taken over after expiry was not seen")
	}

	for i := range 20 {
		k := [16]byte{9, byte(i)}
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for _, c := range []*ReplayCache{a, b, a, b} {
			wg.Go(func() {
				if !c.Seen(k, now, exp) {
					fresh.Add(1)
				}
			})
		}
		wg.Wait()
		if n := fresh.Load(); n != 1 {
			t.Fatalf("key %d: %d callers saw it as new, want 1", i, n)
		}
	}

	n, err := a.DeleteExpired(context.Background(), exp)
	if err != nil || n != 20 {
		t.Fatalf("DeleteExpired = %d, %v; want the 20 keys expiring at %v", n, err, exp)
	}
	if n, err := b.DeleteExpired(context.Background(), exp.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("DeleteExpired later = %d, %v; want 1", n, err)
	}
}

// A replay cache on a store that is closed fails closed: every key is seen.
func TestReplayCacheFailsClosed(t *testing.T) {
	s := openTemp(t)
	c := s.ReplayCache(nil)
	s.Close()
	if !c.Seen([16]byte{7}, time.Now(), time.Now().Add(time.Minute)) {
		t.Fatal("a closed store's replay cache accepted a key")
	}
}

// The limiter is one token bucket per key across nodes: a burst spent
// through two pools is spent once; it refills at the rate; sweeping drops
// only full buckets.
func TestLimiterShared(t *testing.T) {
	dsn := newSchema(t)
	a, b := openDSN(t, dsn, Options{}).Limiter(), openDSN(t, dsn, Options{}).Limiter()
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := []byte("dir/device-1")
	const burst, rate = 10, 2.0 // 2 tokens a second

	allowed := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 2 * burst {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			ok, err := l.Allow(ctx, key, rate, burst, now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != burst {
		t.Fatalf("%d of %d concurrent requests allowed on two nodes, want the burst, %d", allowed, 2*burst, burst)
	}
	// Another key has a bucket of its own.
	if ok, err := b.Allow(ctx, []byte("dir/device-2"), rate, burst, now); err != nil || !ok {
		t.Fatalf("another key: %v %v", ok, err)
	}
	// Half a second later: one token back.
	at := now.Add(500 * time.Millisecond)
	if ok, _ := b.Allow(ctx, key, rate, burst, at); !ok {
		t.Fatal("no token after half a second at 2/s")
	}
	if ok, _ := a.Allow(ctx, key, rate, burst, at); ok {
		t.Fatal("two tokens after half a second at 2/s")
	}
	// A node whose clock is behind does not refill the bucket again.
	if ok, _ := a.Allow(ctx, key, rate, burst, now); ok {
		t.Fatal("a clock behind the others refilled the bucket")
	}
	// Not full yet: kept (device-2's, full half a second after its one
	// take, goes). Full (burst/rate = 5 s after the last take): swept.
	if n, err := a.DeleteExpired(ctx, at.Add(4*time.Second)); err != nil || n != 1 {
		t.Fatalf("sweep before the bucket is full: %d, %v; want only the other key's", n, err)
	}
	if n, err := a.DeleteExpired(ctx, at.Add(5*time.Second+time.Millisecond)); err != nil || n != 1 {
		t.Fatalf("sweep of the full bucket: %d, %v; want 1", n, err)
	}
	if ok, err := a.Allow(ctx, key, rate, burst, at.Add(6*time.Second)); err != nil || !ok {
		t.Fatalf("after the sweep: %v %v", ok, err)
	}
	if _, err := a.Allow(ctx, nil, rate, burst, now); err == nil {
		t.Fatal("an empty key was accepted")
	}
}

// The first node records its server key; a node with the same key starts,
// one with another is refused.
func TestCheckServerKey(t *testing.T) {
	dsn := newSchema(t)
	a, b := openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})
	ctx := context.Background()
	fp := bytes.Repeat([]byte{1}, 32)
	if rec, err := a.CheckServerKey(ctx, fp); err != nil || !bytes.Equal(rec, fp) {
		t.Fatalf("first node: %x, %v", rec, err)
	}
	if _, err := b.CheckServerKey(ctx, fp); err != nil {
		t.Fatalf("a node with the same key: %v", err)
	}
	other := bytes.Repeat([]byte{2}, 32)
	rec, err := b.CheckServerKey(ctx, other)
	if !errors.Is(err, ErrServerKeyMismatch) || !bytes.Equal(rec, fp) {
		t.Fatalf("a node with another key: %x, %v; want ErrServerKeyMismatch and the first key", rec, err)
	}
}
