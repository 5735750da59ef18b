package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

const (
	defaultInboxLimit = 100
	maxInboxLimit     = 1000
	maxInboxWait      = 30 * time.Second
)

// handleSend routes one envelope: each recipient device's copy goes out at
// once over its live channel if it has one and acknowledges in time, and
// to its queue otherwise. A copy delivered live is never written to disk.
func (s *Server) handleSend(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error) {
	env, err := protocol.ParseEnvelope(req.body)
	if err != nil {
		return nil, protocolError(err, api.ErrBadEnvelope)
	}
	if env.Sender != req.sess.User || env.SenderDevice != req.sess.Device {
		return nil, api.ErrWrongSender
	}
	now := s.opts.Now()
	if env.Sent.After(now.Add(protocol.MaxClockSkew)) {
		return nil, api.ErrClockSkew.With("send time is %s ahead of the server's clock", env.Sent.Sub(now).Round(time.Second))
	}
	// Expiry counts from the send time, and the server never holds a
	// message for more than MaxTTL from now, whatever the envelope says.
	expires := env.Expires()
	if limit := now.Add(protocol.MaxTTL); expires.After(limit) {
		expires = limit
	}
	if !now.Before(expires) {
		return nil, api.ErrBadTTL.With("message expired before it reached the server")
	}

	results := make([]api.DeviceResult, len(env.Devices))
	valid, aerr := s.recipientDevices(ctx, env)
	if aerr != nil {
		return nil, aerr
	}
	type pending struct {
		i     int
		conn  *liveConn
		acked <-chan struct{}
	}
	var live []pending
	var toQueue, remote []int
	for i, d := range env.Devices {
		results[i] = api.DeviceResult{User: d.User, Device: d.Device}
		if d.User == env.Sender && d.Device == env.SenderDevice {
			// The sender sealed a copy for itself, to keep: nothing to route.
			results[i].Status = api.StatusSelf
			continue
		}
		if !valid[i] {
			results[i].Status, results[i].Code, results[i].Reason = api.StatusRejected, api.ErrDeviceUnknown.Code, "unknown or revoked device"
			s.metrics.deliveryRejected.Inc()
			continue
		}
		if c := s.hub.conn(deviceKey{d.User, d.Device}); c != nil {
			if acked, ok := c.deliver(env.ID, env.For(i)); ok {
				live = append(live, pending{i, c, acked})
				continue
			}
		} else if s.bus != nil {
			// Not here: perhaps on another node.
			remote = append(remote, i)
			continue
		}
		toQueue = append(toQueue, i)
	}
	var remoteDone <-chan remoteOffer
	if len(remote) > 0 {
		remoteDone = s.offerRemote(ctx, env, remote)
	}

	// Wait for the live acknowledgements together, against one deadline.
	if len(live) > 0 {
		deadline := time.NewTimer(s.opts.AckTimeout)
		defer deadline.Stop()
		for _, p := range live {
			select {
			case <-p.acked:
				results[p.i].Status = api.StatusDelivered
				s.metrics.deliveredLive.Inc()
				continue
			case <-deadline.C:
			case <-ctx.Done():
			}
			// Not acknowledged in time: stop waiting for every copy left.
			for _, q := range live {
				if results[q.i].Status == "" {
					select {
					case <-q.acked:
						results[q.i].Status = api.StatusDelivered
						s.metrics.deliveredLive.Inc()
					default:
						q.conn.forget(env.ID)
						toQueue = append(toQueue, q.i)
					}
				}
			}
			break
		}
	}

	if len(remote) > 0 {
		toQueue = append(toQueue, s.collectRemote(remoteDone, len(remote), results)...)
	}

	if aerr := s.enqueue(ctx, env, expires, toQueue, results); aerr != nil {
		return nil, aerr
	}
	return marshal(api.SendResponse{ID: env.ID, Expires: expires.UnixMilli(), Results: results}), nil
}

