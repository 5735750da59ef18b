// Package client is the QRTalk Go SDK: what a bot, a script or another
// program imports to talk to a qrtalkd server as one device.
//
// A Conn carries requests over HTTPS and, inside it, the secure channel
// of package protocol: it sets up a session when it needs one, renews it
// before it ends and again whenever the server has forgotten it (after a
// restart), and retries the request once. A renewal resumes the session
// with the ticket the server gave with the last one (no RSA on either
// side), and falls back to a full setup when the server refuses it. TLS
// sessions are resumed too (a session cache in the TLS configuration).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// Options say which server to talk to and how.
type Options struct {
	// Server is the server's https URL, as in an invite.
	Server string
	// ServerFP is the server key's fingerprint, pinned from an invite. The
	// server must prove it holds that key before anything is sent.
	ServerFP protocol.Fingerprint
	// HTTPClient is used for requests; nil means one whose TLS accepts the
	// server's self-signed certificate only if its key is the pinned one
	// (and any certificate a system root vouches for).
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tickets, when set, keeps the device's session-resumption ticket
	// across Conns and restarts, so that a restarted device resumes its
	// session instead of setting up a new one (an RSA operation on each
	// side). Nil: the ticket lives in the Conn only.
	Tickets TicketStore
}

// A TicketStore keeps one device's resumption ticket. The ticket holds a
// secret that lets the device resume as itself for up to a day: keep it
// where the device's keys are kept. Errors are the store's to handle: at
// worst, the device sets up a full session.
type TicketStore interface {
	// LoadTicket returns the saved ticket, or nil.
	LoadTicket() []byte
	// SaveTicket replaces the saved ticket; nil deletes it.
	SaveTicket(ticket []byte)
}

func (o *Options) setDefaults() error {
	u, err := protocol.CheckServerURL(o.Server)
	if err != nil {
		return err
	}
	o.Server = u
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: &http.Transport{
			TLSClientConfig:     PinnedTLSConfig(o.ServerFP),
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// PinnedTLSConfig returns a TLS configuration that accepts a server whose
// certificate a system root vouches for, or whose leaf certificate's key
// is the server key with fingerprint fp (qrtalkd's self-signed default).
//
// Its client session cache lets new connections resume an earlier TLS
// session (no certificate signature for the server to make). A resumed
// connection is pinned all the same: crypto/tls calls VerifyConnection on
// resumptions too, with the certificates of the original handshake.
func PinnedTLSConfig(fp protocol.Fingerprint) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(tlsSessionCacheSize),
		InsecureSkipVerify: true, // verified below, by pin or by roots
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("qrtalk: server sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if der, err := x509.MarshalPKIXPublicKey(leaf.PublicKey); err == nil {
				if k, err := protocol.ParsePublicKey(der); err == nil && protocol.ServerFingerprint(k).Equal(fp) {
					return nil
				}
			}
			opts := x509.VerifyOptions{DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := leaf.Verify(opts); err != nil {
				return fmt.Errorf("qrtalk: server certificate is neither pinned nor trusted: %w", err)
			}
			return nil
		},
	}
}

// tlsSessionCacheSize: one Conn talks to one server; a few tickets cover
// its parallel connections.
const tlsSessionCacheSize = 32

// A Conn is one device's connection to its server. It is safe for
// concurrent use.
type Conn struct {
	opts      Options
	dev       *Device
	serverKey *protocol.PublicKey
	info      api.Info

	mu           sync.Mutex
	sess         *protocol.ClientSession
	ticket       *protocol.Ticket // to resume with; nil: a full setup next
	ticketLoaded bool             // opts.Tickets was read
}

// Dial fetches the server's description, checks that its key is the pinned
// one and returns a Conn for the device. It sets up no session yet.
func Dial(ctx context.Context, opts Options, dev *Device) (*Conn, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	info, key, err := fetchInfo(ctx, &opts)
	if err != nil {
		return nil, err
	}
	return &Conn{opts: opts, dev: dev, serverKey: key, info: *info}, nil
}

