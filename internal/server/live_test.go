package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/server"
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
