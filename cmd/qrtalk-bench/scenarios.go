package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// ---- load shapes ----

// closedLoop runs send on workers goroutines, each starting its next send
// when the last one is answered, until dur has passed or max sends have
// started. Each worker sends from devices of its own among n (w, w+workers,
// w+2×workers...), in turn, so that a device has one request in flight at
// a time and keeps one connection, as a real one would.
func closedLoop(ctx context.Context, workers, n int, dur time.Duration, max int, send func(dev int, start time.Time)) {
	deadline := time.Now().Add(dur)
	var seq atomic.Uint64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := 0; ctx.Err() == nil && time.Now().Before(deadline); k++ {
				if seq.Add(1) > uint64(max) {
					return
				}
				send(ownDevice(w, workers, n, k), time.Now())
			}
		})
	}
	wg.Wait()
}

// ownDevice returns the k-th device worker w of workers sends from, among
// n: w, w+workers, w+2×workers... below n, in turn. Workers beyond n share.
func ownDevice(w, workers, n, k int) int {
	if w >= n {
		return w % n
	}
	owned := (n - w + workers - 1) / workers
	return w + workers*(k%owned)
}

// openLoop starts sends at a fixed rate whatever the answers (open loop),
// for dur or max sends, from device i%n in turn. Each send's latency
// counts from its scheduled time, so that a stall shows up in the
// latencies instead of slowing the schedule. A device sends one message at
// a time, as in the closed loop (else a stall would have devices open new
// connections, each a TLS handshake, and the run would measure those): a
// send due while its device is busy waits for it, and that wait is part
// of its latency. A send that would make more than maxInflight outstanding
// is skipped and counted.
func openLoop(ctx context.Context, rate float64, n int, dur time.Duration, max, maxInflight int, send func(dev int, start time.Time)) (skipped int64) {
	start := time.Now()
	sem := make(chan struct{}, maxInflight)
	busy := make([]sync.Mutex, n)
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 0; i < max && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if at.Sub(start) >= dur {
			break
		}
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			skipped++
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			busy[i%n].Lock()
			defer busy[i%n].Unlock()
			send(i%n, at)
		})
	}
	wg.Wait()
	return skipped
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// errNote keeps the first error of a run, for its notes.
type errNote struct {
	once sync.Once
	err  error
}

func (e *errNote) set(err error) { e.once.Do(func() { e.err = err }) }

func (e *errNote) String() string {
	if e.err == nil {
		return ""
	}
	return "first error: " + e.err.Error()
}

func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

// measure fills a result's server columns from a meter. With a
// PostgreSQL store, PostgreSQL's CPU and peak PSS are added to qrtalkd's
// (and kept apart in DBCPU and DBPeakMiB).
func measure(r *Result, m *meter) {
	cpu, peak := m.stop()
	if m.pg != nil {
		dbCPU, dbPeak, err := m.pg.end(context.Background())
		r.DBCPU, r.DBPeakMiB = dbCPU, float64(dbPeak)/(1<<20)
		cpu += dbCPU
		peak += dbPeak
		if err != nil {
			r.Notes = joinNotes(r.Notes, "PostgreSQL processes not fully measured: "+err.Error())
		}
	}
	if r.Seconds > 0 {
		r.Rate = r.Count / r.Seconds
	}
	r.ServerCPU = cpu
	if r.Count > 0 {
		r.CPUPerUnit = cpu / r.Count * 1e6
	}
	r.PeakRSSMiB = float64(peak) / (1 << 20)
}

func (b *bench) add(rs ...*Result) {
	for _, r := range rs {
		if r == nil {
			continue
		}
		if r.Seconds > 0 && r.Rate == 0 {
			r.Rate = r.Count / r.Seconds
		}
		b.rep.Results = append(b.rep.Results, *r)
		lat := ""
		if r.P50 > 0 {
			lat = fmt.Sprintf(", p50 %s ms, p99 %s ms, p99.9 %s ms", fmtMs(r.P50), fmtMs(r.P99), fmtMs(r.P999))
		}
		b.logf("  %s %s %s: %s %s in %.1fs = %s %s/s%s, server CPU %.1fs, errors %d",
			r.Scenario, r.System, r.Case, fmtNum(r.Count), r.Unit, r.Seconds, fmtNum(r.Rate), r.Unit, lat, r.ServerCPU, r.Errors)
	}
}

// setSink makes f the receiver of acknowledged message IDs.
func (b *bench) setSink(p *atomic.Pointer[func(protocol.MessageID)], f func(protocol.MessageID)) {
	p.Store(&f)
}

func (b *bench) relayPID() int {
	if b.relay == nil {
		return 0
	}
	return b.relay.pid()
}

func ascending(v []int) []int {
	v = slices.Clone(v)
	slices.Sort(v)
	return slices.Compact(v)
}

// ---- a: live delivery ----

