package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// A Result is one measured run: one row of the table.
type Result struct {
	Scenario string `json:"scenario"` // a .. f
	Case     string `json:"case"`
	System   string `json:"system"` // "qrtalkd" or "relay"
	// Count of Unit done (messages, deliveries, connections, MB).
	Count   float64 `json:"count"`
	Unit    string  `json:"unit"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate_per_s"` // Count / Seconds
	// Latencies in milliseconds; zero when not measured.
	P50  float64 `json:"p50_ms,omitempty"`
	P99  float64 `json:"p99_ms,omitempty"`
	P999 float64 `json:"p999_ms,omitempty"`
	Max  float64 `json:"max_ms,omitempty"`
	// Offered rate of an open-loop run (per second).
	Offered float64 `json:"offered_per_s,omitempty"`
	Errors  int64   `json:"errors"`
	// Server process: CPU seconds during the run, CPU per unit, peak RSS.
	ServerCPU  float64 `json:"server_cpu_s"`
	CPUPerUnit float64 `json:"server_cpu_us_per_unit"`
	PeakRSSMiB float64 `json:"server_peak_rss_mib"`
	// PostgreSQL's share of ServerCPU and PeakRSSMiB (scenario g).
	DBCPU     float64            `json:"postgres_cpu_s,omitempty"`
	DBPeakMiB float64            `json:"postgres_peak_pss_mib,omitempty"`
	Ratio     float64            `json:"qrtalkd_over_relay,omitempty"` // rate ratio, on qrtalkd rows
	Notes     string             `json:"notes,omitempty"`
	Extra     map[string]float64 `json:"extra,omitempty"`
	measured  bool
}

// A Target is one of issue 6's targets and what this run says of it.
type Target struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Measured string `json:"measured"`
	Verdict  string `json:"verdict"` // met, missed, not measured
	Note     string `json:"note,omitempty"`
}

