package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/store/postgres"
)

// scaleOutEnv returns the DSN of a fresh PostgreSQL schema (dropped at the
// end of the test) and the NATS URL, from QRTALK_TEST_POSTGRES and
// QRTALK_TEST_NATS; it skips the test without them (fails it under
// CI=true).
func scaleOutEnv(t *testing.T) (dsn, natsURL string) {
	t.Helper()
	base, natsURL := os.Getenv("QRTALK_TEST_POSTGRES"), os.Getenv("QRTALK_TEST_NATS")
	if base == "" || natsURL == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("QRTALK_TEST_POSTGRES or QRTALK_TEST_NATS is not set, and CI=true requires the scale-out tests to run")
		}
		t.Skip("scale-out tests skipped: set QRTALK_TEST_POSTGRES (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and QRTALK_TEST_NATS (e.g. nats://127.0.0.1:4222) to run them")
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "qrtalk_daemon_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to QRTALK_TEST_POSTGRES: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer admin.Close(context.Background())
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("DROP SCHEMA: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), natsURL
}

// Two qrtalkd nodes on one PostgreSQL store, one with NATS and one whose
// NATS is unreachable: both serve; the second says it is degraded in
// /readyz (200, so that a load balancer keeps it) and in its log.
func TestScaleOutNodes(t *testing.T) {
	dsn, natsURL := scaleOutEnv(t)
	var rb [6]byte
	rand.Read(rb[:])
	prefix := "qrtalktest." + hex.EncodeToString(rb[:])

	d1, logs1 := start(t, testConfig(t, t.TempDir(), "--store", dsn, "--bus", natsURL, "--bus-prefix", prefix), Options{})
	metrics1 := "http://" + d1.MetricsAddr().String()
	waitFor(t, "node 1 to be ready", 10*time.Second, func() bool {
		code, body := get(t, http.DefaultClient, metrics1+"/readyz")
		return code == 200 && body == "ready\n"
	})
	if s := logs1.String(); !strings.Contains(s, "store=postgres") || !strings.Contains(s, "nats: connected") {
		t.Errorf("node 1's log does not say it runs on PostgreSQL and NATS:\n%s", s)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + ln.Addr().String()
	ln.Close()
	d2, logs2 := start(t, testConfig(t, t.TempDir(), "--store", dsn, "--bus", dead, "--bus-prefix", prefix), Options{})
	metrics2 := "http://" + d2.MetricsAddr().String()
	code, body := get(t, http.DefaultClient, metrics2+"/readyz")
	if code != 200 || !strings.HasPrefix(body, "degraded: ") || !strings.Contains(body, "nats unreachable") {
		t.Errorf("/readyz with NATS unreachable: %d %q", code, body)
	}
	if s := logs2.String(); strings.Count(s, "nats: unreachable") != 1 {
		t.Errorf("node 2's log should say once that NATS is unreachable:\n%s", s)
	}
	// The two nodes share the store: an invite made through one is seen by
	// the other.
	if _, err := NewInvite(context.Background(), d1.store, d1.key, d1.URL(), 1, time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := d2.store.ActiveInvites(context.Background(), time.Now()); err != nil || n < 1 {
		t.Fatalf("node 2 sees %d invites, %v", n, err)
	}
}

// A node whose server key differs from the one the cluster's first node
// recorded in the store refuses to start, saying what to copy.
func TestScaleOutServerKeyMismatch(t *testing.T) {
	dsn, natsURL := scaleOutEnv(t)
	var rb [6]byte
	rand.Read(rb[:])
	prefix := "qrtalktest." + hex.EncodeToString(rb[:])
	start(t, testConfig(t, t.TempDir(), "--store", dsn, "--bus", natsURL, "--bus-prefix", prefix), Options{GenerateKey: fixedKey(0)})
	// Same key, other data directory: starts.
	start(t, testConfig(t, t.TempDir(), "--store", dsn, "--bus", natsURL, "--bus-prefix", prefix), Options{GenerateKey: fixedKey(0)})
	d, err := Start(context.Background(), testConfig(t, t.TempDir(), "--store", dsn, "--bus", natsURL, "--bus-prefix", prefix),
		Options{GenerateKey: fixedKey(1), Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		d.Shutdown(context.Background())
		t.Fatal("a node with another server key started")
	}
	if !errors.Is(err, postgres.ErrServerKeyMismatch) || !strings.Contains(config.Hint(err), "copy server.key") {
		t.Fatalf("error: %v (hint %q)", err, config.Hint(err))
	}
}

// A PostgreSQL store that cannot be reached: a clear error with a hint,
// and no password in it.
func TestOpenStoreUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := testConfig(t, t.TempDir(), "--store", "postgres://qrtalk:hunter2@"+addr+"/q?sslmode=disable&connect_timeout=2")
	_, err = OpenStore(context.Background(), cfg)
	if err == nil {
		t.Fatal("OpenStore on a closed port succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "postgres store") || !strings.Contains(config.Hint(err), "PostgreSQL is up") {
		t.Errorf("error: %v (hint %q)", err, config.Hint(err))
	}
}