func (b *bench) scenarioLive(ctx context.Context) error {
	sizes := ascending(b.s.LiveDevices)
	largest := sizes[len(sizes)-1]
	if err := b.ensurePool(ctx, max(largest, 2), true); err != nil {
		return err
	}
	for _, n := range sizes {
		b.logf("a: %d devices: opening live channels", n)
		if err := b.connectLive(ctx, 0, n, true); err != nil {
			return err
		}
		// Every sender has its connection open (servers close idle ones).
		if err := b.ensurePool(ctx, n, true); err != nil {
			return err
		}
		tmpls, err := b.pairTemplates(ctx, n)
		if err != nil {
			return err
		}
		if b.relay != nil {
			if err := b.subscribeRelay(ctx, n, true); err != nil {
				return fmt.Errorf("relay: %w", err)
			}
		}
		name := fmt.Sprintf("live %s, %d dev", sizeName(b.s.MessageSize), n)
		profile := b.s.ProfileDir != "" && b.pprof != "" && n == largest
		full := b.liveRun(ctx, n, tmpls, 0, b.s.Duration, profile)
		full.Case = name + ", full rate"
		var rfull, rhalf *Result
		if b.relay != nil {
			rfull = b.relayLiveRun(ctx, n, tmpls[0], 0, b.s.Duration)
			rfull.Case = full.Case
			if rfull.Rate > 0 {
				full.Ratio = full.Rate / rfull.Rate
			}
		}
		b.add(full, rfull)
		if full.Rate == 0 {
			return fmt.Errorf("no message delivered at full rate (%s)", full.Notes)
		}
		if b.fullOnly {
			continue
		}
		half := b.liveRun(ctx, n, tmpls, full.Rate/2, b.s.Duration, false)
		half.Case = name + ", half rate"
		if b.relay != nil {
			// The relay gets the same offered rate: latencies compare at
			// equal load.
			rhalf = b.relayLiveRun(ctx, n, tmpls[0], full.Rate/2, b.s.Duration)
			rhalf.Case = half.Case + " (qrtalkd's)"
		}
		b.add(half, rhalf)
	}
	return nil
}

// liveRun measures qrtalkd's live delivery among pool[:n], device i
// sending to device i+1: closed loop at rate 0, else open loop.
func (b *bench) liveRun(ctx context.Context, n int, tmpls [][]byte, rate float64, dur time.Duration, profile bool) *Result {
	tr := newTracker()
	b.setSink(&b.sink, tr.ack)
	defer b.sink.Store(nil)
	var delivered, fallback, failed atomic.Int64
	var first errNote
	send := func(i int, start time.Time) {
		id := b.ids.next()
		tr.put(id, start, 1)
		resp, err := b.pool[i].conn.Send(ctx, stamp(tmpls[i], id))
		switch {
		case err != nil:
			failed.Add(1)
			tr.forget(id)
			first.set(err)
		case len(resp.Results) == 1 && resp.Results[0].Status == api.StatusDelivered:
			delivered.Add(1)
		default:
			fallback.Add(1)
		}
	}
	// Warm up (TLS connections, server caches), unmeasured.
	closedLoop(ctx, b.s.Concurrency, n, b.s.Duration, min(b.s.Messages, 4*b.s.Concurrency), func(i int, start time.Time) {
		b.pool[i].conn.Send(ctx, stamp(tmpls[i], b.ids.next()))
	})
	waitUntil(func() bool { _, a := tr.counts(); return a >= int64(min(b.s.Messages, 4*b.s.Concurrency)) }, time.Second)
	tr = newTracker()
	b.setSink(&b.sink, tr.ack)
	stopProfile := func() {}
	if profile {
		b.fetchProfile(ctx, "/debug/pprof/allocs", filepath.Join(b.s.ProfileDir, "server-allocs-live-before"+b.tag+".pprof"))
		stopProfile = b.startCPUProfile(ctx, "live")
	}
	m := b.serverMeter(ctx)
	t0 := time.Now()
	var skipped int64
	if rate == 0 {
		closedLoop(ctx, b.s.Concurrency, n, dur, b.s.Messages, send)
	} else {
		skipped = openLoop(ctx, rate, n, dur, b.s.Messages, 8192, send)
	}
	elapsed := time.Since(t0)
	stopProfile()
	r := &Result{Scenario: "a", System: "qrtalkd", Unit: "msg", Count: float64(delivered.Load()),
		Seconds: elapsed.Seconds(), Offered: rate, Errors: failed.Load() + fallback.Load()}
	measure(r, m)
	// A send is answered once the server has the acknowledgement; the
	// recipient's reader records it just after writing it.
	waitUntil(func() bool { d, _ := tr.counts(); return d >= delivered.Load() }, 2*time.Second)
	tr.lat.fill(r)
	if profile {
		b.fetchProfile(ctx, "/debug/pprof/allocs", filepath.Join(b.s.ProfileDir, "server-allocs-live-after"+b.tag+".pprof"))
	}
	var notes []string
	if rate == 0 {
		notes = append(notes, fmt.Sprintf("closed loop, %d in flight", b.s.Concurrency))
	} else {
		notes = append(notes, fmt.Sprintf("open loop at %.0f/s", rate))
	}
	if f := fallback.Load(); f > 0 {
		notes = append(notes, fmt.Sprintf("%d not acknowledged within the server's ack timeout, queued instead", f))
	}
	if skipped > 0 {
		notes = append(notes, fmt.Sprintf("%d sends skipped (over 8192 in flight)", skipped))
		r.Extra = map[string]float64{"skipped": float64(skipped)}
	}
	r.Notes = joinNotes(append(notes, first.String())...)
	return r
}

