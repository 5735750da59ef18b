package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// tcpProxy forwards connections to a target until it is cut: then it
// closes every connection and refuses new ones, as an unreachable database
// would look to its clients, until it is restored.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	return p
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close(); c.Close() }()
		go func() { io.Copy(c, up); up.Close(); c.Close() }()
	}
}

func (p *tcpProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// When PostgreSQL is unreachable, requests that need it fail with a clear
// 503 and the node says it is not ready; nothing acknowledged before is
// lost; when it comes back, the nodes recover by themselves.
func TestClusterPostgresOutage(t *testing.T) {
	base := testEnv(t, envPostgres)
	testEnv(t, envNATS)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	c := newCluster(t, clusterConfig{nodes: 2, dsn: func(dsn string) string {
		v, _ := url.Parse(dsn)
		v.Host = proxy.ln.Addr().String()
		return v.String()
	}})
	alice, bob := c.user(t, 0), c.user(t, 1)
	before := send(t, alice, "queued before the outage", bob)
	if got := statusOf(t, before, bob); got != api.StatusQueued {
		t.Fatalf("before the outage: %s", got)
	}

	proxy.setCut(true)
	ctx := context.Background()
	env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte("during")}, alice.Device().Sender(),
		recipients(bob), protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = alice.Send(sctx, env)
	cancel()
	if !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("send during the outage: got %v, want a 503 (code %d)", err, api.ErrUnavailable.Code)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := c.nodes[0].srv.Ready(rctx); err == nil {
		t.Error("a node without its database says it is ready")
	}
	cancel()

	proxy.setCut(false)
	var after *api.SendResponse
	waitForLong(t, "the nodes to recover", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		after, err = alice.Send(sctx, env)
		return err == nil
	})
	if got := statusOf(t, after, bob); got != api.StatusQueued {
		t.Fatalf("after the outage: %s", got)
	}
	// bob's node recovers too: the first request over a connection that
	// died in the outage may fail with a 503, as a client then retries.
	var inbox *api.InboxResponse
	waitForLong(t, "bob's node to recover", func() bool {
		inbox, err = bob.Inbox(ctx, 10, 0)
		if err != nil && !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("bob's inbox after the outage: %v", err)
		}
		return err == nil
	})
	seen := map[protocol.MessageID]bool{}
	for _, raw := range inbox.Envelopes {
		e, err := protocol.ParseEnvelope(raw)
		if err != nil {
			t.Fatal(err)
		}
		seen[e.ID] = true
	}
	if !seen[before.ID] || !seen[after.ID] {
		t.Fatalf("after recovery bob has %d messages; the one queued before the outage: %v, the one sent after: %v", len(seen), seen[before.ID], seen[after.ID])
	}
}

// waitForLong is waitFor with room for connection pools to reconnect.
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
