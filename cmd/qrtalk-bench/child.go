package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // the spawned server child serves profiles on a loopback port of its own
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/daemon"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// The bench runs the servers it measures as child processes, so that
// their CPU time and RSS are theirs alone: /proc/PID of the child.
//
// A child is this same executable started with childEnv set: "server" runs
// qrtalkd's daemon.Start (the code of 'qrtalkd serve') with a loopback
// pprof listener beside it; "relay" runs the bare relay. With --qrtalkd
// PATH, the server child is that binary instead ('PATH serve').
const childEnv = "QRTALK_BENCH_CHILD"

// serverKeyIndex is the test key the spawned server uses: a fixed key, so
// that the server does not spend seconds generating one. Devices use the
// others.
const serverKeyIndex = testkeys.Count - 1

// childHello is the one JSON line a child prints once it serves.
type childHello struct {
	URL         string `json:"url"`
	Fingerprint string `json:"fingerprint,omitempty"` // qrtalkd: server key fingerprint
	CertSHA256  string `json:"cert_sha256,omitempty"` // relay: pinned certificate
	Pprof       string `json:"pprof,omitempty"`       // host:port of net/http/pprof
	Metrics     string `json:"metrics,omitempty"`     // host:port of qrtalkd's /metrics
}

// serverArgs are the qrtalkd options of a measured server: loopback, open
// registration, and no rate limits (every simulated device comes from
// 127.0.0.1, and a rate limit would measure itself). store is "" for the
// SQLite file in the data directory, or a postgres:// URL.
func serverArgs(data, store string) []string {
	args := []string{
		"--data", data,
		"--listen", "127.0.0.1:0",
		"--registration", "open",
		"--rate-ip", "off",
		"--rate-device", "off",
		"--rate-directory", "off",
		"--log-level", "warn",
		"--metrics-listen", "127.0.0.1:0",
	}
	if store != "" {
		args = append(args, "--store", store)
	}
	return args
}

// runChild is main for a child process. It serves until its standard
// input closes (the bench is done, or died) or it is signalled.
func runChild(kind string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	var err error
	switch kind {
	case "server":
		err = serverChild(ctx, args)
	case "relay":
		err = relayChild(ctx, args)
	default:
		err = fmt.Errorf("unknown child kind %q", kind)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "qrtalk-bench %s child: %v\n", kind, err)
		return 1
	}
	return 0
}

func serverChild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	data := fs.String("data", "", "data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The store comes in the environment, as qrtalkd reads it, so that a
	// PostgreSQL URL is not on the command line for ps to show.
	cfg, err := config.Load(serverArgs(*data, os.Getenv(storeEnv)), config.Environment{})
	if err != nil {
		return err
	}
	d, err := daemon.Start(ctx, cfg, daemon.Options{
		Logger:      daemon.NewLogger(cfg, os.Stderr),
		GenerateKey: func() (*protocol.PrivateKey, error) { return testkeys.Key(serverKeyIndex), nil },
	})
	if err != nil {
		return err
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// Besides net/http/pprof's handlers: a CPU profile that the bench
	// starts and stops around one phase of a run, written to a file.
	http.HandleFunc("POST /bench/cpu/start", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Create(r.URL.Query().Get("file"))
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
			} else {
				cpuFile = f
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	http.HandleFunc("POST /bench/cpu/stop", func(w http.ResponseWriter, r *http.Request) {
		pprof.StopCPUProfile()
		if cpuFile != nil {
			cpuFile.Close()
			cpuFile = nil
		}
	})
	psrv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
	go psrv.Serve(pln)
	h := childHello{URL: d.URL(), Fingerprint: d.Fingerprint().String(), Pprof: pln.Addr().String()}
	if a := d.MetricsAddr(); a != nil {
		h.Metrics = a.String()
	}
	hello(h)
	select {
	case <-ctx.Done():
	case <-d.Failed():
	}
	psrv.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	d.Shutdown(sctx)
	return d.Wait()
}

// cpuFile is the file of the CPU profile being taken, if any (the bench
// starts and stops profiles one at a time).
var cpuFile *os.File

func hello(h childHello) {
	b, _ := json.Marshal(h)
	os.Stdout.Write(append(b, '\n'))
}

// storeEnv is qrtalkd's environment variable for --store.
const storeEnv = "QRTALKD_STORE"

// childEnviron is the bench's environment without qrtalkd's own variables
// (QRTALKD_*: a server child is configured by the bench alone), plus
// key=value when value is not empty.
func childEnviron(key, value string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QRTALKD_") {
			env = append(env, kv)
		}
	}
	if value != "" {
		env = append(env, key+"="+value)
	}
	return env
}