// fetchInfo reads GET /v1/info and checks the server key against the pin.
func fetchInfo(ctx context.Context, opts *Options) (*api.Info, *protocol.PublicKey, error) {
	var info api.Info
	if err := plainCall(ctx, opts, http.MethodGet, "/v1/info", nil, &info); err != nil {
		return nil, nil, fmt.Errorf("reading server info: %w", err)
	}
	key, err := protocol.ParsePublicKey(info.ServerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("server key: %w", err)
	}
	if !protocol.ServerFingerprint(key).Equal(opts.ServerFP) {
		return nil, nil, fmt.Errorf("%w: the server's key is not the one pinned (its fingerprint is %s)", ErrServerKey, protocol.ServerFingerprint(key))
	}
	return &info, key, nil
}

// ErrServerKey: the server's key is not the pinned one. Do not go on.
var ErrServerKey = errors.New("server key mismatch")

// Info returns the server description read by Dial.
func (c *Conn) Info() api.Info { return c.info }

// Device returns the device the Conn speaks for.
func (c *Conn) Device() *Device { return c.dev }

// plainCall makes an unauthenticated JSON request.
func plainCall(ctx context.Context, opts *Options, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, opts.Server+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", api.ContentJSON)
	}
	resp, err := opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return apiError(resp, data)
	}
	return json.Unmarshal(data, out)
}

// apiError decodes an error response into an *api.Error.
func apiError(resp *http.Response, data []byte) error {
	var e api.Error
	if strings.HasPrefix(resp.Header.Get("Content-Type"), api.ContentJSON) && json.Unmarshal(data, &e) == nil && e.Code != 0 {
		return &e
	}
	return fmt.Errorf("server answered %s", resp.Status)
}

// session returns a confirmed session with at least a minute left,
// setting one up if needed.
func (c *Conn) session(ctx context.Context, renew bool) (*protocol.ClientSession, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if !renew && c.sess != nil && now.Add(time.Minute).Before(c.sess.Expires()) {
		return c.sess, nil
	}
	c.loadTicket()
	if t := c.ticket; t != nil {
		// A ticket is good for one resume that the server answers.
		c.setTicket(nil)
		if now.Add(time.Minute).Before(t.Expires) {
			saved, _ := t.MarshalBinary()
			sess, err := c.resume(ctx, t, now)
			if err == nil {
				c.sess = sess
				return sess, nil
			}
			var un *unansweredError
			if errors.As(err, &un) || ctx.Err() != nil {
				// No answer (offline, the server restarting): keep
				// the ticket for the next try. If the server did get
				// this resume, the next one is refused as a replay
				// and the device sets up a full session then.
				if rt, perr := protocol.ParseTicket(saved); perr == nil {
					c.setTicket(rt)
				}
				return nil, err
			}
			// Refused (a ticket spent or expired, a server that no
			// longer has the key): set up a full session.
		}
	}
	sess, setup, err := protocol.NewClientSession(c.dev.channelDevice(), c.serverKey, now)
	if err != nil {
		return nil, err
	}
	data, ticket, err := c.postSession(ctx, setup)
	if err != nil {
		return nil, fmt.Errorf("setting up a session: %w", err)
	}
	if err := sess.Confirm(data, c.opts.Now()); err != nil {
		return nil, fmt.Errorf("server did not confirm the session: %w", err)
	}
	c.keepTicket(sess, ticket)
	c.sess = sess
	return sess, nil
}

// forgetSession drops sess if it is still the Conn's session: the server
// no longer knows it, and the next request or Live renews it.
func (c *Conn) forgetSession(sess *protocol.ClientSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == sess {
		c.sess = nil
	}
}

// resume renews the session with ticket t.
func (c *Conn) resume(ctx context.Context, t *protocol.Ticket, now time.Time) (*protocol.ClientSession, error) {
	res, msg, err := protocol.Resume(t, now)
	if err != nil {
		return nil, err
	}
	data, ticket, err := c.postSession(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("resuming the session: %w", err)
	}
	sess, err := res.Finish(data, c.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("server did not confirm the resumed session: %w", err)
	}
	c.keepTicket(sess, ticket)
	return sess, nil
}

// An unansweredError is a request that got no answer from the server: it
// may or may not have arrived.
type unansweredError struct{ err error }

func (e *unansweredError) Error() string { return e.err.Error() }
func (e *unansweredError) Unwrap() error { return e.err }

// postSession sends a setup or resume message and returns the answer and
// the ticket header.
func (c *Conn) postSession(ctx context.Context, msg []byte) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.opts.Server+"/v1/session", bytes.NewReader(msg))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", api.ContentFrame)
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, "", &unansweredError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, "", &unansweredError{err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", apiError(resp, data)
	}
	return data, resp.Header.Get(api.TicketHeader), nil
}

