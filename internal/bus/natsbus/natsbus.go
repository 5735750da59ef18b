// Package natsbus is the bus of a qrtalkd cluster on NATS (core NATS, no
// JetStream: nothing here needs to outlive a node, because every message
// the bus fails to deliver is queued in the shared store).
//
// Subjects, under a prefix that names the cluster (default "qrtalk"):
//
//	<prefix>.dev.<user>.<device>.msg    request: a live delivery (offer)
//	<prefix>.dev.<user>.<device>.wake   the device's queue grew
//	<prefix>.dev.<user>.<device>.close  another node took the live channel
//	<prefix>.drop                       a device was revoked or an account deleted
//
// <user> and <device> are the IDs' text forms (base32 and hex, so they are
// single subject tokens). The node that holds a device's live channel
// subscribes to <prefix>.dev.<user>.<device>.* for as long as it holds it;
// a node with a long poll waiting for the device subscribes to its .wake.
// Every node subscribes to <prefix>.drop.
//
// An offer is a request: its payload is a version byte (1), the 16-byte
// message ID, how long the holder may wait for the acknowledgement in
// milliseconds (4 bytes, big-endian), and the device's envelope. The
// holder pushes the envelope on the live channel and replies only once the
// device acknowledged it ({1}), or says it did not ({0}) when the wait runs
// out, the channel closes, or it does not hold the channel (any more). The
// sender queues the message on every answer but {1}: NATS's "no
// responders" (no node holds the channel), a timeout (the wait plus a
// grace for transit), the connection being down.
//
// The connection reconnects forever and publishes nothing while it is
// down (no reconnect buffer): a send fails at once and the message is
// queued, rather than waiting in a buffer that may never be flushed. The
// connection is echo-free, so a node never hears its own notices.
package natsbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qrtalk/qrtalk/internal/bus"
	"github.com/qrtalk/qrtalk/protocol"
)

// DefaultPrefix is the subject prefix of a cluster when none is given.
const DefaultPrefix = "qrtalk"

// version is the first byte of every payload. A node that gets a version it
// does not know answers an offer with "not delivered" (so the message is
// queued) and ignores anything else.
const version = 1

const (
	offerHeader = 1 + protocol.MessageIDSize + 4
	closeSize   = 1 + 8
	dropSize    = 1 + protocol.UserIDSize + protocol.DeviceIDSize + 1
)

// Options configure a Bus.
type Options struct {
	// URL is the NATS server, or a comma-separated list of the servers of
	// a NATS cluster: nats://host:4222, tls://host:4222, with user:password@
	// or a token@ if the server requires one. Required.
	URL string
	// Prefix is the subject prefix of this qrtalk cluster: the nodes that
	// share it route to each other. Tokens of letters, digits, '-' and
	// '_', separated by dots. Default DefaultPrefix.
	Prefix string
	// Name names this node's connection in NATS's monitoring.
	Name string
	// Grace is added to an offer's wait for the answer to travel back
	// (default 500 ms).
	Grace time.Duration
	// ReconnectWait is the pause between reconnection attempts (default 1 s,
	// with jitter).
	ReconnectWait time.Duration
	// PingInterval is how often the connection is checked: after two
	// unanswered pings, it is considered down (default 5 s).
	PingInterval time.Duration
	// FlushTimeout bounds the round trip that makes a new subscription
	// effective before Hold and Watch return (default 2 s).
	FlushTimeout time.Duration
	// Logger receives state changes, once each (default: discard).
	Logger *slog.Logger
}