// relayLiveRun is liveRun on the bare relay: the same devices, pattern,
// load and payload bytes (the sealed envelope).
func (b *bench) relayLiveRun(ctx context.Context, n int, payload []byte, rate float64, dur time.Duration) *Result {
	tr := newTracker()
	b.setSink(&b.rsink, tr.ack)
	defer b.rsink.Store(nil)
	var delivered, failed atomic.Int64
	var first errNote
	send := func(i int, start time.Time) {
		id := b.ids.next()
		tr.put(id, start, 1)
		if err := b.relayDevs[i].send(ctx, relayBody(id, []uint32{uint32((i + 1) % n)}, payload)); err != nil {
			failed.Add(1)
			tr.forget(id)
			first.set(err)
			return
		}
		delivered.Add(1)
	}
	closedLoop(ctx, b.s.Concurrency, n, b.s.Duration, min(b.s.Messages, 4*b.s.Concurrency), func(i int, start time.Time) {
		b.relayDevs[i].send(ctx, relayBody(b.ids.next(), []uint32{uint32((i + 1) % n)}, payload))
	})
	waitUntil(func() bool { _, a := tr.counts(); return a >= int64(min(b.s.Messages, 4*b.s.Concurrency)) }, time.Second)
	tr = newTracker()
	b.setSink(&b.rsink, tr.ack)
	m := startMeter(b.relayPID())
	t0 := time.Now()
	var skipped int64
	if rate == 0 {
		closedLoop(ctx, b.s.Concurrency, n, dur, b.s.Messages, send)
	} else {
		skipped = openLoop(ctx, rate, n, dur, b.s.Messages, 8192, send)
	}
	elapsed := time.Since(t0)
	r := &Result{Scenario: "a", System: "relay", Unit: "msg", Count: float64(delivered.Load()),
		Seconds: elapsed.Seconds(), Offered: rate, Errors: failed.Load()}
	measure(r, m)
	waitUntil(func() bool { d, _ := tr.counts(); return d >= delivered.Load() }, 2*time.Second)
	tr.lat.fill(r)
	r.Notes = joinNotes(nonzero(skipped, "sends skipped (over 8192 in flight)"), first.String())
	if skipped > 0 {
		r.Extra = map[string]float64{"skipped": float64(skipped)}
	}
	return r
}

// ---- c: group fan-out ----

func (b *bench) scenarioGroup(ctx context.Context) error {
	sizes := ascending(b.s.GroupSizes)
	largest := sizes[len(sizes)-1]
	if err := b.ensurePool(ctx, largest+1, true); err != nil {
		return err
	}
	sender := b.pool[largest]
	for _, g := range sizes {
		b.logf("c: group of %d: opening live channels, sealing", g)
		if err := b.connectLive(ctx, 0, g, true); err != nil {
			return err
		}
		tmpl, err := b.seal(sender, b.pool[:g], b.s.MessageSize)
		if err != nil {
			return err
		}
		e, err := protocol.ParseEnvelope(tmpl)
		if err != nil {
			return err
		}
		perDevice := e.For(0)
		r := b.groupRun(ctx, g, sender, tmpl)
		r.Case = fmt.Sprintf("group of %d, %s", g, sizeName(b.s.MessageSize))
		r.Extra = map[string]float64{"envelope_bytes": float64(len(tmpl)), "delivered_copy_bytes": float64(len(perDevice))}
		var rr *Result
		if b.relay != nil {
			if err := b.subscribeRelay(ctx, g, true); err != nil {
				return fmt.Errorf("relay: %w", err)
			}
			b.ensureRelayDevs(largest + 1)
			rr = b.relayGroupRun(ctx, g, largest, perDevice)
			rr.Case = r.Case
			if rr.Rate > 0 {
				r.Ratio = r.Rate / rr.Rate
			}
		}
		b.add(r, rr)
	}
	return nil
}

// groupRun sends group messages one at a time; the latency of each is
// until its last recipient acknowledged it, and the rate counts
// deliveries (messages × recipients).
func (b *bench) groupRun(ctx context.Context, g int, sender *device, tmpl []byte) *Result {
	tr := newTracker()
	b.setSink(&b.sink, tr.ack)
	defer b.sink.Store(nil)
	var delivered, fallback, failed, msgs atomic.Int64
	var first errNote
	send := func(_ int, start time.Time) {
		id := b.ids.next()
		tr.put(id, start, g)
		resp, err := sender.conn.Send(ctx, stamp(tmpl, id))
		if err != nil {
			failed.Add(1)
			tr.forget(id)
			first.set(err)
			return
		}
		msgs.Add(1)
		for _, res := range resp.Results {
			if res.Status == api.StatusDelivered {
				delivered.Add(1)
			} else {
				fallback.Add(1)
			}
		}
	}
	m := b.serverMeter(ctx)
	t0 := time.Now()
	closedLoop(ctx, 1, 1, b.s.Duration, b.s.GroupMessages, send)
	elapsed := time.Since(t0)
	r := &Result{Scenario: "c", System: "qrtalkd", Unit: "delivery", Count: float64(delivered.Load()),
		Seconds: elapsed.Seconds(), Errors: failed.Load() + fallback.Load()}
	measure(r, m)
	waitUntil(func() bool { d, _ := tr.counts(); return d >= msgs.Load() }, 2*time.Second)
	tr.lat.fill(r)
	r.Notes = joinNotes(fmt.Sprintf("%d messages, one at a time; latency until the last recipient acknowledged", msgs.Load()),
		nonzero(fallback.Load(), "copies not acknowledged in time, queued instead"), first.String())
	return r
}

