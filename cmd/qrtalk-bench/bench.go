package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// What the bench says of its method, in its output and its report.
var methodNotes = []string{
	"Envelopes are sealed with the real protocol (AES-256-GCM, RSA-OAEP-SHA256 key wrap, RSA-PSS signature) ONCE per sender->recipient pair and sent many times: each send stamps a fresh message ID into the envelope header. The server routes by that ID and never checks signatures (only recipients do), so its work is that of real traffic, and the clients' RSA is not what is measured. Recipients acknowledge without opening; one envelope per run is sent, fetched and opened (signature verified) end to end as a check.",
	"All simulated devices reuse a few fixed RSA-3072 test keys (internal/testkeys): the server does not care, and the bench spends no minutes generating keys. Each device still has its own user and device IDs, certificate, secure-channel session (RSA setup) and TLS connections, through the real Go SDK.",
	"Server and load generator share this machine and talk over loopback: compare the qrtalkd rows with the bare-relay rows of the same run, not with other machines.",
}

// baselineNotes say, per scenario, what the bare relay does in its rows,
// or why it has none.
var baselineNotes = map[string]string{
	"a": "the relay forwards the same sealed envelope bytes between the same number of devices, with the same load (same offered rate at half rate)",
	"b": "the relay with a minimal durable queue: one append-only log file, group commit (a send is answered after its batch's fsync), the queue also in memory and pushed on connect, a deletion record appended per acknowledgement (the drain ends when all are synced); no recovery, compaction, TTL or secure delete: the least durable queueing can cost",
	"c": "the relay pushes each recipient the per-device copy qrtalkd delivers, one message at a time",
	"d": "idle WebSocket subscriptions on the relay (TLS, no secure channel)",
	"e": "the relay's subscribers drop and reconnect at once: a new TLS connection (resumed from the client's TLS session cache, as the SDK's) and WebSocket each, like qrtalkd's warm storm; the relay has no secure-channel session, so the cold row's ratio shows what a restarted client's full setup (new TLS, new session) costs on top",
	"f": "the relay streams blobs to a file, checks the SHA-256 and syncs, and streams them back",
	"s": "as in a: the relay at the same device counts and offered rates",
	"g": "none: g compares qrtalkd's two stores with each other (PostgreSQL / SQLite); the relay has no store to compare",
}

// Run runs the scenarios of s and returns the report; the table goes to
// out, progress to log.
func Run(ctx context.Context, s *Settings, out, log io.Writer) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	b := newBench(s, out, log, time.Now())
	b.rep = &Report{Tool: "qrtalk-bench", Started: time.Now().UTC(), Machine: describeMachine(), Settings: *s, Notes: methodNotes}
	dir, err := os.MkdirTemp("", "qrtalk-bench-*")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	defer os.RemoveAll(dir)
	defer b.close()

	if err := b.start(ctx); err != nil {
		return b.rep, err
	}
	fmt.Fprintf(out, "qrtalk-bench: %s\nmachine: %d CPUs (%s), %.1f GiB, load average %s, open files %s\n",
		b.rep.Server, b.rep.Machine.CPUs, b.rep.Machine.CPUModel, b.rep.Machine.MemoryGiB, b.rep.Machine.LoadAvg, b.rep.Machine.OpenFiles)
	for _, n := range methodNotes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	fmt.Fprintln(out)

	if b.relay != nil {
		b.rep.Baselines = map[string]string{}
		for _, sc := range s.Scenarios {
			if v, ok := baselineNotes[sc]; ok {
				b.rep.Baselines[sc] = v
			}
		}
	}
	var runErr error
	for _, sc := range s.Scenarios {
		if ctx.Err() != nil {
			runErr = ctx.Err()
			break
		}
		b.settle(ctx)
		b.logf("scenario %s", sc)
		var err error
		switch sc {
		case "a":
			err = b.scenarioLive(ctx)
		case "b":
			err = b.scenarioStore(ctx)
		case "c":
			err = b.scenarioGroup(ctx)
		case "d":
			err = b.scenarioIdle(ctx)
		case "e":
			err = b.scenarioStorm(ctx)
		case "f":
			err = b.scenarioMedia(ctx)
		case "s":
			err = b.scenarioSweeps(ctx)
		case "g":
			err = b.scenarioStores(ctx)
		}
		if err != nil {
			runErr = fmt.Errorf("scenario %s: %w", sc, err)
			break
		}
	}
	b.rep.Targets = targets(b.rep.Results, s, b.rep.Machine.CPUs)
	b.rep.Seconds = time.Since(b.t0).Seconds()
	b.rep.Machine.LoadEnd = loadAverage()
	fmt.Fprintf(out, "load average at the end: %s (at the start: %s)\n", b.rep.Machine.LoadEnd, b.rep.Machine.LoadAvg)
	fmt.Fprintln(out)
	printReport(out, b.rep)
	for _, p := range b.rep.Profiles {
		fmt.Fprintf(out, "profile: %s\n", p)
	}
	if s.Plot != "" {
		files, err := writePlots(s.Plot, b.rep)
		for _, f := range files {
			fmt.Fprintf(out, "plot: %s\n", f)
		}
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	fmt.Fprintf(out, "\ntotal %.0fs\n", b.rep.Seconds)
	return b.rep, runErr
}