// keepTicket pairs the ticket the server gave with sess, for the next
// renewal. A missing or malformed ticket only means a full setup next time.
func (c *Conn) keepTicket(sess *protocol.ClientSession, header string) {
	var ticket *protocol.Ticket
	if raw, err := base64.RawURLEncoding.DecodeString(header); err == nil && header != "" && len(header) <= 1024 {
		if t, err := sess.Ticket(raw, c.opts.Now()); err == nil {
			ticket = t
		}
	}
	c.setTicket(ticket)
}

// setTicket replaces the Conn's ticket, and the saved one. Called with c.mu.
func (c *Conn) setTicket(t *protocol.Ticket) {
	c.ticket = t
	if c.opts.Tickets == nil {
		return
	}
	var saved []byte
	if t != nil {
		saved, _ = t.MarshalBinary()
	}
	c.opts.Tickets.SaveTicket(saved)
}

// keepTicketsIn makes ts the Conn's ticket store from now on and saves
// the Conn's current ticket there.
func (c *Conn) keepTicketsIn(ts TicketStore) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts.Tickets = ts
	c.ticketLoaded = true // the Conn's own ticket is the newest
	c.setTicket(c.ticket)
}

// loadTicket reads the saved ticket once, if it is the device's and for
// the pinned server. Called with c.mu.
func (c *Conn) loadTicket() {
	if c.ticketLoaded || c.opts.Tickets == nil {
		return
	}
	c.ticketLoaded = true
	t, err := protocol.ParseTicket(c.opts.Tickets.LoadTicket())
	if err == nil && t.User == c.dev.User && t.Device == c.dev.ID && t.Server.Equal(c.opts.ServerFP) && c.ticket == nil {
		c.ticket = t
	}
}

// retryable reports whether an error means "set up a new session and try
// again once".
func retryable(err error) bool {
	return errors.Is(err, api.ErrSessionUnknown)
}

// call makes an authenticated request: body sealed for method and path,
// response opened and, if out is not nil, decoded from JSON.
func (c *Conn) call(ctx context.Context, method, path string, body []byte, out any) error {
	data, err := c.callRaw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Conn) callRaw(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		sess, err := c.session(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		data, err := c.roundTrip(ctx, sess, method, path, body)
		if err != nil && retryable(err) && attempt == 0 {
			continue
		}
		return data, err
	}
}

func (c *Conn) roundTrip(ctx context.Context, sess *protocol.ClientSession, method, path string, body []byte) ([]byte, error) {
	frame, ctr, err := sess.SealRequest(method, path, body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.opts.Server+path, bytes.NewReader(frame))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", api.ContentFrame)
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxFrameSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp, data)
	}
	plain, err := sess.OpenResponse(ctr, method, path, data, c.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("server's answer does not authenticate: %w", err)
	}
	return plain, nil
}

// headerRequest makes a blob request: the sealed frame in a header, the
// body (if any) streamed as it is.
func (c *Conn) headerRequest(ctx context.Context, method, path string, sealed []byte, body io.Reader, size int64) (*http.Response, *protocol.ClientSession, uint64, error) {
	for attempt := 0; ; attempt++ {
		sess, err := c.session(ctx, attempt > 0)
		if err != nil {
			return nil, nil, 0, err
		}
		frame, ctr, err := sess.SealRequest(method, path, sealed)
		if err != nil {
			return nil, nil, 0, err
		}
		req, err := http.NewRequestWithContext(ctx, method, c.opts.Server+path, body)
		if err != nil {
			return nil, nil, 0, err
		}
		req.Header.Set(api.FrameHeader, base64.RawURLEncoding.EncodeToString(frame))
		if body != nil {
			req.ContentLength = size
			req.Header.Set("Content-Type", api.ContentBlob)
		}
		resp, err := c.opts.HTTPClient.Do(req)
		if err != nil {
			return nil, nil, 0, err
		}
		if resp.StatusCode != http.StatusOK {
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			err := apiError(resp, data)
			// A streamed body cannot be sent twice; only a download retries.
			if retryable(err) && attempt == 0 && body == nil {
				continue
			}
			return nil, nil, 0, err
		}
		return resp, sess, ctr, nil
	}
}