func nonzero(n int64, what string) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d %s", n, what)
}

func (b *bench) relayGroupRun(ctx context.Context, g, senderIdx int, payload []byte) *Result {
	tr := newTracker()
	b.setSink(&b.rsink, tr.ack)
	defer b.rsink.Store(nil)
	to := make([]uint32, g)
	for i := range to {
		to[i] = uint32(i)
	}
	var msgs, failed atomic.Int64
	var first errNote
	send := func(_ int, start time.Time) {
		id := b.ids.next()
		tr.put(id, start, g)
		if err := b.relayDevs[senderIdx].send(ctx, relayBody(id, to, payload)); err != nil {
			failed.Add(1)
			tr.forget(id)
			first.set(err)
			return
		}
		msgs.Add(1)
	}
	m := startMeter(b.relayPID())
	t0 := time.Now()
	closedLoop(ctx, 1, 1, b.s.Duration, b.s.GroupMessages, send)
	elapsed := time.Since(t0)
	r := &Result{Scenario: "c", System: "relay", Unit: "delivery", Count: float64(msgs.Load() * int64(g)),
		Seconds: elapsed.Seconds(), Errors: failed.Load()}
	measure(r, m)
	waitUntil(func() bool { d, _ := tr.counts(); return d >= msgs.Load() }, 2*time.Second)
	tr.lat.fill(r)
	r.Notes = joinNotes(fmt.Sprintf("%d messages; each recipient gets the bytes qrtalkd delivers to one device", msgs.Load()), first.String())
	return r
}

// ---- b: store-and-forward ----

func (b *bench) scenarioStore(ctx context.Context) error {
	d, n := b.s.StoreDevices, b.s.StoreMessages
	b.closeAllLive() // every device offline
	if err := b.ensurePool(ctx, d, true); err != nil {
		return err
	}
	tmpls, err := b.pairTemplates(ctx, d)
	if err != nil {
		return err
	}
	b.logf("b: queueing %d messages for %d offline devices", n, d)
	var lat latencies
	var queued, other, failed atomic.Int64
	var first errNote
	send := func(i int, start time.Time) {
		resp, err := b.pool[i].conn.Send(ctx, stamp(tmpls[i], b.ids.next()))
		switch {
		case err != nil:
			failed.Add(1)
			first.set(err)
			return
		case len(resp.Results) == 1 && resp.Results[0].Status == api.StatusQueued:
			queued.Add(1)
		default:
			other.Add(1)
		}
		lat.add(time.Since(start))
	}
	stopProfile := b.startCPUProfile(ctx, "queue")
	m := b.serverMeter(ctx)
	t0 := time.Now()
	closedLoop(ctx, b.s.Concurrency, d, b.s.Timeout, n, send)
	stopProfile()
	ins := &Result{Scenario: "b", System: "qrtalkd", Case: fmt.Sprintf("queue for %d offline dev", d), Unit: "msg",
		Count: float64(queued.Load()), Seconds: time.Since(t0).Seconds(), Errors: failed.Load() + other.Load()}
	measure(ins, m)
	lat.fill(ins)
	ins.Notes = joinNotes(fmt.Sprintf("closed loop, %d in flight; latency = send until the server answers 'queued' (on disk)", b.s.Concurrency),
		nonzero(other.Load(), "not answered 'queued'"), first.String())
	b.add(ins)

	b.logf("b: %d devices connect and drain", d)
	var got atomic.Int64
	b.setSink(&b.sink, func(protocol.MessageID) { got.Add(1) })
	defer b.sink.Store(nil)
	want := queued.Load()
	stopProfile = b.startCPUProfile(ctx, "drain")
	m = b.serverMeter(ctx)
	t0 = time.Now()
	err = parallel(ctx, d, 64, func(i int) error { return b.openLive(ctx, b.pool[i], false) })
	limit := max(60*time.Second, time.Duration(want)*time.Millisecond)
	ok := err == nil && waitUntil(func() bool { return got.Load() >= want || ctx.Err() != nil }, limit)
	received := time.Since(t0)
	// The clients have everything; the server may still be deleting what
	// they acknowledged. The drain ends when its queue is empty.
	_, haveDepth := b.queueDepth(ctx)
	emptied := ok && haveDepth && waitUntil(func() bool {
		time.Sleep(50 * time.Millisecond)
		n, ok := b.queueDepth(ctx)
		return (ok && n == 0) || ctx.Err() != nil
	}, limit)
	dr := &Result{Scenario: "b", System: "qrtalkd", Case: fmt.Sprintf("drain on connect, %d dev", d), Unit: "msg",
		Count: float64(got.Load()), Seconds: time.Since(t0).Seconds()}
	stopProfile()
	measure(dr, m)
	dr.Extra = map[string]float64{"received_s": received.Seconds(), "received_per_s": float64(got.Load()) / received.Seconds()}
	dr.Notes = fmt.Sprintf("from opening the live channels until the server's queue was empty (qrtalkd_queue_depth 0); the clients had received and acknowledged everything after %.1fs (%.0f/s); one acknowledgement per message, as the SDK does",
		received.Seconds(), float64(got.Load())/received.Seconds())
	if !haveDepth {
		dr.Notes = "from opening the live channels until every queued message was pushed and acknowledged (no --metrics: the server may still have been deleting them)"
	}
	if !ok || (haveDepth && !emptied) {
		dr.Errors = max(1, want-got.Load())
		dr.Notes = joinNotes(dr.Notes, fmt.Sprintf("stopped waiting: %d of %d arrived, queue emptied: %v", got.Load(), want, emptied), fmt.Sprint(err))
	}
	var rq, rd *Result
	if b.relay != nil && err == nil {
		b.closeAllLive()
		rq, rd = b.relayStore(ctx, d, n, tmpls)
		if rq.Rate > 0 {
			ins.Ratio = ins.Rate / rq.Rate
		}
		if rd.Rate > 0 && dr.Errors == 0 {
			dr.Ratio = dr.Rate / rd.Rate
		}
		// The table's rows: qrtalkd's insert, the relay's, then the drains.
		b.rep.Results = slices.DeleteFunc(b.rep.Results, func(r Result) bool {
			return r.Scenario == "b" && r.System == "qrtalkd" && r.Case == ins.Case
		})
		b.rep.Results = append(b.rep.Results, *ins)
		b.add(rq, dr, rd)
	} else {
		b.add(dr)
	}
	b.closeAllLive()
	return err
}