// A Bus is a bus.Bus on one NATS connection.
type Bus struct {
	opts   Options
	nc     *nats.Conn
	log    *slog.Logger
	dev    string // <prefix>.dev.
	drop   string // <prefix>.drop
	in     chan *nats.Msg
	h      bus.Handler
	up     atomic.Bool
	closed atomic.Bool

	mu      sync.Mutex
	holds   map[bus.Device]*entry
	watches map[bus.Device]*entry
	lastErr error // why the connection went down

	started   chan struct{}
	startOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

type entry struct {
	sub  *nats.Subscription
	refs int
}

var _ bus.Bus = (*Bus)(nil)

// inboxSize bounds the messages received and not yet dispatched. They are
// dispatched in microseconds; beyond this, NATS drops them (a slow
// consumer), which costs their senders a timeout and a queue write.
const inboxSize = 1 << 16

// CheckURL reports whether u is a usable NATS URL (or list of them).
func CheckURL(u string) error {
	if strings.TrimSpace(u) == "" {
		return errors.New("empty NATS URL")
	}
	for part := range strings.SplitSeq(u, ",") {
		p, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("not a URL: %q", redact(part))
		}
		switch p.Scheme {
		case "nats", "tls":
		default:
			return fmt.Errorf("%s: the scheme must be nats:// or tls://", redact(part))
		}
		if p.Host == "" || p.Port() == "" && strings.HasSuffix(p.Host, ":") {
			return fmt.Errorf("%s: no host", redact(part))
		}
		if p.Path != "" && p.Path != "/" || p.RawQuery != "" {
			return fmt.Errorf("%s: a NATS URL has no path or query", redact(part))
		}
	}
	return nil
}

// CheckPrefix reports whether p can be a subject prefix.
func CheckPrefix(p string) error {
	if p == "" {
		return errors.New("empty subject prefix")
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return fmt.Errorf("subject prefix %q has an empty token", p)
		}
		for _, r := range tok {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("subject prefix %q: only letters, digits, '-', '_' and dots", p)
			}
		}
	}
	return nil
}

// redact hides the password or token of a URL, for logs and errors.
func redact(u string) string {
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil {
		return "(unparsable URL)"
	}
	if p.User != nil {
		p.User = url.User("redacted")
	}
	return p.String()
}

// Open connects to NATS. When NATS is unreachable it still returns a Bus,
// down, that keeps trying to connect; the node works through the store in
// the meantime. It fails only on a malformed option.
func Open(opts Options) (*Bus, error) {
	if err := CheckURL(opts.URL); err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := CheckPrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	if opts.Grace <= 0 {
		opts.Grace = 500 * time.Millisecond
	}
	if opts.ReconnectWait <= 0 {
		opts.ReconnectWait = time.Second
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 5 * time.Second
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Bus{
		opts:    opts,
		log:     opts.Logger,
		dev:     opts.Prefix + ".dev.",
		drop:    opts.Prefix + ".drop",
		in:      make(chan *nats.Msg, inboxSize),
		holds:   map[bus.Device]*entry{},
		watches: map[bus.Device]*entry{},
		started: make(chan struct{}),
		done:    make(chan struct{}),
	}
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.NoEcho(),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		nats.ReconnectJitter(opts.ReconnectWait/2, opts.ReconnectWait),
		nats.ReconnectBufSize(-1),
		nats.PingInterval(opts.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.Timeout(2 * time.Second),
		nats.ConnectHandler(func(nc *nats.Conn) { b.setState(nc, true, nil) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { b.setState(nc, true, nil) }),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) { b.setState(nc, false, err) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { b.noteErr(err) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("nats: asynchronous error", "err", err)
		}),
	}
	nc, err := nats.Connect(opts.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connecting to %s: %w", redact(opts.URL), err)
	}
	b.nc = nc
	if !nc.IsConnected() {
		// Connect goes on trying in the background; the connect handler
		// reports success.
		b.log.Warn("nats: unreachable at start; live routing between nodes is off until it is reached, messages go through the queue",
			"url", redact(opts.URL))
	}
	b.wg.Add(1)
	go b.dispatch()
	return b, nil
}

// setState records the connection's state, logs a change once, and tells
// the handler. NATS calls it from one goroutine, in order.
func (b *Bus) setState(nc *nats.Conn, up bool, err error) {
	if b.closed.Load() {
		return
	}
	b.noteErr(err)
	if b.up.Swap(up) == up {
		return
	}
	if up {
		b.log.Info("nats: connected; live routing between nodes is on", "server", nc.ConnectedUrlRedacted())
	} else {
		b.log.Warn("nats: unreachable; live routing between nodes is off, messages for devices on other nodes go through the queue until it is back",
			"url", redact(b.opts.URL), "err", err)
	}
	select {
	case <-b.started:
		b.h.State(up)
	default:
	}
}

func (b *Bus) noteErr(err error) {
	if err == nil {
		return
	}
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
}

// Start subscribes to the cluster's drop notices and hands over h.
func (b *Bus) Start(h bus.Handler) error {
	if h == nil {
		return errors.New("natsbus: nil handler")
	}
	var err error
	b.startOnce.Do(func() {
		b.h = h
		if _, err = b.nc.ChanSubscribe(b.drop, b.in); err != nil {
			err = fmt.Errorf("natsbus: subscribing to %s: %w", b.drop, err)
			return
		}
		close(b.started)
		if !b.up.Load() {
			h.State(false)
		}
	})
	return err
}

// Ready returns nil while the connection is up.
func (b *Bus) Ready() error {
	if b.closed.Load() {
		return errors.New("nats: closed")
	}
	if b.nc.IsConnected() {
		return nil
	}
	b.mu.Lock()
	err := b.lastErr
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("nats unreachable: %v", err)
	}
	return errors.New("nats unreachable")
}

