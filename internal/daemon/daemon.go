// Package daemon runs qrtalkd: it turns a config.Config into a data
// directory, a server key, a store, TLS listeners and a running
// server.Server, and shuts them down in order.
//
// Start does, on first start, what a fresh machine needs: the data
// directory (mode 0700), the server key (RSA-3072, PKCS #8 PEM, mode 0600),
// the SQLite store and the blob directory. Later starts reuse them, so the
// fingerprint clients pinned stays the same.
//
// Listeners: the main one serves the API over TLS, plus /healthz and
// /readyz; the optional metrics listener serves /metrics, /healthz and
// /readyz over plain HTTP; with ACME, a listener on port 80 answers
// Let's Encrypt's HTTP-01 challenges.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/crypto/acme/autocert"

	"github.com/qrtalk/qrtalk/internal/bus"
	"github.com/qrtalk/qrtalk/internal/bus/natsbus"
	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/postgres"
	"github.com/qrtalk/qrtalk/internal/store/sqlite"
	"github.com/qrtalk/qrtalk/protocol"
)

// Options are what a program embedding the daemon (or a test) can set
// besides the operator's configuration. The zero value is what qrtalkd uses.
type Options struct {
	// Logger receives the daemon's and the server's logs. Default: built
	// from the configuration's log-level and log-format, to standard error.
	Logger *slog.Logger
	// Now is the clock of the server (expiry, invites, certificates).
	// Default time.Now.
	Now func() time.Time
	// Hostname names this machine in the default public URL. Default
	// os.Hostname.
	Hostname func() (string, error)
	// GenerateKey makes the server key on first start. Default
	// protocol.GenerateKey; tests pass a fixed key to save time.
	GenerateKey func() (*protocol.PrivateKey, error)

	// wrap, for tests, wraps the main handler (to add a slow route).
	wrap func(http.Handler) http.Handler
	// requestTimeout, for tests, replaces requestTimeout when not zero.
	requestTimeout time.Duration
}

