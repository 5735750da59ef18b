package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
)

// A Sweep is a curve: scenario a measured at several points, on qrtalkd
// and on the bare relay. "devices": full-rate throughput against connected
// devices; "rate": latency against offered rate, at one device count, the
// offered rate a percentage of qrtalkd's full rate there (the relay is
// offered the same rates, so that latencies compare at equal load).
type Sweep struct {
	Name   string       `json:"name"`
	Title  string       `json:"title"`
	X      string       `json:"x"`
	Points []SweepPoint `json:"points"`
}

// A SweepPoint is one measured run of a sweep.
type SweepPoint struct {
	System     string  `json:"system"` // qrtalkd or relay
	X          float64 `json:"x"`      // devices, or percent of qrtalkd's full rate
	Devices    int     `json:"devices"`
	Offered    float64 `json:"offered_per_s,omitempty"` // open loop; 0: closed loop (full rate)
	Rate       float64 `json:"rate_per_s"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	CPUPerUnit float64 `json:"server_cpu_us_per_unit"`
	Errors     int64   `json:"errors"`
	Skipped    int64   `json:"skipped,omitempty"` // open loop: sends not started, over 8192 in flight
	Row        string  `json:"row"`               // the case of the table row it comes from (scenario a's, or the sweep's own)
}

func pointOf(r *Result, x float64, devices int) SweepPoint {
	return SweepPoint{System: r.System, X: x, Devices: devices, Offered: r.Offered, Rate: r.Rate,
		P50: r.P50, P99: r.P99, P999: r.P999, CPUPerUnit: r.CPUPerUnit, Errors: r.Errors, Skipped: int64(r.Extra["skipped"]),
		Row: r.Scenario + ": " + r.Case}
}

// liveCase is the name of a live-delivery row.
func (b *bench) liveCase(n int, what string) string {
	return fmt.Sprintf("live %s, %d dev, %s", sizeName(b.s.MessageSize), n, what)
}

// findRow returns the result of scenario scen, system sys and case c, if
// this run has one.
func (b *bench) findRow(scen, sys, c string) *Result {
	for i := range b.rep.Results {
		r := &b.rep.Results[i]
		if r.Scenario == scen && r.System == sys && r.Case == c {
			return r
		}
	}
	return nil
}

// prepareLive makes exactly pool[:n] hold live channels (and relay
// devices [0, n) subscriptions), each sender with its connection open,
// and returns the pair templates.
func (b *bench) prepareLive(ctx context.Context, n int) ([][]byte, error) {
	if err := b.ensurePool(ctx, n, false); err != nil {
		return nil, err
	}
	parallel(ctx, len(b.pool)-n, 256, func(i int) error { b.closeLive(b.pool[n+i]); return nil })
	if err := b.connectLive(ctx, 0, n, true); err != nil {
		return nil, err
	}
	if err := b.ensurePool(ctx, n, true); err != nil {
		return nil, err
	}
	tmpls, err := b.pairTemplates(ctx, n)
	if err != nil {
		return nil, err
	}
	if b.relay != nil {
		if len(b.relayDevs) > n {
			rest := b.relayDevs[n:]
			parallel(ctx, len(rest), 256, func(i int) error { rest[i].unsubscribe(); return nil })
		}
		if err := b.subscribeRelay(ctx, n, true); err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	return tmpls, nil
}

// scenarioSweeps measures the curves. A point that scenario a measured in
// this run is taken from it; the others are measured here, for
// --sweep-duration each, and added to the table as scenario s.
func (b *bench) scenarioSweeps(ctx context.Context) error {
	s := b.s
	devs := ascending(s.SweepDevices)
	needed := max(slices.Max(devs), s.SweepAt)
	if err := b.ensurePool(ctx, needed, false); err != nil {
		return err
	}
	dev := Sweep{Name: "devices", Title: "Live delivery at full rate against connected devices",
		X: "connected devices (each holding a live channel; device i sends to i+1)"}
	prepared := -1
	var tmpls [][]byte
	prepare := func(n int) error {
		if prepared == n {
			return nil
		}
		b.logf("s: %d connected devices", n)
		var err error
		tmpls, err = b.prepareLive(ctx, n)
		prepared = n
		return err
	}
	// full measures (or finds) qrtalkd's and the relay's full rate at n.
	full := func(n int) (q, r *Result, err error) {
		c := b.liveCase(n, "full rate")
		q, r = b.findRow("a", "qrtalkd", c), b.findRow("a", "relay", c)
		if q == nil {
			q, r = b.findRow("s", "qrtalkd", c), b.findRow("s", "relay", c)
		}
		if q != nil && (r != nil || b.relay == nil) {
			return q, r, nil
		}
		if err := prepare(n); err != nil {
			return nil, nil, err
		}
		q = b.liveRun(ctx, n, tmpls, 0, s.SweepDuration, false)
		q.Scenario, q.Case = "s", c
		if b.relay != nil {
			r = b.relayLiveRun(ctx, n, tmpls[0], 0, s.SweepDuration)
			r.Scenario, r.Case = "s", c
			if r.Rate > 0 {
				q.Ratio = q.Rate / r.Rate
			}
		}
		b.add(q, r)
		q, r = b.findRow("s", "qrtalkd", c), b.findRow("s", "relay", c)
		if q.Rate == 0 {
			return q, r, fmt.Errorf("%d devices: no message delivered at full rate (%s)", n, q.Notes)
		}
		return q, r, nil
	}
	for _, n := range devs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		q, r, err := full(n)
		if err != nil {
			return err
		}
		dev.Points = append(dev.Points, pointOf(q, float64(n), n))
		if r != nil {
			dev.Points = append(dev.Points, pointOf(r, float64(n), n))
		}
	}
	b.rep.Sweeps = append(b.rep.Sweeps, dev)

	n := s.SweepAt
	rate := Sweep{Name: "rate", Title: fmt.Sprintf("Live delivery latency against offered rate, %d connected devices", n),
		X: "offered rate, percent of qrtalkd's full rate (open loop; the relay is offered the same rates)"}
	q, _, err := full(n)
	if err != nil {
		return err
	}
	fullRate := q.Rate
	for _, pct := range ascending(s.SweepRates) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		offered := fullRate * float64(pct) / 100
		var rq, rr *Result
		if pct == 50 {
			// Scenario a's half-rate run, if it ran at n.
			rq = b.findRow("a", "qrtalkd", b.liveCase(n, "half rate"))
			rr = b.findRow("a", "relay", b.liveCase(n, "half rate")+" (qrtalkd's)")
			if rq != nil && math.Abs(rq.Offered-offered) > 1e-9*offered {
				rq, rr = nil, nil // a different full-rate run
			}
		}
		if rq == nil {
			if err := prepare(n); err != nil {
				return err
			}
			c := b.liveCase(n, fmt.Sprintf("%d%% of full rate", pct))
			rq = b.liveRun(ctx, n, tmpls, offered, s.SweepDuration, false)
			rq.Scenario, rq.Case = "s", c
			if b.relay != nil {
				rr = b.relayLiveRun(ctx, n, tmpls[0], offered, s.SweepDuration)
				rr.Scenario, rr.Case = "s", c+" (qrtalkd's)"
			}
			b.add(rq, rr)
			rq = b.findRow("s", "qrtalkd", c)
			if rr != nil {
				rr = b.findRow("s", "relay", c+" (qrtalkd's)")
			}
		}
		rate.Points = append(rate.Points, pointOf(rq, float64(pct), n))
		if rr != nil {
			rate.Points = append(rate.Points, pointOf(rr, float64(pct), n))
		}
	}
	b.rep.Sweeps = append(b.rep.Sweeps, rate)
	// Leave the channels as scenario a left them, for what follows.
	if len(s.LiveDevices) > 0 && slices.Contains(s.Scenarios, "a") {
		_, err = b.prepareLive(ctx, slices.Max(s.LiveDevices))
	}
	return err
}

// printSweeps writes the sweeps as small tables.
func printSweeps(w io.Writer, sweeps []Sweep) {
	for _, sw := range sweeps {
		fmt.Fprintf(w, "sweep %s: %s\n", sw.Name, sw.Title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		switch sw.Name {
		case "devices":
			fmt.Fprintln(tw, "devices\tqrtalkd msgs/s\trelay msgs/s\tqrtalkd/relay\tqrtalkd p99 ms\trelay p99 ms\tqrtalkd CPU µs/msg\t")
		default:
			fmt.Fprintln(tw, "% of full\toffered/s\tqrtalkd p50 ms\tp99 ms\tp99.9 ms\trelay p50 ms\tp99 ms\tp99.9 ms\t")
		}
		for _, x := range sweepXs(sw) {
			q, r := sweepAt(sw, "qrtalkd", x), sweepAt(sw, "relay", x)
			switch sw.Name {
			case "devices":
				ratio := "-"
				if q.Rate > 0 && r.Rate > 0 {
					ratio = fmt.Sprintf("%.2f", q.Rate/r.Rate)
				}
				fmt.Fprintf(tw, "%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x, fmtNum(q.Rate), fmtNum(r.Rate), ratio,
					fmtMs(q.P99), fmtMs(r.P99), fmtNum(q.CPUPerUnit))
			default:
				fmt.Fprintf(tw, "%.0f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x, fmtNum(q.Offered),
					fmtMs(q.P50), fmtMs(q.P99), fmtMs(q.P999), fmtMs(r.P50), fmtMs(r.P99), fmtMs(r.P999))
			}
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
}

func sweepXs(sw Sweep) []float64 {
	var xs []float64
	for _, p := range sw.Points {
		if !slices.Contains(xs, p.X) {
			xs = append(xs, p.X)
		}
	}
	slices.Sort(xs)
	return xs
}

func sweepAt(sw Sweep, system string, x float64) SweepPoint {
	for _, p := range sw.Points {
		if p.System == system && p.X == x {
			return p
		}
	}
	return SweepPoint{}
}

// sweepMarkdown writes the sweeps as Markdown tables.
func sweepMarkdown(w io.Writer, sweeps []Sweep) {
	for _, sw := range sweeps {
		fmt.Fprintf(w, "%s:\n\n", sw.Title)
		if sw.Name == "devices" {
			fmt.Fprintln(w, "| devices | qrtalkd msgs/s | relay msgs/s | qrtalkd/relay | qrtalkd p99 ms | relay p99 ms |")
			fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|")
		} else {
			fmt.Fprintln(w, "| % of full | offered/s | qrtalkd p50 ms | qrtalkd p99 ms | relay p50 ms | relay p99 ms |")
			fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|")
		}
		for _, x := range sweepXs(sw) {
			q, r := sweepAt(sw, "qrtalkd", x), sweepAt(sw, "relay", x)
			if sw.Name == "devices" {
				ratio := "-"
				if q.Rate > 0 && r.Rate > 0 {
					ratio = fmt.Sprintf("%.2f", q.Rate/r.Rate)
				}
				fmt.Fprintf(w, "| %.0f | %s | %s | %s | %s | %s |\n", x, fmtNum(q.Rate), fmtNum(r.Rate), ratio, fmtMs(q.P99), fmtMs(r.P99))
			} else {
				fmt.Fprintf(w, "| %.0f%% | %s | %s | %s | %s | %s |\n", x, fmtNum(q.Offered), fmtMs(q.P50), fmtMs(q.P99), fmtMs(r.P50), fmtMs(r.P99))
			}
		}
		fmt.Fprintln(w)
	}
}
