package server

import (
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

func TestDeviceCache(t *testing.T) {
	u, d := protocol.NewUserID(), protocol.NewDeviceID()
	c := newDeviceCache(time.Hour)

	gen := c.generation()
	c.put(u, []protocol.DeviceID{d}, gen, time.Now())
	if got, ok := c.lookup(u); !ok || len(got) != 1 || got[0] != d {
		t.Fatalf("lookup after put: %v %v", got, ok)
	}

	// A list read before a revocation committed must not be cached after
	// it: the generation taken before the read no longer matches.
	gen = c.generation()
	c.invalidate(u) // the revocation, between the read and the put
	c.put(u, []protocol.DeviceID{d}, gen, time.Now())
	if got, ok := c.lookup(u); ok {
		t.Fatalf("a list older than the invalidation was cached: %v", got)
	}

	// Entries expire after the TTL.
	c.put(u, []protocol.DeviceID{d}, c.generation(), time.Now().Add(-2*time.Hour))
	if _, ok := c.lookup(u); ok {
		t.Fatal("an entry older than the TTL was returned")
	}

	// clear forgets everything, and a read from before it is not cached.
	gen = c.generation()
	c.put(u, []protocol.DeviceID{d}, gen, time.Now())
	c.clear()
	c.put(u, []protocol.DeviceID{d}, gen, time.Now())
	if _, ok := c.lookup(u); ok {
		t.Fatal("an entry survived clear")
	}

	// The size bound holds.
	c.max = 3
	for range 10 {
		c.put(protocol.NewUserID(), nil, c.generation(), time.Now())
	}
	if n := c.len(); n != 3 {
		t.Fatalf("cache holds %d users, bound 3", n)
	}

	// A negative TTL turns the cache off.
	off := newDeviceCache(-1)
	off.put(u, []protocol.DeviceID{d}, off.generation(), time.Now())
	if _, ok := off.lookup(u); ok {
		t.Fatal("a disabled cache returned an entry")
	}
}
