package server_test

// Scale-out mode: several server nodes on one PostgreSQL store and one
// NATS, each with its own TLS listener, and clients on different nodes.
// The tests need QRTALK_TEST_POSTGRES and QRTALK_TEST_NATS; they are
// skipped without them, and fail without them under CI=true.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/bus/natsbus"
	"github.com/qrtalk/qrtalk/internal/server"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/postgres"
	"github.com/qrtalk/qrtalk/internal/store/sqlite"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

const (
	envNATS     = "QRTALK_TEST_NATS"
	envPostgres = "QRTALK_TEST_POSTGRES"
)

// testEnv returns an environment variable the cluster tests need, or
// skips the test when it is not set (fails it under CI=true).
func testEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, and CI=true requires the cluster tests to run", name)
		}
		t.Skipf("cluster tests skipped: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and %s (e.g. nats://127.0.0.1:4222) to run them",
			envPostgres, envNATS)
	}
	return v
}

// clusterEnv returns the PostgreSQL DSN of a fresh schema, dropped at the
// end of the test, and the NATS URL.
func clusterEnv(t testing.TB) (dsn, natsURL string) {
	t.Helper()
	base := testEnv(t, envPostgres)
	natsURL = testEnv(t, envNATS)
	schema := "qrtalk_cluster_" + randomHex(8)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to %s: %v", envPostgres, err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("CREATE SCHEMA: %v", err)
	}
	t.Cleanup(func() {
		// Registered first, so it runs after the nodes have stopped.
		defer admin.Close(context.Background())
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("DROP SCHEMA %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", envPostgres, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), natsURL
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// A node is one server of the cluster: its own store connection pool, bus
// connection, TLS listener and server.
type node struct {
	srv   *server.Server
	ts    *httptest.Server
	ln    *trackingListener
	bus   *natsbus.Bus // nil on a single node
	pg    store.Store  // the node's own connection to the shared database
	store *countingStore
	opts  client.Options

	stopOnce sync.Once
}

type cluster struct {
	nodes   []*node
	key     *protocol.PrivateKey
	prefix  string
	blobDir string // shared by the nodes
}

type clusterConfig struct {
	nodes    int
	single   bool   // one node on SQLite, without a bus (a baseline)
	natsURL  string // default: QRTALK_TEST_NATS
	server   func(i int, o *server.Options)
	natsOpts func(i int, o *natsbus.Options)
	dsn      func(dsn string) string // rewrites the nodes' PostgreSQL DSN (a proxy in between)
}

// newCluster starts cfg.nodes nodes sharing a fresh PostgreSQL schema and
// one NATS, under a subject prefix of the test's own.
func newCluster(t testing.TB, cfg clusterConfig) *cluster {
	t.Helper()
	c := &cluster{key: testkeys.Key(7), prefix: "qrtalktest." + randomHex(6)}
	var dsn, natsURL string
	if cfg.single {
		cfg.nodes = 1
	} else {
		dsn, natsURL = clusterEnv(t)
		if cfg.natsURL != "" {
			natsURL = cfg.natsURL
		}
	}
	// One blob directory for every node, as an NFS mount would be.
	c.blobDir = filepath.Join(t.TempDir(), "blobs")
	for i := range cfg.nodes {
		var st store.Store
		var err error
		if cfg.single {
			st, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "qrtalkd.db"), sqlite.Options{})
		} else {
			d := dsn
			if cfg.dsn != nil {
				d = cfg.dsn(dsn)
			}
			st, err = postgres.Open(context.Background(), d, postgres.Options{})
		}
		if err != nil {
			t.Fatalf("node %d: opening the store: %v", i, err)
		}
		cs := &countingStore{Store: st}
		opts := server.Options{Store: cs, Key: c.key, BlobDir: c.blobDir,
			AckTimeout: 2 * time.Second, BusRecheck: 100 * time.Millisecond,
			IPRate: 10000, IPBurst: 10000, DeviceRate: 10000, DeviceBurst: 10000}
		var b *natsbus.Bus
		if !cfg.single {
			bo := natsbus.Options{URL: natsURL, Prefix: c.prefix, Name: fmt.Sprintf("node%d", i),
				ReconnectWait: 50 * time.Millisecond, PingInterval: time.Second}
			if cfg.natsOpts != nil {
				cfg.natsOpts(i, &bo)
			}
			if b, err = natsbus.Open(bo); err != nil {
				t.Fatalf("node %d: opening the bus: %v", i, err)
			}
			opts.Bus = b
			// What qrtalkd wires on PostgreSQL: the replay cache and the
			// directory limit shared by the nodes.
			pg := st.(*postgres.Store)
			opts.ReplayCache, opts.SharedLimiter = pg.ReplayCache(nil), pg.Limiter()
		}
		if cfg.server != nil {
			cfg.server(i, &opts)
		}
		srv, err := server.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tl := &trackingListener{Listener: ln}
		ts := httptest.NewUnstartedServer(srv.Handler())
		ts.Listener = tl
		ts.TLS = &tls.Config{Certificates: []tls.Certificate{certFor(t, c.key)}}
		ts.StartTLS()
		n := &node{srv: srv, ts: ts, ln: tl, bus: b, pg: st, store: cs,
			opts: client.Options{Server: ts.URL, ServerFP: protocol.ServerFingerprint(c.key.Public())}}
		c.nodes = append(c.nodes, n)
		t.Cleanup(n.stop)
	}
	return c
}