// Close disconnects and stops dispatching. Calling it again does nothing.
func (b *Bus) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.nc.Close()
	close(b.done)
	b.wg.Wait()
	return nil
}

func (b *Bus) subject(d bus.Device, kind string) string {
	return b.dev + d.User.String() + "." + d.Device.String() + "." + kind
}

// Deliver offers o to the holder of the device's live channel.
func (b *Bus) Deliver(ctx context.Context, o bus.Offer) (bool, error) {
	if !b.nc.IsConnected() {
		return false, bus.ErrDown
	}
	wait := max(o.Wait, 0)
	ms := min(wait.Milliseconds(), 1<<31)
	data := make([]byte, offerHeader+len(o.Envelope))
	data[0] = version
	copy(data[1:], o.ID[:])
	binary.BigEndian.PutUint32(data[1+protocol.MessageIDSize:], uint32(ms))
	copy(data[offerHeader:], o.Envelope)
	ctx, cancel := context.WithTimeout(ctx, wait+b.opts.Grace)
	defer cancel()
	resp, err := b.nc.RequestWithContext(ctx, b.subject(o.Device, "msg"), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return false, bus.ErrNoHolder
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionReconnecting):
		return false, bus.ErrDown
	case err != nil:
		return false, err
	}
	return len(resp.Data) == 1 && resp.Data[0] == 1, nil
}

// Wake publishes a wake for d. It does not wait for NATS.
func (b *Bus) Wake(d bus.Device) {
	if b.nc.IsConnected() {
		b.nc.Publish(b.subject(d, "wake"), []byte{version})
	}
}

// Drop publishes a drop notice for d.
func (b *Bus) Drop(d bus.Device, all bool) {
	if !b.nc.IsConnected() {
		return
	}
	data := make([]byte, dropSize)
	data[0] = version
	copy(data[1:], d.User[:])
	copy(data[1+protocol.UserIDSize:], d.Device[:])
	if all {
		data[dropSize-1] = 1
	}
	b.nc.Publish(b.drop, data)
	// Revocations are rare and matter: make sure NATS has it before the
	// revoking request is answered.
	b.nc.FlushTimeout(b.opts.FlushTimeout)
}

// Hold subscribes to d's subjects and tells other nodes to close their
// live channel for d.
func (b *Bus) Hold(d bus.Device) (func(), error) {
	release, err := b.subscribe(b.holds, d, b.subject(d, "*"))
	if err != nil {
		return nil, err
	}
	if b.nc.IsConnected() {
		data := make([]byte, closeSize)
		data[0] = version
		binary.BigEndian.PutUint64(data[1:], uint64(time.Now().UnixNano()))
		b.nc.Publish(b.subject(d, "close"), data)
		b.flush()
	}
	return release, nil
}

