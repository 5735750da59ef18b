package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// Body limits of the authenticated routes, as frames.
const (
	smallFrame = 64 << 10
	sendFrame  = protocol.MaxFrameSize
)

func (s *Server) routes() {
	handle := func(pattern string, h http.HandlerFunc) {
		s.mux.Handle(pattern, s.instrument(pattern, h))
	}
	handle(api.RouteInfo, s.handleInfo)
	handle(api.RouteRegister, s.handleRegister)
	handle(api.RouteSession, s.handleSession)
	handle(api.RouteSend, s.authed(sendFrame, s.handleSend))
	handle(api.RouteDirectory, s.authed(smallFrame, s.handleDirectory))
	handle(api.RouteAddDevice, s.authed(smallFrame, s.handleAddDevice))
	handle(api.RouteRevoke, s.authed(smallFrame, s.handleRevoke))
	handle(api.RouteDelete, s.authed(smallFrame, s.handleDeleteAccount))
	handle(api.RouteInbox, s.authed(smallFrame, s.handleInbox))
	handle(api.RouteAck, s.authed(smallFrame, s.handleAck))
	handle(api.RouteLive, s.handleLive)
	handle(api.RouteUpload, s.handleUpload)
	handle(api.RouteDownload, s.handleDownload)
	handle(api.RouteProvisionPut, s.prov.handlePut)
	handle(api.RouteProvisionTake, s.prov.handleTake)
	s.mux.Handle("/", s.fallback()) // the web client, or ErrNoRoute (webapp.go)
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the
// underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument applies the per-IP rate limit and records latency by route.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ip := s.clientIP(r)
		if !s.allowIPShared(r.Context(), ip, start) {
			s.metrics.rateLimited.WithLabelValues("ip").Inc()
			writeError(w, api.ErrRateLimited)
			return
		}
		if s.ctx.Err() != nil {
			writeError(w, api.ErrShuttingDown)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		if s.opts.LogIP {
			s.opts.Logger.Debug("request", "route", route, "status", sw.status, "ip", ip.String(), "duration", time.Since(start))
		} else {
			s.opts.Logger.Debug("request", "route", route, "status", sw.status, "duration", time.Since(start))
		}
	})
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Info())
}
