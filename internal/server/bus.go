package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/bus"
	"github.com/qrtalk/qrtalk/protocol"
)

// Live routing between nodes.
//
// With a bus (Options.Bus), a send whose recipient device has no live
// channel on this node offers the device's copy to the cluster: the node
// holding the channel pushes it and answers once the device acknowledged
// it (the copy is then "delivered" and never written to the store), or
// answers that it did not. No holder, a negative answer, a timeout or a
// bus that is down: the copy is queued in the shared store, as on one
// node, and a wake goes to the nodes watching the device (its live channel
// or a long poll), which read the queue at once.
//
// When the bus is down, wakes from other nodes are lost: every
// BusRecheck, the node re-reads the queues of the devices connected to it
// (live channels and long polls), and once more when the bus is back. The
// node keeps serving; Ready reports it as degraded.
//
// Without a bus, none of this runs: s.bus is nil and the send path only
// tests it.

// ErrDegraded is wrapped by Ready's error when the node serves, but not as
// well as it should: its bus is down, so messages for devices on other
// nodes go through the queue. A load balancer should keep sending it
// traffic.
var ErrDegraded = errors.New("degraded")

// busHandler is the node's side of the bus.
type busHandler struct{ s *Server }

var _ bus.Handler = busHandler{}

// Offer pushes a copy offered by another node on the device's live
// channel, if this node holds it, and answers once it is acknowledged.
func (h busHandler) Offer(o bus.Offer, reply func(bool)) {
	c := h.s.hub.conn(deviceKey{o.Device.User, o.Device.Device})
	if c == nil {
		reply(false)
		return
	}
	acked, ok := c.deliver(o.ID, o.Envelope)
	if !ok {
		reply(false)
		return
	}
	wait := min(o.Wait, h.s.opts.AckTimeout)
	go func() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-acked:
			reply(true)
			return
		case <-t.C:
		case <-c.done:
		}
		select {
		case <-acked:
			reply(true)
		default:
			// The sender queues it; a late acknowledgement deletes the
			// queued copy (liveAck), as on one node.
			c.forget(o.ID)
			reply(false)
		}
	}()
}

func (h busHandler) Wake(d bus.Device) { h.s.hub.wake(deviceKey{d.User, d.Device}) }

func (h busHandler) Takeover(d bus.Device, at time.Time) {
	h.s.hub.closeBefore(deviceKey{d.User, d.Device}, at)
}

func (h busHandler) Drop(d bus.Device, all bool) {
	h.s.devices.invalidate(d.User)
	h.s.sessions.dropDevice(d.User, d.Device, all)
	h.s.hub.dropLocal(d.User, d.Device, all)
}

func (h busHandler) State(up bool) {
	// Revocation notices may have been lost while it was down: whatever
	// the cache holds may be stale (it is not used while the bus is down).
	h.s.devices.clear()
	if up {
		// Wakes may have been lost while it was down, or in the switch:
		// this node's devices re-read their queues, and the other nodes
		// hear of the queues this node filled meanwhile.
		h.s.hub.wakeAll()
		h.s.replayWakes()
	}
}

// maxMissedWakes bounds the devices remembered while the bus is down.
const maxMissedWakes = 1 << 16

// replayWakes sends the wakes that could not be sent while the bus was
// down. Nodes whose bus was down too re-read their queues anyway; this is
// for those that stayed connected while this one was cut off.
func (s *Server) replayWakes() {
	s.missedMu.Lock()
	missed, overflow := s.missed, s.missedOverflow
	s.missed, s.missedOverflow = nil, false
	s.missedMu.Unlock()
	for k := range missed {
		s.bus.Wake(bus.Device{User: k.user, Device: k.device})
	}
	if overflow {
		s.opts.Logger.Warn("bus: more devices had messages queued while the bus was down than could be remembered; "+
			"those on other nodes get them when their live channel reconnects", "remembered", maxMissedWakes)
	}
}

