package server

import (
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// The hub knows which devices hold a live channel on this node, and who is
// waiting for a device's queue to change (long polls).
//
// Lock order: hub.mu, then liveConn.mu; never the other way round.
type hub struct {
	mu      sync.Mutex
	conns   map[deviceKey]*liveConn
	waiters map[deviceKey]map[chan struct{}]struct{}
	// onDrop, when set (a bus), tells the other nodes of a dropDevice.
	onDrop func(u protocol.UserID, d protocol.DeviceID, all bool)
}

func newHub() *hub {
	return &hub{conns: map[deviceKey]*liveConn{}, waiters: map[deviceKey]map[chan struct{}]struct{}{}}
}

// attach makes c the device's live channel, closing the one it replaces.
func (h *hub) attach(c *liveConn) {
	h.mu.Lock()
	old := h.conns[c.key]
	h.conns[c.key] = c
	h.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// detach removes c if it is still the device's live channel.
func (h *hub) detach(c *liveConn) {
	h.mu.Lock()
	if h.conns[c.key] == c {
		delete(h.conns, c.key)
	}
	h.mu.Unlock()
}

func (h *hub) conn(k deviceKey) *liveConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[k]
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// wake tells a device's live channel and long polls that its queue grew.
func (h *hub) wake(k deviceKey) {
	h.mu.Lock()
	c := h.conns[k]
	for ch := range h.waiters[k] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
	if c != nil {
		c.signal()
	}
}

// wait registers a long poll for a device; cancel unregisters it.
func (h *hub) wait(k deviceKey) (ch chan struct{}, cancel func()) {
	ch = make(chan struct{}, 1)
	h.mu.Lock()
	if h.waiters[k] == nil {
		h.waiters[k] = map[chan struct{}]struct{}{}
	}
	h.waiters[k][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.waiters[k], ch)
		if len(h.waiters[k]) == 0 {
			delete(h.waiters, k)
		}
		h.mu.Unlock()
	}
}

// dropDevice closes the live channels of a device, or of all the user's
// devices when all is set (revocation, account deletion), here and, with a
// bus, on the other nodes.
func (h *hub) dropDevice(u protocol.UserID, d protocol.DeviceID, all bool) {
	h.dropLocal(u, d, all)
	if h.onDrop != nil {
		h.onDrop(u, d, all)
	}
}

// dropLocal is dropDevice on this node only.
func (h *hub) dropLocal(u protocol.UserID, d protocol.DeviceID, all bool) {
	h.mu.Lock()
	var doomed []*liveConn
	for k, c := range h.conns {
		if k.user == u && (all || k.device == d) {
			doomed = append(doomed, c)
			delete(h.conns, k)
		}
	}
	h.mu.Unlock()
	for _, c := range doomed {
		c.close()
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	all := make([]*liveConn, 0, len(h.conns))
	for k, c := range h.conns {
		all = append(all, c)
		delete(h.conns, k)
	}
	h.mu.Unlock()
	for _, c := range all {
		c.close()
	}
}

// closeBefore closes the device's live channel if it was attached before
// at: another node has a newer one.
func (h *hub) closeBefore(k deviceKey, at time.Time) {
	h.mu.Lock()
	c := h.conns[k]
	if c != nil && c.attached.Before(at) {
		delete(h.conns, k)
	} else {
		c = nil
	}
	h.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// wakeAll wakes every live channel and long poll on this node, so that they
// re-read their queues (wakes from other nodes may have been lost).
func (h *hub) wakeAll() {
	h.mu.Lock()
	conns := make([]*liveConn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	for _, ws := range h.waiters {
		for ch := range ws {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.signal()
	}
}