// newBench makes a bench with its own devices and message IDs; start
// gives it a server.
func newBench(s *Settings, out, log io.Writer, t0 time.Time) *bench {
	b := &bench{s: s, out: out, log: log, t0: t0, tmpls: map[[2]int][]byte{}}
	rand.Read(b.ids.prefix[:])
	return b
}

type bench struct {
	s   *Settings
	out io.Writer
	log io.Writer
	rep *Report
	t0  time.Time
	dir string

	opts    client.Options // Server and ServerFP; each device has its own HTTP client
	srv     *child         // nil with --server
	srvPID  int
	pprof   string // host:port of the server child's pprof, or ""
	metrics string // host:port of the server's /metrics, or ""

	// Scenario g runs benches of its own, one per store.
	store    string // the spawned server's store: "" (SQLite) or a postgres:// URL
	pg       *pgDB  // with a PostgreSQL store: its processes are measured too
	tag      string // appended to profile names ("-g-postgres")
	fullOnly bool   // scenario a: full rate only, no half-rate run

	relay         *child
	relayDevs     []*relayDevice
	stormBaseline *Result // e on the relay, measured in d while its subscriptions are open

	pool    []*device
	setupTr *http.Transport // registrations
	ids     idGen
	sink    atomic.Pointer[func(protocol.MessageID)] // receives every envelope acknowledged on a live channel
	rsink   atomic.Pointer[func(protocol.MessageID)] // same, for relay subscribers
	tmpls   map[[2]int][]byte
	tmu     sync.Mutex
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[%6.1fs] %s\n", time.Since(b.t0).Seconds(), fmt.Sprintf(format, args...))
}