// recipientDevices reports which of the envelope's devices exist, are not
// revoked and belong to a recipient: one device-list lookup per recipient
// user, from the cache when it can (see deviceCache).
func (s *Server) recipientDevices(ctx context.Context, env *protocol.Envelope) ([]bool, *api.Error) {
	valid := make([]bool, len(env.Devices))
	for i := 0; i < len(env.Devices); {
		u := env.Devices[i].User
		j := i + 1
		for j < len(env.Devices) && env.Devices[j].User == u {
			j++
		}
		if err := s.activeDevices(ctx, u, env.Devices[i:j], valid[i:j]); err != nil {
			return nil, s.storeError("reading devices", err)
		}
		i = j
	}
	return valid, nil
}

// enqueue stores the copies for the devices listed in idx, together with
// other senders' messages (group commit), then wakes their channels. A
// copy is answered "queued" only once it is on disk.
func (s *Server) enqueue(ctx context.Context, env *protocol.Envelope, expires time.Time, idx []int, results []api.DeviceResult) *api.Error {
	if len(idx) == 0 {
		return nil
	}
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for j, i := range idx {
		m := store.QueuedMessage{User: env.Devices[i].User, Device: env.Devices[i].Device, ID: env.ID, Envelope: env.For(i), Expires: expires}
		if len(idx) == 1 {
			errs[j] = s.queue.Enqueue(ctx, m)
			break
		}
		wg.Go(func() { errs[j] = s.queue.Enqueue(ctx, m) })
	}
	wg.Wait()
	for j, i := range idx {
		if errs[j] != nil {
			return s.storeError("queueing", errs[j])
		}
		results[i].Status = api.StatusQueued
		s.metrics.deliveredQueued.Inc()
		k := deviceKey{env.Devices[i].User, env.Devices[i].Device}
		s.hub.wake(k)
		s.wakeCluster(k)
	}
	return nil
}

// handleInbox returns the caller's queued messages; with a wait, it holds
// the request until something is queued (long poll).
func (s *Server) handleInbox(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error) {
	var in api.InboxRequest
	if len(req.body) > 0 {
		if aerr := decodeJSON(req.body, &in); aerr != nil {
			return nil, aerr
		}
	}
	limit := in.Limit
	if limit <= 0 {
		limit = defaultInboxLimit
	}
	limit = min(limit, maxInboxLimit)
	wait := min(time.Duration(in.WaitMillis)*time.Millisecond, maxInboxWait)
	k := deviceKey{req.sess.User, req.sess.Device}
	var woken chan struct{}
	if wait > 0 {
		var cancel func()
		woken, cancel = s.hub.wait(k)
		defer cancel()
		defer s.watchQueue(k)()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		msgs, err := s.opts.Store.Pending(ctx, k.user, k.device, s.opts.Now(), limit+1)
		if err != nil {
			return nil, s.storeError("reading queue", err)
		}
		if len(msgs) > 0 || wait <= 0 {
			out := api.InboxResponse{Envelopes: make([][]byte, 0, len(msgs)), More: len(msgs) > limit}
			for _, m := range msgs[:min(len(msgs), limit)] {
				out.Envelopes = append(out.Envelopes, m.Envelope)
			}
			return marshal(out), nil
		}
		select {
		case <-woken:
		case <-timer.C:
			wait = 0
		case <-ctx.Done():
			return nil, api.ErrUnavailable.With("request ended")
		case <-s.ctx.Done():
			return nil, api.ErrShuttingDown
		}
	}
}

// handleAck deletes acknowledged messages from the caller's queue. IDs
// that are not queued (any more) are ignored: acknowledging is idempotent.
func (s *Server) handleAck(ctx context.Context, r *http.Request, req *authRequest) ([]byte, *api.Error) {
	var in api.AckRequest
	if aerr := decodeJSON(req.body, &in); aerr != nil {
		return nil, aerr
	}
	if len(in.IDs) > maxInboxLimit {
		return nil, api.ErrTooLarge.With("at most %d IDs per acknowledgement", maxInboxLimit)
	}
	refs := make([]store.MessageRef, 0, len(in.IDs))
	for _, id := range in.IDs {
		if id.IsZero() {
			continue // never queued
		}
		refs = append(refs, store.MessageRef{User: req.sess.User, Device: req.sess.Device, ID: id})
	}
	// One transaction for the request's IDs, shared with other devices'
	// acknowledgements (group commit).
	if err := s.acks.Ack(ctx, refs); err != nil {
		return nil, s.storeError("acknowledging", err)
	}
	return marshal(api.OK{OK: true}), nil
}
