package daemon

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/internal/tlspin"
	"github.com/qrtalk/qrtalk/protocol"
)

// syncBuffer collects logs from every goroutine of the daemon.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(t *testing.T, dir string, args ...string) *config.Config {
	t.Helper()
	base := []string{"--data", dir, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-level", "debug"}
	cfg, err := config.Load(append(base, args...), config.Environment{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fixedKey makes first starts use a fixed test key instead of generating one.
func fixedKey(i int) func() (*protocol.PrivateKey, error) {
	return func() (*protocol.PrivateKey, error) { return testkeys.Key(i), nil }
}

func start(t *testing.T, cfg *config.Config, opts Options) (*Daemon, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.GenerateKey == nil {
		opts.GenerateKey = fixedKey(0)
	}
	d, err := Start(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Start: %v (hint: %s)", err, config.Hint(err))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return d, logs
}

// pinnedClient talks to the daemon over HTTPS, accepting only a server
// that holds the key with fingerprint fp.
func pinnedClient(fp protocol.Fingerprint) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: tlspin.Config(fp), DisableKeepAlives: true},
		Timeout:   15 * time.Second,
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFirstStartServesInfoOverPinnedTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	clock := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	cfg := testConfig(t, dir, "--max-blob-size", "5MiB")
	d, logs := start(t, cfg, Options{Now: func() time.Time { return clock }})

	if !d.FirstStart() {
		t.Error("FirstStart is false on a fresh data directory")
	}
	wantFP := protocol.ServerFingerprint(testkeys.Key(0).Public())
	if d.Fingerprint() != wantFP {
		t.Errorf("fingerprint %s, want that of the generated key %s", d.Fingerprint(), wantFP)
	}
	if want := "https://" + d.Addr().String(); d.URL() != want {
		t.Errorf("URL %q, want %q", d.URL(), want)
	}

	// What the first start leaves on disk, and its modes.
	for _, c := range []struct {
		path string
		dir  bool
		mode os.FileMode
	}{
		{dir, true, 0o700},
		{KeyPath(dir), false, 0o600},
		{DBPath(dir), false, 0o600},
		{filepath.Join(dir, BlobDir), true, 0o700},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if fi.IsDir() != c.dir || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: dir %v mode %04o, want dir %v mode %04o", c.path, fi.IsDir(), fi.Mode().Perm(), c.dir, c.mode)
		}
	}
	key, err := LoadKey(dir)
	if err != nil || !key.Public().Equal(testkeys.Key(0).Public()) {
		t.Errorf("server.key does not hold the server key: %v", err)
	}

	// GET /v1/info over real HTTPS, the TLS leaf checked against the pin.
	c := pinnedClient(d.Fingerprint())
	code, body := get(t, c, d.URL()+"/v1/info")
	if code != http.StatusOK {
		t.Fatalf("/v1/info: %d %s", code, body)
	}
	var info api.Info
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	if info.Fingerprint != wantFP || info.Registration != "invite" || info.MaxBlobSize != 5<<20 {
		t.Errorf("info: %+v", info)
	}
	if info.ServerTimeMillis != clock.UnixMilli() {
		t.Errorf("server time %d, want the injected clock's %d", info.ServerTimeMillis, clock.UnixMilli())
	}

	// A client pinning another key refuses the server.
	other := pinnedClient(protocol.ServerFingerprint(testkeys.Key(1).Public()))
	if _, err := other.Get(d.URL() + "/v1/info"); !errors.Is(err, tlspin.ErrMismatch) {
		t.Errorf("wrong pin: %v, want tlspin.ErrMismatch", err)
	}

	// The self-signed certificate is valid for the URL host and loopback.
	conn, err := tls.Dial("tcp", d.Addr().String(), tlspin.Config(d.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	for _, h := range []string{"127.0.0.1", "localhost", "::1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate: %v", err)
		}
	}

	// The first start offers an invite for this server; the token is
	// never logged.
	inv, err := d.StartupInvite(context.Background(), 24*time.Hour)
	if err != nil || inv == nil {
		t.Fatalf("StartupInvite on first start: %v, %v", inv, err)
	}
	parsed, err := protocol.ParseInvite(inv.URI())
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Server != d.URL() || parsed.ServerFP != d.Fingerprint() || inv.Uses != 1 || !inv.Expires.Equal(clock.Add(24*time.Hour)) {
		t.Errorf("invite %+v", inv)
	}
	if strings.Contains(logs.String(), inv.Token) {
		t.Error("the invite token is in the logs")
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("the server key is in the logs")
	}
}

func TestRestartKeepsKey(t *testing.T) {
	dir := t.TempDir()
	d, _ := start(t, testConfig(t, dir), Options{})
	fp := d.Fingerprint()
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(); err != nil {
		t.Fatal(err)
	}

	d2, _ := start(t, testConfig(t, dir), Options{GenerateKey: func() (*protocol.PrivateKey, error) {
		t.Error("a restart generated a new key")
		return testkeys.Key(2), nil
	}})
	if d2.FirstStart() {
		t.Error("FirstStart on a restart")
	}
	if d2.Fingerprint() != fp {
		t.Errorf("fingerprint changed across a restart: %s, then %s", fp, d2.Fingerprint())
	}
	// A client that pinned the fingerprint at the first start still
	// connects (the certificate is new, the key is not).
	code, _ := get(t, pinnedClient(fp), d2.URL()+"/v1/info")
	if code != http.StatusOK {
		t.Errorf("/v1/info after restart: %d", code)
	}
}

func TestRefusesExposedKey(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(KeyPath(dir), testkeys.Key(0).PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		if err := os.Chmod(KeyPath(dir), mode); err != nil {
			t.Fatal(err)
		}
		_, err := Start(context.Background(), testConfig(t, dir), Options{Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Fatalf("mode %04o: started with an exposed key", mode)
		}
		if !strings.Contains(err.Error(), "accessible by group or others") || !strings.Contains(config.Hint(err), "chmod 600 "+KeyPath(dir)) {
			t.Errorf("mode %04o: error %q, hint %q", mode, err, config.Hint(err))
		}
	}
	// Once fixed, the same key is used.
	os.Chmod(KeyPath(dir), 0o600)
	d, _ := start(t, testConfig(t, dir), Options{GenerateKey: fixedKey(3)})
	if d.Fingerprint() != protocol.ServerFingerprint(testkeys.Key(0).Public()) {
		t.Error("the existing key was not used")
	}

	// A damaged key is refused, not replaced.
	dir2 := t.TempDir()
	os.WriteFile(KeyPath(dir2), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	_, err := Start(context.Background(), testConfig(t, dir2), Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(config.Hint(err), "backup") {
		t.Errorf("damaged key: %v (hint %q)", err, config.Hint(err))
	}
	// LoadKey on a directory where the server never ran says so.
	if _, err := LoadKey(t.TempDir()); !errors.Is(err, ErrNoKey) || config.Hint(err) == "" {
		t.Errorf("LoadKey without a key: %v", err)
	}
}

func TestProbesAndMetrics(t *testing.T) {
	d, _ := start(t, testConfig(t, t.TempDir()), Options{})
	c := pinnedClient(d.Fingerprint())
	metrics := "http://" + d.MetricsAddr().String()
	for _, u := range []string{d.URL(), metrics} {
		var hc *http.Client = c
		if strings.HasPrefix(u, "http:") {
			hc = http.DefaultClient
		}
		if code, body := get(t, hc, u+"/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("%s/healthz: %d %q", u, code, body)
		}
		if code, body := get(t, hc, u+"/readyz"); code != 200 || body != "ready\n" {
			t.Errorf("%s/readyz: %d %q", u, code, body)
		}
	}
	get(t, c, d.URL()+"/v1/info") // so that the request histogram has a sample
	code, body := get(t, http.DefaultClient, metrics+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "qrtalkd_queue_depth", "qrtalkd_request_duration_seconds"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Metrics are not on the public listener.
	if code, _ := get(t, c, d.URL()+"/metrics"); code == 200 {
		t.Error("/metrics is served on the public listener")
	}

	// A store that stops answering makes /readyz fail, with the reason,
	// while /healthz still answers.
	d.store.Close()
	waitFor(t, "/readyz to report the closed store", 10*time.Second, func() bool {
		code, body := get(t, http.DefaultClient, metrics+"/readyz")
		return code == 503 && strings.HasPrefix(body, "not ready: ") && strings.Contains(body, "closed")
	})
	if code, _ := get(t, c, d.URL()+"/healthz"); code != 200 {
		t.Errorf("/healthz with a closed store: %d", code)
	}
}

func TestGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	wrap := func(h http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /test/slow", func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			io.WriteString(w, "finished")
		})
		mux.Handle("/", h)
		return mux
	}
	dir := t.TempDir()
	d, _ := start(t, testConfig(t, dir), Options{wrap: wrap})
	c := pinnedClient(d.Fingerprint())

	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := c.Get(d.URL() + "/test/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{resp.StatusCode, string(b), err}
	}()
	<-entered

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- d.Shutdown(ctx)
	}()

	// While the slow request runs: /readyz says so, and the main listener
	// takes no new connection.
	metrics := "http://" + d.MetricsAddr().String()
	waitFor(t, "/readyz to answer 503", 10*time.Second, func() bool {
		resp, err := http.Get(metrics + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 503 && strings.Contains(string(b), "shutting down")
	})
	waitFor(t, "the listener to close", 10*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", d.Addr().String(), time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) before the in-flight request finished", err)
	default:
	}

	close(release)
	r := <-slow
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Errorf("in-flight request: %d %q %v", r.code, r.body, r.err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := d.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
	// The store is closed and the data directory can be used again.
	if _, err := d.store.QueueDepth(context.Background()); err == nil {
		t.Error("the store is still open after Shutdown")
	}
	d2, _ := start(t, testConfig(t, dir), Options{})
	if d2.Fingerprint() != d.Fingerprint() {
		t.Error("restart after shutdown changed the key")
	}
}

func TestShutdownTimeoutCutsRequests(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/test/stuck" {
				close(entered)
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	d, _ := start(t, testConfig(t, t.TempDir()), Options{wrap: wrap})
	go pinnedClient(d.Fingerprint()).Get(d.URL() + "/test/stuck")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after cutting a stuck request: %v", err)
	}
}

// TestRouteDeadlines checks that an ordinary request gets a read deadline
// while a blob transfer gets a longer one.
func TestRouteDeadlines(t *testing.T) {
	type outcome struct {
		body string
		err  error
	}
	results := make(chan outcome, 2)
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/test/upload" || r.URL.Path == "/v1/blobs/test" {
				b, err := io.ReadAll(r.Body)
				results <- outcome{string(b), err}
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	const short = 300 * time.Millisecond
	d, _ := start(t, testConfig(t, t.TempDir()), Options{wrap: wrap, requestTimeout: short})
	c := pinnedClient(d.Fingerprint())

	// slowPost sends a body that arrives after a pause of 3×short.
	slowPost := func(path string) {
		pr, pw := io.Pipe()
		go func() {
			time.Sleep(3 * short) // the body is late on purpose
			pw.Write([]byte("late body"))
			pw.Close()
		}()
		go func() {
			resp, err := c.Post(d.URL()+path, "application/octet-stream", pr)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}

	slowPost("/test/upload")
	r := <-results
	var ne net.Error
	if r.err == nil || !errors.As(r.err, &ne) || !ne.Timeout() {
		t.Errorf("ordinary route: read %q, %v; want a timeout", r.body, r.err)
	}
	slowPost("/v1/blobs/test")
	r = <-results
	if r.err != nil || r.body != "late body" {
		t.Errorf("blob route: read %q, %v; want the late body", r.body, r.err)
	}
}

// countingStore is a store whose count of active invites is set.
type countingStore struct {
	store.Store
	n int
}

func (c countingStore) ActiveInvites(context.Context, time.Time) (int, error) { return c.n, nil }

func TestStartupInviteOnRestart(t *testing.T) {
	d, _ := start(t, testConfig(t, t.TempDir()), Options{})
	orig := d.store
	defer func() { d.store = orig }()
	d.firstStart = false

	d.store = countingStore{orig, 2}
	if inv, err := d.StartupInvite(context.Background(), time.Hour); inv != nil || err != nil {
		t.Errorf("restart with invites left: %v, %v", inv, err)
	}
	d.store = countingStore{orig, 0}
	if inv, err := d.StartupInvite(context.Background(), time.Hour); inv == nil || err != nil {
		t.Errorf("restart with no invite left: %v, %v", inv, err)
	}
}

func TestStartupInviteOnlyInInviteMode(t *testing.T) {
	d, _ := start(t, testConfig(t, t.TempDir(), "--registration", "open"), Options{})
	inv, err := d.StartupInvite(context.Background(), time.Hour)
	if err != nil || inv != nil {
		t.Errorf("open registration: invite %v, %v", inv, err)
	}
}

func TestACMEManager(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "--acme-domain", "Chat.Example.org", "--acme-email", "ops@example.org")
	m := newACMEManager(cfg)
	ctx := context.Background()
	if err := m.HostPolicy(ctx, "chat.example.org"); err != nil {
		t.Errorf("policy refuses the configured domain: %v", err)
	}
	for _, h := range []string{"evil.example", "www.chat.example.org", "127.0.0.1"} {
		if err := m.HostPolicy(ctx, h); err == nil {
			t.Errorf("policy accepts %s", h)
		}
	}
	if m.Email != "ops@example.org" || m.Cache != autocert.DirCache(filepath.Join(dir, ACMEDir)) {
		t.Errorf("manager: email %q cache %v", m.Email, m.Cache)
	}
	if m.Prompt == nil {
		t.Error("no terms-of-service prompt: certificates would never be issued")
	}
}

func TestACMETLSConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "--acme-domain", "chat.example.org")
	tc, m, mode, err := serverTLS(cfg, testkeys.Key(0), "https://chat.example.org:8443", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || mode != tlsACME || tc.GetCertificate == nil || len(tc.Certificates) != 0 {
		t.Fatalf("ACME TLS config: manager %v mode %q", m, mode)
	}
	hasALPN := false
	for _, p := range tc.NextProtos {
		hasALPN = hasALPN || p == "acme-tls/1"
	}
	if !hasALPN {
		t.Errorf("NextProtos %v lack acme-tls/1 (TLS-ALPN-01)", tc.NextProtos)
	}
	// A name outside the policy gets no certificate, and nothing is asked
	// of Let's Encrypt for it.
	if _, err := tc.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.example"}); err == nil {
		t.Error("certificate handed out for a name outside the policy")
	}
	if fi, err := os.Stat(filepath.Join(dir, ACMEDir)); err == nil && fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("acme cache mode %04o", fi.Mode().Perm())
	}
}