// certFor is selfSigned for benchmarks too.
func certFor(t testing.TB, key *protocol.PrivateKey) tls.Certificate {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(key.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qrtalkd cluster test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.(crypto.Signer).Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// stop shuts the node down in order, as qrtalkd does.
func (n *node) stop() {
	n.stopOnce.Do(func() {
		n.srv.Drain()
		n.ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.srv.Shutdown(ctx)
		if n.bus != nil {
			n.bus.Close()
		}
		n.pg.Close()
	})
}

// kill stops the node as a crash would: its NATS connection and every
// client connection (live channels included) are cut at once, with no
// closing notice, and it forgets what it held in memory.
func (n *node) kill() {
	n.stopOnce.Do(func() {
		n.bus.Close()
		n.ln.closeAll()
		n.srv.Drain()
		n.ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.srv.Shutdown(ctx)
		n.pg.Close()
	})
}

// trackingListener remembers its connections, so that kill can cut them
// all, the hijacked WebSocket connections included (httptest forgets
// those).
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeAll() {
	l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		if tcp, ok := c.(*net.TCPConn); ok {
			tcp.SetLinger(0) // a reset, as when a process dies
		}
		c.Close()
	}
}

// enqueued counts the messages written to the store by every node.
func (c *cluster) enqueued() int64 {
	var n int64
	for _, nd := range c.nodes {
		n += nd.store.enqueued.Load()
	}
	return n
}

func (c *cluster) queueDepth(t testing.TB) int {
	t.Helper()
	for _, nd := range c.nodes {
		if n, err := nd.pg.QueueDepth(context.Background()); err == nil {
			return n
		}
	}
	t.Fatal("no node's store answers")
	return 0
}

// user registers a user with one device on node i.
func (c *cluster) user(t testing.TB, i int) *client.Conn {
	t.Helper()
	tok, err := server.NewInvite(context.Background(), c.nodes[0].store, 1, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n := int(userSeq.Add(1))
	dev := deviceFor(t, protocol.NewUserID(), testkeys.Key(n%6))
	conn, err := client.Register(context.Background(), c.nodes[i].opts, dev, tok)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// deviceFor is newDevice for benchmarks too.
func deviceFor(t testing.TB, user protocol.UserID, identity *protocol.PrivateKey) *client.Device {
	t.Helper()
	n := int(userSeq.Add(1))
	d, err := client.NewDeviceFromKeys(user, protocol.NewDeviceID(), identity, testkeys.Key(n%6), testkeys.Key((n+1)%6), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// on returns a connection of conn's device to node i.
func (c *cluster) on(t testing.TB, conn *client.Conn, i int) *client.Conn {
	t.Helper()
	moved, err := client.Dial(context.Background(), c.nodes[i].opts, conn.Device())
	if err != nil {
		t.Fatal(err)
	}
	return moved
}

// link adds a device to conn's user and connects it to node i.
func (c *cluster) link(t testing.TB, conn *client.Conn, i int) *client.Conn {
	t.Helper()
	dev := deviceFor(t, conn.Device().User, conn.Device().Identity)
	if err := conn.AddDevice(context.Background(), dev.Cert); err != nil {
		t.Fatal(err)
	}
	c2, err := client.Dial(context.Background(), c.nodes[i].opts, dev)
	if err != nil {
		t.Fatal(err)
	}
	return c2
}

// A receiver holds a device's live channel, records every envelope it
// gets and acknowledges it, as a client does.
type receiver struct {
	conn *client.Conn
	mu   sync.Mutex
	got  map[protocol.MessageID]int // how many times each arrived
	raw  map[protocol.MessageID][]byte
	live *client.Live
	ch   chan protocol.MessageID
	done chan struct{} // closed when the channel has ended
}

// receive opens conn's live channel and returns once the server has sent
// the queue and holds the channel (EventDrained).
func receive(t testing.TB, conn *client.Conn) *receiver {
	t.Helper()
	r := &receiver{conn: conn, got: map[protocol.MessageID]int{}, raw: map[protocol.MessageID][]byte{}, ch: make(chan protocol.MessageID, 1024), done: make(chan struct{})}
	ctx := context.Background()
	live, err := conn.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.live = live
	t.Cleanup(func() { live.Close() })
	for {
		ev, err := live.Next(ctx)
		if err != nil {
			t.Fatalf("live channel: %v", err)
		}
		if ev.Type == client.EventDrained {
			break
		}
		if ev.Type == client.EventEnvelope {
			r.record(ctx, live, ev.Envelope)
		}
	}
	go r.loop(live)
	return r
}

func (r *receiver) record(ctx context.Context, live *client.Live, envelope []byte) {
	env, err := protocol.ParseEnvelope(envelope)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.got[env.ID]++
	r.raw[env.ID] = envelope
	r.mu.Unlock()
	select {
	case r.ch <- env.ID:
	default:
	}
	live.Ack(ctx, env.ID)
}

func (r *receiver) loop(live *client.Live) {
	defer close(r.done)
	ctx := context.Background()
	for {
		ev, err := live.Next(ctx)
		if err != nil {
			return
		}
		if ev.Type == client.EventEnvelope {
			r.record(ctx, live, ev.Envelope)
		}
	}
}

func (r *receiver) count(id protocol.MessageID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

func (r *receiver) waitFor(t testing.TB, id protocol.MessageID) []byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for r.count(id) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("message %s never arrived", id)
		}
		select {
		case <-r.ch:
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.raw[id]
}

func send(t testing.TB, from *client.Conn, body string, to ...*client.Conn) *api.SendResponse {
	t.Helper()
	env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte(body)}, from.Device().Sender(),
		recipients(to...), protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := from.Send(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func statusOf(t testing.TB, resp *api.SendResponse, to *client.Conn) string {
	t.Helper()
	for _, r := range resp.Results {
		if r.User == to.Device().User && r.Device == to.Device().ID {
			return r.Status
		}
	}
	t.Fatalf("no result for device %s in %+v", to.Device().ID, resp.Results)
	return ""
}

// A device connected to node B receives at once, and without the message
// touching the store, what was sent through node A.
func TestClusterLiveAcrossNodes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCluster(t, clusterConfig{nodes: 3, server: func(i int, o *server.Options) {
		if i == 0 {
			o.Registerer = reg
		}
	}})
	if v, ok := gauge(t, reg, "qrtalkd_bus_up"); !ok || v != 1 {
		t.Fatalf("qrtalkd_bus_up with NATS connected: %v (present %v), want 1", v, ok)
	}
	alice := c.user(t, 0)
	bob := c.user(t, 1)
	r := receive(t, bob)

	resp := send(t, alice, "hello from node A", bob)
	if got := statusOf(t, resp, bob); got != api.StatusDelivered {
		t.Fatalf("status %q, want delivered", got)
	}
	raw := r.waitFor(t, resp.ID)
	env, err := protocol.ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, status, err := env.Open(bob.Device().Recipient(), alice.Device().Identity.Public(), time.Now())
	if err != nil || status != protocol.Verified || string(m.Body) != "hello from node A" {
		t.Fatalf("open: %v %v %+v", err, status, m)
	}
	if n := c.enqueued(); n != 0 {
		t.Fatalf("a live delivery across nodes wrote %d messages to the store", n)
	}
	if n := c.queueDepth(t); n != 0 {
		t.Fatalf("queue depth %d", n)
	}

	// The channel moves to node C (the device reconnected there): node B
	// closes its own, and sends reach the device on C.
	bobC := c.on(t, bob, 2)
	r2 := receive(t, bobC)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("node B kept the stale live channel open")
	}
	resp = send(t, alice, "to node C", bob)
	if got := statusOf(t, resp, bob); got != api.StatusDelivered {
		t.Fatalf("after the move: status %q, want delivered", got)
	}
	r2.waitFor(t, resp.ID)
	if n := c.enqueued(); n != 0 {
		t.Fatalf("%d messages written to the store", n)
	}

	// A device that does not acknowledge in time, on another node: queued,
	// and its late acknowledgement deletes the queued copy.
	carol := c.user(t, 1)
	live, err := carol.Live(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if ev, err := live.Next(context.Background()); err != nil || ev.Type != client.EventDrained {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	resp = send(t, alice, "unacknowledged", carol)
	if got := statusOf(t, resp, carol); got != api.StatusQueued {
		t.Fatalf("unacknowledged live delivery: %q, want queued", got)
	}
	if ev, err := live.Next(context.Background()); err != nil || ev.Type != client.EventEnvelope {
		t.Fatalf("event: %+v %v", ev, err)
	}
	if err := live.Ack(context.Background(), resp.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late acknowledgement to empty the queue", func() bool { return c.queueDepth(t) == 0 })
}

// gauge returns the value of the gauge name in reg, and whether it is there.
func gauge(t testing.TB, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// Without a bus (a single node), there is no qrtalkd_bus_up.
func TestBusUpAbsentOnSingleNode(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCluster(t, clusterConfig{single: true, server: func(i int, o *server.Options) { o.Registerer = reg }})
	if _, ok := gauge(t, reg, "qrtalkd_queue_depth"); !ok {
		t.Fatal("the registry has no qrtalkd_queue_depth: metrics not registered")
	}
	if v, ok := gauge(t, reg, "qrtalkd_bus_up"); ok {
		t.Fatalf("qrtalkd_bus_up = %v on a node without a bus, want absent", v)
	}
}

// A device with no live channel anywhere gets the message queued; it
// drains it from whichever node it connects to; and a long poll on
// another node is woken by a send.
func TestClusterQueuedThenDrainedElsewhere(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 3})
	alice := c.user(t, 0)
	bob := c.user(t, 1)
	resp := send(t, alice, "while you were away", bob)
	if got := statusOf(t, resp, bob); got != api.StatusQueued {
		t.Fatalf("status %q, want queued", got)
	}
	if n := c.enqueued(); n != 1 {
		t.Fatalf("enqueued %d, want 1", n)
	}
	r := receive(t, c.on(t, bob, 2)) // drains before EventDrained
	if r.count(resp.ID) != 1 {
		t.Fatalf("the queued message arrived %d times on node C before EventDrained, want 1", r.count(resp.ID))
	}
	waitFor(t, "the acknowledgement to empty the queue", func() bool { return c.queueDepth(t) == 0 })

	// A long poll on node B, woken by a send through node A.
	dave := c.user(t, 1)
	nc, err := nats.Connect(os.Getenv(envNATS))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	wakeSubject := c.prefix + ".dev." + dave.Device().User.String() + "." + dave.Device().ID.String() + ".wake"
	type result struct {
		n   int
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		in, err := dave.Inbox(context.Background(), 10, 25*time.Second)
		res := result{err: err, at: time.Now()}
		if in != nil {
			res.n = len(in.Envelopes)
		}
		done <- res
	}()
	// The long poll is waiting once node B listens to the device's wakes:
	// a request there stops getting "no responders".
	waitFor(t, "the long poll to watch the device's wakes", func() bool {
		_, err := nc.Request(wakeSubject, nil, 50*time.Millisecond)
		return !errors.Is(err, nats.ErrNoResponders)
	})
	sent := time.Now()
	resp = send(t, alice, "wake up", dave)
	if got := statusOf(t, resp, dave); got != api.StatusQueued {
		t.Fatalf("status %q, want queued", got)
	}
	res := <-done
	if res.err != nil || res.n != 1 {
		t.Fatalf("long poll: %d envelopes, %v", res.n, res.err)
	}
	if el := res.at.Sub(sent); el > 10*time.Second {
		t.Fatalf("the long poll answered %v after the send: not woken", el)
	}
}

// A group message fanned out across nodes: each device gets its copy from
// the node it is connected to; only the offline device's copy is stored.
func TestClusterGroupFanout(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 3})
	alice := c.user(t, 0)
	alice2 := c.link(t, alice, 2) // alice's other device, on node C
	bob := c.user(t, 1)
	carol := c.user(t, 2)
	erin := c.user(t, 0) // on the sender's node
	dave := c.user(t, 1) // offline
	rs := map[*client.Conn]*receiver{}
	for _, conn := range []*client.Conn{alice2, bob, carol, erin} {
		rs[conn] = receive(t, conn)
	}
	resp := send(t, alice, "to the group", alice, alice2, bob, carol, dave, erin)
	want := map[*client.Conn]string{alice: api.StatusSelf, alice2: api.StatusDelivered, bob: api.StatusDelivered,
		carol: api.StatusDelivered, erin: api.StatusDelivered, dave: api.StatusQueued}
	for conn, w := range want {
		if got := statusOf(t, resp, conn); got != w {
			t.Errorf("device %s: %q, want %q", conn.Device().ID, got, w)
		}
	}
	for conn, r := range rs {
		raw := r.waitFor(t, resp.ID)
		env, err := protocol.ParseEnvelope(raw)
		if err != nil || len(env.Devices) != 1 || env.Devices[0].Device != conn.Device().ID {
			t.Fatalf("device %s did not get its own copy: %v", conn.Device().ID, err)
		}
	}
	if n := c.enqueued(); n != 1 {
		t.Fatalf("enqueued %d copies, want 1 (dave's)", n)
	}
	in, err := c.on(t, dave, 2).Inbox(context.Background(), 10, 0)
	if err != nil || len(in.Envelopes) != 1 {
		t.Fatalf("dave's inbox on node C: %v %+v", err, in)
	}
}

// A revocation through node A ends the revoked device's live channel and
// sessions on node B at once, not at their expiry.
func TestClusterRevokeAcrossNodes(t *testing.T) {
	// A device cache that would outlive the test: only the bus notice can
	// make node B forget the revoked device.
	c := newCluster(t, clusterConfig{nodes: 2, server: func(i int, o *server.Options) { o.DeviceCacheTTL = time.Hour }})
	bob := c.user(t, 0)
	bob2 := c.link(t, bob, 1)
	alice := c.user(t, 1) // sends through node B
	r := receive(t, bob2)
	if _, err := bob2.Inbox(context.Background(), 1, 0); err != nil { // a session on node B
		t.Fatal(err)
	}
	// Node B learns (and caches) bob's devices on this send.
	send := func(body string) *api.SendResponse {
		t.Helper()
		resp, err := alice.Send(context.Background(), seal(t, alice, time.Now(), time.Hour, body, bob, bob2))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, res := range send("before").Results {
		if res.Status == api.StatusRejected {
			t.Fatalf("before the revocation: device %s rejected", res.Device)
		}
	}
	if err := bob.Revoke(context.Background(), bob2.Device().ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked device's live channel on node B stayed open")
	}
	waitFor(t, "node B to drop the revoked device's session", func() bool {
		_, err := bob2.Inbox(context.Background(), 1, 0)
		return errors.Is(err, api.ErrDeviceUnknown)
	})
	// Node B's device cache heard of it too: far sooner than its TTL.
	for _, res := range send("after").Results {
		if res.Device == bob2.Device().ID && res.Status != api.StatusRejected {
			t.Fatalf("after the revocation, node B routed to the revoked device: %s", res.Status)
		}
	}
}

// One-time invites used concurrently on two nodes: exactly one of the two
// registrations succeeds, the other is told the invite is used up, and the
// store holds the winner's account only.
func TestClusterInviteConcurrent(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 2})
	ctx := context.Background()
	const rounds = 10
	for round := range rounds {
		tok, err := server.NewInvite(ctx, c.nodes[round%2].store, 1, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		devs := []*client.Device{
			deviceFor(t, protocol.NewUserID(), testkeys.Key(round%6)),
			deviceFor(t, protocol.NewUserID(), testkeys.Key((round+1)%6)),
		}
		errs := make([]error, len(devs))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, dev := range devs {
			wg.Go(func() {
				<-start
				_, errs[i] = client.Register(ctx, c.nodes[i].opts, dev, tok)
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if won >= 0 {
					t.Fatalf("round %d: the one-use invite registered two accounts, on node %d and node %d", round, won, i)
				}
				won = i
			case !errors.Is(err, api.ErrInvite):
				t.Fatalf("round %d: registration on node %d: %v, want the invite error", round, i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither registration succeeded: %v", round, errs)
		}
		for i, dev := range devs {
			_, err := c.nodes[0].pg.User(ctx, dev.User)
			if exists := err == nil; exists != (i == won) {
				t.Fatalf("round %d: user of node %d's registration in the store: %v (err %v), winner %d", round, i, exists, err, won)
			}
		}
	}
	if n, err := c.nodes[1].pg.ActiveInvites(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("active invites after every round: %d, %v; want 0", n, err)
	}
}

// A channel setup accepted by one node is refused as a replay by another:
// the replay cache is in PostgreSQL.
func TestClusterSetupReplayAcrossNodes(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 2})
	bob := c.user(t, 0)
	dev := bob.Device()
	_, setup, err := protocol.NewClientSession(protocol.ChannelDevice{User: dev.User, Device: dev.ID, AuthKey: dev.Auth}, c.key.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The test certificate names localhost, not 127.0.0.1; the setup is
	// bound to the server key anyway.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	post := func(n *node) int {
		resp, err := hc.Post(n.ts.URL+"/v1/session", api.ContentFrame, bytes.NewReader(setup))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(c.nodes[0]); code != http.StatusOK {
		t.Fatalf("setup on node A: %d", code)
	}
	if code := post(c.nodes[1]); code == http.StatusOK {
		t.Fatal("node B accepted the setup node A had accepted: replayed across nodes")
	}
	if code := post(c.nodes[0]); code == http.StatusOK {
		t.Fatal("node A accepted its own setup twice")
	}
}

// The key-directory limit holds across nodes: a device spreading its
// lookups over two nodes gets the burst once, not once per node.
func TestClusterDirectoryLimitAcrossNodes(t *testing.T) {
	const burst = 6
	c := newCluster(t, clusterConfig{nodes: 2, server: func(i int, o *server.Options) {
		o.DirectoryRate, o.DirectoryBurst = 0.001, burst
	}})
	ctx := context.Background()
	alice := c.user(t, 0)
	onB := c.on(t, alice, 1)
	bob := c.user(t, 1)
	conns := []*client.Conn{alice, onB}
	for i := range burst {
		if _, err := conns[i%2].Directory(ctx, bob.Device().User); err != nil {
			t.Fatalf("lookup %d, on node %d: %v", i+1, i%2, err)
		}
	}
	for i, conn := range conns {
		if _, err := conn.Directory(ctx, bob.Device().User); !errors.Is(err, api.ErrRateLimited) {
			t.Fatalf("lookup past the burst on node %d: %v, want rate limited", i, err)
		}
	}
	// Another device has its own bucket.
	if _, err := bob.Directory(ctx, alice.Device().User); err != nil {
		t.Fatalf("another device's lookup: %v", err)
	}
}

// The per-device request limit holds across nodes too: requests spread
// over two nodes draw on one bucket.
func TestClusterDeviceLimitAcrossNodes(t *testing.T) {
	const burst = 8
	c := newCluster(t, clusterConfig{nodes: 2, server: func(i int, o *server.Options) {
		o.DeviceRate, o.DeviceBurst = 0.001, burst
	}})
	ctx := context.Background()
	alice := c.user(t, 0) // registering and dialing are not device requests
	onB := c.on(t, alice, 1)
	conns := []*client.Conn{alice, onB}
	ok, limited := 0, 0
	for i := range 2 * burst {
		_, err := conns[i%2].Inbox(ctx, 1, 0)
		switch {
		case err == nil:
			ok++
		case errors.Is(err, api.ErrRateLimited):
			limited++
		default:
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if ok != burst || limited != burst {
		t.Fatalf("%d requests allowed and %d limited over two nodes, want %d and %d", ok, limited, burst, burst)
	}
}

// Blobs on a directory the nodes share: uploaded through node A, fetched
// through nodes B and C, deleted once both recipients have it; an expired
// blob swept by two nodes at once is deleted once, without error.
func TestClusterBlobsAcrossNodes(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 3})
	ctx := context.Background()
	alice, bob, carol := c.user(t, 0), c.user(t, 1), c.user(t, 2)
	var enc bytes.Buffer
	key := protocol.NewBlobKey()
	w, err := protocol.EncryptBlob(&enc, key)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("across nodes "), 10000)
	w.Write(content)
	w.Close()
	sum := sha256.Sum256(enc.Bytes())
	to := []api.Address{{User: bob.Device().User, Device: bob.Device().ID}, {User: carol.Device().User, Device: carol.Device().ID}}
	up, err := alice.Upload(ctx, bytes.NewReader(enc.Bytes()), int64(enc.Len()), sum, time.Hour, to)
	if err != nil {
		t.Fatal(err)
	}
	for _, conn := range []*client.Conn{bob, carol} {
		rc, _, err := conn.Download(ctx, up.ID, sum)
		if err != nil {
			t.Fatalf("download through another node: %v", err)
		}
		plain, err := protocol.DecryptBlob(rc, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(plain)
		rc.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("blob through another node: %v", err)
		}
	}
	waitFor(t, "the fetched blob to be deleted", func() bool {
		_, err := os.Stat(filepath.Join(c.blobDir, up.ID))
		return errors.Is(err, os.ErrNotExist)
	})

	up, err = alice.Upload(ctx, bytes.NewReader(enc.Bytes()), int64(enc.Len()), sum, time.Second, to)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() { n.srv.Sweep(ctx) })
	}
	wg.Wait()
	if _, err := os.Stat(filepath.Join(c.blobDir, up.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the expired blob's file after the sweeps: %v", err)
	}
	if _, _, err := bob.Download(ctx, up.ID, sum); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("download of the swept blob: %v, want not found", err)
	}
}

// With NATS unreachable from every node, sends fall back to the queue and
// are delivered all the same (each node re-reads the queues of its
// connected devices); /readyz says the node is degraded, not down.
func TestClusterBusUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there
	regs := make([]*prometheus.Registry, 3)
	c := newCluster(t, clusterConfig{nodes: 3, natsURL: dead, server: func(i int, o *server.Options) {
		regs[i] = prometheus.NewRegistry()
		o.Registerer = regs[i]
	}})
	if v, ok := gauge(t, regs[0], "qrtalkd_bus_up"); !ok || v != 0 {
		t.Fatalf("qrtalkd_bus_up with NATS unreachable: %v (present %v), want 0", v, ok)
	}
	alice := c.user(t, 0)
	bob := c.user(t, 1)
	r := receive(t, bob)
	err = c.nodes[0].srv.Ready(context.Background())
	if !errors.Is(err, server.ErrDegraded) {
		t.Fatalf("Ready with NATS unreachable = %v, want ErrDegraded", err)
	}
	for i := range 5 {
		resp := send(t, alice, "through the store "+strconv.Itoa(i), bob)
		if got := statusOf(t, resp, bob); got != api.StatusQueued {
			t.Fatalf("status %q, want queued", got)
		}
		r.waitFor(t, resp.ID)
	}
	waitFor(t, "the queue to empty", func() bool { return c.queueDepth(t) == 0 })
}

// natsServer runs a NATS server of the test's own, which the test can stop
// and start again on the same port.
type natsServer struct {
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("nats-server is not installed, and CI=true requires this test to run")
			}
			t.Skip("nats-server is not installed: the NATS restart test needs a server of its own to stop")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &natsServer{bin: bin, port: port, dir: t.TempDir()}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *natsServer) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-l", filepath.Join(s.dir, "nats.log"))
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (s *natsServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// NATS stopped and restarted during sending: while it is down, messages go
// through the queue and are delivered; the nodes say they are degraded;
// when it is back, they reconnect by themselves and route live again.
func TestClusterNATSRestart(t *testing.T) {
	ns := startNATS(t)
	c := newCluster(t, clusterConfig{nodes: 3, natsURL: ns.url()})
	alice := c.user(t, 0)
	bob := c.user(t, 1)
	carol := c.user(t, 2)
	rb, rc := receive(t, bob), receive(t, carol)
	ctx := context.Background()

	resp := send(t, alice, "before", bob, carol)
	for _, to := range []*client.Conn{bob, carol} {
		if got := statusOf(t, resp, to); got != api.StatusDelivered {
			t.Fatalf("before the outage: %q, want delivered", got)
		}
	}

	var sent []protocol.MessageID
	stop := make(chan struct{})
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte("during " + strconv.Itoa(i))},
				alice.Device().Sender(), recipients(bob, carol), protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
			if err != nil {
				sendErr = err
				return
			}
			r, err := alice.Send(ctx, env)
			if err != nil {
				sendErr = err
				return
			}
			for _, res := range r.Results {
				if res.Status != api.StatusDelivered && res.Status != api.StatusQueued {
					sendErr = fmt.Errorf("status %q", res.Status)
					return
				}
			}
			sent = append(sent, r.ID)
		}
	})

	ns.stop()
	for i, n := range c.nodes {
		waitFor(t, fmt.Sprintf("node %d to see NATS down", i), func() bool {
			return errors.Is(n.srv.Ready(ctx), server.ErrDegraded)
		})
	}
	queuedBefore := c.enqueued()
	waitFor(t, "sends to go through the queue", func() bool { return c.enqueued() > queuedBefore+4 })
	ns.start(t)
	for i, n := range c.nodes {
		waitFor(t, fmt.Sprintf("node %d to reconnect", i), func() bool { return n.srv.Ready(ctx) == nil })
	}
	close(stop)
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	for _, id := range sent {
		rb.waitFor(t, id)
		rc.waitFor(t, id)
	}
	// Live again: after the reconnection, sends are delivered without the
	// store (the subscriptions are back).
	waitFor(t, "live routing to resume", func() bool {
		before := c.enqueued()
		r := send(t, alice, "after", bob, carol)
		rb.waitFor(t, r.ID)
		rc.waitFor(t, r.ID)
		return statusOf(t, r, bob) == api.StatusDelivered && statusOf(t, r, carol) == api.StatusDelivered && c.enqueued() == before
	})
	waitFor(t, "the queue to empty", func() bool { return c.queueDepth(t) == 0 })
	t.Logf("%d group sends across the outage", len(sent))
}

