package server_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/protocol"
)

// The live channel reads the queue by cursor, but a message queued later
// can have a smaller place in it than the cursor: SQLite gives the newest
// row's sequence number again once that row is deleted. A wake reads the
// queue from its start, so such a message is pushed all the same.
func TestLiveQueuedBehindCursor(t *testing.T) {
	ts := newTestServer(t, func(o *server.Options) { o.AckTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	alice, bob, carol := ts.newUser(t), ts.newUser(t), ts.newUser(t)
	// Carol is offline with one message queued: the lowest row.
	if _, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, "for carol", carol)); err != nil {
		t.Fatal(err)
	}
	live, err := bob.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if ev, err := live.Next(ctx); err != nil || ev.Type != client.EventDrained {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	// next returns the ID of the next envelope bob gets.
	next := func() protocol.MessageID {
		t.Helper()
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			ev, err := live.Next(nctx)
			if err != nil {
				t.Fatalf("live channel: %v", err)
			}
			if ev.Type != client.EventEnvelope {
				continue
			}
			env, err := protocol.ParseEnvelope(ev.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			return env.ID
		}
	}
	// sendUnacked sends to bob, who does not acknowledge in time: the
	// message is queued (the newest row) and pushed again from the queue.
	sendUnacked := func(body string) protocol.MessageID {
		t.Helper()
		resp, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, body, bob))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Results[0].Status != api.StatusQueued {
			t.Fatalf("unacknowledged live delivery: %+v", resp.Results)
		}
		if id := next(); id != resp.ID { // the live push
			t.Fatalf("live push: %s, want %s", id, resp.ID)
		}
		if id := next(); id != resp.ID { // the queued copy
			t.Fatalf("queued push: %s, want %s", id, resp.ID)
		}
		return resp.ID
	}
	first := sendUnacked("one")
	// Acknowledged: the newest row goes, and the next one takes its number.
	if err := live.Ack(ctx, first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the acknowledgement to delete bob's message", func() bool {
		n, _ := ts.store.QueueDepth(ctx)
		return n == 1
	})
	second := sendUnacked("two")
	if err := live.Ack(ctx, second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue to hold carol's message only", func() bool {
		n, _ := ts.store.QueueDepth(ctx)
		return n == 1
	})
}

// A device with a deep queue gets it in order, but at most 512 pushes
// wait for their acknowledgement at a time: the server does not hold the
// whole queue in memory for a device that does not acknowledge.
func TestLiveDrainBoundedByAcks(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	bob := ts.newUser(t)
	const total, bound = 700, 512
	msgs := make([]store.QueuedMessage, total)
	for i := range msgs {
		// Opaque to the server: the envelope bytes name their place.
		msgs[i] = store.QueuedMessage{User: bob.Device().User, Device: bob.Device().ID, ID: protocol.NewMessageID(),
			Envelope: []byte{byte(i >> 8), byte(i)}, Expires: ts.clock.Now().Add(time.Hour)}
	}
	if err := ts.store.Enqueue(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	live, err := bob.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	// A read whose context ends closes the channel: read in a goroutine.
	events := make(chan client.Event, total+10)
	go func() {
		defer close(events)
		for {
			ev, err := live.Next(ctx)
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	got := 0
	nextEnvelope := func(wait time.Duration) (client.Event, bool) {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("live channel ended")
			}
			if ev.Type == client.EventEnvelope {
				if want := []byte{byte(got >> 8), byte(got)}; !bytes.Equal(ev.Envelope, want) {
					t.Fatalf("push %d is %x, want %x: out of order", got, ev.Envelope, want)
				}
				got++
			}
			return ev, true
		case <-time.After(wait):
			return client.Event{}, false
		}
	}
	for got < bound {
		if ev, ok := nextEnvelope(10 * time.Second); !ok || ev.Type != client.EventEnvelope {
			t.Fatalf("after %d pushes: %+v, %v", got, ev, ok)
		}
	}
	// Nothing acknowledged: no more pushes.
	if ev, ok := nextEnvelope(300 * time.Millisecond); ok {
		t.Fatalf("push beyond %d unacknowledged: %+v", bound, ev)
	}
	// Acknowledged: the rest comes, then the end of the queue.
	for i := 0; i < bound; i += 100 {
		var ids []protocol.MessageID
		for _, m := range msgs[i:min(i+100, bound)] {
			ids = append(ids, m.ID)
		}
		if err := live.Ack(ctx, ids...); err != nil {
			t.Fatal(err)
		}
	}
	for {
		ev, ok := nextEnvelope(10 * time.Second)
		if !ok {
			t.Fatalf("stalled after %d pushes", got)
		}
		if ev.Type == client.EventDrained {
			break
		}
	}
	if got != total {
		t.Fatalf("%d pushes before the end of the queue, want %d", got, total)
	}
	var ids []protocol.MessageID
	for _, m := range msgs[bound:] {
		ids = append(ids, m.ID)
	}
	if err := live.Ack(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every acknowledged message to be deleted", func() bool {
		n, _ := ts.store.QueueDepth(ctx)
		return n == 0
	})
}

// An acknowledgement frame may name IDs the server does not hold: they
// are ignored (docs/PROTOCOL.md, "ack"), as POST /v1/ack ignores them. The
// zero ID is one such: it must not end the channel nor lose the frame's
// other acknowledgements.
func TestLiveAckZeroIDIgnored(t *testing.T) {
	ts := newTestServer(t, func(o *server.Options) { o.AckTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	alice, bob := ts.newUser(t), ts.newUser(t)
	resp, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, "queued", bob))
	if err != nil {
		t.Fatal(err)
	}
	live, err := bob.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if ev, err := live.Next(nctx); err != nil || ev.Type != client.EventEnvelope {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	if err := live.Ack(ctx, protocol.MessageID{}, resp.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the acknowledgement to delete bob's message", func() bool {
		n, _ := ts.store.QueueDepth(ctx)
		return n == 0
	})
	// The channel is still open: after the drained marker, a new message
	// is pushed on it.
	if ev, err := live.Next(nctx); err != nil || ev.Type != client.EventDrained {
		t.Fatalf("after the ack: %+v %v", ev, err)
	}
	if _, err := alice.Send(ctx, seal(t, alice, ts.clock.Now(), time.Hour, "later", bob)); err != nil {
		t.Fatal(err)
	}
	if ev, err := live.Next(nctx); err != nil || ev.Type != client.EventEnvelope {
		t.Fatalf("a message sent after the ack: %+v %v", ev, err)
	}
}
