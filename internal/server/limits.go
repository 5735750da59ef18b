package server

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/qrtalk/qrtalk/protocol"
)

// limiters hold token buckets per client IP and per device. Idle buckets
// are dropped by sweep, so memory follows the active clients.
type limiters struct {
	opts Options

	mu        sync.Mutex
	ips       map[netip.Addr]*bucket
	devices   map[deviceKey]*bucket
	directory map[deviceKey]*bucket
}

type deviceKey struct {
	user   protocol.UserID
	device protocol.DeviceID
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiters(opts Options) *limiters {
	return &limiters{opts: opts, ips: map[netip.Addr]*bucket{}, devices: map[deviceKey]*bucket{}, directory: map[deviceKey]*bucket{}}
}

func take[K comparable](mu *sync.Mutex, m map[K]*bucket, k K, r rate.Limit, burst int, now time.Time) bool {
	mu.Lock()
	b := m[k]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(r, burst)}
		m[k] = b
	}
	b.seen = now
	mu.Unlock()
	return b.lim.AllowN(now, 1)
}

func (l *limiters) allowIP(a netip.Addr, now time.Time) bool {
	return take(&l.mu, l.ips, a, l.opts.IPRate, l.opts.IPBurst, now)
}

func (l *limiters) allowDevice(u protocol.UserID, d protocol.DeviceID, now time.Time) bool {
	return take(&l.mu, l.devices, deviceKey{u, d}, l.opts.DeviceRate, l.opts.DeviceBurst, now)
}

func (l *limiters) allowDirectory(u protocol.UserID, d protocol.DeviceID, now time.Time) bool {
	return take(&l.mu, l.directory, deviceKey{u, d}, l.opts.DirectoryRate, l.opts.DirectoryBurst, now)
}

// A SharedLimiter is a set of token buckets that every node of a cluster
// shares (package postgres has one): Allow takes a token from the bucket
// named key, which holds up to burst tokens and refills at perSecond, and
// reports whether there was one.
type SharedLimiter interface {
	Allow(ctx context.Context, key []byte, perSecond float64, burst int, now time.Time) (bool, error)
}

// The limits of a cluster are held in the SharedLimiter when there is one,
// so that a client cannot multiply its rate by spreading its requests over
// the nodes (a token bucket per key in the shared store: one small write
// per request); in this node's memory otherwise, and when the shared
// limiter fails (the request itself needs the store, so it will most
// likely fail too, with a clear 503).
func (s *Server) allowShared(ctx context.Context, limit string, key []byte, r rate.Limit, burst int, local func() bool) bool {
	if s.opts.SharedLimiter == nil || r == rate.Inf {
		return local()
	}
	ok, err := s.opts.SharedLimiter.Allow(ctx, append([]byte(limit+"/"), key...), float64(r), burst, s.opts.Now())
	if err != nil {
		s.opts.Logger.Warn("shared rate limit unavailable; using this node's", "limit", limit, "err", err)
		return local()
	}
	return ok
}

func deviceBucket(u protocol.UserID, d protocol.DeviceID) []byte {
	return append(append(make([]byte, 0, len(u)+len(d)), u[:]...), d[:]...)
}

// allowDirectoryShared applies the key-directory limit.
func (s *Server) allowDirectoryShared(ctx context.Context, u protocol.UserID, d protocol.DeviceID, now time.Time) bool {
	return s.allowShared(ctx, "dir", deviceBucket(u, d), s.opts.DirectoryRate, s.opts.DirectoryBurst,
		func() bool { return s.limits.allowDirectory(u, d, now) })
}

// allowDeviceShared applies the per-device request limit.
func (s *Server) allowDeviceShared(ctx context.Context, u protocol.UserID, d protocol.DeviceID, now time.Time) bool {
	return s.allowShared(ctx, "dev", deviceBucket(u, d), s.opts.DeviceRate, s.opts.DeviceBurst,
		func() bool { return s.limits.allowDevice(u, d, now) })
}

// allowIPShared applies the per-IP request limit.
func (s *Server) allowIPShared(ctx context.Context, ip netip.Addr, now time.Time) bool {
	a := ip.As16()
	return s.allowShared(ctx, "ip", a[:], s.opts.IPRate, s.opts.IPBurst,
		func() bool { return s.limits.allowIP(ip, now) })
}

// sweep drops buckets idle for long enough to have refilled.
func (l *limiters) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range []map[deviceKey]*bucket{l.devices, l.directory} {
		for k, b := range m {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(m, k)
			}
		}
	}
	for k, b := range l.ips {
		if now.Sub(b.seen) > 10*time.Minute {
			delete(l.ips, k)
		}
	}
}