// A Daemon is a running qrtalkd.
type Daemon struct {
	cfg   config.Config
	opts  Options
	log   *slog.Logger
	key   *protocol.PrivateKey
	fp    protocol.Fingerprint
	url   string
	store store.Store
	bus   *natsbus.Bus // nil on a single node
	srv   *server.Server
	reg   *prometheus.Registry
	acme  *autocert.Manager

	tlsMode    string
	firstStart bool

	https   *http.Server
	ln      net.Listener
	metrics *http.Server
	metLn   net.Listener
	acmeSrv *http.Server
	acmeLn  net.Listener

	runCancel context.CancelFunc
	wg        sync.WaitGroup // serving goroutines and server.Run

	stopping atomic.Bool
	ready    readyCache
	failOnce sync.Once
	failed   chan struct{}
	failErr  error
	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// Start prepares the data directory, key and store, starts the listeners
// and the server, and returns once they accept connections. On error,
// whatever it had started is stopped again.
func Start(ctx context.Context, cfg *config.Config, opts Options) (_ *Daemon, err error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Hostname == nil {
		opts.Hostname = os.Hostname
	}
	if opts.GenerateKey == nil {
		opts.GenerateKey = protocol.GenerateKey
	}
	if opts.Logger == nil {
		opts.Logger = NewLogger(cfg, os.Stderr)
	}
	d := &Daemon{
		cfg:     *cfg,
		opts:    opts,
		log:     opts.Logger,
		failed:  make(chan struct{}),
		stopped: make(chan struct{}),
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	for _, w := range cfg.Warnings {
		d.log.Warn(w)
	}
	warn, err := makeDataDir(cfg.Data)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		d.log.Warn(warn)
	}
	d.key, d.firstStart, err = loadOrCreateKey(cfg.Data, opts.GenerateKey)
	if err != nil {
		return nil, err
	}
	d.fp = protocol.ServerFingerprint(d.key.Public())
	if d.firstStart {
		d.log.Info("created the server key", "path", KeyPath(cfg.Data), "fingerprint", d.fp.String())
	}

	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d.store = st
	cleanup = append(cleanup, func() { st.Close() })
	if pg, ok := st.(*postgres.Store); ok {
		// Every node of a cluster must have the same server key: clients
		// pinned its fingerprint, and a node with another one would fail
		// every one of them. The first node records it; others must match.
		rec, err := pg.CheckServerKey(ctx, d.fp[:])
		if errors.Is(err, postgres.ErrServerKeyMismatch) {
			var want protocol.Fingerprint
			copy(want[:], rec)
			return nil, config.WithHint(fmt.Errorf("server key %s has fingerprint %s, but the cluster's nodes use %s: %w",
				KeyPath(cfg.Data), d.fp, want, err),
				"copy server.key from another node of the cluster into this node's data directory (mode 0600) and start again")
		}
		if err != nil {
			return nil, config.WithHint(fmt.Errorf("checking the server key against the store: %w", err),
				"check that PostgreSQL is up and reachable")
		}
	}

	if cfg.Bus != "" {
		name := "qrtalkd"
		if h, err := opts.Hostname(); err == nil && h != "" {
			name += " " + h
		}
		d.bus, err = natsbus.Open(natsbus.Options{URL: cfg.Bus, Prefix: cfg.BusPrefix, Name: name, Logger: d.log})
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { d.bus.Close() })
	}

	d.reg = prometheus.NewRegistry()
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// On PostgreSQL, what must hold across nodes lives in the database: the
	// channel-setup replay cache and the key-directory rate limit.
	var replay protocol.ReplayCache
	var shared server.SharedLimiter
	if pg, ok := st.(*postgres.Store); ok {
		replay, shared = pg.ReplayCache(d.log), pg.Limiter()
	}
	d.srv, err = server.New(server.Options{
		Store:           st,
		Key:             d.key,
		BlobDir:         cfg.BlobPath(),
		Registration:    cfg.Registration,
		MaxBlobSize:     cfg.MaxBlobSize,
		SessionLifetime: cfg.SessionLifetime,
		LiveLifetime:    cfg.LiveLifetime,
		AckTimeout:      cfg.AckTimeout,
		SweepInterval:   cfg.SweepInterval,
		IPRate:          cfg.RateIP.Limit,
		IPBurst:         cfg.RateIP.Burst,
		DeviceRate:      cfg.RateDevice.Limit,
		DeviceBurst:     cfg.RateDevice.Burst,
		DirectoryRate:   cfg.RateDirectory.Limit,
		DirectoryBurst:  cfg.RateDirectory.Burst,
		TrustedProxies:  cfg.TrustedProxies,
		LogIP:           cfg.LogIP,
		Logger:          d.log,
		Registerer:      d.reg,
		Now:             opts.Now,
		Bus:             d.serverBus(),
		ReplayCache:     replay,
		SharedLimiter:   shared,
	})
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.srv.Shutdown(c)
	})

	// Listen first: with port 0 the public URL, and so the certificate's
	// name, depend on the port we got.
	d.ln, err = listen(cfg.Listen, "listen")
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { d.ln.Close() })
	d.url, err = PublicURL(cfg, d.ln.Addr().String(), opts.Hostname)
	if err != nil {
		return nil, err
	}
	// The certificate's dates are for clients' wall clocks, whatever clock
	// the server runs on.
	tc, acme, mode, err := serverTLS(cfg, d.key, d.url, time.Now())
	if err != nil {
		return nil, err
	}
	d.acme, d.tlsMode = acme, mode
	errLog := newErrorLog(d.log, cfg.LogIP)
	d.https = &http.Server{
		Handler:   d.mainHandler(),
		TLSConfig: tc,
		// Only the header has a server-wide deadline. A request's body and
		// response get theirs per route (withDeadlines): one ReadTimeout or
		// WriteTimeout for all would either cut 100 MiB blob transfers and
		// 30 s long-polls or leave ordinary requests unbounded.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	// Long polls and live channels would hold up Shutdown for their whole
	// wait: Drain answers them as soon as shutting down starts.
	d.https.RegisterOnShutdown(d.srv.Drain)

	if cfg.MetricsListen != "" {
		d.metLn, err = listen(cfg.MetricsListen, "metrics-listen")
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { d.metLn.Close() })
		d.metrics = &http.Server{
			Handler:           d.metricsHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          errLog,
		}
	}
	if acme != nil && cfg.ACMEHTTPListen != "" {
		d.acmeLn, err = listen(cfg.ACMEHTTPListen, "acme-http-listen")
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { d.acmeLn.Close() })
		d.acmeSrv = &http.Server{
			// HTTP-01 challenges; every other request is redirected to https.
			Handler:           acme.HTTPHandler(nil),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          errLog,
		}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	d.runCancel = cancel
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.srv.Run(runCtx) }()
	d.serve("listen", func() error { return d.https.ServeTLS(d.ln, "", "") })
	if d.metrics != nil {
		d.serve("metrics-listen", func() error { return d.metrics.Serve(d.metLn) })
	}
	if d.acmeSrv != nil {
		d.serve("acme-http-listen", func() error { return d.acmeSrv.Serve(d.acmeLn) })
	}

	attrs := []any{"url", d.url, "listen", d.ln.Addr().String(), "fingerprint", d.fp.String(),
		"tls", d.tlsMode, "registration", cfg.Registration, "data", cfg.Data, "store", storeKind(cfg)}
	if d.bus != nil {
		attrs = append(attrs, "bus", "nats", "bus-prefix", cfg.BusPrefix)
	}
	if d.metLn != nil {
		attrs = append(attrs, "metrics", d.metLn.Addr().String())
	}
	d.log.Info("qrtalkd started", attrs...)
	return d, nil
}

