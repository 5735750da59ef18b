package server

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// The device cache keeps, for each recipient user, the IDs of their devices
// that are neither revoked nor deleted, so that routing an envelope does
// not read the store on every send (it was a third of the server's CPU in
// live delivery).
//
// Why a cached list cannot make a revoked device receive:
//
//   - On one node, every change goes through this process: RevokeDevice and
//     DeleteUser invalidate the user's entry after the store committed them
//     and before the revocation is answered, and a list read from the store
//     before that commit is not put in the cache after it (generation
//     check in put). After the answer, no send on this node sees the
//     device as active.
//   - A device that is not in a cached list is looked up in the store
//     again before it is rejected, so a device added a moment ago (here or
//     on another node) is never refused because of the cache.
//   - In a cluster, a revocation or an account deletion on node A reaches
//     the others as the bus's Drop notice, the one that already ends the
//     device's sessions and live channels there; it invalidates the entry
//     too (busHandler.Drop). While this node's bus is down the cache is not
//     used at all (every send reads the store, as without a cache), and
//     when it comes back the whole cache is cleared, since notices may have
//     been lost meanwhile. What is left is a notice lost while this node's
//     bus was up, for instance when node A's own bus was down at the moment
//     of the revocation (A publishes nothing then): entries live at most
//     Options.DeviceCacheTTL, so a stale entry lasts no longer than that.
//   - Queued copies never depend on the cache: the store's Enqueue checks,
//     in the transaction that inserts a copy, that its device exists and is
//     not revoked.
type deviceCache struct {
	ttl time.Duration // <= 0: no caching
	max int

	mu    sync.Mutex
	gen   uint64 // bumped by every invalidation
	users map[protocol.UserID]*cachedDevices
}

type cachedDevices struct {
	active []protocol.DeviceID
	loaded time.Time // monotonic: the server's Now may be a test clock
}

// maxCachedUsers bounds the cache's memory (about 100 bytes per user with
// one device).
const maxCachedUsers = 100_000

func newDeviceCache(ttl time.Duration) *deviceCache {
	return &deviceCache{ttl: ttl, max: maxCachedUsers, users: map[protocol.UserID]*cachedDevices{}}
}

// lookup returns the user's cached active devices, or false.
func (c *deviceCache) lookup(u protocol.UserID) ([]protocol.DeviceID, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.users[u]
	if e == nil {
		return nil, false
	}
	if time.Since(e.loaded) >= c.ttl {
		delete(c.users, u)
		return nil, false
	}
	return e.active, true
}

// generation returns the value to pass to put for a list read after it.
func (c *deviceCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches a list read from the store, unless an invalidation happened
// since gen was taken (the list may predate it).
func (c *deviceCache) put(u protocol.UserID, active []protocol.DeviceID, gen uint64, loaded time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if _, ok := c.users[u]; !ok && len(c.users) >= c.max {
		for k := range c.users { // an arbitrary one: map order is random
			delete(c.users, k)
			break
		}
	}
	c.users[u] = &cachedDevices{active: active, loaded: loaded}
}

// invalidate forgets a user's devices. Call it after the store committed
// the change.
func (c *deviceCache) invalidate(u protocol.UserID) {
	c.mu.Lock()
	c.gen++
	delete(c.users, u)
	c.mu.Unlock()
}

// clear forgets everything.
func (c *deviceCache) clear() {
	c.mu.Lock()
	c.gen++
	clear(c.users)
	c.mu.Unlock()
}

func (c *deviceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.users)
}

// activeDevices marks in valid which of devs (all of user u) exist and are
// not revoked: from the cache when it can, from the store otherwise, and
// always from the store before a device is called invalid.
func (s *Server) activeDevices(ctx context.Context, u protocol.UserID, devs []protocol.DeviceAddress, valid []bool) error {
	// While the bus is down, revocation notices from other nodes are lost:
	// read the store (see deviceCache).
	useCache := s.bus == nil || s.bus.Ready() == nil
	if useCache {
		if active, ok := s.devices.lookup(u); ok {
			all := true
			for i, d := range devs {
				valid[i] = slices.Contains(active, d.Device)
				all = all && valid[i]
			}
			if all {
				s.metrics.deviceCacheHit.Inc()
				return nil
			}
		}
	}
	s.metrics.deviceCacheMiss.Inc()
	gen := s.devices.generation()
	loaded := time.Now()
	stored, err := s.opts.Store.Devices(ctx, u)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	active := make([]protocol.DeviceID, 0, len(stored))
	for _, d := range stored {
		if !d.IsRevoked() {
			active = append(active, d.ID)
		}
	}
	for i, d := range devs {
		valid[i] = slices.Contains(active, d.Device)
	}
	if useCache && err == nil {
		// An unknown user (ErrNotFound) is not cached: it may register
		// the next moment.
		s.devices.put(u, active, gen, loaded)
	}
	return nil
}
