package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

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