// relayStore is b on the bare relay with its minimal durable queue
// (relayQueue): the same devices, pattern, load and envelope bytes.
func (b *bench) relayStore(ctx context.Context, d, n int, tmpls [][]byte) (ins, dr *Result) {
	b.logf("b: relay: queueing %d messages for %d offline subscribers", n, d)
	b.unsubscribeRelay()
	b.ensureRelayDevs(d)
	parallel(ctx, d, 32, func(i int) error { return b.relayDevs[i].ping(ctx) })
	var lat latencies
	var queued, other, failed atomic.Int64
	var first errNote
	send := func(i int, start time.Time) {
		answer, err := b.relayDevs[i].sendFor(ctx, relayBody(b.ids.next(), []uint32{uint32((i + 1) % d)}, tmpls[i]))
		switch {
		case err != nil:
			failed.Add(1)
			first.set(err)
			return
		case answer == "queued":
			queued.Add(1)
		default:
			other.Add(1)
		}
		lat.add(time.Since(start))
	}
	m := startMeter(b.relayPID())
	t0 := time.Now()
	closedLoop(ctx, b.s.Concurrency, d, b.s.Timeout, n, send)
	ins = &Result{Scenario: "b", System: "relay", Case: fmt.Sprintf("queue for %d offline dev", d), Unit: "msg",
		Count: float64(queued.Load()), Seconds: time.Since(t0).Seconds(), Errors: failed.Load() + other.Load()}
	measure(ins, m)
	lat.fill(ins)
	ins.Notes = joinNotes("minimal durable queue: append-only log, group commit (answered after fsync)",
		nonzero(other.Load(), "not answered 'queued'"), first.String())

	b.logf("b: relay: %d subscribers connect and drain", d)
	var got atomic.Int64
	b.setSink(&b.rsink, func(protocol.MessageID) { got.Add(1) })
	defer b.rsink.Store(nil)
	want := queued.Load()
	m = startMeter(b.relayPID())
	t0 = time.Now()
	err := parallel(ctx, d, 64, func(i int) error {
		return b.relayDevs[i].subscribe(ctx, func(id protocol.MessageID) {
			if f := b.rsink.Load(); f != nil {
				(*f)(id)
			}
		})
	})
	limit := max(60*time.Second, time.Duration(want)*time.Millisecond)
	ok := err == nil && waitUntil(func() bool { return got.Load() >= want || ctx.Err() != nil }, limit)
	received := time.Since(t0)
	emptied := ok && waitUntil(func() bool {
		time.Sleep(20 * time.Millisecond)
		n, err := b.relayDevs[0].depth(ctx)
		return (err == nil && n == 0) || ctx.Err() != nil
	}, limit)
	dr = &Result{Scenario: "b", System: "relay", Case: fmt.Sprintf("drain on connect, %d dev", d), Unit: "msg",
		Count: float64(got.Load()), Seconds: time.Since(t0).Seconds()}
	measure(dr, m)
	dr.Extra = map[string]float64{"received_s": received.Seconds()}
	dr.Notes = fmt.Sprintf("until the relay's queue was empty on disk (every deletion record synced); the subscribers had everything after %.1fs", received.Seconds())
	if !ok || !emptied {
		dr.Errors = max(1, want-got.Load())
		dr.Notes = joinNotes(dr.Notes, fmt.Sprintf("stopped waiting: %d of %d arrived, queue emptied: %v", got.Load(), want, emptied), fmt.Sprint(err))
	}
	b.unsubscribeRelay()
	return ins, dr
}

// ---- f: media ----

