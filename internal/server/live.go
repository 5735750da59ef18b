package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

const (
	// liveOutbox bounds the pushes waiting for the socket; a device that
	// falls further behind gets new live messages through its queue.
	liveOutbox = 512
	// drainBatch is how many queued messages are read at a time.
	drainBatch = 256
	// maxInflight bounds the queued messages pushed to a device and not yet
	// acknowledged: beyond it the pump waits for acknowledgements, so
	// that a device that does not acknowledge cannot make the server hold
	// its whole queue in memory.
	maxInflight = 512
	// maxAckBatches bounds one channel's acknowledgement frames handed to
	// the AckWriter and not yet committed; the reader waits beyond it.
	maxAckBatches = 16
	// liveAuthTimeout bounds the wait for the first (authenticating) frame.
	liveAuthTimeout  = 10 * time.Second
	liveWriteTimeout = 10 * time.Second
	// maxAckFrame bounds a client frame on the live channel.
	maxAckFrame = 64 << 10
)

// A liveConn is one device's live channel.
//
// An idle channel costs one goroutine, the handler's, blocked reading the
// socket. The writer and the pump are goroutines started on demand and
// ended when they have nothing left to do: the writer when the outbox is
// empty, the pump when it has pushed the device's queue up to its end.
// Pings come from a timer.
type liveConn struct {
	key  deviceKey
	sess *protocol.ServerSession
	done chan struct{}
	once sync.Once
	// attached is when the channel was opened (wall clock): a takeover
	// from another node closes only older channels.
	attached time.Time

	// Set once before the channel starts.
	s         *Server
	ws        *websocket.Conn
	net       *liveNetConn
	ctx       context.Context // ends with the channel
	closeNote string          // the WebSocket close reason, set before done closes

	mu       sync.Mutex
	out      []push // waiting for the socket, sealed by the writer in order; nil while empty
	writing  bool   // a writer goroutine runs
	ending   bool   // done is closed: no new goroutine starts
	wg       sync.WaitGroup
	acks     map[protocol.MessageID]chan struct{} // live deliveries awaiting their ack; nil while empty
	inflight map[protocol.MessageID]bool          // queued messages pushed, awaiting their ack; nil while empty
	pumping  bool                                 // a pump goroutine runs
	parked   bool                                 // the pump stopped at maxInflight
	rescan   bool                                 // the queue grew: read it from its start again
	cursor   int64                                // the pump has read the queue up to this Seq
	drained  bool                                 // PushDrained was sent
	ackSlots chan struct{}                        // maxAckBatches tokens, made on the first queued ack
}

func newLiveConn(k deviceKey, sess *protocol.ServerSession) *liveConn {
	return &liveConn{key: k, sess: sess, attached: time.Now(), done: make(chan struct{}), closeNote: "closing"}
}

// close ends the channel: the writer sends the closing notice and closes
// the socket, which ends the reader.
func (c *liveConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.mu.Lock()
		c.ending = true
		c.startWriterLocked() // to say goodbye; does nothing before start
		c.mu.Unlock()
	})
}

// signal tells the channel that the device's queue grew: the pump reads
// it from its start (a message may have a Seq below the cursor; see
// store.QueuedMessage.Seq).
func (c *liveConn) signal() {
	c.mu.Lock()
	c.rescan = true
	c.startPumpLocked()
	c.mu.Unlock()
}

func (c *liveConn) startPumpLocked() {
	if c.pumping || c.ending || c.s == nil {
		return
	}
	c.pumping = true
	c.parked = false
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.pump()
	}()
}

func (c *liveConn) startWriterLocked() {
	if c.writing || c.s == nil {
		return
	}
	c.writing = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.write()
	}()
}

// A push is one pushed frame's body: a type byte, then the payload (an
// envelope, or nothing). The writer puts them together in a buffer of its
// own, so that a push does not copy its envelope.
type push struct {
	typ     byte
	payload []byte
}

// push queues a body for the socket without blocking; false if the
// connection is closed or too far behind.
func (c *liveConn) push(body push) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ending || len(c.out) >= liveOutbox {
		return false
	}
	c.out = append(c.out, body)
	c.startWriterLocked()
	return true
}

