package server

import (
	"context"
	"time"
)

// An expirer is shared state that the sweeper cleans (the PostgreSQL
// replay cache and rate limiter).
type expirer interface {
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
}

// Sweep deletes, physically, everything that has expired: queued
// messages, blobs (metadata and files) and invites; then it lets the store
// reclaim the space, and drops expired sessions and idle rate limiters.
// Run calls it every SweepInterval; tests call it directly.
func (s *Server) Sweep(ctx context.Context) {
	now := s.opts.Now()
	if n, err := s.opts.Store.DeleteExpired(ctx, now); err != nil {
		s.opts.Logger.Error("sweeper: messages", "err", err)
	} else if n > 0 {
		s.metrics.expired.WithLabelValues("message").Add(float64(n))
		s.opts.Logger.Info("sweeper: expired messages deleted", "count", n)
	}
	if ids, err := s.opts.Store.DeleteExpiredBlobs(ctx, now); err != nil {
		s.opts.Logger.Error("sweeper: blobs", "err", err)
	} else if len(ids) > 0 {
		s.removeBlobFiles(ids)
		s.metrics.expired.WithLabelValues("blob").Add(float64(len(ids)))
		s.opts.Logger.Info("sweeper: expired blobs deleted", "count", len(ids))
	}
	if n, err := s.opts.Store.DeleteExpiredInvites(ctx, now); err != nil {
		s.opts.Logger.Error("sweeper: invites", "err", err)
	} else if n > 0 {
		s.metrics.expired.WithLabelValues("invite").Add(float64(n))
	}
	for what, v := range map[string]any{"replay cache": s.opts.ReplayCache, "rate limits": s.opts.SharedLimiter} {
		if e, ok := v.(expirer); ok {
			if _, err := e.DeleteExpired(ctx, now); err != nil {
				s.opts.Logger.Error("sweeper: "+what, "err", err)
			}
		}
	}
	if err := s.opts.Store.Vacuum(ctx); err != nil {
		s.opts.Logger.Warn("sweeper: vacuum", "err", err)
	}
	s.prov.sweep(now)
	s.sessions.sweep(now)
	s.limits.sweep(now)
}
