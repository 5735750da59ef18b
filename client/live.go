package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// EventType says what a live channel event is.
type EventType int

const (
	// EventEnvelope: an envelope for this device; open it, then Ack it.
	EventEnvelope EventType = iota + 1
	// EventDrained: everything queued while the device was away has been
	// sent; what follows arrives live.
	EventDrained
	// EventClosing: the server is ending the channel (its lifetime is
	// reached or the server is stopping); reconnect.
	EventClosing
)

// An Event is one thing the server pushed on a live channel.
type Event struct {
	Type     EventType
	Envelope []byte
}

// A Live is a device's live channel: the server pushes envelopes as they
// arrive, and the device acknowledges them.
type Live struct {
	c    *Conn
	ws   *websocket.Conn
	sess *protocol.ClientSession
	wmu  sync.Mutex // one writer at a time on the socket
}

// maxPushFrame bounds one pushed frame: the largest delivered envelope.
const maxPushFrame = protocol.MaxFrameSize

// Live opens the device's live channel.
func (c *Conn) Live(ctx context.Context) (*Live, error) {
	for attempt := 0; ; attempt++ {
		l, err := c.dialLive(ctx, attempt > 0)
		if err != nil && attempt == 0 && errors.Is(err, api.ErrSessionUnknown) {
			continue
		}
		return l, err
	}
}

func (c *Conn) dialLive(ctx context.Context, renew bool) (*Live, error) {
	sess, err := c.session(ctx, renew)
	if err != nil {
		return nil, err
	}
	// The Conn's own HTTP client: net/http keeps upgrade requests apart
	// from its pool of idle connections, so the WebSocket gets a new
	// connection, but its TLS handshake resumes the TLS session of the
	// Conn's earlier ones (PinnedTLSConfig's session cache): no
	// certificate signature for the server.
	ws, _, err := websocket.Dial(ctx, c.opts.Server+api.LivePath, &websocket.DialOptions{HTTPClient: c.opts.HTTPClient})
	if err != nil {
		return nil, fmt.Errorf("opening the live channel: %w", err)
	}
	ws.SetReadLimit(maxPushFrame)
	frame, _, err := sess.SealRequest("GET", api.LivePath, []byte("{}"))
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	if err := ws.Write(ctx, websocket.MessageBinary, frame); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("opening the live channel: %w", err)
	}
	return &Live{c: c, ws: ws, sess: sess}, nil
}

// Next waits for the next event. Pings are handled here and never
// returned. A closed channel returns an error; reconnect with Conn.Live.
func (l *Live) Next(ctx context.Context) (Event, error) {
	for {
		_, frame, err := l.ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusPolicyViolation && strings.Contains(err.Error(), "session") {
				// The server forgot the session (a restart, another
				// node): the next Live renews it, by resuming.
				l.c.forgetSession(l.sess)
				return Event{}, fmt.Errorf("live channel refused: %w", api.ErrSessionUnknown)
			}
			return Event{}, fmt.Errorf("live channel: %w", err)
		}
		body, err := l.sess.OpenPush(frame, l.c.opts.Now())
		if err != nil {
			return Event{}, fmt.Errorf("live channel: pushed frame does not authenticate: %w", err)
		}
		if len(body) == 0 {
			return Event{}, errors.New("live channel: empty push")
		}
		switch body[0] {
		case api.PushEnvelope:
			return Event{Type: EventEnvelope, Envelope: body[1:]}, nil
		case api.PushDrained:
			return Event{Type: EventDrained}, nil
		case api.PushClosing:
			return Event{Type: EventClosing}, nil
		case api.PushPing:
			continue
		default:
			continue // unknown pushes are for newer clients
		}
	}
}

// Ack acknowledges envelopes received on the channel.
func (l *Live) Ack(ctx context.Context, ids ...protocol.MessageID) error {
	body := make([]byte, 0, len(ids)*protocol.MessageIDSize)
	for _, id := range ids {
		body = append(body, id[:]...)
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	frame, _, err := l.sess.SealRequest(api.AckMethod, api.LivePath, body)
	if err != nil {
		return err
	}
	return l.ws.Write(ctx, websocket.MessageBinary, frame)
}

// Close ends the live channel.
func (l *Live) Close() error {
	return l.ws.Close(websocket.StatusNormalClosure, "bye")
}

// maxAckIDs bounds the message IDs in one acknowledgement frame (16 bytes
// each; the server takes frames up to 64 KiB).
const maxAckIDs = 1024

// An Acker acknowledges envelopes of a live channel in the background.
// IDs queued while a frame is being written go out together in the next
// one, so a device draining a long queue sends a few large
// acknowledgements instead of one frame per message, and the server
// deletes them in one transaction; when messages come one at a time,
// each goes at once. Queue an ID only once the message is kept (or
// shown): an acknowledged message is deleted from the server.
type Acker struct {
	l    *Live
	mu   sync.Mutex
	ids  []protocol.MessageID
	err  error
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// Acker starts the channel's background acknowledger. Close it before
// the channel.
func (l *Live) Acker() *Acker {
	a := &Acker{l: l, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

// Ack queues ids for acknowledgement. It returns the error of an earlier
// acknowledgement that failed (the channel is then unusable: reconnect;
// what was not acknowledged comes again).
func (a *Acker) Ack(ids ...protocol.MessageID) error {
	a.mu.Lock()
	if a.err != nil {
		err := a.err
		a.mu.Unlock()
		return err
	}
	a.ids = append(a.ids, ids...)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close sends what is queued and stops the acknowledger.
func (a *Acker) Close() error {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *Acker) run() {
	defer close(a.done)
	for {
		stopping := false
		select {
		case <-a.wake:
		case <-a.stop:
			stopping = true
		}
		a.mu.Lock()
		ids := a.ids
		a.ids = nil
		a.mu.Unlock()
		for len(ids) > 0 {
			n := min(len(ids), maxAckIDs)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := a.l.Ack(ctx, ids[:n]...)
			cancel()
			if err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
				return
			}
			ids = ids[n:]
		}
		if stopping {
			return
		}
	}
}
