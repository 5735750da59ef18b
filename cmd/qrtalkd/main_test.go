package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/qr"
	"github.com/qrtalk/qrtalk/internal/tlspin"
	"github.com/qrtalk/qrtalk/protocol"
)

// runApp runs the command in-process and returns its exit status and output.
func runApp(t *testing.T, env config.Environment, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, env: env, hostname: func() (string, error) { return "box", nil }}
	code := a.run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

func home(dir string) config.Environment {
	return config.Environment{LookupEnv: func(k string) (string, bool) {
		if k == "HOME" {
			return dir, true
		}
		return "", false
	}}
}

func TestHelp(t *testing.T) {
	env := home(t.TempDir())
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		code, out, _ := runApp(t, env, args...)
		if code != 0 || !strings.Contains(out, "qrtalkd invite [options]") || !strings.Contains(out, "Exit status") {
			t.Errorf("%v: %d\n%s", args, code, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--help"}, []string{"--listen ADDR  [QRTALKD_LISTEN]  (default :8443)", "[QRTALKD_MAX_BLOB_SIZE]", "--config FILE  [QRTALKD_CONFIG]", "Examples:", "Exit status", "2  usage error"}},
		{[]string{"help", "serve"}, []string{"[QRTALKD_LOG_IP]", "--qr"}},
		{[]string{"invite", "-h"}, []string{"--uses N", "--expires DURATION", "[QRTALKD_DATA]", "Examples:", "Exit status"}},
		{[]string{"help", "info"}, []string{"numeric form", "[QRTALKD_REGISTRATION]", "Exit status"}},
	} {
		code, out, errOut := runApp(t, env, tc.args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: help lacks %q", tc.args, w)
			}
		}
	}
	// serve's help lists every option with its variable.
	_, out, _ := runApp(t, env, "serve", "--help")
	for _, o := range config.Options() {
		if !strings.Contains(out, o.Flag()) || !strings.Contains(out, o.Env()) {
			t.Errorf("serve --help lacks %s / %s", o.Flag(), o.Env())
		}
	}
	code, out, _ := runApp(t, env, "version")
	if code != 0 || !strings.HasPrefix(out, "qrtalkd ") || !strings.Contains(out, "protocol v1") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	env := home(dir)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
		hint string
	}{
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`, "qrtalkd help"},
		{[]string{"help", "frobnicate"}, 2, `unknown command "frobnicate"`, "qrtalkd help"},
		{[]string{"serve", "--no-such"}, 2, "flag provided but not defined: -no-such", "qrtalkd serve --help"},
		{[]string{"--listen", "8443"}, 2, `--listen "8443": must be host:port`, "--help"},
		{[]string{"serve", "extra"}, 2, `unexpected argument "extra"`, "--help"},
		{[]string{"invite", "--uses", "0", "--data", dir}, 2, "--uses must be from 1 to 10000", ""},
		{[]string{"invite", "--expires", "1s", "--data", dir}, 2, "--expires must be from 1m0s", ""},
		{[]string{"invite", "--qr=sometimes", "--data", dir}, 2, "must be auto, true or false", ""},
		{[]string{"invite", "--data", dir}, 1, "no server key in " + dir, "qrtalkd serve --data " + dir},
		{[]string{"info", "--data", dir}, 1, "no server key", "start the server once"},
		{[]string{"version", "x"}, 2, "version takes no arguments", ""},
	} {
		code, out, errOut := runApp(t, env, tc.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != tc.code || !strings.HasPrefix(lines[0], "qrtalkd: ") || !strings.Contains(lines[0], tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
		if tc.hint != "" && (len(lines) != 2 || !strings.HasPrefix(lines[1], "hint: ") || !strings.Contains(lines[1], tc.hint)) {
			t.Errorf("%v: stderr %q lacks the hint %q", tc.args, errOut, tc.hint)
		}
		if len(lines) > 2 {
			t.Errorf("%v: more than an error and a hint: %q", tc.args, errOut)
		}
		if out != "" {
			t.Errorf("%v: stdout %q on error", tc.args, out)
		}
	}
}

// buildBinary builds qrtalkd into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		if goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") == "" {
			t.Skip("no go command to build the binary with")
		}
	}
	bin := filepath.Join(t.TempDir(), "qrtalkd")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lineReader hands out a process's output lines as they come.
type lineReader struct {
	lines chan string
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 1000)}
	go func() {
		defer close(lr.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
	}()
	return lr
}

// until reads lines until one matches re, and returns the lines read.
func (lr *lineReader) until(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lr.lines:
			if !ok {
				t.Fatalf("output ended before a line matching %s; got:\n%s", re, strings.Join(got, "\n"))
			}
			got = append(got, l)
			if re.MatchString(l) {
				return got
			}
		case <-deadline:
			t.Fatalf("timed out waiting for a line matching %s; got:\n%s", re, strings.Join(got, "\n"))
		}
	}
}

func TestBinary(t *testing.T) {
	bin := buildBinary(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	addr := freePort(t)
	metricsAddr := freePort(t)
	env := []string{"HOME=" + tmp, "PATH=" + os.Getenv("PATH"), "QRTALKD_LOG_FORMAT=json"}

	serve := exec.Command(bin, "serve", "--data", data, "--listen", addr, "--metrics-listen", metricsAddr)
	serve.Env = env
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	serve.Stderr = &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			serve.Process.Kill()
			<-exited
		}
	})
	out := newLineReader(stdout)

	// First start: URL, fingerprint in both forms, and an invite. Key
	// generation takes a moment.
	head := out.until(t, regexp.MustCompile(`^\s+URL:`), 2*time.Minute)
	url := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(head[len(head)-1]), "URL:"))
	if url != "https://"+addr {
		t.Fatalf("URL line %q, want https://%s", head[len(head)-1], addr)
	}
	rest := out.until(t, regexp.MustCompile(`^\s+qrtalk:invite\?`), 10*time.Second)
	printed := strings.Join(rest, "\n")
	m := regexp.MustCompile(`Fingerprint:\s+([A-Za-z0-9_-]{43})\n\s+((?:\d{5} ){7}\d{5})`).FindStringSubmatch(printed)
	if m == nil {
		t.Fatalf("no fingerprint in:\n%s", printed)
	}
	fp, err := protocol.ParseFingerprint(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if fp.Numeric() != m[2] {
		t.Errorf("numeric fingerprint %q, want %q", m[2], fp.Numeric())
	}
	inv, err := protocol.ParseInvite(strings.TrimSpace(rest[len(rest)-1]))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Server != url || inv.ServerFP != fp {
		t.Errorf("startup invite %+v does not name this server", inv)
	}
	if !strings.Contains(printed, "Invite (1 use, expires ") {
		t.Errorf("startup invite not described:\n%s", printed)
	}

	// The server answers over TLS pinned to the printed fingerprint.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlspin.Config(fp)}, Timeout: 10 * time.Second}
	resp, err := c.Get(url + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	var info api.Info
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info.Fingerprint != fp {
		t.Errorf("/v1/info fingerprint %s, printed %s", info.Fingerprint, fp)
	}
	if resp, err := http.Get("http://" + metricsAddr + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// invite beside the running server: the URI alone on a pipe.
	invCmd := exec.Command(bin, "invite", "--data", data, "--listen", addr, "--uses", "3", "--expires", "1h")
	invCmd.Env = env
	invOut, err := invCmd.Output()
	if err != nil {
		t.Fatalf("invite: %v\n%s", err, errText(err))
	}
	inv2, err := protocol.ParseInvite(strings.TrimSuffix(string(invOut), "\n"))
	if err != nil {
		t.Fatalf("invite printed %q: %v", invOut, err)
	}
	if inv2.Server != url || inv2.ServerFP != fp || inv2.Token == inv.Token {
		t.Errorf("invite %+v", inv2)
	}

	// --qr=true draws a code that reads back as the URI.
	invCmd = exec.Command(bin, "invite", "--data", data, "--listen", addr, "--qr=true")
	invCmd.Env = env
	invOut, err = invCmd.Output()
	if err != nil {
		t.Fatalf("invite --qr: %v\n%s", err, errText(err))
	}
	uri, code, _ := strings.Cut(string(invOut), "\n")
	decoded, err := decodeTerminalQR(code)
	if err != nil {
		t.Fatalf("QR code does not decode: %v\n%s", err, code)
	}
	if decoded != uri {
		t.Errorf("QR code holds %q, printed URI %q", decoded, uri)
	}

	// info reads the same key.
	infoCmd := exec.Command(bin, "info", "--data", data, "--listen", addr)
	infoCmd.Env = env
	infoOut, err := infoCmd.Output()
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	for _, want := range []string{"URL:           " + url, fp.String(), fp.Numeric(), "Data:          " + data, "Registration:  invite"} {
		if !strings.Contains(string(infoOut), want) {
			t.Errorf("info lacks %q:\n%s", want, infoOut)
		}
	}

	// SIGTERM: a clean shutdown, exit status 0.
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	logs := stderr.String()
	if !strings.Contains(logs, `"msg":"qrtalkd stopped"`) {
		t.Errorf("no JSON 'stopped' log line (QRTALKD_LOG_FORMAT=json):\n%s", logs)
	}
	for _, secret := range []string{inv.Token, inv2.Token, "PRIVATE KEY"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold a secret (%q)", secret)
		}
	}
	exited <- nil // for the cleanup
}

func errText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// decodeTerminalQR turns a code drawn by qr.Terminal back into an image
// (drawn half blocks are light modules) and decodes it.
func decodeTerminalQR(text string) (string, error) {
	var rows [][]bool
	for _, line := range strings.Split(strings.Trim(text, "\n"), "\n") {
		var top, bottom []bool
		for _, r := range line {
			top = append(top, r == '█' || r == '▀')
			bottom = append(bottom, r == '█' || r == '▄')
		}
		rows = append(rows, top, bottom)
	}
	if len(rows) == 0 {
		return "", errors.New("no code")
	}
	const scale, margin = 4, 4
	w, h := len(rows[0]), len(rows)
	img := image.NewGray(image.Rect(0, 0, (w+2*margin)*scale, (h+2*margin)*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y, row := range rows {
		for x, light := range row {
			if light {
				continue
			}
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetGray((x+margin)*scale+dx, (y+margin)*scale+dy, color.Gray{})
				}
			}
		}
	}
	return qr.Decode(img)
}
