// Package speccheck keeps docs/PROTOCOL.md honest: it runs the second,
// independent implementation of protocol v1 that was written from the
// specification alone (docs/check-vectors.mjs, JavaScript with WebCrypto)
// over the shared test vectors. If the Go code, the vectors or the
// specification drift apart, this test fails.
package speccheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// minNodeMajor: the first Node.js with WebCrypto as globalThis.crypto.
const minNodeMajor = 19

// skipOrFail skips the test on a developer machine that lacks what it needs,
// but fails it in CI (CI=true), where a skip would let the check rot unseen.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true, so this is a failure, not a skip)", args...)
	}
	t.Skipf(format, args...)
}

func TestSpecificationVectors(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is not on PATH: install Node.js %d or later to check docs/PROTOCOL.md against the test vectors", minNodeMajor)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	version, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	if major := nodeMajor(string(version)); major < minNodeMajor {
		skipOrFail(t, "node %s has no WebCrypto global; Node.js %d or later is needed", strings.TrimSpace(string(version)), minNodeMajor)
	}

	root := filepath.Join("..", "..")
	cmd := exec.CommandContext(ctx, node, filepath.Join("docs", "check-vectors.mjs"), filepath.Join("protocol", "testdata", "vectors.json"))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node docs/check-vectors.mjs protocol/testdata/vectors.json: %v\n%s", err, out)
	}
	// The last line must be the summary, with vectors run and none failed:
	// a script that exits 0 without checking anything must not pass.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	m := regexp.MustCompile(`^(\d+) passed, (\d+) failed$`).FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("no summary line \"N passed, M failed\" at the end of the output:\n%s", out)
	}
	passed, _ := strconv.Atoi(m[1])
	if passed == 0 || m[2] != "0" {
		t.Fatalf("%s passed, %s failed:\n%s", m[1], m[2], out)
	}
	t.Logf("%s (node %s)", lines[len(lines)-1], strings.TrimSpace(string(version)))
}

// nodeMajor returns the major version in the output of node --version
// ("v20.11.1"), or 0.
func nodeMajor(v string) int {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	major, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(major)
	return n
}
