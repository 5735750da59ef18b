package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// Linking a new device by QR code. The existing device calls StartLink
// and shows Link.Code; the new device scans it and calls JoinLink; the
// existing device calls Link.Complete, which certifies the new device with
// the identity key. The two messages go through the server encrypted
// under the code's secret, which the server never sees: it cannot read the
// identity key, nor have a device of its own certified.
//
// Whoever sees a code can use it, once, for 10 minutes
// (protocol.LinkLifetime): show it only to the new device, and check the
// device that Complete reports.

// Errors of linking.
var (
	// ErrLinkExpired: the 10 minutes a link code is good for have passed.
	ErrLinkExpired = errors.New("the link code expired (a code is good for 10 minutes)")
	// ErrLinkUsed: another device already used the link code (a code works
	// once).
	ErrLinkUsed = errors.New("the link code was already used")
	// ErrLinkFailed: the other side's message was not a valid answer.
	ErrLinkFailed = errors.New("device link failed")
)

// provisionPoll is how long one take waits on the server (it allows 30 s).
const provisionPoll = 25 * time.Second

// A Link is a device link in progress on the existing device.
type Link struct {
	c       *Conn
	code    protocol.LinkCode
	uri     string
	expires time.Time // on the Conn's clock

	mu   sync.Mutex
	used bool
}

// StartLink begins linking a new device to the Conn's user: it makes a
// link code (fresh mailbox and secret) and checks that the server relays
// device links. Show Code to the new device, then call Complete.
func (c *Conn) StartLink(ctx context.Context) (*Link, error) {
	if c.dev.Identity == nil {
		return nil, errors.New("linking a device needs the identity key, which this device does not hold")
	}
	code, err := protocol.NewLinkCode(c.opts.Server, c.opts.ServerFP, c.dev.User)
	if err != nil {
		return nil, err
	}
	// The request mailbox is empty: a take answers 404 "not found" on a
	// server that has provisioning, and "no such route" on one without.
	_, err = provisionTake(ctx, &c.opts, code.RequestMailbox(), 0)
	if errors.Is(err, api.ErrNoRoute) {
		return nil, fmt.Errorf("this server cannot link devices (it predates device linking; ask its operator to upgrade qrtalkd): %w", err)
	}
	if err != nil && !errors.Is(err, api.ErrNotFound) {
		return nil, fmt.Errorf("starting a device link: %w", err)
	}
	return &Link{c: c, code: code, uri: code.URI(), expires: c.opts.Now().Add(protocol.LinkLifetime)}, nil
}

// Code returns the link code to show to the new device, as text or as a
// QR code. It holds the link's secret: show it only to that device, and
// never log it.
func (l *Link) Code() string { return l.uri }

// Expires returns when the code stops working (on the Conn's clock).
func (l *Link) Expires() time.Time { return l.expires }

// Complete waits for the new device's request (until the code expires or
// ctx ends), certifies the new device with the identity key, registers it
// with the server, and sends it the identity key and its certificate. It
// returns the new device's certificate: show its device ID, so that the
// user sees which device was linked. A link completes once.
func (l *Link) Complete(ctx context.Context) (*protocol.DeviceCert, error) {
	l.mu.Lock()
	if l.used {
		l.mu.Unlock()
		return nil, errors.New("this device link was already completed or attempted; start a new one")
	}
	l.used = true
	l.mu.Unlock()

	c := l.c
	ctx, cancel := linkDeadline(ctx, l.expires.Sub(c.opts.Now()))
	defer cancel()
	msg, err := provisionAwait(ctx, &c.opts, l.code.RequestMailbox())
	if err != nil {
		return nil, fmt.Errorf("waiting for the new device: %w", err)
	}
	req, err := protocol.OpenLinkRequest(l.code, msg)
	if err != nil {
		return nil, fmt.Errorf("%w: the request that arrived was not made with this link code (%v); start a new link", ErrLinkFailed, err)
	}
	cert, err := protocol.CertifyDevice(c.dev.Identity, c.dev.User, req.Device, req.EncryptionKey, req.AuthKey, c.opts.Now())
	if err != nil {
		return nil, err
	}
	if err := c.AddDevice(ctx, cert); err != nil {
		return nil, fmt.Errorf("registering the new device %s: %w", req.Device, err)
	}
	sealed, err := protocol.SealLinkResponse(l.code, req, protocol.LinkResponse{User: c.dev.User, Identity: c.dev.Identity, Cert: cert})
	if err != nil {
		return nil, err
	}
	if err := provisionPut(ctx, &c.opts, l.code.ResponseMailbox(), sealed); err != nil {
		return nil, fmt.Errorf("answering the new device %s (it is registered: revoke it if it never comes up): %w", req.Device, err)
	}
	return cert, nil
}

