package daemon

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/server"
)

// Per-route deadlines (see withDeadlines).
const (
	// requestTimeout bounds reading and answering an ordinary request: the
	// longest, a long-poll of the inbox, waits 30 s.
	requestTimeout = 2 * time.Minute
	// blobBaseTimeout plus the time to move max-blob-size bytes at
	// blobMinRate bounds a blob upload or download.
	blobBaseTimeout = 5 * time.Minute
	blobMinRate     = 64 << 10 // bytes per second
	// liveGrace is added to live-lifetime for the live route; the server
	// ends the channel at live-lifetime itself.
	liveGrace = time.Minute
)

// mainHandler is the API plus the probes.
func (d *Daemon) mainHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.Handle("/", d.srv.Handler())
	var h http.Handler = mux
	if d.opts.wrap != nil {
		h = d.opts.wrap(h)
	}
	return d.withDeadlines(h)
}

// metricsHandler serves Prometheus and the probes on the metrics listener.
func (d *Daemon) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{
		Registry:          d.reg, // counts its own errors
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
		Timeout:           20 * time.Second,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", d.readyz)
	return mux
}

// healthz answers while the process is up and serving.
func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

// readyz answers 200 when the server can take requests (its store
// answers), 503 with the reason otherwise, and from the start of a
// shutdown on, so that a load balancer stops sending traffic here. A node
// of a cluster whose bus (NATS) is down still serves, through the store:
// it answers 200 with a body that starts with "degraded:", so that it
// stays in the load balancer while monitoring can tell.
func (d *Daemon) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if d.stopping.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready: shutting down\n")
		return
	}
	err := d.ready.check(r.Context(), d.srv.Ready)
	if errors.Is(err, server.ErrDegraded) {
		// The bus logs its state changes itself, once each.
		io.WriteString(w, err.Error()+"\n")
		return
	}
	if err != nil {
		d.log.Warn("not ready", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready: "+err.Error()+"\n")
		return
	}
	io.WriteString(w, "ready\n")
}

// readyCache remembers the last readiness check for a second: /readyz is
// public on the main listener, and each check queries the store.
type readyCache struct {
	mu      sync.Mutex
	checked time.Time
	err     error
}

func (c *readyCache) check(ctx context.Context, ready func(context.Context) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < time.Second {
		return c.err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c.err = ready(ctx)
	c.checked = time.Now()
	return c.err
}

// withDeadlines gives each request read and write deadlines fitting its
// route, with http.ResponseController. The http.Server itself has only a
// ReadHeaderTimeout (and an IdleTimeout), because no single
// ReadTimeout/WriteTimeout suits every route:
//
//   - ordinary requests, long-polls (up to 30 s) included: requestTimeout;
//   - blob uploads and downloads (up to max-blob-size): long enough to move
//     the largest blob at blobMinRate;
//   - the live channel: live-lifetime plus a grace period. A WebSocket
//     upgrade hijacks the connection, which clears these deadlines; from
//     then on the server bounds the channel by live-lifetime and its pings.
func (d *Daemon) withDeadlines(next http.Handler) http.Handler {
	blob := blobBaseTimeout + time.Duration(d.cfg.MaxBlobSize/blobMinRate)*time.Second
	live := d.cfg.LiveLifetime + liveGrace
	ordinary := requestTimeout
	if d.opts.requestTimeout != 0 {
		ordinary = d.opts.requestTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := ordinary
		switch {
		case r.URL.Path == api.LivePath:
			limit = live
		case r.URL.Path == "/v1/blobs" || strings.HasPrefix(r.URL.Path, "/v1/blobs/"):
			limit = blob
		}
		// Deadlines are wall-clock time for the network, never the
		// injected clock of the server.
		deadline := time.Now().Add(limit)
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(deadline)
		_ = rc.SetWriteDeadline(deadline)
		next.ServeHTTP(w, r)
	})
}

// NewLogger returns the logger cfg asks for: text or JSON, at its level,
// to w.
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	o := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// newErrorLog returns the *log.Logger that net/http writes its own errors
// to (TLS handshake failures, panics), routed into slog. Those lines carry
// the peer's address; without log-ip it is replaced by "[ip]".
func newErrorLog(l *slog.Logger, logIP bool) *log.Logger {
	return log.New(&errorLogWriter{log: l, logIP: logIP}, "", 0)
}

type errorLogWriter struct {
	log   *slog.Logger
	logIP bool
}

// ipPattern matches an IPv4 or bracketed IPv6 address with an optional
// port, and bare IPv6 addresses.
var ipPattern = regexp.MustCompile(`\[[0-9A-Fa-f:.%a-zA-Z]+\](:\d+)?|\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b|\b[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}\b`)

func (w *errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if !w.logIP {
		msg = redactIPs(msg)
	}
	// Handshake failures come from scanners and impatient clients all the
	// time: worth seeing when debugging, noise otherwise.
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "http: "+strings.TrimPrefix(msg, "http: "))
	return len(p), nil
}

func redactIPs(s string) string { return ipPattern.ReplaceAllString(s, "[ip]") }