// OpenStore opens the store cfg names: the SQLite file in the data
// directory (or at cfg.Store), or the PostgreSQL database of a postgres://
// cfg.Store. Errors never show a password.
func OpenStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	var st store.Store
	var err error
	switch {
	case cfg.StoreIsPostgres():
		st, err = postgres.Open(ctx, cfg.Store, postgres.Options{})
	case cfg.Store != "":
		st, err = sqlite.Open(ctx, cfg.Store, sqlite.Options{})
	default:
		st, err = sqlite.Open(ctx, DBPath(cfg.Data), sqlite.Options{})
	}
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, store.ErrSchemaTooNew):
			hint = "this database was written by a newer qrtalkd: run that version, or restore a backup made for this one"
		case cfg.StoreIsPostgres():
			hint = "check that PostgreSQL is up and reachable, and the store URL (host, database, user, sslmode); " +
				"the password comes from PGPASSWORD or ~/.pgpass"
		}
		return nil, config.WithHint(fmt.Errorf("opening the %s store: %w", storeKind(cfg), err), hint)
	}
	return st, nil
}

func storeKind(cfg *config.Config) string {
	if cfg.StoreIsPostgres() {
		return "postgres"
	}
	return "sqlite"
}

// serverBus returns the bus for server.Options: a nil interface, not a nil
// *natsbus.Bus, on a single node.
func (d *Daemon) serverBus() bus.Bus {
	if d.bus == nil {
		return nil
	}
	return d.bus
}

// listen opens a TCP listener, with a hint for the usual failures.
func listen(addr, option string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	hint := ""
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = fmt.Sprintf("another program (another qrtalkd?) is using %s; stop it or choose another --%s", addr, option)
	case errors.Is(err, syscall.EACCES):
		hint = fmt.Sprintf("ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep on the binary), or choose another --%s", option)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = fmt.Sprintf("this machine has no such address; fix --%s", option)
	}
	return nil, config.WithHint(fmt.Errorf("%s: %w", option, err), hint)
}

// serve runs a listener's Serve in the background; if it fails for any
// other reason than Shutdown, the daemon is marked failed.
func (d *Daemon) serve(name string, run func() error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("listener failed", "listener", name, "err", err)
			d.failOnce.Do(func() {
				d.failErr = fmt.Errorf("%s: %w", name, err)
				close(d.failed)
			})
		}
	}()
}

// PublicURL returns the URL put in invites: cfg.PublicURL, or one derived
// from the bound listen address and the machine's hostname.
func PublicURL(cfg *config.Config, listenAddr string, hostname func() (string, error)) (string, error) {
	if cfg.PublicURL != "" {
		return cfg.PublicURL, nil
	}
	h := ""
	if hostname != nil {
		h, _ = hostname()
	}
	u, err := config.DefaultPublicURL(listenAddr, cfg.ACMEDomain, h)
	if err != nil {
		return "", config.WithHint(fmt.Errorf("cannot make a public URL from hostname %q: %w", h, err),
			"set --public-url to the https URL clients reach this server at")
	}
	return u, nil
}

// Addr returns the address of the main (TLS) listener.
func (d *Daemon) Addr() net.Addr { return d.ln.Addr() }

