package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// The live channel's connection layer: what the WebSocket library gets
// when it takes over the HTTP connection.
//
// Idle channels are most of a server's connections, so their buffers
// matter: net/http hands over a 4 KiB read buffer and a 4 KiB write buffer
// per connection, kept for the connection's life. Here they are replaced
// by small ones (frames larger than a buffer pass through it), and the
// writer corks the connection while it writes a batch of pushes: the
// frames gather in a buffer taken from a pool only for that time, and go
// to TLS in one write (one record, one system call, when they fit) instead
// of one each.

const (
	liveReadBuffer  = 512
	liveWriteBuffer = 256
	// maxPooledCork keeps an unusually large batch's buffer out of the
	// pool.
	maxPooledCork = 256 << 10
)

var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// liveResponseWriter hands the WebSocket library a liveNetConn and small
// buffers when it hijacks the connection.
type liveResponseWriter struct {
	http.ResponseWriter
	conn *liveNetConn // set by Hijack
}

// Hijack implements http.Hijacker.
func (w *liveResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // nothing should be there; be sure
		nc.Close()
		return nil, nil, err
	}
	w.conn = &liveNetConn{Conn: nc}
	r := brw.Reader
	if r.Buffered() == 0 {
		// Bytes the client sent early would be in the old buffer: keep
		// it then. Otherwise a small one.
		r = bufio.NewReaderSize(w.conn, liveReadBuffer)
	}
	return w.conn, bufio.NewReadWriter(r, bufio.NewWriterSize(w.conn, liveWriteBuffer)), nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *liveResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// liveNetConn is the hijacked connection, corkable.
type liveNetConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    *[]byte // from corkPool while corked
}

// Write implements net.Conn: while corked, it only gathers.
func (c *liveNetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked {
		*c.buf = append(*c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// cork makes writes gather until uncork.
func (c *liveNetConn) cork() {
	c.mu.Lock()
	c.corked = true
	if c.buf == nil {
		c.buf = corkPool.Get().(*[]byte)
	}
	c.mu.Unlock()
}

// uncork writes what gathered, in one write bounded by ctx's deadline, and
// gives the buffer back.
func (c *liveNetConn) uncork(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	b := c.buf
	c.buf = nil
	if b == nil {
		return nil
	}
	defer func() {
		*b = (*b)[:0]
		if cap(*b) <= maxPooledCork {
			corkPool.Put(b)
		}
	}()
	if len(*b) == 0 {
		return nil
	}
	// Under the lock, so that a frame the library writes meanwhile (a
	// pong) comes after these, not in the middle.
	if d, ok := ctx.Deadline(); ok {
		c.Conn.SetWriteDeadline(d)
		defer c.Conn.SetWriteDeadline(time.Time{})
	}
	_, err := c.Conn.Write(*b)
	return err
}