// JoinLink makes this a new device of the user whose existing device
// shows code. The server's URL and key fingerprint come from the code and
// are pinned (opts may leave them empty; if set, they must agree). now is
// when the code was scanned, on opts' clock: the join gives up when the
// code's 10 minutes from then have passed, or when ctx ends.
//
// It generates the device's two keys, sends them encrypted under the
// code's secret, waits for the existing device's answer and checks it:
// the certificate must be signed by the identity key that comes with it,
// for this device and exactly its keys. Last, it asks the server for the
// user's devices, as the new device, to check that the server holds the
// same identity key and lists this device.
func JoinLink(ctx context.Context, code string, opts Options, now time.Time) (*Device, *Conn, error) {
	lc, err := protocol.ParseLinkCode(code)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the link code: %w", err)
	}
	if opts.Server != "" {
		if s, err := protocol.CheckServerURL(opts.Server); err != nil || s != lc.Server {
			return nil, nil, fmt.Errorf("the link code is for server %s, not %s", lc.Server, opts.Server)
		}
	}
	if opts.ServerFP != (protocol.Fingerprint{}) && !opts.ServerFP.Equal(lc.ServerFP) {
		return nil, nil, fmt.Errorf("%w: the link code pins another server key than the one given", ErrServerKey)
	}
	opts.Server, opts.ServerFP = lc.Server, lc.ServerFP
	if err := opts.setDefaults(); err != nil {
		return nil, nil, err
	}
	remaining := now.Add(protocol.LinkLifetime).Sub(opts.Now())
	if remaining <= 0 {
		return nil, nil, fmt.Errorf("%w: scan a new code on your other device", ErrLinkExpired)
	}
	ctx, cancel := linkDeadline(ctx, remaining)
	defer cancel()

	info, key, err := fetchInfo(ctx, &opts)
	if err != nil {
		return nil, nil, err
	}
	enc, err := protocol.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	auth, err := protocol.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	req := protocol.LinkRequest{Device: protocol.NewDeviceID(), EncryptionKey: enc.Public(), AuthKey: auth.Public()}
	sealed, err := protocol.SealLinkRequest(lc, req)
	if err != nil {
		return nil, nil, err
	}
	err = provisionPut(ctx, &opts, lc.RequestMailbox(), sealed)
	if errors.Is(err, api.ErrExists) {
		return nil, nil, fmt.Errorf("%w by another device. If that was not you, list the devices on your other device and revoke the one you do not know; then link again with a new code", ErrLinkUsed)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sending the link request: %w", err)
	}
	msg, err := provisionAwait(ctx, &opts, lc.ResponseMailbox())
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for your other device to confirm: %w", err)
	}
	resp, err := protocol.OpenLinkResponse(lc, &req, msg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the answer is not valid (%v); link again with a new code", ErrLinkFailed, err)
	}
	dev := &Device{User: resp.User, ID: req.Device, Identity: resp.Identity, Enc: enc, Auth: auth, Cert: resp.Cert}
	conn := &Conn{opts: opts, dev: dev, serverKey: key, info: *info}
	certs, err := conn.Devices(ctx, dev.User, dev.Identity.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("checking the new device with the server: %w", err)
	}
	for _, c := range certs {
		if c.Device == dev.ID && bytes.Equal(c.Bytes(), dev.Cert.Bytes()) {
			return dev, conn, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: the server does not list this device under the user's identity key", ErrLinkFailed)
}

// linkDeadline bounds ctx by what is left of a link code's life.
func linkDeadline(ctx context.Context, remaining time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, max(remaining, 0), ErrLinkExpired)
}

// provisionAwait long-polls a mailbox until its message arrives or ctx
// ends.
func provisionAwait(ctx context.Context, opts *Options, m protocol.LinkMailbox) ([]byte, error) {
	for {
		start := time.Now()
		msg, err := provisionTake(ctx, opts, m, provisionPoll)
		switch {
		case err == nil:
			return msg, nil
		case ctx.Err() != nil:
			if errors.Is(context.Cause(ctx), ErrLinkExpired) {
				return nil, fmt.Errorf("%w: no answer came in time; start a new link", ErrLinkExpired)
			}
			return nil, context.Cause(ctx)
		case errors.Is(err, api.ErrNotFound):
			// The server answers at the end of the wait when nothing came;
			// at once only when the message was there and taken by another.
			if time.Since(start) < provisionPoll/2 {
				return nil, fmt.Errorf("%w: the message was taken by someone else; start a new link", ErrLinkUsed)
			}
		case errors.Is(err, api.ErrRateLimited):
			select {
			case <-time.After(2 * time.Second):
			case <-ctx.Done():
			}
		default:
			return nil, err
		}
	}
}

// provisionPut writes a sealed provisioning message to a mailbox.
func provisionPut(ctx context.Context, opts *Options, m protocol.LinkMailbox, msg []byte) error {
	_, err := provisionDo(ctx, opts, http.MethodPut, "/v1/provision/"+m.String(), msg)
	return err
}

// provisionTake takes a mailbox's message, waiting up to wait for it.
func provisionTake(ctx context.Context, opts *Options, m protocol.LinkMailbox, wait time.Duration) ([]byte, error) {
	path := "/v1/provision/" + m.String() + "/take"
	if wait > 0 {
		path += "?wait=" + strconv.FormatInt(wait.Milliseconds(), 10)
	}
	return provisionDo(ctx, opts, http.MethodPost, path, nil)
}

func provisionDo(ctx context.Context, opts *Options, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, opts.Server+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", api.ContentBlob)
	}
	resp, err := opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxLinkMessageSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp, data)
	}
	if method == http.MethodPut {
		return nil, nil
	}
	if len(data) > protocol.MaxLinkMessageSize {
		return nil, fmt.Errorf("%w: the server returned more than a provisioning message", protocol.ErrTooLarge)
	}
	return data, nil
}