// start spawns (or finds) the server and the relay, and checks the
// end-to-end path once.
func (b *bench) start(ctx context.Context) error {
	s := b.s
	if s.Server == "" {
		b.logf("spawning the server")
		c, err := spawnChild(ctx, "server", s.Qrtalkd, b.dir, b.store)
		if err != nil {
			return err
		}
		b.srv = c
		b.srvPID = c.pid()
		b.pprof, b.metrics = c.hello.Pprof, c.hello.Metrics
		if err := checkLoopbackURL(c.hello.URL); err != nil {
			return err
		}
		b.opts.Server = c.hello.URL
		fp, err := protocol.ParseFingerprint(c.hello.Fingerprint)
		if err != nil {
			return err
		}
		b.opts.ServerFP = fp
		what := "qrtalkd daemon (daemon.Start, as 'qrtalkd serve', with a pprof listener beside it) in a child process of the bench"
		if s.Qrtalkd != "" {
			what = "qrtalkd binary " + s.Qrtalkd + " in a child process"
		}
		st := "SQLite store in a temporary directory"
		if b.pg != nil {
			st = fmt.Sprintf("PostgreSQL store (schema %s of %s, dropped at the end)", b.pg.schema, redactDSN(s.Postgres))
		}
		b.rep.Server = fmt.Sprintf("%s at %s, pid %d, %s, open registration, no rate limits", what, c.hello.URL, b.srvPID, st)
	} else {
		fp, err := protocol.ParseFingerprint(s.Fingerprint)
		if err != nil {
			return fmt.Errorf("--fingerprint: %w", err)
		}
		b.opts.Server, b.opts.ServerFP, b.srvPID, b.metrics = s.Server, fp, s.ServerPID, s.Metrics
		b.rep.Server = "running qrtalkd at " + s.Server
		if b.srvPID == 0 {
			b.rep.Server += " (no --server-pid: server CPU and RSS not measured)"
		}
	}
	if s.Relay && slices.ContainsFunc(s.Scenarios, func(sc string) bool { return strings.Contains("abcdefs", sc) }) {
		b.logf("spawning the bare relay")
		c, err := spawnChild(ctx, "relay", "", b.dir, "")
		if err != nil {
			return err
		}
		b.relay = c
		if err := checkLoopbackURL(c.hello.URL); err != nil {
			return err
		}
	}
	if err := b.ensurePool(ctx, 2, true); err != nil {
		return err
	}
	return b.checkEndToEnd(ctx)
}

func (b *bench) close() {
	b.closeAllLive()
	b.unsubscribeRelay()
	for _, d := range b.pool {
		d.closeIdle()
	}
	if b.setupTr != nil {
		b.setupTr.CloseIdleConnections()
	}
	if b.relay != nil {
		b.relay.stop()
	}
	if b.srv != nil {
		b.srv.stop()
	}
}

// serverMeter starts measuring the server (and, with a PostgreSQL store,
// the PostgreSQL processes that work for it).
func (b *bench) serverMeter(ctx context.Context) *meter {
	m := startMeter(b.srvPID)
	if b.pg != nil && b.srvPID != 0 {
		m.pg = b.pg.start(ctx)
	}
	return m
}

// ---- devices ----

// A device is one simulated device of qrtalkd.
type device struct {
	idx  int
	dev  *client.Device
	conn *client.Conn    // nil until first used (dial)
	tr   *http.Transport // conn's
	live *client.Live
	done chan struct{} // closed when the live channel's reader ends
}

func (d *device) recipient() protocol.DeviceRecipient {
	return protocol.DeviceRecipient{User: d.dev.User, Device: d.dev.ID, Key: d.dev.Enc.Public()}
}

// deviceKeys returns the fixed keys of device i: identity 0-2, encryption
// 3-4, authentication 5-6 (7 is the server's).
func deviceKeys(i int) (identity, enc, auth *protocol.PrivateKey) {
	return testkeys.Key(i % 3), testkeys.Key(3 + i%2), testkeys.Key(5 + i%2)
}

