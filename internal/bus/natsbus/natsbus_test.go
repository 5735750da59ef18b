package natsbus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/bus"
	"github.com/qrtalk/qrtalk/protocol"
)

// envNATS names the variable holding the test NATS server's URL, for
// example nats://127.0.0.1:4222.
const envNATS = "QRTALK_TEST_NATS"

// natsURL returns the test NATS server's URL, or skips the test when there
// is none (fails it under CI=true, where NATS must be there).
func natsURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(envNATS)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, and CI=true requires the NATS tests to run", envNATS)
		}
		t.Skipf("NATS tests skipped: set %s to a NATS URL (for example nats://127.0.0.1:4222) to run them", envNATS)
	}
	return u
}

// testPrefix returns a subject prefix of the test's own, so that tests
// running at once (or other users of the server) do not hear each other.
func testPrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "qrtalktest." + hex.EncodeToString(b[:])
}

func open(t testing.TB, url, prefix string) *Bus {
	t.Helper()
	b, err := Open(Options{URL: url, Prefix: prefix, ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// recorder is a bus.Handler that records what it is asked, and answers
// offers as told.
type recorder struct {
	mu        sync.Mutex
	offers    []bus.Offer
	wakes     []bus.Device
	takeovers []bus.Device
	drops     []bus.Device
	states    []bool
	answer    func(o bus.Offer, reply func(bool))
	event     chan string
}

func newRecorder() *recorder { return &recorder{event: make(chan string, 100)} }

func (r *recorder) Offer(o bus.Offer, reply func(bool)) {
	r.mu.Lock()
	o.Envelope = bytes.Clone(o.Envelope)
	r.offers = append(r.offers, o)
	answer := r.answer
	r.mu.Unlock()
	r.event <- "offer"
	if answer != nil {
		answer(o, reply)
		return
	}
	reply(true)
}

func (r *recorder) Wake(d bus.Device) {
	r.mu.Lock()
	r.wakes = append(r.wakes, d)
	r.mu.Unlock()
	r.event <- "wake"
}

func (r *recorder) Takeover(d bus.Device, at time.Time) {
	r.mu.Lock()
	r.takeovers = append(r.takeovers, d)
	r.mu.Unlock()
	r.event <- "takeover"
}

func (r *recorder) Drop(d bus.Device, all bool) {
	r.mu.Lock()
	r.drops = append(r.drops, d)
	r.mu.Unlock()
	r.event <- "drop"
}

func (r *recorder) State(up bool) {
	r.mu.Lock()
	r.states = append(r.states, up)
	r.mu.Unlock()
}

func (r *recorder) waitEvent(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-r.event:
		if got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %q", want)
	}
}

func device() bus.Device {
	return bus.Device{User: protocol.NewUserID(), Device: protocol.NewDeviceID()}
}

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{"nats://127.0.0.1:4222", "tls://nats.example.org:4222", "nats://u:p@h:1,nats://h2:2", "nats://host"} {
		if err := CheckURL(ok); err != nil {
			t.Errorf("CheckURL(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://h:4222", "h:4222", "nats://", "nats://h:1/path", "nats://h:1?x=y", "nats://h:1,"} {
		if err := CheckURL(bad); err == nil {
			t.Errorf("CheckURL(%q) accepted", bad)
		}
	}
	// A password never shows in the error.
	if err := CheckURL("http://user:secret@h:1"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error for a URL with a password: %v", err)
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, ok := range []string{"qrtalk", "qrtalk.prod-1", "A_b.c"} {
		if err := CheckPrefix(ok); err != nil {
			t.Errorf("CheckPrefix(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "a*", "a.>", "a b", "é"} {
		if err := CheckPrefix(bad); err == nil {
			t.Errorf("CheckPrefix(%q) accepted", bad)
		}
	}
}

func TestOpenBadOptions(t *testing.T) {
	if _, err := Open(Options{URL: "http://x"}); err == nil {
		t.Fatal("Open accepted an http URL")
	}
	if _, err := Open(Options{URL: "nats://127.0.0.1:1", Prefix: "a.*"}); err == nil {
		t.Fatal("Open accepted a wildcard prefix")
	}
}

// TestOfferRoundTrip: an offer reaches the holding node with its ID,
// envelope and wait, and its answer comes back; without a holder, Deliver
// says so at once.
func TestOfferRoundTrip(t *testing.T) {
	url := natsURL(t)
	prefix := testPrefix()
	a, b := open(t, url, prefix), open(t, url, prefix)
	ra, rb := newRecorder(), newRecorder()
	if err := a.Start(ra); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(rb); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := device()
	o := bus.Offer{Device: d, ID: protocol.NewMessageID(), Envelope: []byte("envelope bytes"), Wait: 1500 * time.Millisecond}

	start := time.Now()
	if ok, err := a.Deliver(ctx, o); ok || !errors.Is(err, bus.ErrNoHolder) {
		t.Fatalf("Deliver without a holder = %v, %v; want ErrNoHolder", ok, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("no responders took %v", el)
	}

	release, err := b.Hold(d)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := a.Deliver(ctx, o)
	if err != nil || !ok {
		t.Fatalf("Deliver to a holder = %v, %v", ok, err)
	}
	rb.waitEvent(t, "offer")
	rb.mu.Lock()
	got := rb.offers[0]
	rb.mu.Unlock()
	if got.Device != d || got.ID != o.ID || !bytes.Equal(got.Envelope, o.Envelope) || got.Wait != o.Wait {
		t.Fatalf("offer received %+v, sent %+v", got, o)
	}

	// A negative answer.
	rb.mu.Lock()
	rb.answer = func(_ bus.Offer, reply func(bool)) { reply(false) }
	rb.mu.Unlock()
	if ok, err := a.Deliver(ctx, o); ok || err != nil {
		t.Fatalf("Deliver refused = %v, %v", ok, err)
	}
	rb.waitEvent(t, "offer")

	// No answer at all: Deliver gives up after the wait and the grace.
	rb.mu.Lock()
	rb.answer = func(bus.Offer, func(bool)) {}
	rb.mu.Unlock()
	o.Wait = 100 * time.Millisecond
	start = time.Now()
	if ok, err := a.Deliver(ctx, o); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deliver unanswered = %v, %v", ok, err)
	}
	if el := time.Since(start); el < o.Wait || el > o.Wait+a.opts.Grace+time.Second {
		t.Fatalf("Deliver unanswered returned after %v", el)
	}
	rb.waitEvent(t, "offer")

	// Released: no holder again.
	release()
	release() // twice is harmless
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Deliver(ctx, o); ok || !errors.Is(err, bus.ErrNoHolder) {
		t.Fatalf("Deliver after release = %v, %v", ok, err)
	}
}

// TestWakeTakeoverDrop: wakes reach watchers and holders; a hold tells the
// previous holder; drops reach every node; a node never hears itself.
func TestWakeTakeoverDrop(t *testing.T) {
	url := natsURL(t)
	prefix := testPrefix()
	a, b, c := open(t, url, prefix), open(t, url, prefix), open(t, url, prefix)
	ra, rb, rc := newRecorder(), newRecorder(), newRecorder()
	for i, x := range []*Bus{a, b, c} {
		if err := x.Start([]*recorder{ra, rb, rc}[i]); err != nil {
			t.Fatal(err)
		}
	}
	d := device()
	relB, err := b.Hold(d)
	if err != nil {
		t.Fatal(err)
	}
	defer relB()
	relC, err := c.Watch(d)
	if err != nil {
		t.Fatal(err)
	}
	a.Wake(d)
	rb.waitEvent(t, "wake")
	rc.waitEvent(t, "wake")

	// a takes the channel over: b hears it; c (a watcher) does not.
	relA, err := a.Hold(d)
	if err != nil {
		t.Fatal(err)
	}
	rb.waitEvent(t, "takeover")
	relA()
	relC()

	a.Drop(d, true)
	rb.waitEvent(t, "drop")
	rc.waitEvent(t, "drop")
	// Another device's wake: nobody listens.
	a.Wake(device())
	b.Wake(d) // b's own wake is not echoed to it
	// A marker: everything sent before it has been delivered once it is.
	a.Drop(d, false)
	rb.waitEvent(t, "drop")
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if len(ra.wakes)+len(ra.drops)+len(ra.offers)+len(ra.takeovers) != 0 {
		t.Fatalf("a heard its own notices: %+v", ra)
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if len(rb.wakes) != 1 {
		t.Fatalf("b heard %d wakes, want 1 (not its own)", len(rb.wakes))
	}
}

// TestDown: a bus whose NATS cannot be reached still opens, says it is
// down, and refuses offers at once.
func TestDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	b := open(t, "nats://"+addr, testPrefix())
	r := newRecorder()
	if err := b.Start(r); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err == nil || !strings.Contains(err.Error(), "nats unreachable") {
		t.Fatalf("Ready = %v", err)
	}
	start := time.Now()
	if ok, err := b.Deliver(context.Background(), bus.Offer{Device: device(), Wait: time.Second}); ok || !errors.Is(err, bus.ErrDown) {
		t.Fatalf("Deliver while down = %v, %v", ok, err)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Fatalf("Deliver while down took %v", el)
	}
	b.Wake(device())
	if rel, err := b.Hold(device()); err != nil {
		t.Fatalf("Hold while down: %v", err)
	} else {
		rel()
	}
	r.mu.Lock()
	if len(r.states) != 1 || r.states[0] {
		t.Fatalf("states told: %v, want [false]", r.states)
	}
	r.mu.Unlock()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err == nil {
		t.Fatal("Ready after Close = nil")
	}
}

// BenchmarkDeliver measures one offer's round trip through NATS to another
// connection that answers at once: the bus's own cost per live delivery to
// another node.
func BenchmarkDeliver(b *testing.B) {
	url := natsURL(b)
	prefix := testPrefix()
	a, h := open(b, url, prefix), open(b, url, prefix)
	a.Start(newDiscard())
	h.Start(newDiscard())
	d := device()
	rel, err := h.Hold(d)
	if err != nil {
		b.Fatal(err)
	}
	defer rel()
	o := bus.Offer{Device: d, ID: protocol.NewMessageID(), Envelope: make([]byte, 1024), Wait: time.Second}
	ctx := context.Background()
	b.SetBytes(int64(len(o.Envelope)))
	b.ResetTimer()
	for b.Loop() {
		if ok, err := a.Deliver(ctx, o); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// discard answers every offer with true and ignores the rest.
type discard struct{}

func newDiscard() discard                       { return discard{} }
func (discard) Offer(_ bus.Offer, r func(bool)) { r(true) }
func (discard) Wake(bus.Device)                 {}
func (discard) Takeover(bus.Device, time.Time)  {}
func (discard) Drop(bus.Device, bool)           {}
func (discard) State(bool)                      {}