// A node killed mid-load while its clients reconnect to the others: every
// message a send answered "delivered" or "queued" for reaches its device.
func TestClusterNodeKilledMidLoad(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 3, server: func(i int, o *server.Options) { o.AckTimeout = time.Second }})
	const (
		receivers = 4
		senders   = 2
		perSender = 60
		killAfter = 30 // sends in all
	)
	var recv []*client.Conn
	for i := range receivers {
		recv = append(recv, c.user(t, []int{2, 2, 0, 1}[i])) // two on the node to be killed
	}
	// Each receiver reconnects, to a surviving node, whenever its channel
	// ends; it records what it got, then acknowledges.
	type tally struct {
		mu  sync.Mutex
		got map[protocol.MessageID]bool
	}
	tallies := make([]*tally, receivers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rwg sync.WaitGroup
	ready := make(chan struct{}, receivers)
	for i, conn := range recv {
		tl := &tally{got: map[protocol.MessageID]bool{}}
		tallies[i] = tl
		rwg.Go(func() {
			first := true
			for attempt := 0; ctx.Err() == nil; attempt++ {
				if attempt > 0 {
					// Reconnect through another node, as behind a load balancer.
					moved, err := client.Dial(ctx, c.nodes[attempt%2].opts, conn.Device())
					if err != nil {
						continue
					}
					conn = moved
				}
				live, err := conn.Live(ctx)
				if err != nil {
					continue
				}
				for {
					ev, err := live.Next(ctx)
					if err != nil {
						break
					}
					switch ev.Type {
					case client.EventDrained:
						if first {
							first = false
							ready <- struct{}{}
						}
					case client.EventEnvelope:
						env, err := protocol.ParseEnvelope(ev.Envelope)
						if err != nil {
							continue
						}
						tl.mu.Lock()
						tl.got[env.ID] = true
						tl.mu.Unlock()
						live.Ack(ctx, env.ID)
					}
				}
				live.Close()
			}
		})
	}
	for range receivers {
		<-ready
	}

	var (
		mu       sync.Mutex
		expected = make([][]protocol.MessageID, receivers) // answered delivered or queued
		failed   int
		count    atomic.Int64
		killed   = make(chan struct{})
	)
	var swg sync.WaitGroup
	for s := range senders {
		from := c.user(t, s) // nodes A and B
		swg.Go(func() {
			for i := range perSender {
				to := (s + i) % receivers
				env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte("load")},
					from.Device().Sender(), recipients(recv[to]), protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := from.Send(ctx, env)
				if n := count.Add(1); n == killAfter {
					close(killed)
				}
				mu.Lock()
				if err != nil {
					failed++ // not acknowledged: the sender would retry
				} else if st := resp.Results[0].Status; st == api.StatusDelivered || st == api.StatusQueued {
					expected[to] = append(expected[to], resp.ID)
				} else {
					t.Errorf("status %q", st)
				}
				mu.Unlock()
			}
		})
	}
	<-killed
	c.nodes[2].kill()
	swg.Wait()
	if failed > 0 {
		t.Logf("%d sends failed (not acknowledged, so not expected)", failed)
	}
	total := 0
	for i := range receivers {
		total += len(expected[i])
		for _, id := range expected[i] {
			waitFor(t, fmt.Sprintf("receiver %d to get message %s", i, id), func() bool {
				tallies[i].mu.Lock()
				defer tallies[i].mu.Unlock()
				return tallies[i].got[id]
			})
		}
	}
	if total < senders*perSender-failed || total == 0 {
		t.Fatalf("%d acknowledged sends, want %d", total, senders*perSender-failed)
	}
	waitFor(t, "the queue to empty", func() bool {
		n, err := c.nodes[0].pg.QueueDepth(context.Background())
		return err == nil && n == 0
	})
	t.Logf("%d messages acknowledged to senders, all received; %d written to the store", total, c.enqueued())
	cancel()
	rwg.Wait()
}

