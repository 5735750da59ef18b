//go:build unix

package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The JavaScript tests run under Node's test runner, through these Go tests,
// so that `go test ./...` runs them too: the unit tests of web/test (the
// protocol module and the client SDK) and the browser tests of web/browser
// (Debian's Chromium against a real qrtalkd).

const chromiumPath = "/usr/bin/chromium"

// TestJSUnit runs node --test on web/test/*.test.mjs.
func TestJSUnit(t *testing.T) {
	node := needNode(t)
	files := testFiles(t, "test")
	args := []string{"--test", "--test-reporter=tap"}
	if !hasWebSocket(node) {
		args = append(args, "--experimental-websocket") // Node 20: the SDK tests need WebSocket
	}
	runNodeTests(t, node, 10*time.Minute, nil, append(args, files...)...)
}

// TestJSBrowser runs node --test on web/browser/*.test.mjs, one file at a
// time: each starts its own qrtalkd and Chromium.
func TestJSBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts qrtalkd and Chromium (-short)")
	}
	node := needNode(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		skipOrFail(t, "%s is missing: install it with `apt-get install chromium` (as root; bash .ci/run does it)", chromiumPath)
	}
	checkNodeModules(t)
	files := testFiles(t, "browser")

	// Build the binaries once for every test file.
	bins := t.TempDir()
	build := exec.Command("go", "build", "-o", bins+string(os.PathSeparator), "./cmd/qrtalkd", "./cmd/qrtalk")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := []string{"QRTALK_WEB_BINS=" + bins}
	args := []string{"--test", "--test-reporter=tap", "--test-concurrency=1"}
	runNodeTests(t, node, 30*time.Minute, env, append(args, files...)...)
}

// skipOrFail skips the test with a message saying what to install, or
// fails it under CI=true, where everything must be there.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is missing: install Node.js 20 or newer (`apt-get install nodejs npm`)")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		skipOrFail(t, "node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _ := strconv.Atoi(strings.Split(v, ".")[0])
	if major < 20 {
		skipOrFail(t, "node %s is too old: the tests need Node.js 20 or newer (WebCrypto, node:test)", v)
	}
	return node
}

// hasWebSocket tells whether node has a global WebSocket without a flag
// (Node 22 and newer).
func hasWebSocket(node string) bool {
	out, err := exec.Command(node, "-p", "typeof WebSocket").Output()
	return err == nil && strings.TrimSpace(string(out)) == "function"
}

// checkNodeModules checks that web/node_modules holds the versions that
// web/package-lock.json pins.
func checkNodeModules(t *testing.T) {
	t.Helper()
	const fix = "run `npm ci` in web/ (bash .ci/run does it)"
	data, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatalf("web/package-lock.json: %v", err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(data, &lock); err != nil {
		t.Fatalf("web/package-lock.json: %v", err)
	}
	for p, want := range lock.Packages {
		if !strings.HasPrefix(p, "node_modules/") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(filepath.FromSlash(p), "package.json"))
		if errors.Is(err, os.ErrNotExist) {
			skipOrFail(t, "web/%s is missing: %s", p, fix)
		}
		var got struct {
			Version string `json:"version"`
		}
		if err == nil {
			err = json.Unmarshal(data, &got)
		}
		if err != nil {
			t.Fatalf("web/%s: %v", p, err)
		}
		if got.Version != want.Version {
			skipOrFail(t, "web/%s is version %s, package-lock.json says %s: %s", p, got.Version, want.Version, fix)
		}
	}
}

// testFiles lists dir/*.test.mjs; the runner gets the files by name, the
// same way under every Node version.
func testFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.test.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no test files in web/%s", dir)
	}
	return files
}

// runNodeTests runs node with args in web/, streams its output with -v (and
// all of it on failure otherwise), and requires the runner's summary to
// count at least one test and no failure.
func runNodeTests(t *testing.T, node string, timeout time.Duration, env []string, args ...string) {
	t.Helper()
	out, problems := nodeTests(t, node, timeout, env, args...)
	if len(problems) > 0 {
		if !testing.Verbose() {
			t.Log("output of node:\n" + out)
		}
		t.Fatal(strings.Join(problems, "; "))
	}
}