func (b *bench) scenarioMedia(ctx context.Context) error {
	if err := b.ensurePool(ctx, 2, true); err != nil {
		return err
	}
	from, to := b.pool[0], b.pool[1]
	data := make([]byte, b.s.BlobSize)
	crand.Read(data) // an encrypted blob looks like this
	sum := sha256.Sum256(data)
	mb := float64(b.s.BlobSize) / 1e6
	b.logf("f: %d blobs of %s up and down", b.s.Blobs, sizeName(int(b.s.BlobSize)))

	var upLat, downLat latencies
	var ids []string
	var first errNote
	var failed int64
	stopProfile := b.startCPUProfile(ctx, "upload")
	m := b.serverMeter(ctx)
	t0 := time.Now()
	for range b.s.Blobs {
		t := time.Now()
		resp, err := from.conn.Upload(ctx, bytes.NewReader(data), b.s.BlobSize, sum, time.Hour,
			[]api.Address{{User: to.dev.User, Device: to.dev.ID}})
		if err != nil {
			failed++
			first.set(err)
			continue
		}
		upLat.add(time.Since(t))
		ids = append(ids, resp.ID)
	}
	up := &Result{Scenario: "f", System: "qrtalkd", Case: "upload " + sizeName(int(b.s.BlobSize)), Unit: "MB",
		Count: mb * float64(len(ids)), Seconds: time.Since(t0).Seconds(), Errors: failed}
	stopProfile()
	measure(up, m)
	upLat.fill(up)
	up.Notes = joinNotes("one at a time; MB = 10^6 bytes; latency per blob", first.String())

	var down Result
	first = errNote{}
	failed = 0
	n := 0
	stopProfile = b.startCPUProfile(ctx, "download")
	m = b.serverMeter(ctx)
	t0 = time.Now()
	for _, id := range ids {
		t := time.Now()
		rc, _, err := to.conn.Download(ctx, id, sum)
		if err == nil {
			_, err = io.Copy(io.Discard, rc) // checks the SHA-256 at the end
			rc.Close()
		}
		if err != nil {
			failed++
			first.set(err)
			continue
		}
		n++
		downLat.add(time.Since(t))
	}
	down = Result{Scenario: "f", System: "qrtalkd", Case: "download " + sizeName(int(b.s.BlobSize)), Unit: "MB",
		Count: mb * float64(n), Seconds: time.Since(t0).Seconds(), Errors: failed}
	stopProfile()
	measure(&down, m)
	downLat.fill(&down)
	down.Notes = joinNotes("one at a time; SHA-256 checked by the SDK", first.String())

	var rup, rdown *Result
	if b.relay != nil {
		b.ensureRelayDevs(2)
		rup, rdown = b.relayMedia(ctx, data, sum)
		if rup.Rate > 0 {
			up.Ratio = up.Count / up.Seconds / rup.Rate
		}
		if rdown.Rate > 0 {
			down.Ratio = down.Count / down.Seconds / rdown.Rate
		}
	}
	b.add(up, rup, &down, rdown)
	return nil
}

func (b *bench) relayMedia(ctx context.Context, data []byte, sum [32]byte) (up, down *Result) {
	from, to := b.relayDevs[0], b.relayDevs[1]
	mb := float64(len(data)) / 1e6
	var upLat, downLat latencies
	var ids []string
	var first errNote
	var failed int64
	m := startMeter(b.relayPID())
	t0 := time.Now()
	for range b.s.Blobs {
		t := time.Now()
		id, err := from.upload(ctx, bytes.NewReader(data), int64(len(data)), sum)
		if err != nil {
			failed++
			first.set(err)
			continue
		}
		upLat.add(time.Since(t))
		ids = append(ids, id)
	}
	up = &Result{Scenario: "f", System: "relay", Case: "upload " + sizeName(len(data)), Unit: "MB",
		Count: mb * float64(len(ids)), Seconds: time.Since(t0).Seconds(), Errors: failed, Notes: first.String()}
	measure(up, m)
	upLat.fill(up)
	first = errNote{}
	failed = 0
	n := 0
	m = startMeter(b.relayPID())
	t0 = time.Now()
	for _, id := range ids {
		t := time.Now()
		if _, err := to.download(ctx, id); err != nil {
			failed++
			first.set(err)
			continue
		}
		n++
		downLat.add(time.Since(t))
	}
	down = &Result{Scenario: "f", System: "relay", Case: "download " + sizeName(len(data)), Unit: "MB",
		Count: mb * float64(n), Seconds: time.Since(t0).Seconds(), Errors: failed, Notes: first.String()}
	measure(down, m)
	downLat.fill(down)
	return up, down
}

// ---- d: idle live channels ----

