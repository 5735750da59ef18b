//go:build unix

package web_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProtoInChromium loads the protocol module (web/app/js/proto) in
// Chromium, as the browser loads it (ES modules as they are, WebCrypto in a
// secure context), and runs testdata/proto-browser/run.mjs: the vectors,
// device keys kept non-extractable through IndexedDB, a 10 MiB blob. The
// page is served on 127.0.0.1 only; Chromium is stopped as soon as the run
// reports, and after 2 minutes at most.
func TestProtoInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium (-short)")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI for the browser check of the protocol module: %v", err)
		}
		t.Skipf("chromium not found (%v): skipping the browser check of the protocol module (apt-get install chromium)", err)
	}
	vectors, err := filepath.Abs("../protocol/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	serve := func(path string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(path, ".js") || strings.HasSuffix(path, ".mjs") {
				w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			}
			http.ServeFile(w, r, path)
		}
	}
	mux.HandleFunc("GET /{$}", serve("testdata/proto-browser/index.html"))
	mux.HandleFunc("GET /boot.js", serve("testdata/proto-browser/boot.js"))
	mux.HandleFunc("GET /run.mjs", serve("testdata/proto-browser/run.mjs"))
	mux.HandleFunc("GET /testdata/vectors.json", serve(vectors))
	mux.HandleFunc("GET /app/js/proto/{file}", func(w http.ResponseWriter, r *http.Request) {
		serve(filepath.Join("app/js/proto", filepath.Base(r.PathValue("file"))))(w, r)
	})
	srv := httptest.NewServer(mux) // 127.0.0.1: a secure context, so crypto.subtle exists
	defer srv.Close()

	// Chromium's profile: its helper processes may still write there for a
	// moment after it is stopped, so it is removed here, not by t.TempDir.
	profile, err := os.MkdirTemp("", "qrtalk-proto-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for i := 0; i < 50 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+profile, "--enable-logging=stderr", "--v=0", srv.URL+"/")
	// Its own process group, so that stopping it stops its helpers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	line := regexp.MustCompile(`SMOKE (.*)", source:`)
	done := regexp.MustCompile(`^DONE pass=(\d+) fail=(\d+)`)
	var failures []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if strings.HasPrefix(m[1], "FAIL") {
			failures = append(failures, m[1])
			continue
		}
		if d := done.FindStringSubmatch(m[1]); d != nil {
			t.Logf("Chromium: %s", m[1])
			if d[2] != "0" || len(failures) > 0 {
				t.Fatalf("the protocol module fails in Chromium: %s\n%s", m[1], strings.Join(failures, "\n"))
			}
			if len(d[1]) < 2 { // fewer than 10 checks ran: the page checked nothing
				t.Fatalf("only %s checks ran in Chromium", d[1])
			}
			return
		}
		t.Logf("Chromium: %s", m[1])
	}
	t.Fatalf("Chromium ended without the run's result (%v); failures so far:\n%s", ctx.Err(), strings.Join(failures, "\n"))
}