// writeCert writes a throwaway ECDSA certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSCertificateFiles(t *testing.T) {
	tmp := t.TempDir()
	certFile, keyFile, pool := writeCert(t, tmp)
	d, _ := start(t, testConfig(t, filepath.Join(tmp, "data"), "--tls-cert", certFile, "--tls-key", keyFile), Options{})
	if d.TLSMode() != tlsFiles {
		t.Errorf("TLS mode %q", d.TLSMode())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	if code, _ := get(t, c, d.URL()+"/healthz"); code != 200 {
		t.Errorf("/healthz with a CA-verified certificate: %d", code)
	}
	// Such a server is accepted by a client pinning the server key through
	// WebPKIOrPinned, not through the strict pin.
	fp := d.Fingerprint()
	c2 := &http.Client{Transport: &http.Transport{TLSClientConfig: tlspin.WebPKIOrPinned(fp, "127.0.0.1", pool)}, Timeout: 10 * time.Second}
	if code, _ := get(t, c2, d.URL()+"/healthz"); code != 200 {
		t.Errorf("/healthz through WebPKIOrPinned: %d", code)
	}

	_, err := Start(context.Background(), testConfig(t, filepath.Join(tmp, "data2"), "--tls-cert", keyFile, "--tls-key", certFile),
		Options{Logger: slog.New(slog.DiscardHandler), GenerateKey: fixedKey(0)})
	if err == nil || !strings.Contains(config.Hint(err), "--tls-cert") {
		t.Errorf("swapped certificate files: %v (hint %q)", err, config.Hint(err))
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t, t.TempDir(), "--listen", busy.Addr().String())
	_, err = Start(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler), GenerateKey: fixedKey(0)})
	if err == nil || !strings.Contains(config.Hint(err), "another program") {
		t.Errorf("busy port: %v (hint %q)", err, config.Hint(err))
	}
	// The failed start released what it had opened: the same data
	// directory starts now.
	cfg.Listen = "127.0.0.1:0"
	start(t, cfg, Options{})
}

func TestRedactIPs(t *testing.T) {
	for in, want := range map[string]string{
		"http: TLS handshake error from 192.0.2.7:51234: EOF":          "http: TLS handshake error from [ip]: EOF",
		"http: TLS handshake error from [2001:db8::1]:443: remote err": "http: TLS handshake error from [ip]: remote err",
		"peer 2001:db8::1 went away":                                   "peer [ip] went away",
		"http: panic serving 10.0.0.1:80: boom":                        "http: panic serving [ip]: boom",
	} {
		if got := redactIPs(in); got != want {
			t.Errorf("redactIPs(%q) = %q, want %q", in, got, want)
		}
	}
}