// A child is a spawned server process.
type child struct {
	kind  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   string // its standard error, in a file
	hello childHello
	done  chan struct{}
	err   error
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// spawnChild starts this executable as a child of kind ("server",
// "relay"), or the qrtalkd binary at qrtalkd for a server, and waits until
// it serves. dir is its working directory (its data lives below it); store
// is a server's store ("" for SQLite, or a postgres:// URL).
func spawnChild(ctx context.Context, kind, qrtalkd, dir, store string) (*child, error) {
	data := filepath.Join(dir, kind+"-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if kind == "server" && qrtalkd != "" {
		// The real binary: give it the fixed server key so that it does
		// not generate one.
		if err := os.WriteFile(daemon.KeyPath(data), testkeys.Key(serverKeyIndex).PEM(), 0o600); err != nil {
			return nil, err
		}
		cmd = exec.Command(qrtalkd, append([]string{"serve"}, append(serverArgs(data, ""), "--qr=false")...)...)
		cmd.Env = childEnviron(storeEnv, store)
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(exe, "--data", data)
		cmd.Env = append(childEnviron(storeEnv, store), childEnv+"="+kind)
	}
	cmd.Dir = dir
	setChildAttrs(cmd)
	logPath := filepath.Join(dir, kind+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	logf.Close()
	c := &child{kind: kind, cmd: cmd, stdin: stdin, log: logPath, done: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.done) }()

	got := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		real := kind == "server" && qrtalkd != ""
		var h childHello
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if sent {
				continue // keep draining
			}
			if !real {
				if err := json.Unmarshal([]byte(line), &h); err != nil {
					got <- fmt.Errorf("child said %q: %v", line, err)
					sent = true
					continue
				}
				c.hello = h
				got <- nil
				sent = true
				continue
			}
			// qrtalkd serve prints "  URL:  https://...",
			// "  Fingerprint:   <base64url>" (then the numeric form) and
			// "  Metrics:  http://host:port/metrics".
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "URL:" {
				h.URL = f[1]
			}
			if len(f) == 2 && f[0] == "Fingerprint:" && h.Fingerprint == "" {
				h.Fingerprint = f[1]
			}
			if len(f) == 2 && f[0] == "Metrics:" {
				h.Metrics = strings.TrimSuffix(strings.TrimPrefix(f[1], "http://"), "/metrics")
			}
			if h.URL != "" && h.Fingerprint != "" && h.Metrics != "" {
				c.hello = h
				got <- nil
				sent = true
			}
		}
		if !sent {
			got <- errors.New("child ended its output before it served")
		}
	}()
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	select {
	case err = <-got:
	case <-timer.C:
		err = errors.New("child did not start within 60s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.stop()
		tail, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("starting the %s: %w\n%s", kind, err, lastLines(string(tail), 15))
	}
	return c, nil
}

// stop ends the child: its standard input closes (a bench child then
// shuts down), then SIGTERM, then SIGKILL.
func (c *child) stop() {
	c.stdin.Close()
	select {
	case <-c.done:
		return
	case <-time.After(3 * time.Second):
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(20 * time.Second):
	}
	c.cmd.Process.Kill()
	<-c.done
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