// A Report is a whole run.
type Report struct {
	Tool     string    `json:"tool"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Server   string    `json:"server"`
	Settings Settings  `json:"settings"`
	Notes    []string  `json:"notes"`
	Results  []Result  `json:"results"`
	Targets  []Target  `json:"targets"`
	Profiles []string  `json:"profiles,omitempty"`
	// Sweeps are the curves (scenario s), for --plot.
	Sweeps []Sweep `json:"sweeps,omitempty"`
	// Stores is what scenario g says beside its rows.
	Stores *StoresReport `json:"stores,omitempty"`
	// Baselines says, per scenario, what the bare relay is compared with
	// there, or why it is not.
	Baselines map[string]string `json:"baselines,omitempty"`
}

// latencies collects durations and reports percentiles.
type latencies struct {
	mu sync.Mutex
	v  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.v = append(l.v, d)
	l.mu.Unlock()
}

func (l *latencies) fill(r *Result) {
	l.mu.Lock()
	v := slices.Clone(l.v)
	l.mu.Unlock()
	if len(v) == 0 {
		return
	}
	slices.Sort(v)
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		i = max(0, min(i, len(v)-1))
		return float64(v[i]) / float64(time.Millisecond)
	}
	r.P50, r.P99, r.P999, r.Max = at(0.50), at(0.99), at(0.999), at(1)
}

// A tracker follows messages from their send to their acknowledgement by
// every recipient device, and records the latency of the last one.
type tracker struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[protocol.MessageID]*pending
	}
	lat  latencies
	mu   sync.Mutex
	done int64 // messages acknowledged by all their recipients
	acks int64 // acknowledgements
}

type pending struct {
	start time.Time
	left  int
}

func newTracker() *tracker {
	t := &tracker{}
	for i := range t.shards {
		t.shards[i].m = map[protocol.MessageID]*pending{}
	}
	return t
}

func (t *tracker) shard(id protocol.MessageID) *struct {
	mu sync.Mutex
	m  map[protocol.MessageID]*pending
} {
	return &t.shards[id[15]%64]
}

// put starts following message id, sent at start to n devices.
func (t *tracker) put(id protocol.MessageID, start time.Time, n int) {
	s := t.shard(id)
	s.mu.Lock()
	s.m[id] = &pending{start: start, left: n}
	s.mu.Unlock()
}

func (t *tracker) forget(id protocol.MessageID) {
	s := t.shard(id)
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// ack records one device's acknowledgement of id.
func (t *tracker) ack(id protocol.MessageID) {
	now := time.Now()
	s := t.shard(id)
	s.mu.Lock()
	p := s.m[id]
	var start time.Time
	last := false
	if p != nil {
		p.left--
		if p.left <= 0 {
			last = true
			start = p.start
			delete(s.m, id)
		}
	}
	s.mu.Unlock()
	t.mu.Lock()
	t.acks++
	if last {
		t.done++
	}
	t.mu.Unlock()
	if last {
		t.lat.add(now.Sub(start))
	}
}

func (t *tracker) counts() (done, acks int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done, t.acks
}

// ---- output ----

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtMs(v float64) string {
	if v == 0 {
		return "-"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	if v >= 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// printTable writes the results as an aligned table.
func printTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scen\tcase\tsystem\tcount\tsecs\trate\tunit/s\tp50 ms\tp99 ms\tp99.9 ms\tsrv CPU s\tCPU µs/unit\tpeak RSS MiB\tqrtalkd/relay\t")
	for _, r := range results {
		ratio := "-"
		if r.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Scenario, r.Case, r.System, fmtNum(r.Count), r.Seconds, fmtNum(r.Rate), r.Unit,
			fmtMs(r.P50), fmtMs(r.P99), fmtMs(r.P999),
			fmtNum(r.ServerCPU), fmtNum(r.CPUPerUnit), fmtNum(r.PeakRSSMiB), ratio)
	}
	tw.Flush()
}

// printMarkdown writes the results as a Markdown table (for
// docs/PERFORMANCE.md).
func printMarkdown(w io.Writer, rep *Report) {
	fmt.Fprintln(w, "| scen | case | system | count | s | rate | unit/s | p50 ms | p99 ms | p99.9 ms | server CPU s | CPU µs/unit | peak RSS MiB | qrtalkd/relay |")
	fmt.Fprintln(w, "|---|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rep.Results {
		ratio := "-"
		if r.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Case, r.System, fmtNum(r.Count), r.Seconds, fmtNum(r.Rate), r.Unit,
			fmtMs(r.P50), fmtMs(r.P99), fmtMs(r.P999),
			fmtNum(r.ServerCPU), fmtNum(r.CPUPerUnit), fmtNum(r.PeakRSSMiB), ratio)
	}
	fmt.Fprintln(w)
	printIdle(w, rep.Results, "- ")
	fmt.Fprintln(w)
	sweepMarkdown(w, rep.Sweeps)
	storesMarkdown(w, rep)
	for _, k := range slices.Sorted(maps.Keys(rep.Baselines)) {
		fmt.Fprintf(w, "- baseline of %s: %s\n", k, rep.Baselines[k])
	}
	if len(rep.Baselines) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "| target | want | measured | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, t := range rep.Targets {
		m := t.Measured
		if t.Note != "" {
			m += " (" + t.Note + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Want, m, t.Verdict)
	}
}

// printIdle says what scenario d is about, which the table's columns do
// not show: server RSS per idle channel.
func printIdle(w io.Writer, results []Result, prefix string) {
	for _, r := range results {
		if r.Scenario == "d" {
			fmt.Fprintf(w, "%sd: %s: server RSS %.0f -> %.0f MiB, %.1f KiB per channel",
				prefix, r.System, r.Extra["rss_before_mib"], r.Extra["rss_after_mib"], r.Extra["rss_per_conn_kib"])
			if h, ok := r.Extra["heap_live_per_conn_kib"]; ok {
				fmt.Fprintf(w, " (live heap %.1f KiB, goroutine stacks %.1f KiB, %.1f goroutines)",
					h, r.Extra["stack_per_conn_kib"], r.Extra["goroutines_per_conn"])
			}
			fmt.Fprintln(w)
		}
	}
}

func printTargets(w io.Writer, targets []Target) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tmeasured\tverdict\t")
	for _, t := range targets {
		m := t.Measured
		if t.Note != "" {
			m += " (" + t.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", t.Name, t.Want, m, strings.ToUpper(t.Verdict))
	}
	tw.Flush()
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// reprint reads a report written by --json, judges its targets again and
// prints its table.
func reprint(path string, out io.Writer) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rep.Targets = targets(rep.Results, &rep.Settings, rep.Machine.CPUs)
	fmt.Fprintf(out, "qrtalk-bench report of %s: %s\n\n", rep.Started.Format(time.RFC3339), rep.Server)
	printReport(out, &rep)
	return &rep, nil
}

// printReport writes the table, what the table's columns do not show
// (memory per idle channel, the sweeps, the stores side by side, the
// baselines) and the targets.
func printReport(out io.Writer, rep *Report) {
	printTable(out, rep.Results)
	printIdle(out, rep.Results, "")
	fmt.Fprintln(out)
	printSweeps(out, rep.Sweeps)
	printStores(out, rep)
	for _, k := range slices.Sorted(maps.Keys(rep.Baselines)) {
		fmt.Fprintf(out, "baseline of %s: %s\n", k, rep.Baselines[k])
	}
	if len(rep.Baselines) > 0 {
		fmt.Fprintln(out)
	}
	printTargets(out, rep.Targets)
}
