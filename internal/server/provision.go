package server

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// Provisioning mailboxes relay the two messages that link a new device by
// QR code (protocol.LinkCode): the new device's request and the existing
// device's answer. The server sees only opaque ciphertext under a secret
// it never learns, so the routes are unauthenticated (the new device has
// no account yet) and limited instead: per IP by instrument, in body size,
// in number and total size of mailboxes, in mailboxes per IP, and in time
// (protocol.LinkLifetime).
//
// Each mailbox takes one write in its life: a second write, even after the
// first was taken, is refused, so that a device that scanned a code after
// someone else used it learns so instead of waiting in vain. Taking a
// message deletes it.
//
// The mailboxes live in this node's memory. In a cluster (the scale-out
// issue) the new device and the existing one may reach different nodes, so
// the mailboxes must move to the shared store (with a notification for the
// long poll, as for queues) before linking works behind a load balancer.
const (
	provisionMaxBody  = 16 << 10         // per message; a genuine one is at most protocol.MaxLinkMessageSize
	provisionMaxBoxes = 10_000           // mailboxes alive at once, taken ones included
	provisionMaxBytes = 32 << 20         // bytes held in all mailboxes together
	provisionMaxPerIP = 64               // mailboxes alive at once written from one client IP
	provisionMaxWait  = 30 * time.Second // longest long poll of a take
)

type provisionBox struct {
	body    []byte // nil once taken
	taken   bool
	expires time.Time
	ip      netip.Addr
}

// provisioning is one node's table of mailboxes and of the long polls
// waiting on them.
type provisioning struct {
	s *Server

	mu      sync.Mutex
	boxes   map[protocol.LinkMailbox]*provisionBox
	bytes   int
	perIP   map[netip.Addr]int
	waiters map[protocol.LinkMailbox]map[chan struct{}]struct{}
}

// newProvisioning makes the table and starts its sweeper, which deletes
// expired mailboxes every SweepInterval until the server drains.
func (s *Server) newProvisioning() *provisioning {
	return &provisioning{
		s:       s,
		boxes:   map[protocol.LinkMailbox]*provisionBox{},
		perIP:   map[netip.Addr]int{},
		waiters: map[protocol.LinkMailbox]map[chan struct{}]struct{}{},
	}
}

// removeLocked deletes a mailbox and gives back what it counted for.
func (p *provisioning) removeLocked(m protocol.LinkMailbox, b *provisionBox) {
	clear(b.body)
	p.bytes -= len(b.body)
	if p.perIP[b.ip]--; p.perIP[b.ip] <= 0 {
		delete(p.perIP, b.ip)
	}
	delete(p.boxes, m)
}

// sweep deletes the mailboxes whose lifetime has ended.
func (p *provisioning) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for m, b := range p.boxes {
		if !now.Before(b.expires) {
			p.removeLocked(m, b)
		}
	}
}

// clear forgets every mailbox: at shutdown, nothing is kept.
func (p *provisioning) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for m, b := range p.boxes {
		p.removeLocked(m, b)
	}
}

// put stores the one message of a mailbox and wakes its long polls.
func (p *provisioning) put(m protocol.LinkMailbox, body []byte, ip netip.Addr, now time.Time) *api.Error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.boxes[m]; b != nil {
		if now.Before(b.expires) {
			return api.ErrExists.With("this provisioning mailbox was already written; a link code works once")
		}
		p.removeLocked(m, b)
	}
	if len(p.boxes) >= provisionMaxBoxes || p.bytes+len(body) > provisionMaxBytes {
		return api.ErrUnavailable.With("too many device links in progress on this server")
	}
	if p.perIP[ip] >= provisionMaxPerIP {
		return api.ErrRateLimited.With("too many device links in progress from this address")
	}
	p.boxes[m] = &provisionBox{body: body, expires: now.Add(protocol.LinkLifetime), ip: ip}
	p.bytes += len(body)
	p.perIP[ip]++
	for ch := range p.waiters[m] {
		close(ch)
	}
	delete(p.waiters, m)
	return nil
}

// take returns and deletes a mailbox's message. gone is true when the
// message was already taken: no point waiting for it.
func (p *provisioning) take(m protocol.LinkMailbox, now time.Time) (body []byte, gone bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.boxes[m]
	if b == nil || !now.Before(b.expires) {
		return nil, false
	}
	if b.taken {
		return nil, true
	}
	body, b.body, b.taken = b.body, nil, true
	p.bytes -= len(body)
	return body, false
}

// wait registers a long poll on a mailbox: ch is closed when a message
// is put in it. cancel unregisters it.
func (p *provisioning) wait(m protocol.LinkMailbox) (ch chan struct{}, cancel func()) {
	ch = make(chan struct{})
	p.mu.Lock()
	if p.waiters[m] == nil {
		p.waiters[m] = map[chan struct{}]struct{}{}
	}
	p.waiters[m][ch] = struct{}{}
	p.mu.Unlock()
	return ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if w := p.waiters[m]; w != nil {
			delete(w, ch)
			if len(w) == 0 {
				delete(p.waiters, m)
			}
		}
	}
}

// handlePut serves PUT /v1/provision/{mailbox}: the body is one sealed
// provisioning message.
func (p *provisioning) handlePut(w http.ResponseWriter, r *http.Request) {
	m, err := protocol.ParseLinkMailbox(r.PathValue("mailbox"))
	if err != nil {
		writeError(w, api.ErrMalformed.With("%v", detail(err, protocol.ErrMalformed)))
		return
	}
	body, aerr := readBody(w, r, provisionMaxBody)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if err := protocol.CheckLinkMessage(body); err != nil {
		writeError(w, protocolError(err, api.ErrMalformed))
		return
	}
	if aerr := p.put(m, body, p.s.clientIP(r), p.s.opts.Now()); aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, api.OK{OK: true})
}

// handleTake serves POST /v1/provision/{mailbox}/take[?wait=ms]: the
// mailbox's message, deleted as it is returned; with a wait (at most 30 s)
// the request is held until a message arrives. Nothing there is 404.
func (p *provisioning) handleTake(w http.ResponseWriter, r *http.Request) {
	m, err := protocol.ParseLinkMailbox(r.PathValue("mailbox"))
	if err != nil {
		writeError(w, api.ErrMalformed.With("%v", detail(err, protocol.ErrMalformed)))
		return
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			writeError(w, api.ErrMalformed.With("wait must be a number of milliseconds, got %q", v))
			return
		}
		wait = time.Duration(min(ms, provisionMaxWait.Milliseconds())) * time.Millisecond
	}
	var woken chan struct{}
	cancel := func() {}
	defer func() { cancel() }()
	if wait > 0 {
		woken, cancel = p.wait(m)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		body, gone := p.take(m, p.s.opts.Now())
		if body != nil {
			w.Header().Set("Content-Type", api.ContentBlob)
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body)
			clear(body)
			return
		}
		if gone {
			writeError(w, api.ErrNotFound.With("the message in this provisioning mailbox was already taken"))
			return
		}
		if wait <= 0 {
			writeError(w, api.ErrNotFound.With("nothing in this provisioning mailbox yet"))
			return
		}
		select {
		case <-woken:
			// A message was put (or the mailbox was written and taken
			// meanwhile): look again, and wait again if need be.
			cancel()
			woken, cancel = p.wait(m)
		case <-timer.C:
			wait = 0
		case <-r.Context().Done():
			writeError(w, api.ErrUnavailable.With("request ended"))
			return
		case <-p.s.ctx.Done():
			writeError(w, api.ErrShuttingDown)
			return
		}
	}
}
