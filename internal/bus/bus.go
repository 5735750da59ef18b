// Package bus defines how the nodes of a qrtalkd cluster reach each other:
// the live delivery of a message to a device whose live channel is held by
// another node, the wake-ups that tell a node a device's queue grew, and
// the notices that a device's channel moved or its sessions must end.
//
// A single node has no bus (server.Options.Bus is nil) and pays nothing for
// it. internal/bus/natsbus implements it on NATS. The bus is never the
// only copy of anything: a message it fails to deliver is queued in the
// store, which every node shares, so a bus that is down or slow costs
// latency, never a message.
package bus

import (
	"context"
	"errors"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// ErrNoHolder: no node holds a live channel for the device.
var ErrNoHolder = errors.New("no node holds the device's live channel")

// ErrDown: the bus is not connected; the node routes through the store.
var ErrDown = errors.New("bus unreachable")

// A Device names one device of a user.
type Device struct {
	User   protocol.UserID
	Device protocol.DeviceID
}

// An Offer is one device's copy of a message, offered to the node that holds
// the device's live channel.
type Offer struct {
	Device Device
	ID     protocol.MessageID
	// Envelope is the device's copy (protocol.Envelope.For).
	Envelope []byte
	// Wait is how long the holding node may wait for the device's
	// acknowledgement before it answers "not delivered".
	Wait time.Duration
}

// A Handler is the node's side of the bus: what it does when another node
// asks something of it. Its methods are called from the bus's own
// goroutine, one at a time, and must not block.
type Handler interface {
	// Offer pushes o on the device's live channel, if this node holds it,
	// and calls reply exactly once, from any goroutine: true only after
	// the device acknowledged the message, false when this node does not
	// hold the channel any more, the push failed, or o.Wait ran out.
	Offer(o Offer, reply func(delivered bool))
	// Wake: the device's queue grew; its live channel and long polls on
	// this node should read it.
	Wake(d Device)
	// Takeover: another node attached a live channel for d at the given
	// time (its wall clock); a channel attached here before then is stale.
	Takeover(d Device, at time.Time)
	// Drop: d was revoked (or, with all, its user's account deleted): end
	// its sessions and live channels on this node.
	Drop(d Device, all bool)
	// State: the bus went up (connected) or down. While it is down, wakes
	// from other nodes are lost, so the node re-reads the queues of its
	// connected devices from time to time; when it comes back, once more.
	State(up bool)
}

// A Bus connects a node to the others. Its methods are safe for
// concurrent use.
type Bus interface {
	// Start hands the bus the node's handler; it is called once, before
	// any other method.
	Start(h Handler) error
	// Deliver offers o to the node holding o.Device's live channel and
	// waits for its answer: true when the device acknowledged it. It
	// returns ErrNoHolder when no node holds the channel, ErrDown when the
	// bus is down, and ctx's error or another error when the answer does
	// not come; in every case but true, the caller queues the message.
	Deliver(ctx context.Context, o Offer) (bool, error)
	// Wake tells the nodes watching d that its queue grew. Best effort:
	// when the bus is down, nodes fall back to re-reading queues.
	Wake(d Device)
	// Drop tells every other node to end d's sessions and live channels
	// (all: every device of d.User). Best effort.
	Drop(d Device, all bool)
	// Hold makes this node the one offers for d go to, while it holds d's
	// live channel, and tells other nodes to close their channel for d.
	// When Hold returns without error, the bus routes d's offers and wakes
	// here (so no wake sent after that is lost); if the bus is down, it
	// will once it is back. release undoes it; Hold may be called several
	// times for one device, each with its own release.
	Hold(d Device) (release func(), err error)
	// Watch routes d's wakes here while a long poll waits for d, with the
	// same guarantee as Hold.
	Watch(d Device) (release func(), err error)
	// Ready returns nil when the bus is connected, and why not otherwise.
	Ready() error
	// Close disconnects. The server does not call it: whoever opened the
	// bus closes it after the server's Shutdown.
	Close() error
}
