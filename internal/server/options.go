package server

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/qrtalk/qrtalk/internal/bus"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// Registration modes.
const (
	RegistrationOpen   = "open"
	RegistrationInvite = "invite"
	RegistrationClosed = "closed"
)

// Options configure a Server. The zero value of each optional field means
// its default (see the defaults below).
type Options struct {
	// Store holds users, devices, invites, queues and blob metadata. Required.
	Store store.Store
	// Key is the server's own RSA key: clients pin its fingerprint, and
	// channel setups are wrapped to it. Required.
	Key *protocol.PrivateKey
	// BlobDir is where blob contents are kept, one file each. Required.
	BlobDir string
	// Registration is RegistrationInvite (default), RegistrationOpen or
	// RegistrationClosed.
	Registration string
	// MaxBlobSize bounds an upload (default 100 MiB).
	MaxBlobSize int64
	// SessionLifetime is how long a channel session lives (default and
	// maximum: protocol.MaxSessionLifetime).
	SessionLifetime time.Duration
	// LiveLifetime bounds one live channel connection; the client
	// reconnects (default 10 minutes).
	LiveLifetime time.Duration
	// AckTimeout is how long a live delivery waits for the device's
	// acknowledgement before the message is queued instead (default 3 s).
	AckTimeout time.Duration
	// SweepInterval is how often expired messages, blobs and invites are
	// deleted (default 30 s).
	SweepInterval time.Duration
	// PingInterval is how often an idle live channel is pinged (default 30 s).
	PingInterval time.Duration
	// IPRate and IPBurst limit requests per client IP (default 50/s, 100).
	IPRate  rate.Limit
	IPBurst int
	// DeviceRate and DeviceBurst limit requests per authenticated device
	// (default 200/s, 400).
	DeviceRate  rate.Limit
	DeviceBurst int
	// DirectoryRate and DirectoryBurst limit key directory lookups per
	// device, so that the ID space cannot be walked (default 2/s, 30).
	DirectoryRate  rate.Limit
	DirectoryBurst int
	// SharedLimiter, when set, holds the directory limit's buckets for
	// every node of a cluster (the IP and device limits stay per node: see
	// docs/OPERATIONS.md). If it also has DeleteExpired(ctx, now) (int,
	// error), the sweeper calls it. Default: none, the limit is per node.
	SharedLimiter SharedLimiter
	// TrustedProxies: when a request comes from one of these networks
	// (CIDR), the client IP is taken from X-Forwarded-For.
	TrustedProxies []string
	// LogIP adds client IPs to logs. Off by default.
	LogIP bool
	// Logger receives structured logs; never message content, keys or
	// tokens. Default: discard.
	Logger *slog.Logger
	// Registerer receives the server's Prometheus metrics. Default: none.
	Registerer prometheus.Registerer
	// ReplayCache remembers channel setups; it must be shared by every
	// node of a cluster. If it has DeleteExpired(ctx, now) (int, error),
	// the sweeper calls it. Default: in memory.
	ReplayCache protocol.ReplayCache
	// Bus connects this node to the others of a cluster, for live
	// delivery to devices connected elsewhere and for wakes (see bus.go).
	// Nil: a single node. The server does not close it.
	Bus bus.Bus
	// BusRecheck is how often, while the bus is down, the node re-reads
	// the queues of its connected devices (default 5 s).
	BusRecheck time.Duration
	// DeviceCacheTTL bounds how long a recipient's device list is kept in
	// memory for the send path (default 5 s; negative: no cache). Changes
	// made through this node, and revocations announced on the bus, take
	// effect at once; the bound is for a revocation whose bus notice was
	// lost (see deviceCache).
	DeviceCacheTTL time.Duration
	// Now is the clock. Default time.Now; tests inject their own.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Registration == "" {
		o.Registration = RegistrationInvite
	}
	if o.MaxBlobSize == 0 {
		o.MaxBlobSize = 100 << 20
	}
	if o.SessionLifetime <= 0 || o.SessionLifetime > protocol.MaxSessionLifetime {
		o.SessionLifetime = protocol.MaxSessionLifetime
	}
	if o.LiveLifetime <= 0 {
		o.LiveLifetime = 10 * time.Minute
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 3 * time.Second
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 30 * time.Second
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.IPRate == 0 {
		o.IPRate, o.IPBurst = 50, 100
	}
	if o.DeviceRate == 0 {
		o.DeviceRate, o.DeviceBurst = 200, 400
	}
	if o.DirectoryRate == 0 {
		o.DirectoryRate, o.DirectoryBurst = 2, 30
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReplayCache == nil {
		o.ReplayCache = &protocol.MemoryReplayCache{}
	}
	if o.BusRecheck <= 0 {
		o.BusRecheck = 5 * time.Second
	}
	if o.DeviceCacheTTL == 0 {
		o.DeviceCacheTTL = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}