// newTransport is what the SDK uses when Options.HTTPClient is nil, kept
// here so that the bench can close a device's idle connections.
func (b *bench) newTransport() *http.Transport {
	return &http.Transport{
		TLSClientConfig:     client.PinnedTLSConfig(b.opts.ServerFP),
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
}

func (b *bench) deviceOptions(tr *http.Transport) client.Options {
	o := b.opts
	o.HTTPClient = &http.Client{Transport: tr}
	return o
}

// ensurePool registers devices until there are n, through one shared
// HTTP client: registering is a device's one-time event, not what is
// measured. Each device gets a Conn of its own (its own HTTP client, so its
// own TLS connections) when first used; with warm, pool[:n] get it now and
// set up their secure-channel sessions.
func (b *bench) ensurePool(ctx context.Context, n int, warm bool) error {
	if have := len(b.pool); n > have {
		if n-have > 100 {
			b.logf("registering %d devices (an RSA-PSS certificate signature each)", n-have)
		}
		if b.setupTr == nil {
			b.setupTr = b.newTransport()
			b.setupTr.MaxIdleConnsPerHost = 64
		}
		devs := make([]*device, n-have)
		var done atomic.Int64
		err := parallel(ctx, n-have, 2*runtime.NumCPU()+4, func(j int) error {
			i := have + j
			idk, enc, auth := deviceKeys(i)
			dev, err := client.NewDeviceFromKeys(protocol.NewUserID(), protocol.NewDeviceID(), idk, enc, auth, time.Now())
			if err != nil {
				return err
			}
			if _, err := client.Register(ctx, b.deviceOptions(b.setupTr), dev, ""); err != nil {
				return fmt.Errorf("registering device %d: %w", i, err)
			}
			devs[j] = &device{idx: i, dev: dev}
			if k := done.Add(1); k%2000 == 0 {
				b.logf("  %d/%d devices registered", k, n-have)
			}
			return nil
		})
		for _, d := range devs {
			if d != nil {
				b.pool = append(b.pool, d)
			}
		}
		b.setupTr.CloseIdleConnections()
		if err != nil {
			return err
		}
	}
	if !warm {
		return nil
	}
	return parallel(ctx, n, 16, func(i int) error {
		d := b.pool[i]
		if err := b.dial(ctx, d); err != nil {
			return err
		}
		if _, err := d.conn.Inbox(ctx, 1, 0); err != nil {
			return fmt.Errorf("device %d: first request: %w", i, err)
		}
		return nil
	})
}

// dial gives device d a Conn of its own, as a device starting up does:
// GET /v1/info on a TLS connection of its own, kept for what follows.
func (b *bench) dial(ctx context.Context, d *device) error {
	if d.conn != nil {
		return nil
	}
	tr := b.newTransport()
	conn, err := client.Dial(ctx, b.deviceOptions(tr), d.dev)
	if err != nil {
		return fmt.Errorf("device %d: %w", d.idx, err)
	}
	d.tr, d.conn = tr, conn
	return nil
}

// closeIdle closes the device's idle HTTP connections.
func (d *device) closeIdle() {
	if d.tr != nil {
		d.tr.CloseIdleConnections()
	}
}

// openLive opens device d's live channel. Its reader queues every
// envelope's acknowledgement at once (client.Acker, as the SDK's Listen:
// sent at once when idle, together with the others that arrive meanwhile
// when busy) and then hands the message ID to b.sink. With
// waitDrained it returns once the server has attached the channel (its
// queue pushed, then the drained marker).
func (b *bench) openLive(ctx context.Context, d *device, waitDrained bool) error {
	if err := b.dial(ctx, d); err != nil {
		return err
	}
	l, err := d.conn.Live(ctx)
	if err != nil {
		return err
	}
	d.live = l
	d.done = make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(d.done)
		var once sync.Once
		bg := context.Background()
		acks := l.Acker() // as the SDK's Listen: acknowledgements that wait go together
		defer acks.Close()
		for {
			ev, err := l.Next(bg)
			if err != nil {
				return
			}
			switch ev.Type {
			case client.EventEnvelope:
				if len(ev.Envelope) < 2+protocol.MessageIDSize {
					continue
				}
				var id protocol.MessageID
				copy(id[:], ev.Envelope[2:]) // version, type, then the message ID
				if err := acks.Ack(id); err != nil {
					return
				}
				if f := b.sink.Load(); f != nil {
					(*f)(id)
				}
			case client.EventDrained:
				once.Do(func() { close(drained) })
			}
		}
	}()
	if !waitDrained {
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-d.done:
		return errors.New("live channel closed before it was attached")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *bench) closeLive(d *device) {
	if d.live == nil {
		return
	}
	d.live.Close()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
	}
	d.live = nil
}

