package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qrtalk/qrtalk/protocol"
)

// sharedTimeout bounds one statement of the replay cache and the rate
// limiter, whose callers have no context of their own (ReplayCache.Seen) or
// must not hold a request up for long.
const sharedTimeout = 5 * time.Second

// A ReplayCache is a protocol.ReplayCache in the database, shared by every
// node: a channel setup accepted by one node is refused as a replay by all
// the others, until it expires. Each key is one row (setup_replay), written
// with a single INSERT ... ON CONFLICT, so two nodes racing with the same
// setup cannot both accept it. DeleteExpired, which the server's sweeper
// calls, deletes the expired rows.
type ReplayCache struct {
	s   *Store
	log *slog.Logger
}

var _ protocol.ReplayCache = (*ReplayCache)(nil)

// ReplayCache returns the store's shared replay cache. logger receives its
// errors (nil: discarded).
func (s *Store) ReplayCache(logger *slog.Logger) *ReplayCache {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ReplayCache{s: s, log: logger}
}

// Seen implements protocol.ReplayCache. It records key until expires and
// reports whether it was already recorded and unexpired at now. A key
// whose row has expired but is not swept yet counts as new. When the
// database does not answer, Seen fails closed: it reports true, so the
// setup is refused and the client tries again, rather than risk accepting
// a replay.
func (c *ReplayCache) Seen(key [16]byte, now, expires time.Time) bool {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	seen, err := c.SeenContext(ctx, key, now, expires)
	if err != nil {
		c.log.Error("replay cache: refusing the channel setup, the database did not answer", "err", err)
		return true
	}
	return seen
}

// SeenContext is Seen with a context, and its error.
func (c *ReplayCache) SeenContext(ctx context.Context, key [16]byte, now, expires time.Time) (bool, error) {
	if err := c.s.check(ctx); err != nil {
		return true, fmt.Errorf("postgres: replay cache: %w", err)
	}
	// A row comes back when the key was new (inserted) or had expired
	// (taken over); none when an unexpired row holds it.
	var one int
	err := c.s.pool.QueryRow(ctx, `INSERT INTO setup_replay (key, expires) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires = EXCLUDED.expires WHERE setup_replay.expires <= $3
		RETURNING 1`, key[:], ts(expires), ts(now)).Scan(&one)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, pgx.ErrNoRows):
		return true, nil
	default:
		return true, c.s.fail(ctx, "replay cache", err)
	}
}

// DeleteExpired deletes the keys expired at now and returns how many.
func (c *ReplayCache) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	if err := c.s.check(ctx); err != nil {
		return 0, fmt.Errorf("postgres: replay cache sweep: %w", err)
	}
	tag, err := c.s.pool.Exec(ctx, "DELETE FROM setup_replay WHERE expires <= $1", ts(now))
	if err != nil {
		return 0, c.s.fail(ctx, "replay cache sweep", err)
	}
	return int(tag.RowsAffected()), nil
}

// A Limiter is a set of token buckets in the database, shared by every
// node: one row per key (rate_buckets), updated by a single INSERT ... ON
// CONFLICT DO UPDATE that refills the bucket for the time elapsed and takes
// a token only if there is one, so that concurrent requests on any nodes
// see one bucket, as golang.org/x/time/rate would on one node. It costs one
// write per request it limits: use it for limits on rare requests (key
// directory lookups), not on every request.
type Limiter struct {
	s *Store
}

// Limiter returns the store's shared rate limiter.
func (s *Store) Limiter() *Limiter { return &Limiter{s: s} }