// MetricsAddr returns the address of the metrics listener, or nil.
func (d *Daemon) MetricsAddr() net.Addr {
	if d.metLn == nil {
		return nil
	}
	return d.metLn.Addr()
}

// URL returns the public URL, the one put in invites.
func (d *Daemon) URL() string { return d.url }

// Fingerprint returns the fingerprint of the server key.
func (d *Daemon) Fingerprint() protocol.Fingerprint { return d.fp }

// FirstStart reports whether this start created the server key.
func (d *Daemon) FirstStart() bool { return d.firstStart }

// TLSMode describes where the TLS certificate comes from.
func (d *Daemon) TLSMode() string { return d.tlsMode }

// Failed is closed when a listener stopped serving by itself; Shutdown
// should follow, and Wait reports the error.
func (d *Daemon) Failed() <-chan struct{} { return d.failed }

// Shutdown stops the daemon in order: it stops accepting connections and
// lets in-flight requests finish (until ctx ends; then their connections
// are closed), then shuts the server down (live channels closed, queued
// writes flushed), then closes the store. Calling it again waits for the
// first call and returns its result.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.stopOnce.Do(func() {
		d.stopErr = d.shutdown(ctx)
		close(d.stopped)
	})
	<-d.stopped
	return d.stopErr
}

func (d *Daemon) shutdown(ctx context.Context) error {
	d.stopping.Store(true) // /readyz answers 503 from now on
	start := time.Now()
	d.log.Info("shutting down: finishing in-flight requests")
	var errs []error
	if err := d.https.Shutdown(ctx); err != nil {
		d.log.Warn("in-flight requests did not finish in time; closing their connections", "err", err)
		d.https.Close()
	}
	if d.acmeSrv != nil {
		d.acmeSrv.Close()
	}
	// After the in-flight requests, so that no send is cut between its
	// answer and its queue write. If ctx has run out, the server still gets
	// a few seconds to flush what it holds.
	sctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
	}
	if err := d.srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("server shutdown: %w", err))
	}
	d.runCancel()
	if d.metrics != nil {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := d.metrics.Shutdown(mctx); err != nil {
			d.metrics.Close()
		}
		cancel()
	}
	d.wg.Wait()
	if d.bus != nil {
		d.bus.Close()
	}
	if err := d.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the store: %w", err))
	}
	if len(errs) == 0 {
		d.log.Info("qrtalkd stopped", "took", time.Since(start).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

// Wait blocks until Shutdown has finished and returns the error that
// stopped the daemon, if any: a listener that failed, or a shutdown step.
func (d *Daemon) Wait() error {
	<-d.stopped
	select {
	case <-d.failed:
		return errors.Join(d.failErr, d.stopErr)
	default:
		return d.stopErr
	}
}

// StartupInvite returns a fresh one-use invite, valid for ttl, when the
// server is in invite mode and either this is its first start or no
// unexpired invite exists; otherwise nil. qrtalkd serve prints it, so that
// the operator can let the first user in without another command.
func (d *Daemon) StartupInvite(ctx context.Context, ttl time.Duration) (*Invite, error) {
	if d.cfg.Registration != config.RegistrationInvite {
		return nil, nil
	}
	if !d.firstStart {
		n, err := d.store.ActiveInvites(ctx, d.opts.Now())
		if err != nil {
			return nil, fmt.Errorf("counting invites: %w", err)
		}
		if n > 0 {
			return nil, nil
		}
	}
	inv, err := NewInvite(ctx, d.store, d.key, d.url, 1, ttl, d.opts.Now())
	if err != nil {
		return nil, err
	}
	return &inv, nil
}

// An Invite is a created invite: its URI and its expiry.
type Invite struct {
	protocol.Invite
	Uses    int
	Expires time.Time
}

// NewInvite creates an invite in st, usable uses times for ttl, and returns
// it with the server URL and key fingerprint filled in.
func NewInvite(ctx context.Context, st store.Store, key *protocol.PrivateKey, publicURL string, uses int, ttl time.Duration, now time.Time) (Invite, error) {
	token, err := server.NewInvite(ctx, st, uses, ttl, now)
	if err != nil {
		return Invite{}, err
	}
	return Invite{
		Invite:  protocol.Invite{Server: publicURL, ServerFP: protocol.ServerFingerprint(key.Public()), Token: token},
		Uses:    uses,
		Expires: now.Add(ttl),
	}, nil
}
