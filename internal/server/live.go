package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

const (
	// liveOutbox bounds the pushes waiting for the socket; a device that
	// falls further behind gets new messages through its queue.
	liveOutbox = 512
	// drainBatch is how many queued messages are fetched at a time.
	drainBatch = 256
	// liveAuthTimeout bounds the wait for the first (authenticating) frame.
	liveAuthTimeout  = 10 * time.Second
	liveWriteTimeout = 10 * time.Second
	// maxAckFrame bounds a client frame on the live channel.
	maxAckFrame = 64 << 10
)

// A liveConn is one device's live channel.
type liveConn struct {
	key  deviceKey
	sess *protocol.ServerSession
	out  chan []byte   // push bodies, sealed by the writer in order
	wake chan struct{} // the queue changed, or an acknowledgement came
	done chan struct{}
	once sync.Once
	// attached is when the channel was opened (wall clock): a takeover
	// from another node closes only older channels.
	attached time.Time

	mu       sync.Mutex
	acks     map[protocol.MessageID]chan struct{} // live deliveries awaiting their ack
	inflight map[protocol.MessageID]bool          // queued messages pushed, awaiting their ack
}

func newLiveConn(k deviceKey, sess *protocol.ServerSession) *liveConn {
	return &liveConn{
		key: k, sess: sess, attached: time.Now(),
		out:      make(chan []byte, liveOutbox),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		acks:     map[protocol.MessageID]chan struct{}{},
		inflight: map[protocol.MessageID]bool{},
	}
}

func (c *liveConn) close() { c.once.Do(func() { close(c.done) }) }

func (c *liveConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// push queues a body for the socket without blocking; false if the
// connection is closed or too far behind.
func (c *liveConn) push(body []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- body:
		return true
	default:
		return false
	}
}

// deliver pushes a message for live delivery and returns a channel that is
// closed when the device acknowledges it.
func (c *liveConn) deliver(id protocol.MessageID, envelope []byte) (<-chan struct{}, bool) {
	ch := make(chan struct{})
	c.mu.Lock()
	c.acks[id] = ch
	c.mu.Unlock()
	if !c.push(pushBody(api.PushEnvelope, envelope)) {
		c.forget(id)
		return nil, false
	}
	return ch, true
}

// forget stops waiting for a live delivery's acknowledgement.
func (c *liveConn) forget(id protocol.MessageID) {
	c.mu.Lock()
	delete(c.acks, id)
	c.mu.Unlock()
}

func pushBody(typ byte, payload []byte) []byte {
	b := make([]byte, 1+len(payload))
	b[0] = typ
	copy(b[1:], payload)
	return b
}

// handleLive serves a device's live channel over WebSocket. The first
// client message is a frame sealed for GET /v1/live; the server then
// pushes the device's queue, a PushDrained marker, and live messages;
// the client answers with acknowledgement frames.
func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered the client
	}
	defer ws.CloseNow()
	ws.SetReadLimit(maxAckFrame)

	authCtx, cancel := context.WithTimeout(r.Context(), liveAuthTimeout)
	_, first, err := ws.Read(authCtx)
	cancel()
	if err != nil {
		return
	}
	req, aerr := s.openFrame(r, first)
	if aerr != nil {
		ws.Close(websocket.StatusPolicyViolation, aerr.Message)
		return
	}
	k := deviceKey{req.sess.User, req.sess.Device}
	c := newLiveConn(k, req.sess)

	lifetime := min(s.opts.LiveLifetime, time.Until(req.sess.Expires()))
	ctx, cancelLive := context.WithTimeout(r.Context(), lifetime)
	defer cancelLive()

	s.wg.Add(1)
	defer s.wg.Done()
	s.hub.attach(c)
	defer s.hub.detach(c)
	// With a bus: offers for the device come here, and other nodes close
	// their channel for it. In effect before the pump's first read of the
	// queue, so that no wake is missed.
	release := s.holdLive(k)
	defer release()
	s.metrics.liveChannels.Inc()
	defer s.metrics.liveChannels.Dec()

	// The reader gets a context of its own: the WebSocket library closes
	// the connection when a read's context ends, and the writer must
	// still be able to send its closing notice at the end of the lifetime.
	readCtx, cancelRead := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancelRead()
	var wg sync.WaitGroup
	wg.Go(func() { s.liveReader(readCtx, ws, c) })
	wg.Go(func() { s.livePump(ctx, c) })
	s.liveWriter(ctx, ws, c)
	c.close()
	cancelLive()
	cancelRead()
	wg.Wait()
}