// Watch subscribes to d's wakes.
func (b *Bus) Watch(d bus.Device) (func(), error) {
	release, err := b.subscribe(b.watches, d, b.subject(d, "wake"))
	if err != nil {
		return nil, err
	}
	if b.nc.IsConnected() {
		b.flush()
	}
	return release, nil
}

// flush waits until NATS has processed what this connection sent, so that
// a new subscription is in effect. When the connection is down, the
// subscription will be made on reconnection, and the node's periodic
// re-reading of queues covers the meantime.
func (b *Bus) flush() {
	if err := b.nc.FlushTimeout(b.opts.FlushTimeout); err != nil {
		b.log.Debug("nats: flush", "err", err)
	}
}

// subscribe adds a reference to d's subscription in m, making it if
// needed, and returns the function that removes the reference.
func (b *Bus) subscribe(m map[bus.Device]*entry, d bus.Device, subject string) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := m[d]
	if e == nil {
		sub, err := b.nc.ChanSubscribe(subject, b.in)
		if err != nil {
			return nil, fmt.Errorf("natsbus: subscribing: %w", err)
		}
		e = &entry{sub: sub}
		m[d] = e
	}
	e.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			e.refs--
			if e.refs == 0 {
				if m[d] == e {
					delete(m, d)
				}
				e.sub.Unsubscribe()
			}
		})
	}, nil
}

// dispatch hands received messages to the handler, one at a time, in the
// order NATS delivered them (so that a device's messages are pushed in the
// order they were offered).
func (b *Bus) dispatch() {
	defer b.wg.Done()
	select {
	case <-b.started:
	case <-b.done:
		return
	}
	for {
		select {
		case m := <-b.in:
			b.handle(m)
		case <-b.done:
			return
		}
	}
}

func (b *Bus) handle(m *nats.Msg) {
	if m.Subject == b.drop {
		if len(m.Data) != dropSize || m.Data[0] != version {
			return
		}
		var d bus.Device
		copy(d.User[:], m.Data[1:])
		copy(d.Device[:], m.Data[1+protocol.UserIDSize:])
		b.h.Drop(d, m.Data[dropSize-1] == 1)
		return
	}
	d, kind, ok := b.parseSubject(m.Subject)
	if !ok {
		if m.Reply != "" {
			m.Respond([]byte{0})
		}
		return
	}
	switch kind {
	case "msg":
		if len(m.Data) < offerHeader || m.Data[0] != version {
			m.Respond([]byte{0})
			return
		}
		o := bus.Offer{Device: d, Envelope: m.Data[offerHeader:]}
		copy(o.ID[:], m.Data[1:])
		o.Wait = time.Duration(binary.BigEndian.Uint32(m.Data[1+protocol.MessageIDSize:])) * time.Millisecond
		var once sync.Once
		b.h.Offer(o, func(delivered bool) {
			once.Do(func() {
				if delivered {
					m.Respond([]byte{1})
				} else {
					m.Respond([]byte{0})
				}
			})
		})
	case "wake":
		b.h.Wake(d)
	case "close":
		if len(m.Data) != closeSize || m.Data[0] != version {
			return
		}
		b.h.Takeover(d, time.Unix(0, int64(binary.BigEndian.Uint64(m.Data[1:]))))
	}
}

// parseSubject reads <prefix>.dev.<user>.<device>.<kind>.
func (b *Bus) parseSubject(s string) (bus.Device, string, bool) {
	rest, ok := strings.CutPrefix(s, b.dev)
	if !ok {
		return bus.Device{}, "", false
	}
	us, rest, ok1 := strings.Cut(rest, ".")
	ds, kind, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return bus.Device{}, "", false
	}
	u, err := protocol.ParseUserID(us)
	if err != nil {
		return bus.Device{}, "", false
	}
	dv, err := protocol.ParseDeviceID(ds)
	if err != nil {
		return bus.Device{}, "", false
	}
	return bus.Device{User: u, Device: dv}, kind, true
}
