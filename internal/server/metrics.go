package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus instruments. They count and time;
// they never carry IDs, keys or content.
type metrics struct {
	deliveries      *prometheus.CounterVec // by outcome: live, queued, rejected
	acked           prometheus.Counter
	expired         *prometheus.CounterVec // by kind: message, blob, invite
	sessionsCreated prometheus.Counter
	liveChannels    prometheus.Gauge
	rateLimited     *prometheus.CounterVec
	requests        *prometheus.HistogramVec
	blobBytes       *prometheus.CounterVec
	deviceCache     *prometheus.CounterVec // by result: hit, miss

	// Pre-resolved children of the vectors above, for the hot paths.
	deliveredLive, deliveredQueued, deliveryRejected prometheus.Counter
	deviceCacheHit, deviceCacheMiss                  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrtalkd_deliveries_total", Help: "Per-device copies of messages, by outcome (live, queued, rejected).",
		}, []string{"outcome"}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qrtalkd_queue_acked_total", Help: "Queued messages acknowledged and deleted.",
		}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrtalkd_expired_total", Help: "Items deleted by the sweeper at expiry, by kind (message, blob, invite).",
		}, []string{"kind"}),
		sessionsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qrtalkd_sessions_created_total", Help: "Secure channel sessions set up.",
		}),
		liveChannels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qrtalkd_live_channels", Help: "Live channels open on this node.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrtalkd_rate_limited_total", Help: "Requests refused by a rate limit, by limit (ip, device, directory).",
		}, []string{"limit"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "qrtalkd_request_duration_seconds", Help: "Request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "code"}),
		blobBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrtalkd_blob_bytes_total", Help: "Blob bytes transferred, by direction (up, down).",
		}, []string{"direction"}),
		deviceCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrtalkd_device_cache_total", Help: "Recipient device-list lookups on the send path, by result (hit: from memory, miss: read from the store).",
		}, []string{"result"}),
	}
	m.deliveredLive = m.deliveries.WithLabelValues("live")
	m.deliveredQueued = m.deliveries.WithLabelValues("queued")
	m.deliveryRejected = m.deliveries.WithLabelValues("rejected")
	m.deviceCacheHit = m.deviceCache.WithLabelValues("hit")
	m.deviceCacheMiss = m.deviceCache.WithLabelValues("miss")
	if reg == nil {
		return m
	}
	queueDepth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "qrtalkd_queue_depth", Help: "Messages queued for offline devices.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := s.opts.Store.QueueDepth(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	sessions := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "qrtalkd_sessions", Help: "Secure channel sessions held in memory.",
	}, func() float64 { return float64(s.sessions.len()) })
	reg.MustRegister(m.deliveries, m.acked, m.expired, m.sessionsCreated, m.liveChannels, m.rateLimited, m.requests, m.blobBytes, m.deviceCache, queueDepth, sessions)
	if b := s.opts.Bus; b != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qrtalkd_bus_up", Help: "1 while this node is connected to the bus (NATS), 0 while it is not and messages for other nodes go through the queue.",
		}, func() float64 {
			if b.Ready() != nil {
				return 0
			}
			return 1
		}))
	}
	return m
}