// liveWriter seals and writes pushes in order, pings when idle, and closes
// the socket politely when the channel ends.
func (s *Server) liveWriter(ctx context.Context, ws *websocket.Conn, c *liveConn) {
	ping := time.NewTicker(s.opts.PingInterval)
	defer ping.Stop()
	write := func(body []byte) bool {
		wctx, cancel := context.WithTimeout(context.Background(), liveWriteTimeout)
		defer cancel()
		return ws.Write(wctx, websocket.MessageBinary, c.sess.SealPush(body)) == nil
	}
	for {
		select {
		case body := <-c.out:
			if !write(body) {
				return
			}
		case <-ping.C:
			if !write([]byte{api.PushPing}) {
				return
			}
		case <-c.done:
			write([]byte{api.PushClosing})
			ws.Close(websocket.StatusNormalClosure, "closing")
			return
		case <-ctx.Done():
			write([]byte{api.PushClosing})
			ws.Close(websocket.StatusNormalClosure, "live channel lifetime reached; reconnect")
			return
		}
	}
}

// liveReader takes acknowledgement frames: each body is a list of 16-byte
// message IDs.
func (s *Server) liveReader(ctx context.Context, ws *websocket.Conn, c *liveConn) {
	defer c.close()
	for {
		_, frame, err := ws.Read(ctx)
		if err != nil {
			return
		}
		body, _, err := c.sess.OpenRequest(api.AckMethod, api.LivePath, frame, s.opts.Now())
		if err != nil || len(body)%protocol.MessageIDSize != 0 {
			s.opts.Logger.Info("live channel: bad frame, closing", "err", err)
			return
		}
		for i := 0; i < len(body); i += protocol.MessageIDSize {
			var id protocol.MessageID
			copy(id[:], body[i:])
			s.liveAck(ctx, c, id)
		}
	}
}

func (s *Server) liveAck(ctx context.Context, c *liveConn, id protocol.MessageID) {
	c.mu.Lock()
	ch, live := c.acks[id]
	if live {
		delete(c.acks, id)
	}
	wasQueued := c.inflight[id]
	c.mu.Unlock()
	if live {
		close(ch)
		return
	}
	// A queued message, or a live one whose sender stopped waiting and
	// queued it: either way it is delivered now.
	if err := s.opts.Store.Ack(ctx, c.key.user, c.key.device, id); err == nil {
		s.metrics.acked.Inc()
	}
	if wasQueued {
		// Only now: until the store has deleted it, the pump would read
		// it again and push it twice.
		c.mu.Lock()
		delete(c.inflight, id)
		c.mu.Unlock()
		c.signal()
	}
}

// livePump pushes the device's queue: first all of it, then a PushDrained
// marker, then whatever is queued while the channel is open.
func (s *Server) livePump(ctx context.Context, c *liveConn) {
	drained := false
	for {
		msgs, err := s.opts.Store.Pending(ctx, c.key.user, c.key.device, s.opts.Now(), drainBatch)
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				s.opts.Logger.Error("live channel: reading queue", "err", err)
			}
			c.close()
			return
		}
		pushed := 0
		for _, m := range msgs {
			c.mu.Lock()
			seen := c.inflight[m.ID]
			c.inflight[m.ID] = true
			c.mu.Unlock()
			if seen {
				continue
			}
			select {
			case c.out <- pushBody(api.PushEnvelope, m.Envelope):
				pushed++
			case <-c.done:
				return
			}
		}
		if pushed > 0 {
			continue // there may be more behind this batch
		}
		if !drained && len(msgs) < drainBatch {
			drained = true
			select {
			case c.out <- []byte{api.PushDrained}:
			case <-c.done:
				return
			}
		}
		select {
		case <-c.wake:
		case <-c.done:
			return
		case <-ctx.Done():
			return
		}
	}
}