// nodeTests runs node and returns its output and what is wrong with the run.
func nodeTests(t *testing.T, node string, timeout time.Duration, env []string, args ...string) (string, []string) {
	t.Helper()
	if d, ok := t.Deadline(); ok && time.Until(d)-30*time.Second < timeout {
		timeout = max(time.Until(d)-30*time.Second, time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), env...)
	// Node's children (qrtalkd, Chromium) go in its process group, killed
	// with it at the timeout and, as a safety net, after it exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw

	var out bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			out.Write(sc.Bytes())
			out.WriteByte('\n')
			if testing.Verbose() {
				t.Log(sc.Text())
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Logf("node %s", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	err := cmd.Wait()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	pw.Close()
	wg.Wait()

	sum, perr := parseSummary(out.String())
	var problems []string
	if ctx.Err() != nil {
		problems = append(problems, fmt.Sprintf("killed after %v", timeout))
	}
	if err != nil {
		problems = append(problems, fmt.Sprintf("node: %v", err))
	}
	if perr != nil {
		problems = append(problems, perr.Error())
	} else {
		// Node's runner counts a file that defines no test as one passing
		// test named by the file's path.
		for _, m := range emptyFile.FindAllStringSubmatch(out.String(), -1) {
			problems = append(problems, fmt.Sprintf("%s executed no test", m[1]))
			sum["tests"]--
			sum["pass"]--
		}
		t.Logf("node test runner: %d tests, %d passed, %d failed, %d cancelled, %d skipped, %d todo",
			sum["tests"], sum["pass"], sum["fail"], sum["cancelled"], sum["skipped"], sum["todo"])
		switch {
		case sum["tests"] == 0:
			problems = append(problems, "the run executed no test")
		case sum["pass"] == 0 && sum["fail"] == 0:
			problems = append(problems, "no test passed (all skipped or cancelled)")
		}
		if sum["fail"] > 0 || sum["cancelled"] > 0 {
			problems = append(problems, fmt.Sprintf("%d failed, %d cancelled", sum["fail"], sum["cancelled"]))
		}
	}
	return out.String(), problems
}

var emptyFile = regexp.MustCompile(`(?m)^ok \d+ - (/\S+\.test\.mjs)$`)

var summaryLine = regexp.MustCompile(`(?m)^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$`)

// parseSummary reads the counts of the TAP reporter's closing lines
// ("# tests 12", "# pass 12", ...). It takes the last of each, which is the
// run's total.
func parseSummary(out string) (map[string]int, error) {
	sum := map[string]int{}
	for _, m := range summaryLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		sum[m[1]] = n
	}
	for _, k := range []string{"tests", "pass", "fail"} {
		if _, ok := sum[k]; !ok {
			return nil, fmt.Errorf("the output of node has no summary (no %q line)", "# "+k)
		}
	}
	return sum, nil
}

// TestJSRunnerChecks shows that the checks above catch a run that failed,
// one that executed nothing and one whose tests were all skipped.
func TestJSRunnerChecks(t *testing.T) {
	node := needNode(t)
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, src, want string
	}{
		{"pass.test.mjs", "import test from 'node:test';\ntest('ok', () => {});\n", ""},
		{"fail.test.mjs", "import test from 'node:test';\ntest('ok', () => {});\ntest('bad', () => { throw new Error('no'); });\n", "1 failed"},
		{"empty.test.mjs", "// no test here\n", "executed no test"},
		{"skipped.test.mjs", "import test from 'node:test';\ntest('later', { skip: true }, () => {});\n", "no test passed"},
		{"syntax.test.mjs", "import test from 'node:test';\ntest('x', () => {\n", "1 failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, problems := nodeTests(t, node, time.Minute, nil, "--test", "--test-reporter=tap", write(c.name, c.src))
			got := strings.Join(problems, "; ")
			if c.want == "" && got != "" || !strings.Contains(got, c.want) {
				t.Fatalf("problems %q, want %q; output:\n%s", got, c.want, out)
			}
		})
	}
	if _, err := parseSummary("TAP version 13\nok 1 - x\n"); err == nil {
		t.Error("parseSummary accepted an output without a summary")
	}
}