// deliver pushes a message for live delivery and returns a channel that is
// closed when the device acknowledges it.
func (c *liveConn) deliver(id protocol.MessageID, envelope []byte) (<-chan struct{}, bool) {
	ch := make(chan struct{})
	c.mu.Lock()
	if c.acks == nil {
		c.acks = map[protocol.MessageID]chan struct{}{}
	}
	c.acks[id] = ch
	c.mu.Unlock()
	if !c.push(push{api.PushEnvelope, envelope}) {
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

// handleLive serves a device's live channel over WebSocket. The first
// client message is a frame sealed for GET /v1/live; the server then
// pushes the device's queue, a PushDrained marker, and live messages;
// the client answers with acknowledgement frames.
//
// Once the channel is authenticated, the handler returns and the channel
// runs in a goroutine of its own (runLive): net/http keeps the request,
// its headers and its connection buffers alive for as long as a handler
// runs, which is most of an idle channel's memory.
func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	lw := &liveResponseWriter{ResponseWriter: w}
	ws, err := websocket.Accept(lw, r, nil)
	if err != nil {
		return // Accept has answered the client
	}
	ws.SetReadLimit(maxAckFrame)

	authCtx, cancel := context.WithTimeout(r.Context(), liveAuthTimeout)
	_, first, err := ws.Read(authCtx)
	cancel()
	if err != nil {
		ws.CloseNow()
		return
	}
	req, aerr := s.openFrame(r, first)
	if aerr != nil {
		ws.Close(websocket.StatusPolicyViolation, aerr.Message)
		return
	}
	c := newLiveConn(deviceKey{req.sess.User, req.sess.Device}, req.sess)
	lifetime := min(s.opts.LiveLifetime, time.Until(req.sess.Expires()))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runLive(c, ws, lw.conn, lifetime)
	}()
}

// runLive runs an authenticated live channel until it ends.
func (s *Server) runLive(c *liveConn, ws *websocket.Conn, nc *liveNetConn, lifetime time.Duration) {
	defer ws.CloseNow()
	// The pump's store reads end with the channel.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.s, c.ws, c.net, c.ctx = s, ws, nc, ctx

	k := c.key
	s.hub.attach(c)
	defer s.hub.detach(c)
	// With a bus: offers for the device come here, and other nodes close
	// their channel for it. In effect before the pump's first read of the
	// queue, so that no wake is missed.
	release := s.holdLive(k)
	defer release()
	s.metrics.liveChannels.Inc()
	defer s.metrics.liveChannels.Dec()

	end := time.AfterFunc(lifetime, func() {
		c.mu.Lock()
		if !c.ending {
			c.closeNote = "live channel lifetime reached; reconnect"
		}
		c.mu.Unlock()
		c.close()
	})
	defer end.Stop()
	var ping *time.Timer
	ping = time.AfterFunc(s.opts.PingInterval, func() {
		// A full outbox skips this ping, not the next ones.
		c.push(push{typ: api.PushPing})
		select {
		case <-c.done:
		default:
			ping.Reset(s.opts.PingInterval)
		}
	})
	defer ping.Stop()
	if s.ctx.Err() != nil {
		c.close() // the server is draining: hub.closeAll may have run before attach
	}

	c.signal() // push what is queued
	// This goroutine reads until the socket closes: the client leaves, or
	// the writer closes it at the channel's end. Its context is never
	// cancelled, because the WebSocket library closes the connection when
	// a read's context ends, and the writer must still be able to send its
	// closing notice.
	s.liveReader(context.Background(), ws, c)
	c.close()
	cancel()
	c.wg.Wait()
}

// write is the writer goroutine: it seals and writes what the outbox
// holds, all of it in one write to the connection (one TLS record when it
// fits), and returns when the outbox is empty. At the channel's end it
// sends the closing notice and closes the socket.
func (c *liveConn) write() {
	for {
		c.mu.Lock()
		batch := c.out
		c.out = nil
		ending := c.ending
		if len(batch) == 0 && !ending {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if ending {
			// Pushes still waiting are dropped: live ones are queued by
			// their sender when no ack comes, queued ones stay queued.
			c.send([]push{{typ: api.PushClosing}})
			c.ws.Close(websocket.StatusNormalClosure, c.note())
			c.ws.CloseNow()
			return // writing stays set: nothing is written any more
		}
		if !c.send(batch) {
			c.close()
			c.ws.CloseNow()
			return
		}
	}
}

func (c *liveConn) note() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeNote
}