func (b *bench) scenarioIdle(ctx context.Context) error {
	k := b.s.Idle
	b.closeAllLive()
	b.unsubscribeRelay()
	// The relay's first: its WebSockets are closed again before qrtalkd's
	// open, so that the bench holds one set at a time.
	var rr *Result
	if b.relay != nil {
		var err error
		if rr, err = b.relayIdle(ctx, k); err != nil {
			return err
		}
	}
	if err := b.ensurePool(ctx, k, false); err != nil {
		return err
	}
	for _, d := range b.pool {
		d.closeIdle()
	}
	time.Sleep(time.Second)
	before, _ := readProc(b.srvPID)
	memBefore := b.memStats(ctx)
	b.logf("d: opening %d live channels", k)
	stopProfile := b.startCPUProfile(ctx, "idle-connect")
	m := b.serverMeter(ctx)
	t0 := time.Now()
	half := k / 2
	if err := b.connectLive(ctx, 0, half, false); err != nil {
		return err
	}
	mid, _ := readProc(b.srvPID)
	if err := b.connectLive(ctx, half, k, false); err != nil {
		return err
	}
	r := &Result{Scenario: "d", System: "qrtalkd", Case: fmt.Sprintf("%d idle live channels", k), Unit: "conn",
		Count: float64(k), Seconds: time.Since(t0).Seconds()}
	stopProfile()
	measure(r, m)
	time.Sleep(2 * time.Second)
	after, _ := readProc(b.srvPID)
	r.Extra = map[string]float64{
		"rss_before_mib":               float64(before.RSS) / (1 << 20),
		"rss_after_mib":                float64(after.RSS) / (1 << 20),
		"rss_per_conn_kib":             float64(after.RSS-before.RSS) / float64(k) / 1024,
		"rss_per_conn_second_half_kib": float64(after.RSS-mid.RSS) / float64(k-half) / 1024,
		"bench_open_files":             float64(openFiles()),
	}
	// What the RSS is made of, from the server's runtime (after a GC).
	if b.s.ProfileDir != "" && b.pprof != "" {
		b.fetchProfile(ctx, "/debug/pprof/heap?gc=1", filepath.Join(b.s.ProfileDir, "server-heap-idle.pprof"))
	}
	if memAfter := b.memStats(ctx); memAfter != nil && memBefore != nil {
		per := func(k string) float64 { return (memAfter[k] - memBefore[k]) / float64(r.Count) }
		r.Extra["heap_live_per_conn_kib"] = per("HeapAlloc") / 1024
		r.Extra["stack_per_conn_kib"] = per("Stack") / 1024
		r.Extra["goroutines_per_conn"] = per("goroutines")
	}
	r.Notes = "time, rate and CPU are those of opening the channels (GET /v1/info, a secure-channel session setup for devices that had none, the WebSocket); RSS per channel = (server RSS with them open and idle - before) / count"
	if rr != nil && rr.Rate > 0 {
		r.Ratio = r.Rate / rr.Rate
	}
	b.add(r, rr)
	return nil
}

// relayStorm is e on the bare relay: relay devices [0, k), subscribed,
// drop their WebSockets and connections and reconnect at once (a new TLS
// connection, resumed from the device's TLS session cache as the SDK's
// are, and a new WebSocket each), with the retries of qrtalkd's storm.
func (b *bench) relayStorm(ctx context.Context, k int) *Result {
	b.logf("e: relay storm: dropping %d subscriptions", k)
	devs := b.relayDevs[:k]
	parallel(ctx, k, 512, func(i int) error { devs[i].unsubscribe(); return nil })
	time.Sleep(time.Second)
	b.logf("e: relay storm: %d subscribers reconnect at once", k)
	var lat latencies
	var failed, retries atomic.Int64
	var first errNote
	m := startMeter(b.relayPID())
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Go(func() {
			for attempt := 0; attempt < 6 && ctx.Err() == nil; attempt++ {
				if attempt > 0 {
					retries.Add(1)
					time.Sleep(min(250*time.Millisecond<<(attempt-1), 4*time.Second) + rand.N(250*time.Millisecond))
				}
				err := d.subscribe(ctx, func(id protocol.MessageID) {
					if f := b.rsink.Load(); f != nil {
						(*f)(id)
					}
				})
				if err != nil {
					first.set(err)
					continue
				}
				lat.add(time.Since(t0))
				d.tr.CloseIdleConnections()
				return
			}
			failed.Add(1)
		})
	}
	wg.Wait()
	r := &Result{Scenario: "e", System: "relay", Case: fmt.Sprintf("reconnect storm, %d dev", k), Unit: "conn",
		Count: float64(int64(k) - failed.Load()), Seconds: time.Since(t0).Seconds(), Errors: failed.Load()}
	measure(r, m)
	lat.fill(r)
	r.Notes = joinNotes("each subscriber: a new TLS connection (resumed from its TLS session cache when the relay accepts it, as the SDK's) and WebSocket; secs = until the last was back",
		nonzero(retries.Load(), "retries (backoff 250 ms doubling)"), first.String())
	r.Extra = map[string]float64{"retries": float64(retries.Load())}
	return r
}

