package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// defaultPostgres is the database scenario g uses when neither --postgres
// nor $QRTALK_TEST_POSTGRES names one: the tests' database on this machine.
const defaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// pgDB is the PostgreSQL database of one run of scenario g: a schema of
// its own in the database the user named, created for the run and dropped
// with everything in it at the end, so that the bench never touches the
// tests' tables or another run's (as internal/store/postgres's tests
// isolate themselves).
type pgDB struct {
	admin  *pgx.Conn // the bench's own connection (application_name qrtalk-bench)
	schema string
	app    string // application_name of the server's connections
	dsn    string // for the server: search_path and application_name set
}

// openPG connects to base, which must be on 127.0.0.1 or ::1, and creates
// the run's schema.
func openPG(ctx context.Context, base string) (*pgDB, error) {
	if err := checkLoopbackPG(base); err != nil {
		return nil, err
	}
	var b [6]byte
	rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	p := &pgDB{schema: "qrtalk_bench_" + tag, app: "qrtalkd-bench-" + tag}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	admin, err := pgx.Connect(cctx, withParams(base, map[string]string{"application_name": "qrtalk-bench"}))
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if _, err := admin.Exec(cctx, "CREATE SCHEMA "+p.schema); err != nil {
		admin.Close(context.Background())
		return nil, fmt.Errorf("CREATE SCHEMA: %w", err)
	}
	p.admin = admin
	p.dsn = withParams(base, map[string]string{"search_path": p.schema, "application_name": p.app})
	return p, nil
}

// close drops the run's schema and closes the bench's connection.
func (p *pgDB) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := p.admin.Exec(ctx, "DROP SCHEMA "+p.schema+" CASCADE")
	p.admin.Close(ctx)
	return err
}

// withParams sets query parameters of a postgres:// URL.
func withParams(dsn string, params map[string]string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// checkLoopbackPG refuses a database that is not on this machine's
// loopback, and any DSN that is not a postgres:// URL.
func checkLoopbackPG(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("--postgres: want postgres://USER@127.0.0.1:5432/DATABASE")
	}
	host := u.Hostname()
	if host == "" {
		host = u.Query().Get("host")
	}
	ip := net.ParseIP(host)
	if ip == nil || !(ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback)) {
		return fmt.Errorf("--postgres: host %q: the bench only talks to 127.0.0.1 and ::1", host)
	}
	return nil
}

// redactDSN is dsn without its password, for output.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// pgHow says how PostgreSQL's share is counted, in the output and the
// report.
const pgHow = "PostgreSQL's own CPU and memory are counted in the server columns of the PostgreSQL rows: " +
	"CPU = user + system time (/proc/PID/stat) of the backends serving this qrtalkd (found in pg_stat_activity by the " +
	"application_name the bench gives its connections) and of the cluster's background processes (walwriter, " +
	"checkpointer, background writer, autovacuum), sampled every 200 ms so that a backend that exits is counted up to " +
	"its last sample; memory = the peak, over the samples, of their summed PSS (/proc/PID/smaps_rollup: shared buffers " +
	"counted once, not once per process), added to qrtalkd's peak RSS. Other clients' backends are not counted."

// A pgMeter measures the PostgreSQL processes that work for one qrtalkd
// during one measured run.
type pgMeter struct {
	p    *pgDB
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	base  map[int]float64 // CPU seconds at first sight (0 for a process born during the run)
	last  map[int]float64
	peak  int64 // bytes of summed PSS
	procs int   // processes seen
	err   error
}

// start begins sampling. The processes that exist now are the baseline;
// those that appear later started during the run and count from zero.
func (p *pgDB) start(ctx context.Context) *pgMeter {
	m := &pgMeter{p: p, stop: make(chan struct{}), done: make(chan struct{}), base: map[int]float64{}, last: map[int]float64{}}
	pids, err := p.pids(ctx)
	if err != nil {
		m.err = err
	}
	for _, pid := range pids {
		if s, err := readProc(pid); err == nil {
			m.base[pid], m.last[pid] = s.CPU, s.CPU
		}
	}
	m.sampleMem(pids)
	go m.loop(ctx, pids)
	return m
}

func (m *pgMeter) loop(ctx context.Context, pids []int) {
	defer close(m.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	refreshed := time.Now()
	for {
		select {
		case <-m.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(refreshed) >= time.Second {
			if np, err := m.p.pids(ctx); err == nil {
				pids = np
			}
			refreshed = time.Now()
		}
		m.sample(pids)
	}
}

func (m *pgMeter) sample(pids []int) {
	m.mu.Lock()
	for _, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			continue // exited: its last sample stands
		}
		if _, ok := m.base[pid]; !ok {
			m.base[pid] = 0
		}
		m.last[pid] = s.CPU
	}
	m.mu.Unlock()
	m.sampleMem(pids)
}

func (m *pgMeter) sampleMem(pids []int) {
	var sum int64
	for _, pid := range pids {
		sum += readPSS(pid)
	}
	m.mu.Lock()
	m.peak = max(m.peak, sum)
	m.procs = max(m.procs, len(pids))
	m.mu.Unlock()
}

// end stops sampling and returns PostgreSQL's CPU seconds and peak PSS
// over the run.
func (m *pgMeter) end(ctx context.Context) (cpu float64, peak int64, err error) {
	close(m.stop)
	<-m.done
	if pids, err := m.p.pids(ctx); err == nil {
		m.sample(pids)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid, v := range m.last {
		cpu += v - m.base[pid]
	}
	return cpu, m.peak, m.err
}

// pids lists the PostgreSQL processes that work for the server: its
// backends and the cluster's background processes.
func (p *pgDB) pids(ctx context.Context) ([]int, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := p.admin.Query(qctx,
		`SELECT pid FROM pg_stat_activity
		 WHERE application_name = $1
		    OR backend_type IN ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher', 'autovacuum worker')`, p.app)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// readPSS returns the proportional set size of process pid in bytes (0 if
// it cannot be read).
func readPSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Pss:") {
			return kbField(line)
		}
	}
	return 0
}