// BenchmarkRouteEnvelope: one send of a one-recipient envelope, answered
// after the recipient's live acknowledgement: on a single node (SQLite, no
// bus), on a cluster node whose recipient is connected to the same node,
// and across nodes through NATS.
func BenchmarkRouteEnvelope(b *testing.B) {
	run := func(b *testing.B, from, to *client.Conn) {
		receive(b, to)
		env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: make([]byte, 1024)}, from.Device().Sender(),
			recipients(to), protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ResetTimer()
		for b.Loop() {
			resp, err := from.Send(ctx, env)
			if err != nil || resp.Results[0].Status != api.StatusDelivered {
				b.Fatalf("send: %v %+v", err, resp)
			}
		}
	}
	b.Run("single-node", func(b *testing.B) {
		c := newCluster(b, clusterConfig{single: true})
		run(b, c.user(b, 0), c.user(b, 0))
	})
	b.Run("cluster-same-node", func(b *testing.B) {
		c := newCluster(b, clusterConfig{nodes: 2})
		run(b, c.user(b, 0), c.user(b, 0))
	})
	b.Run("cluster-across-nodes", func(b *testing.B) {
		c := newCluster(b, clusterConfig{nodes: 2})
		run(b, c.user(b, 0), c.user(b, 1))
	})
}
