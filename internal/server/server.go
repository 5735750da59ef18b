// Package server is qrtalkd's HTTP API: registration, the key directory,
// channel sessions, sending, live delivery and the offline queue, blobs,
// and the sweeper that deletes what has expired. It holds no listener of
// its own: internal/daemon serves its Handler over TLS.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/bus"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// Software names this server in its Info.
const Software = "qrtalkd"

// A Server is one qrtalkd node's API.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	sessions *sessionTable
	hub      *hub
	devices  *deviceCache // recipients' active devices, for the send path
	queue    *store.QueueWriter
	acks     *store.AckWriter // group commit of acknowledgements
	limits   *limiters
	prov     *provisioning // device-link mailboxes
	metrics  *metrics
	proxies  *proxyList
	bus      bus.Bus // nil on a single node

	// Devices whose queue grew while the bus was down (see replayWakes).
	missedMu       sync.Mutex
	missed         map[deviceKey]struct{}
	missedOverflow bool

	ctx      context.Context // ends at Shutdown
	cancel   context.CancelFunc
	wg       sync.WaitGroup // background work and live channels
	stopOnce sync.Once
}

// New returns a Server. Call Run to start its background work, and
// Shutdown to stop it.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	if opts.Store == nil || opts.Key == nil || opts.BlobDir == "" {
		return nil, errors.New("server: Store, Key and BlobDir are required")
	}
	switch opts.Registration {
	case RegistrationOpen, RegistrationInvite, RegistrationClosed:
	default:
		return nil, fmt.Errorf("server: registration must be open, invite or closed, not %q", opts.Registration)
	}
	if err := os.MkdirAll(opts.BlobDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: blob directory: %w", err)
	}
	proxies, err := parseProxies(opts.TrustedProxies)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		mux:      http.NewServeMux(),
		sessions: newSessionTable(),
		limits:   newLimiters(opts),
		proxies:  proxies,
		ctx:      ctx,
		cancel:   cancel,
	}
	s.metrics = newMetrics(opts.Registerer, s)
	s.hub = newHub()
	s.devices = newDeviceCache(opts.DeviceCacheTTL)
	s.prov = s.newProvisioning()
	s.queue = store.NewQueueWriter(opts.Store, store.QueueWriterOptions{})
	s.acks = store.NewAckWriter(opts.Store, store.AckWriterOptions{Deleted: func(n int) { s.metrics.acked.Add(float64(n)) }})
	if opts.Bus != nil {
		s.bus = opts.Bus
		if err := s.startBus(); err != nil {
			cancel()
			s.queue.Close()
			s.acks.Close()
			return nil, err
		}
	}
	s.routes()
	return s, nil
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.mux }

// Run does the server's background work (the sweeper, the session table's
// cleanup) until ctx ends or Shutdown is called.
func (s *Server) Run(ctx context.Context) {
	s.wg.Add(1)
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.Sweep(ctx)
		}
	}
}

// Shutdown closes every live channel (telling clients to reconnect),
// flushes the queue writer and waits for background work, or for ctx.
// Call it after http.Server.Shutdown has finished the in-flight requests,
// so that no send is cut between its answer and its queue write.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.prov.clear() // link secrets' ciphertexts do not outlive the server
	s.acks.Close()
	return s.queue.Close()
}

// Drain starts the shutdown without waiting: long polls answer at once,
// live channels are told to reconnect elsewhere, and new requests are
// refused. Hook it to http.Server.RegisterOnShutdown, so that those
// requests do not hold up http.Server.Shutdown. Sends in flight finish.
func (s *Server) Drain() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.hub.closeAll()
	})
}

// Ready reports whether the server can take requests: its store answers.
// With a bus that is down, it returns an error wrapping ErrDegraded: the
// node serves, through the store.
func (s *Server) Ready(ctx context.Context) error {
	if s.ctx.Err() != nil {
		return errors.New("shutting down")
	}
	if _, err := s.opts.Store.QueueDepth(ctx); err != nil {
		return err
	}
	return s.busReady()
}

// Info returns the server's public description.
func (s *Server) Info() api.Info {
	pub := s.opts.Key.Public()
	return api.Info{
		Software:         Software,
		ProtocolVersion:  protocol.Version,
		ServerKey:        pub.Bytes(),
		Fingerprint:      protocol.ServerFingerprint(pub),
		Registration:     s.opts.Registration,
		MaxBlobSize:      s.opts.MaxBlobSize,
		MaxEnvelopeSize:  protocol.MaxEnvelopeSize,
		MaxTTLSeconds:    int64(protocol.MaxTTL / time.Second),
		SessionLifetimeS: int64(s.opts.SessionLifetime / time.Second),
		LiveLifetimeS:    int64(s.opts.LiveLifetime / time.Second),
		AckTimeoutMillis: s.opts.AckTimeout.Milliseconds(),
		ServerTimeMillis: s.opts.Now().UnixMilli(),
	}
}

// NewInvite creates an invite token usable uses times until now+ttl and
// stores its hash. It works beside a running server: the store is shared.
func NewInvite(ctx context.Context, st store.Store, uses int, ttl time.Duration, now time.Time) (string, error) {
	if uses < 1 {
		return "", fmt.Errorf("an invite needs at least one use, got %d", uses)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("an invite needs a positive lifetime, got %v", ttl)
	}
	raw := make([]byte, 18)
	rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw) // 24 characters, 144 bits
	err := st.CreateInvite(ctx, store.Invite{TokenHash: sha256.Sum256([]byte(token)), Uses: uses, Expires: now.Add(ttl), Created: now})
	if err != nil {
		return "", fmt.Errorf("storing the invite: %w", err)
	}
	return token, nil
}