// connectLive opens the live channels of pool[lo:hi] that are not open.
// Unless keepHTTP, each device then closes its idle HTTP connections and
// keeps its WebSocket only, as an idle phone would (and the bench's
// open-files limit holds twice as many devices).
func (b *bench) connectLive(ctx context.Context, lo, hi int, keepHTTP bool) error {
	return parallel(ctx, hi-lo, 32, func(j int) error {
		d := b.pool[lo+j]
		if d.live != nil {
			return nil
		}
		if err := b.openLive(ctx, d, true); err != nil {
			return fmt.Errorf("device %d: live channel: %w", d.idx, err)
		}
		if !keepHTTP {
			d.closeIdle()
		}
		return nil
	})
}

func (b *bench) closeAllLive() {
	parallel(context.Background(), len(b.pool), 256, func(i int) error {
		b.closeLive(b.pool[i])
		return nil
	})
}

// ---- envelopes ----

// idGen makes unique message IDs: a random prefix for the run, then a
// counter.
type idGen struct {
	prefix [8]byte
	n      atomic.Uint64
}

func (g *idGen) next() (id protocol.MessageID) {
	copy(id[:8], g.prefix[:])
	binary.BigEndian.PutUint64(id[8:], g.n.Add(1))
	return id
}

// stamp returns a copy of a sealed envelope with message ID id.
func stamp(tmpl []byte, id protocol.MessageID) []byte {
	env := slices.Clone(tmpl)
	copy(env[2:2+protocol.MessageIDSize], id[:])
	return env
}

func messageBody(size int) []byte {
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	return body
}