// startBus hands the bus its handler and starts the re-reading of queues
// while it is down.
func (s *Server) startBus() error {
	if err := s.bus.Start(busHandler{s}); err != nil {
		return fmt.Errorf("server: starting the bus: %w", err)
	}
	s.hub.onDrop = func(u protocol.UserID, d protocol.DeviceID, all bool) {
		s.bus.Drop(bus.Device{User: u, Device: d}, all)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.opts.BusRecheck)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
				if s.bus.Ready() != nil {
					s.hub.wakeAll()
				}
			}
		}
	}()
	return nil
}

// busReady reports the bus's state for Ready.
func (s *Server) busReady() error {
	if s.bus == nil {
		return nil
	}
	if err := s.bus.Ready(); err != nil {
		return fmt.Errorf("%w: %v; messages for devices on other nodes go through the queue", ErrDegraded, err)
	}
	return nil
}

// remoteOffer is one copy offered to another node.
type remoteOffer struct {
	i         int
	delivered bool
	err       error
}

// offerRemote offers the copies for env.Devices[idx] to the cluster, all
// at once, and sends each answer on the returned channel (len(idx) of
// them, within AckTimeout plus a grace).
func (s *Server) offerRemote(ctx context.Context, env *protocol.Envelope, idx []int) <-chan remoteOffer {
	out := make(chan remoteOffer, len(idx))
	for _, i := range idx {
		o := bus.Offer{
			Device:   bus.Device{User: env.Devices[i].User, Device: env.Devices[i].Device},
			ID:       env.ID,
			Envelope: env.For(i),
			Wait:     s.opts.AckTimeout,
		}
		go func() {
			ok, err := s.bus.Deliver(ctx, o)
			out <- remoteOffer{i: i, delivered: ok, err: err}
		}()
	}
	return out
}

// collectRemote waits for the answers of offerRemote: a delivered copy is
// marked so in results; the others are returned, to be queued.
func (s *Server) collectRemote(ch <-chan remoteOffer, n int, results []api.DeviceResult) []int {
	var toQueue []int
	for range n {
		r := <-ch
		if r.delivered {
			results[r.i].Status = api.StatusDelivered
			s.metrics.deliveredLive.Inc()
			continue
		}
		if r.err != nil && !errors.Is(r.err, bus.ErrNoHolder) && !errors.Is(r.err, bus.ErrDown) &&
			!errors.Is(r.err, context.DeadlineExceeded) && !errors.Is(r.err, context.Canceled) {
			s.opts.Logger.Warn("bus: offering a message to another node", "err", r.err)
		}
		toQueue = append(toQueue, r.i)
	}
	return toQueue
}

// wakeCluster tells the other nodes that a device's queue grew, or
// remembers it for when the bus is back.
func (s *Server) wakeCluster(k deviceKey) {
	if s.bus == nil {
		return
	}
	if s.bus.Ready() == nil {
		s.bus.Wake(bus.Device{User: k.user, Device: k.device})
		return
	}
	s.missedMu.Lock()
	if s.missed == nil {
		s.missed = map[deviceKey]struct{}{}
	}
	if len(s.missed) < maxMissedWakes {
		s.missed[k] = struct{}{}
	} else {
		s.missedOverflow = true
	}
	s.missedMu.Unlock()
	if s.bus.Ready() == nil {
		// It came back meanwhile, perhaps after its replay.
		s.replayWakes()
	}
}

// holdLive makes this node the holder of a device's live channel on the
// bus; the returned function lets go. Without a bus it does nothing.
func (s *Server) holdLive(k deviceKey) func() {
	if s.bus == nil {
		return func() {}
	}
	release, err := s.bus.Hold(bus.Device{User: k.user, Device: k.device})
	if err != nil {
		// The device still gets its messages: through the queue, which
		// this node re-reads while the bus is down.
		s.opts.Logger.Warn("bus: cannot hold a live channel", "err", err)
		return func() {}
	}
	return release
}

// watchQueue routes a device's wakes here while a long poll waits.
func (s *Server) watchQueue(k deviceKey) func() {
	if s.bus == nil {
		return func() {}
	}
	release, err := s.bus.Watch(bus.Device{User: k.user, Device: k.device})
	if err != nil {
		s.opts.Logger.Warn("bus: cannot watch a queue", "err", err)
		return func() {}
	}
	return release
}
