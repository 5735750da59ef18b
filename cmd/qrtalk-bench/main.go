// Command qrtalk-bench is QRTalk's load generator. It drives a qrtalkd on
// this machine over real TLS with many simulated devices, each with its
// own IDs, certificate, secure-channel session and TLS connections, using
// the real Go SDK (package client); and, in the same run, a bare HTTPS +
// WebSocket relay written with the same libraries, as the baseline that
// qrtalkd is compared with.
//
// Usage:
//
//	qrtalk-bench [--scenario all|a,b,c,d,e,f,g,s] [--json FILE] [--plot DIR] [options]
//	qrtalk-bench --server https://127.0.0.1:8443 --fingerprint FP [options]
//	qrtalk-bench --from-json FILE [--plot DIR] [--markdown FILE]
//
// Without --server it spawns the server itself, as a child process on a
// loopback port with a temporary data directory, open registration and no
// rate limits, so that the server's CPU time and RSS can be read from
// /proc: by default this same executable running qrtalkd's daemon (the
// code of 'qrtalkd serve') with a pprof listener beside it, or with
// --qrtalkd PATH that binary. The bare relay is always a child process.
//
// Scenarios (issue 6):
//
//	a  live delivery: 1 KiB messages to 1 recipient device, with 100 and
//	   1,000 connected devices, at full rate (closed loop) and at half of
//	   it (open loop); latency from send to the recipient's acknowledgement
//	b  store-and-forward: N messages to offline devices (durably queued),
//	   then all drain on connect: insert rate and drain rate
//	c  group fan-out: one message to 100 and to 1,000 devices
//	d  idle live channels: server RSS per connection
//	e  reconnect storm: every idle device drops and reconnects at once,
//	   keeping its session (warm) or as a restarted client (cold)
//	f  media: 10 MiB blobs up and down
//	g  the SQLite store and the PostgreSQL store side by side: a, b and
//	   c at one size each on a fresh server with each store
//	s  sweeps: scenario a's full rate against connected devices, and its
//	   latency against offered rate (25 to 100% of the full rate); --plot
//	   draws them as PNG
//
// The bench only talks to 127.0.0.1 and ::1, stops by itself (every run is
// bounded by --duration and by a count, the whole by --timeout) and prints
// a table; --json writes the full report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Settings are the bench's options.
type Settings struct {
	Server      string `json:"server,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	ServerPID   int    `json:"server_pid,omitempty"`
	Metrics     string `json:"metrics,omitempty"`
	Qrtalkd     string `json:"qrtalkd,omitempty"`

	Scenarios     []string      `json:"scenarios"`
	Duration      time.Duration `json:"duration_ns"`
	Messages      int           `json:"messages"`
	LiveDevices   []int         `json:"live_devices"`
	Concurrency   int           `json:"concurrency"`
	MessageSize   int           `json:"message_size"`
	StoreMessages int           `json:"store_messages"`
	StoreDevices  int           `json:"store_devices"`
	GroupSizes    []int         `json:"group_sizes"`
	GroupMessages int           `json:"group_messages"`
	Idle          int           `json:"idle"`
	Storm         []string      `json:"storm"`
	Blobs         int           `json:"blobs"`
	BlobSize      int64         `json:"blob_size"`
	Relay         bool          `json:"relay"`

	SweepDevices  []int         `json:"sweep_devices"`
	SweepAt       int           `json:"sweep_at"`
	SweepRates    []int         `json:"sweep_rates"`
	SweepDuration time.Duration `json:"sweep_duration_ns"`

	Postgres       string        `json:"-"` // may hold a password
	GDevices       int           `json:"g_devices"`
	GGroup         int           `json:"g_group"`
	GStoreMessages int           `json:"g_store_messages"`
	GStoreDevices  int           `json:"g_store_devices"`
	GDuration      time.Duration `json:"g_duration_ns"`
	Plot           string        `json:"-"`
	requireStores  bool          // g named on the command line: not measuring it is an error
	JSON           string        `json:"-"`
	FromJSON       string        `json:"-"`
	Markdown       string        `json:"-"`
	ProfileDir     string        `json:"-"`
	Timeout        time.Duration `json:"timeout_ns"`
	Quiet          bool          `json:"-"`
}

// allScenarios is the order they run in: idle channels first, on a server
// whose heap has not yet grown under load (RSS per channel is then not
// hidden in memory freed by earlier scenarios); c reuses a's channels.
var allScenarios = []string{"d", "e", "a", "s", "c", "b", "f", "g"}

func main() {
	if kind := os.Getenv(childEnv); kind != "" {
		os.Exit(runChild(kind, os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "qrtalk-bench: %v\n", err)
		return 2
	}
	progress := stderr
	if s.Quiet {
		progress = io.Discard
	}
	var rep *Report
	if s.FromJSON != "" {
		rep, err = reprint(s.FromJSON, stdout)
		s.JSON = ""
		if err == nil && s.Plot != "" {
			var files []string
			files, err = writePlots(s.Plot, rep)
			for _, f := range files {
				fmt.Fprintf(stdout, "plot: %s\n", f)
			}
		}
	} else {
		rep, err = Run(ctx, s, stdout, progress)
	}
	if rep != nil && s.JSON != "" {
		if werr := writeJSON(s.JSON, rep); werr != nil {
			fmt.Fprintf(stderr, "qrtalk-bench: writing %s: %v\n", s.JSON, werr)
			return 1
		}
	}
	if rep != nil && s.Markdown != "" {
		f, werr := os.Create(s.Markdown)
		if werr == nil {
			printMarkdown(f, rep)
			werr = f.Close()
		}
		if werr != nil {
			fmt.Fprintf(stderr, "qrtalk-bench: writing %s: %v\n", s.Markdown, werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "qrtalk-bench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*Settings, error) {
	s := &Settings{}
	fs := flag.NewFlagSet("qrtalk-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.Server, "server", "", "URL of a running qrtalkd on 127.0.0.1 or ::1 (default: spawn one); it needs open registration and no rate limits")
	fs.StringVar(&s.Fingerprint, "fingerprint", "", "with --server: the server key's fingerprint")
	fs.IntVar(&s.ServerPID, "server-pid", 0, "with --server: its process ID, to read its CPU time and RSS")
	fs.StringVar(&s.Metrics, "metrics", "", "with --server: its metrics listener, host:port on 127.0.0.1 (b then waits for the queue to empty)")
	spawn := fs.Bool("spawn", false, "spawn the server (the default without --server)")
	fs.StringVar(&s.Qrtalkd, "qrtalkd", "", "spawn this qrtalkd binary instead of the bench's own server child")
	scen := fs.String("scenario", "all", "scenarios to run: all, or a comma-separated list of a (live), b (store), c (group), d (idle), e (storm), f (media), g (stores: SQLite and PostgreSQL), s (sweeps)")
	fs.DurationVar(&s.Duration, "duration", 5*time.Second, "length of each measured run of scenarios a and c (the sweeps' points use --sweep-duration: keep them equal, s reuses a's points)")
	fs.IntVar(&s.Messages, "messages", 1_000_000, "at most this many messages in each measured run of scenarios a and c")
	live := fs.String("devices", "100,1000", "a: connected device counts")
	fs.IntVar(&s.Concurrency, "concurrency", 64, "a, b: messages in flight at full rate (closed loop)")
	fs.IntVar(&s.MessageSize, "size", 1024, "a, b: message body size in bytes")
	fs.IntVar(&s.StoreMessages, "store-messages", 100_000, "b: messages queued for offline devices")
	fs.IntVar(&s.StoreDevices, "store-devices", 1000, "b: offline devices they are queued for (each also sends)")
	group := fs.String("group", "100,1000", "c: group sizes (recipient devices)")
	fs.IntVar(&s.GroupMessages, "group-messages", 200, "c: at most this many group messages per size")
	fs.IntVar(&s.Idle, "idle", 10_000, "d, e: idle live channels, issue 6's size (on a busy machine, 4000 keeps --scenario all under 10 minutes; one bench process holds at most about 19,000: open-files limit)")
	storm := fs.String("storm", "warm,cold", "e: reconnect kinds: warm (the SDK keeps its session) and/or cold (new Conn: new secure-channel session)")
	fs.IntVar(&s.Blobs, "blobs", 10, "f: blobs uploaded and downloaded")
	blobSize := fs.String("blob-size", "10MiB", "f: blob size (B, KiB, MiB)")
	fs.BoolVar(&s.Relay, "relay", true, "run the bare-relay baseline beside scenarios a, b, c, d, e, f and s")
	sweepDevs := fs.String("sweep-devices", "100,300,1000,3000", "s: connected device counts of the throughput curve (points scenario a measured are reused)")
	fs.IntVar(&s.SweepAt, "sweep-at", 1000, "s: connected devices of the latency curve")
	sweepRates := fs.String("sweep-rates", "25,50,75,100", "s: offered rates of the latency curve, in percent of qrtalkd's full rate")
	fs.DurationVar(&s.SweepDuration, "sweep-duration", 5*time.Second, "s: length of each measured point")
	pgDefault := defaultPostgres
	if v := os.Getenv("QRTALK_TEST_POSTGRES"); v != "" {
		pgDefault = v
	}
	fs.StringVar(&s.Postgres, "postgres", pgDefault, "g: PostgreSQL database on 127.0.0.1 (default $QRTALK_TEST_POSTGRES, else the tests' database); the bench works in a schema of its own, dropped at the end")
	fs.IntVar(&s.GDevices, "g-devices", 300, "g: connected devices of live delivery (full rate)")
	fs.IntVar(&s.GGroup, "g-group", 100, "g: group size of the fan-out")
	fs.IntVar(&s.GStoreMessages, "g-store-messages", 10_000, "g: messages queued for offline devices")
	fs.IntVar(&s.GStoreDevices, "g-store-devices", 100, "g: offline devices they are queued for (10,000 to 100: 100 each, as in b)")
	fs.DurationVar(&s.GDuration, "g-duration", 5*time.Second, "g: length of the live-delivery and fan-out runs")
	fs.StringVar(&s.Plot, "plot", "", "write PNG plots of the sweeps to this directory (with --from-json: of a saved report)")
	fs.StringVar(&s.JSON, "json", "", "write the report as JSON to this file")
	fs.StringVar(&s.Markdown, "markdown", "", "write the table as Markdown to this file")
	fs.StringVar(&s.FromJSON, "from-json", "", "run nothing: print the table of a report written by --json (targets judged again)")
	fs.StringVar(&s.ProfileDir, "profile-dir", "", "write pprof CPU and allocation profiles of the spawned server during scenario a here")
	fs.DurationVar(&s.Timeout, "timeout", 20*time.Minute, "stop everything after this long")
	fs.BoolVar(&s.Quiet, "quiet", false, "no progress on standard error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: qrtalk-bench [options]\n\nLoad generator for qrtalkd (issue 6). Options:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *spawn && s.Server != "" {
		return nil, errors.New("--spawn and --server exclude each other")
	}
	if s.Server != "" {
		if err := checkLoopbackURL(s.Server); err != nil {
			return nil, err
		}
		if s.Fingerprint == "" {
			return nil, errors.New("--server needs --fingerprint")
		}
		if s.Qrtalkd != "" {
			return nil, errors.New("--qrtalkd spawns a server: not with --server")
		}
		if s.Metrics != "" {
			if err := checkLoopbackURL("https://" + s.Metrics); err != nil {
				return nil, fmt.Errorf("--metrics: want 127.0.0.1:PORT or [::1]:PORT")
			}
		}
	}
	var err error
	if s.Scenarios, err = parseScenarios(*scen); err != nil {
		return nil, err
	}
	if s.LiveDevices, err = parseInts("--devices", *live, 2); err != nil {
		return nil, err
	}
	if s.GroupSizes, err = parseInts("--group", *group, 1); err != nil {
		return nil, err
	}
	if s.SweepDevices, err = parseInts("--sweep-devices", *sweepDevs, 2); err != nil {
		return nil, err
	}
	if s.SweepRates, err = parseInts("--sweep-rates", *sweepRates, 1); err != nil {
		return nil, err
	}
	if slices.Max(s.SweepRates) > 200 {
		return nil, errors.New("--sweep-rates: at most 200 (percent of the full rate)")
	}
	s.requireStores = *scen != "all" && slices.Contains(s.Scenarios, "g")
	if s.requireStores {
		// Named on the command line: refuse now what g would refuse.
		// With "all", g says why it was not measured and the rest runs.
		if s.Server != "" {
			return nil, errors.New("scenario g spawns servers of its own: not with --server")
		}
		if err := checkLoopbackPG(s.Postgres); err != nil {
			return nil, err
		}
	}
	if slices.Max(s.GroupSizes) > 2047 {
		return nil, errors.New("--group: at most 2047 devices (an envelope holds 2048, the sender's included)")
	}
	for _, k := range strings.Split(*storm, ",") {
		k = strings.TrimSpace(k)
		if k != "warm" && k != "cold" {
			return nil, fmt.Errorf("--storm: %q is neither warm nor cold", k)
		}
		s.Storm = append(s.Storm, k)
	}
	if s.BlobSize, err = parseSize(*blobSize); err != nil {
		return nil, fmt.Errorf("--blob-size: %w", err)
	}
	switch {
	case s.Duration <= 0 || s.Duration > time.Hour:
		return nil, errors.New("--duration must be from 1ns to 1h")
	case s.Messages < 1:
		return nil, errors.New("--messages must be at least 1")
	case s.Concurrency < 1 || s.Concurrency > 10_000:
		return nil, errors.New("--concurrency must be from 1 to 10000")
	case s.MessageSize < 1 || s.MessageSize > 256<<10:
		return nil, errors.New("--size must be from 1 to 262144")
	case s.StoreMessages < 1 || s.StoreDevices < 2:
		return nil, errors.New("--store-messages must be at least 1 and --store-devices at least 2")
	case s.GroupMessages < 1:
		return nil, errors.New("--group-messages must be at least 1")
	case s.Idle < 1 || s.Idle > 19_000:
		return nil, errors.New("--idle must be from 1 to 19000 (the open-files limit of one process)")
	case s.Blobs < 1 || s.BlobSize < 1:
		return nil, errors.New("--blobs and --blob-size must be at least 1")
	case s.SweepAt < 2 || s.SweepAt > 19_000 || slices.Max(s.SweepDevices) > 19_000:
		return nil, errors.New("--sweep-at and --sweep-devices must be from 2 to 19000")
	case s.SweepDuration <= 0 || s.SweepDuration > time.Hour || s.GDuration <= 0 || s.GDuration > time.Hour:
		return nil, errors.New("--sweep-duration and --g-duration must be from 1ns to 1h")
	case s.GDevices < 2 || s.GDevices > 19_000 || s.GGroup < 1 || s.GGroup > 2047:
		return nil, errors.New("--g-devices must be from 2 to 19000 and --g-group from 1 to 2047")
	case s.GStoreMessages < 1 || s.GStoreDevices < 2:
		return nil, errors.New("--g-store-messages must be at least 1 and --g-store-devices at least 2")
	case s.Timeout <= 0:
		return nil, errors.New("--timeout must be positive")
	}
	return s, nil
}

func parseScenarios(v string) ([]string, error) {
	if v == "all" {
		return slices.Clone(allScenarios), nil
	}
	names := map[string]string{"a": "a", "live": "a", "b": "b", "store": "b", "c": "c", "group": "c",
		"d": "d", "idle": "d", "e": "e", "storm": "e", "f": "f", "media": "f", "g": "g", "stores": "g", "s": "s", "sweep": "s", "sweeps": "s"}
	var out []string
	for _, s := range strings.Split(v, ",") {
		n, ok := names[strings.TrimSpace(s)]
		if !ok {
			return nil, fmt.Errorf("--scenario: unknown scenario %q", s)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	// Run in the order of allScenarios.
	slices.SortFunc(out, func(x, y string) int { return slices.Index(allScenarios, x) - slices.Index(allScenarios, y) })
	return out, nil
}

func parseInts(name, v string, least int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < least || n > 100_000 {
			return nil, fmt.Errorf("%s: %q is not a count from %d to 100000", name, f, least)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			x, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
			if err != nil || x < 1 {
				return 0, fmt.Errorf("%q is not a size", v)
			}
			return x * u.mult, nil
		}
	}
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil || x < 1 {
		return 0, fmt.Errorf("%q is not a size", v)
	}
	return x, nil
}

// checkLoopbackURL refuses a server that is not on this machine's
// loopback: the bench loads a server hard and must never be pointed at
// someone else's.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--server %q: want https://127.0.0.1:PORT or https://[::1]:PORT", raw)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !(ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback)) {
		return fmt.Errorf("--server %q: the bench only talks to 127.0.0.1 and ::1", raw)
	}
	return nil
}