// send seals and writes bodies, coalesced into one write to the
// connection.
func (c *liveConn) send(bodies []push) bool {
	wctx, cancel := context.WithTimeout(context.Background(), liveWriteTimeout)
	defer cancel()
	// Corked even for one body: the library writes a frame's header and
	// payload apart, and the write buffer is small (see livenet.go).
	if c.net != nil {
		c.net.cork()
	}
	ok := true
	var scratch []byte
	for _, p := range bodies {
		scratch = append(append(scratch[:0], p.typ), p.payload...)
		if c.ws.Write(wctx, websocket.MessageBinary, c.sess.SealPush(scratch)) != nil {
			ok = false
			break
		}
	}
	if c.net != nil {
		if err := c.net.uncork(wctx); err != nil {
			ok = false
		}
	}
	return ok
}

// liveReader takes acknowledgement frames: each body is a list of 16-byte
// message IDs.
func (s *Server) liveReader(ctx context.Context, ws *websocket.Conn, c *liveConn) {
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
		var queued []store.MessageRef
		for i := 0; i < len(body); i += protocol.MessageIDSize {
			var id protocol.MessageID
			copy(id[:], body[i:])
			if id.IsZero() {
				continue // never queued nor pushed; unknown IDs are ignored
			}
			c.mu.Lock()
			ch, live := c.acks[id]
			if live {
				delete(c.acks, id)
			}
			c.mu.Unlock()
			if live {
				close(ch)
				continue
			}
			// A queued message, or a live one whose sender stopped
			// waiting and queued it: either way it is delivered now.
			queued = append(queued, store.MessageRef{User: c.key.user, Device: c.key.device, ID: id})
		}
		if len(queued) > 0 && !s.submitAcks(c, queued) {
			return
		}
	}
}

// submitAcks hands a frame's acknowledgements of queued messages to the
// AckWriter, so that they are deleted together with other devices' (group
// commit), without waiting for the commit; at most maxAckBatches frames
// of one channel wait for it at a time.
func (s *Server) submitAcks(c *liveConn, refs []store.MessageRef) bool {
	if c.ackSlots == nil {
		c.ackSlots = make(chan struct{}, maxAckBatches)
	}
	select {
	case c.ackSlots <- struct{}{}:
	case <-c.done:
		return false
	}
	err := s.acks.Submit(refs, func(error) {
		// Only now, committed or failed: until the store has deleted
		// them, a re-read of the queue would push them again.
		<-c.ackSlots
		c.mu.Lock()
		for _, r := range refs {
			delete(c.inflight, r.ID)
		}
		if c.parked && len(c.inflight) <= maxInflight/2 {
			c.startPumpLocked()
		}
		c.mu.Unlock()
	})
	if err != nil {
		<-c.ackSlots
		return false
	}
	return true
}

// pump pushes the device's queue, by cursor: first all of it, then a
// PushDrained marker, then whatever is queued while the channel is open.
// It returns when it has reached the end of the queue with no new signal,
// when maxInflight pushes await their acknowledgement (an ack starts it
// again), or at the channel's end.
func (c *liveConn) pump() {
	s := c.s
	for {
		c.mu.Lock()
		switch {
		case c.ending:
			c.pumping = false
			c.mu.Unlock()
			return
		case len(c.inflight) >= maxInflight:
			c.pumping, c.parked = false, true
			c.mu.Unlock()
			return
		}
		if c.rescan {
			c.rescan, c.cursor = false, 0
		}
		cursor := c.cursor
		c.mu.Unlock()

		msgs, err := s.opts.Store.PendingAfter(c.ctx, c.key.user, c.key.device, cursor, s.opts.Now(), drainBatch)
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				s.opts.Logger.Error("live channel: reading queue", "err", err)
			}
			c.mu.Lock()
			c.pumping = false
			c.mu.Unlock()
			c.close()
			return
		}
		c.mu.Lock()
		for _, m := range msgs {
			if c.ending {
				break
			}
			c.cursor = m.Seq
			if c.inflight[m.ID] {
				continue
			}
			if c.inflight == nil {
				c.inflight = map[protocol.MessageID]bool{}
			}
			c.inflight[m.ID] = true
			c.out = append(c.out, push{api.PushEnvelope, m.Envelope})
			c.startWriterLocked()
		}
		if len(msgs) == drainBatch || c.rescan {
			c.mu.Unlock()
			continue // there may be more behind this batch
		}
		if !c.drained {
			c.drained = true
			c.out = append(c.out, push{typ: api.PushDrained})
			c.startWriterLocked()
		}
		c.pumping = false
		c.mu.Unlock()
		return
	}
}