func (b *bench) relayIdle(ctx context.Context, k int) (*Result, error) {
	b.logf("d: opening %d relay subscriptions", k)
	pid := b.relayPID()
	b.unsubscribeRelay()
	time.Sleep(time.Second)
	before, _ := readProc(pid)
	m := startMeter(pid)
	t0 := time.Now()
	if err := b.subscribeRelay(ctx, k, false); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Result{Scenario: "d", System: "relay", Case: fmt.Sprintf("%d idle subscriptions", k), Unit: "conn",
		Count: float64(k), Seconds: time.Since(t0).Seconds()}
	measure(r, m)
	time.Sleep(2 * time.Second)
	after, _ := readProc(pid)
	r.Extra = map[string]float64{
		"rss_before_mib":   float64(before.RSS) / (1 << 20),
		"rss_after_mib":    float64(after.RSS) / (1 << 20),
		"rss_per_conn_kib": float64(after.RSS-before.RSS) / float64(k) / 1024,
	}
	r.Notes = "RSS per channel = (relay RSS with the WebSockets open and idle - before) / count"
	if slices.Contains(b.s.Scenarios, "e") && k == b.s.Idle {
		// e's baseline now, while the subscriptions are open: the bench
		// holds one set of idle connections at a time.
		b.stormBaseline = b.relayStorm(ctx, k)
	}
	b.unsubscribeRelay()
	return r, nil
}

// memStats reads the server child's runtime.MemStats (after a GC) and
// goroutine count from its pprof listener; nil without one.
func (b *bench) memStats(ctx context.Context) map[string]float64 {
	if b.pprof == "" {
		return nil
	}
	get := func(path string) string {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.pprof+path, nil)
		if err != nil {
			return ""
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		return string(body)
	}
	out := map[string]float64{}
	// The heap profile in text form ends with MemStats: "# HeapAlloc = 123",
	// "# Stack = inuse / sys".
	for _, line := range strings.Split(get("/debug/pprof/heap?gc=1&debug=1"), "\n") {
		var name string
		var v float64
		if n, _ := fmt.Sscanf(line, "# %s = %g", &name, &v); n == 2 {
			out[name] = v
		}
	}
	var g float64
	fmt.Sscanf(get("/debug/pprof/goroutine?debug=1"), "goroutine profile: total %g", &g)
	out["goroutines"] = g
	if len(out) < 2 {
		return nil
	}
	return out
}

func openFiles() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// ---- e: reconnect storm ----

func (b *bench) scenarioStorm(ctx context.Context) error {
	k := b.s.Idle
	if b.relay != nil && b.stormBaseline == nil {
		// Without d: the relay's subscriptions first, then its storm.
		b.closeAllLive()
		if err := b.subscribeRelay(ctx, k, false); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		b.stormBaseline = b.relayStorm(ctx, k)
		b.unsubscribeRelay()
	}
	if err := b.ensurePool(ctx, k, false); err != nil {
		return err
	}
	if err := b.connectLive(ctx, 0, k, false); err != nil {
		return err
	}
	for _, kind := range b.s.Storm {
		b.logf("e: %s storm: dropping %d live channels", kind, k)
		parallel(ctx, k, 512, func(i int) error { b.closeLive(b.pool[i]); return nil })
		for _, d := range b.pool[:k] {
			d.closeIdle()
		}
		time.Sleep(time.Second)
		b.logf("e: %s storm: %d devices reconnect at once", kind, k)
		var lat latencies
		var failed, retries atomic.Int64
		var first errNote
		stopProfile := b.startCPUProfile(ctx, "storm-"+kind)
		m := b.serverMeter(ctx)
		t0 := time.Now()
		var wg sync.WaitGroup
		for _, d := range b.pool[:k] {
			wg.Go(func() {
				fresh := kind == "warm"
				for attempt := 0; attempt < 6 && ctx.Err() == nil; attempt++ {
					if attempt > 0 {
						retries.Add(1)
						backoff := min(250*time.Millisecond<<(attempt-1), 4*time.Second)
						time.Sleep(backoff + rand.N(250*time.Millisecond))
					}
					if !fresh {
						// A restarted client: a new Conn, so a new
						// secure-channel session (RSA) and new TLS.
						tr := b.newTransport()
						conn, err := client.Dial(ctx, b.deviceOptions(tr), d.dev)
						if err != nil {
							first.set(err)
							continue
						}
						d.tr, d.conn, fresh = tr, conn, true
					}
					if err := b.openLive(ctx, d, true); err != nil {
						first.set(err)
						continue
					}
					lat.add(time.Since(t0))
					d.closeIdle()
					return
				}
				failed.Add(1)
			})
		}
		wg.Wait()
		stopProfile()
		r := &Result{Scenario: "e", System: "qrtalkd", Case: fmt.Sprintf("reconnect storm, %d dev, %s", k, kind), Unit: "conn",
			Count: float64(int64(k) - failed.Load()), Seconds: time.Since(t0).Seconds(), Errors: failed.Load()}
		measure(r, m)
		lat.fill(r)
		what := "warm: each SDK Conn keeps its secure-channel session; a new TLS connection (full handshake) and live channel"
		if kind == "cold" {
			what = "cold: a new Conn per device (as after a client restart): GET /v1/info, new secure-channel session (RSA), new TLS, live channel"
		}
		r.Notes = joinNotes(what, "secs = until the last device was back; latencies = each device's time to be back",
			nonzero(retries.Load(), "retries (backoff 250 ms doubling)"), first.String())
		r.Extra = map[string]float64{"retries": float64(retries.Load())}
		if rr := b.stormBaseline; rr != nil && rr.Rate > 0 {
			r.Ratio = r.Rate / rr.Rate
		}
		b.add(r)
	}
	b.add(b.stormBaseline)
	b.closeAllLive()
	return nil
}