// seal seals a message of size bytes from one device to others: signed,
// 1-hour TTL (longer than any run).
func (b *bench) seal(from *device, to []*device, size int) ([]byte, error) {
	rc := make([]protocol.DeviceRecipient, len(to))
	for i, d := range to {
		rc[i] = d.recipient()
	}
	msg := &protocol.Message{ContentType: "text/plain; charset=utf-8", Body: messageBody(size)}
	return protocol.Seal(msg, from.dev.Sender(), rc, protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
}

// pairTemplates returns, for i < n, an envelope from pool[i] to
// pool[(i+1)%n], sealed once.
func (b *bench) pairTemplates(ctx context.Context, n int) ([][]byte, error) {
	out := make([][]byte, n)
	err := parallel(ctx, n, runtime.NumCPU(), func(i int) error {
		k := [2]int{i, (i + 1) % n}
		b.tmu.Lock()
		t, ok := b.tmpls[k]
		b.tmu.Unlock()
		if !ok {
			var err error
			if t, err = b.seal(b.pool[k[0]], []*device{b.pool[k[1]]}, b.s.MessageSize); err != nil {
				return err
			}
			b.tmu.Lock()
			b.tmpls[k] = t
			b.tmu.Unlock()
		}
		out[i] = t
		return nil
	})
	return out, err
}

// checkEndToEnd sends one sealed envelope from pool[0] to pool[1] (not
// live: it is queued), fetches it from pool[1]'s inbox and opens it,
// signature checked: the path the stamped envelopes take is a real one.
func (b *bench) checkEndToEnd(ctx context.Context) error {
	from, to := b.pool[0], b.pool[1]
	env, err := b.seal(from, []*device{to}, 32)
	if err != nil {
		return err
	}
	if _, err := from.conn.Send(ctx, env); err != nil {
		return fmt.Errorf("end-to-end check: send: %w", err)
	}
	in, err := to.conn.Inbox(ctx, 10, 5*time.Second)
	if err != nil {
		return fmt.Errorf("end-to-end check: inbox: %w", err)
	}
	for _, raw := range in.Envelopes {
		e, err := protocol.ParseEnvelope(raw)
		if err != nil {
			return fmt.Errorf("end-to-end check: %w", err)
		}
		msg, status, err := e.Open(to.dev.Recipient(), from.dev.Identity.Public(), time.Now())
		if err != nil {
			return fmt.Errorf("end-to-end check: opening: %w", err)
		}
		if err := to.conn.Ack(ctx, e.ID); err != nil {
			return fmt.Errorf("end-to-end check: ack: %w", err)
		}
		if string(msg.Body) == string(messageBody(32)) && status == protocol.Verified {
			b.logf("end-to-end check: sent, fetched, opened, signature verified")
			return nil
		}
	}
	return errors.New("end-to-end check: the envelope did not come back")
}

// ---- relay devices ----

func (b *bench) ensureRelayDevs(n int) {
	for i := len(b.relayDevs); i < n; i++ {
		b.relayDevs = append(b.relayDevs, newRelayDevice(i, b.relay.hello.URL, b.relay.hello.CertSHA256))
	}
}

// subscribeRelay subscribes relay devices [0, n). With ping, each also
// opens a connection for its sends, as qrtalkd's devices have one from
// setting up their session.
func (b *bench) subscribeRelay(ctx context.Context, n int, ping bool) error {
	b.ensureRelayDevs(n)
	return parallel(ctx, n, 32, func(i int) error {
		d := b.relayDevs[i]
		if ping {
			if err := d.ping(ctx); err != nil {
				return err
			}
		}
		if d.ws != nil {
			return nil
		}
		return d.subscribe(ctx, func(id protocol.MessageID) {
			if f := b.rsink.Load(); f != nil {
				(*f)(id)
			}
		})
	})
}

// unsubscribeRelay closes every relay device's WebSocket and connections.
func (b *bench) unsubscribeRelay() {
	parallel(context.Background(), len(b.relayDevs), 256, func(i int) error {
		b.relayDevs[i].unsubscribe()
		return nil
	})
}

// settle waits (up to 60 s) until the server is quiet: under 10% of a
// core over half a second, so that what one scenario left behind (a queue
// still being deleted, connections closing) is not measured in the next.
func (b *bench) settle(ctx context.Context) {
	if b.srvPID == 0 {
		return
	}
	start := time.Now()
	for time.Since(start) < 60*time.Second && ctx.Err() == nil {
		s0, err := readProc(b.srvPID)
		if err != nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
		s1, err := readProc(b.srvPID)
		if err != nil || s1.CPU-s0.CPU < 0.05 {
			break
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		b.logf("waited %.0fs for the server to be quiet", d.Seconds())
	}
}

// queueDepth reads qrtalkd_queue_depth from the server's metrics.
func (b *bench) queueDepth(ctx context.Context) (float64, bool) {
	if b.metrics == "" {
		return 0, false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.metrics+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "qrtalkd_queue_depth "); ok {
			var n float64
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}

// ---- helpers ----

// parallel runs f(0..n-1) on at most workers goroutines; the first error
// stops the others from starting new work.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// startCPUProfile starts a CPU profile of the server child, written to
// ProfileDir/server-cpu-NAME.pprof; the returned function stops it. It
// does nothing without --profile-dir or a bench server child.
func (b *bench) startCPUProfile(ctx context.Context, name string) (stop func()) {
	if b.s.ProfileDir == "" || b.pprof == "" {
		return func() {}
	}
	file, err := filepath.Abs(filepath.Join(b.s.ProfileDir, "server-cpu-"+name+b.tag+".pprof"))
	if err == nil {
		err = b.pprofPost(ctx, "/bench/cpu/start", url.Values{"file": {file}})
	}
	if err != nil {
		b.logf("profile %s: %v", name, err)
		return func() {}
	}
	return func() {
		if err := b.pprofPost(ctx, "/bench/cpu/stop", nil); err != nil {
			b.logf("profile %s: %v", name, err)
			return
		}
		b.rep.Profiles = append(b.rep.Profiles, file)
	}
}

func (b *bench) pprofPost(ctx context.Context, path string, q url.Values) error {
	u := url.URL{Scheme: "http", Host: b.pprof, Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", path, resp.Status, msg)
	}
	return nil
}

// fetchProfile saves a pprof profile of the server child.
func (b *bench) fetchProfile(ctx context.Context, path, file string) error {
	p, q, _ := strings.Cut(path, "?")
	u := url.URL{Scheme: "http", Host: b.pprof, Path: p, RawQuery: q}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	b.rep.Profiles = append(b.rep.Profiles, file)
	return nil
}