// Allow takes one token from the bucket named key, which holds up to burst
// tokens and refills at perSecond tokens a second, and reports whether
// there was one. A bucket never seen, or swept, starts full.
func (l *Limiter) Allow(ctx context.Context, key []byte, perSecond float64, burst int, now time.Time) (bool, error) {
	if err := l.s.check(ctx); err != nil {
		return false, fmt.Errorf("postgres: rate limit: %w", err)
	}
	if len(key) == 0 || burst < 1 || perSecond < 0 || math.IsNaN(perSecond) || math.IsInf(perSecond, 0) {
		return false, fmt.Errorf("postgres: rate limit: invalid key, rate %v or burst %d", perSecond, burst)
	}
	now = ts(now)
	// full_at is when the bucket is full again: a row whose full_at has
	// passed is the same as no row, and the sweep deletes it. With a zero
	// rate a bucket never refills: its row is kept a year.
	//
	// The elapsed time counts from the later of the stored and the given
	// time, so that nodes whose clocks differ slightly never refill a
	// bucket twice for the same time.
	const left = `least($2, r.tokens + $4 * greatest(0, extract(epoch FROM $3 - r.updated))::float8)`
	var tokens float64
	err := l.s.pool.QueryRow(ctx, `
		INSERT INTO rate_buckets AS r (key, tokens, updated, full_at) VALUES ($1, $2 - 1, $3, $5)
		ON CONFLICT (key) DO UPDATE SET
			tokens = `+left+` - 1,
			updated = greatest(r.updated, $3),
			full_at = CASE WHEN $4 > 0
				THEN greatest(r.updated, $3) + make_interval(secs => ($2 - (`+left+` - 1)) / $4)
				ELSE $3 + interval '1 year' END
		WHERE `+left+` >= 1
		RETURNING tokens`, key, float64(burst), now, perSecond, fullAt(now, perSecond)).Scan(&tokens)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, l.s.fail(ctx, "rate limit", err)
	}
	return true, nil
}

// fullAt is when a new bucket, with one token taken at now, is full again.
func fullAt(now time.Time, perSecond float64) time.Time {
	if perSecond == 0 {
		return now.Add(365 * 24 * time.Hour)
	}
	const year = 365 * 24 * time.Hour
	if d := float64(time.Second) / perSecond; d < float64(year) {
		return now.Add(time.Duration(d))
	}
	return now.Add(year)
}

// DeleteExpired deletes the buckets full again at now (they are the same
// as no bucket) and returns how many.
func (l *Limiter) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	if err := l.s.check(ctx); err != nil {
		return 0, fmt.Errorf("postgres: rate limit sweep: %w", err)
	}
	tag, err := l.s.pool.Exec(ctx, "DELETE FROM rate_buckets WHERE full_at <= $1", ts(now))
	if err != nil {
		return 0, l.s.fail(ctx, "rate limit sweep", err)
	}
	return int(tag.RowsAffected()), nil
}

// ErrServerKeyMismatch: the database was first used by nodes with another
// server key.
var ErrServerKeyMismatch = errors.New("this node's server key is not the one the cluster uses")

// CheckServerKey records fingerprint as the cluster's server key if none
// is recorded yet, and otherwise checks that it is the recorded one: every
// node of a cluster must have the same key, or clients pinned to it fail on
// the nodes that have another. It returns an error wrapping
// ErrServerKeyMismatch, with the recorded fingerprint, when they differ.
func (s *Store) CheckServerKey(ctx context.Context, fingerprint []byte) (recorded []byte, err error) {
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("postgres: server key: %w", err)
	}
	if len(fingerprint) == 0 {
		return nil, fmt.Errorf("postgres: server key: empty fingerprint")
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO server_key (fingerprint) VALUES ($1) ON CONFLICT DO NOTHING", fingerprint); err != nil {
		return nil, s.fail(ctx, "server key", err)
	}
	if err := s.pool.QueryRow(ctx, "SELECT fingerprint FROM server_key").Scan(&recorded); err != nil {
		return nil, s.fail(ctx, "server key", err)
	}
	if !bytes.Equal(recorded, fingerprint) {
		return recorded, fmt.Errorf("postgres: %w", ErrServerKeyMismatch)
	}
	return recorded, nil
}
