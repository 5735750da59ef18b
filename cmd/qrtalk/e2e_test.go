package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
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

	"github.com/qrtalk/qrtalk/internal/qr"
	"github.com/qrtalk/qrtalk/protocol"
)

// TestEndToEnd builds qrtalk and qrtalkd and runs them as people would:
// a real server process, three users and four devices in temporary homes,
// every step through the command line (the SDK only plays the attacker and
// the user who re-registers with a new key).
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bins := buildBinaries(t)
	tmp := t.TempDir()
	srv := startQrtalkd(t, bins, tmp)
	invite := srv.invite(t, 10)

	q := &cli{t: t, bin: filepath.Join(bins, "qrtalk"), dir: tmp}
	home := func(name string) string { return filepath.Join(tmp, name) }

	// Join: alice by the invite's text, bob from a photo (PNG) of its QR
	// code, carol with an encrypted key file.
	q.ok("alice", "", "join", invite)
	invitePNG := filepath.Join(tmp, "invite.png")
	writeQR(t, invite, invitePNG)
	q.ok("bob", "", "join", invitePNG)
	q.env = append(q.env, "QRTALK_PASSPHRASE=carol's secret")
	out := q.ok("carol", "", "join", invite)
	if !strings.Contains(out, "keys encrypted with your passphrase") {
		t.Fatalf("carol's join: %s", out)
	}
	alice, bob, carol := q.whoami("alice"), q.whoami("bob"), q.whoami("carol")

	// Contacts, by QR text and by QR image; carol by ID, then verified by
	// the fingerprint digits alice reads out.
	mustContain(t, q.ok("alice", "", "contact", "add", bob.ContactCode, "--name", "bob"), "verified: the key the server gives matches")
	q.ok("alice", "", "id", "--png", filepath.Join(tmp, "alice.png"))
	mustContain(t, q.ok("bob", "", "contact", "add", filepath.Join(tmp, "alice.png"), "--name", "alice"), "verified")
	mustContain(t, q.ok("carol", "", "contact", "add", alice.User, "--name", "alice"), "unverified")
	mustContain(t, q.ok("carol", "", "contact", "verify", "alice", alice.FingerprintNumeric), "alice is verified")
	q.ok("carol", "", "id", "--png", filepath.Join(tmp, "carol.png"))
	q.ok("alice", "", "contact", "add", filepath.Join(tmp, "carol.png"), "--name", "carol")
	q.ok("bob", "", "contact", "add", carol.ContactCode, "--name", "carol")
	q.ok("carol", "", "contact", "add", bob.ContactCode, "--name", "bob")
	var contacts []contactJSON
	q.json("alice", &contacts, "contacts", "--json")
	if len(contacts) != 2 || contacts[0].Trust != "verified" || contacts[1].Trust != "verified" {
		t.Fatalf("alice's contacts: %+v", contacts)
	}

	// Bob listens; alice's message is delivered live and shown verified.
	bobListen := q.start("bob", "listen", "--json", "--save", home("bob-downloads"))
	var sent sendJSON
	// Until its live channel is open, messages to bob are queued (and the
	// listener gets them from the queue); nothing tells when it is open.
	waitFor(t, 30*time.Second, "bob's live channel", func() bool {
		q.json("alice", &sent, "send", "bob", "--json", "--ttl", "10s", "are you there?")
		return sent.Devices[0].Status == "delivered"
	})
	q.json("alice", &sent, "send", "bob", "--json", "hello bob")
	if len(sent.Devices) != 1 || sent.Devices[0].Status != "delivered" || sent.Devices[0].Device != bob.Device {
		t.Fatalf("send to a listening bob: %+v", sent)
	}
	m := bobListen.message(t, "hello bob")
	if m.Signature != "verified" || m.Conversation != "alice" || m.From != alice.User || m.ID != sent.ID {
		t.Fatalf("bob received %+v", m)
	}

	// An attachment, saved by bob's listener.
	file := filepath.Join(tmp, "plan.txt")
	os.WriteFile(file, []byte("the plan, in full"), 0o600)
	q.ok("alice", "", "send", "bob", "--file", file, "the plan")
	m = bobListen.message(t, "the plan")
	if len(m.Attachments) != 1 || m.Attachments[0].Name != "plan.txt" || m.Attachments[0].Saved == "" {
		t.Fatalf("attachment: %+v", m.Attachments)
	}
	if got, _ := os.ReadFile(m.Attachments[0].Saved); string(got) != "the plan, in full" {
		t.Fatalf("saved attachment holds %q", got)
	}

	// Carol is offline: bob's message is queued, and she gets it on inbox.
	q.json("bob", &sent, "send", "carol", "--json", "for when you are back")
	if sent.Devices[0].Status != "queued" {
		t.Fatalf("send to an offline carol: %+v", sent)
	}
	inbox := q.messages("carol", "inbox", "--json")
	if m := find(inbox, "message", "for when you are back"); m == nil || m.Signature != "verified" || m.FromName != "bob" {
		t.Fatalf("carol's inbox: %+v", inbox)
	}

	// Receipts: bob's listener sent "delivered"; reading sends "read".
	q.ok("bob", "", "read", "alice")
	waitFor(t, 30*time.Second, "alice to see her message read", func() bool {
		q.messages("alice", "inbox", "--json")
		for _, m := range q.messages("alice", "read", "bob", "--json") {
			if m.Text != nil && *m.Text == "hello bob" {
				return m.Outgoing && m.State == "read"
			}
		}
		return false
	})

	// A group: alice creates it, bob (listening) and carol learn of it,
	// and everyone's messages reach the others.
	q.ok("alice", "", "group", "create", "team", "bob", "carol")
	bobListen.event(t, "group")
	q.messages("carol", "inbox", "--json")
	q.ok("bob", "", "send", "team", "hi team")
	if m := find(q.messages("carol", "inbox", "--json"), "message", "hi team"); m == nil || m.Conversation != "team" || m.FromName != "bob" {
		t.Fatal("carol did not get bob's group message")
	}
	if m := find(q.messages("alice", "inbox", "--json"), "message", "hi team"); m == nil || m.Conversation != "team" {
		t.Fatal("alice did not get bob's group message")
	}
	q.ok("carol", "", "send", "team", "carol here")
	bobListen.message(t, "carol here")

	// Alice links her laptop (the fourth device).
	link := q.start("alice", "device", "link")
	linkCode := link.line(t, regexp.MustCompile(`^qrtalk:link\?`))
	mustContain(t, q.ok("alice-laptop", "", "device", "join", linkCode), "This is now device")
	link.wait(t, 0)
	laptop := q.whoami("alice-laptop")
	if laptop.User != alice.User || laptop.Device == alice.Device {
		t.Fatalf("laptop %+v, alice %+v", laptop, alice)
	}
	var devs []deviceJSON
	q.json("alice-laptop", &devs, "devices", "--json")
	if len(devs) != 2 {
		t.Fatalf("alice's devices: %+v", devs)
	}
	// Both of alice's devices receive; the laptop sends.
	q.json("bob", &sent, "send", "alice", "--json", "to both devices")
	if len(sent.Devices) != 2 {
		t.Fatalf("bob's send to two devices: %+v", sent.Devices)
	}
	for _, h := range []string{"alice", "alice-laptop"} {
		if find(q.messages(h, "inbox", "--json"), "message", "to both devices") == nil {
			t.Fatalf("%s did not receive", h)
		}
	}
	q.ok("alice-laptop", "", "contact", "add", bob.ContactCode, "--name", "bob")
	q.ok("alice-laptop", "", "send", "bob", "sent from the laptop")
	if m := bobListen.message(t, "sent from the laptop"); m.From != alice.User || m.Signature != "verified" {
		t.Fatalf("bob got from the laptop: %+v", m)
	}
	if m := find(q.messages("alice", "inbox", "--json"), "message", "sent from the laptop"); m == nil || !m.Outgoing {
		t.Fatal("alice's first device did not get the laptop's copy")
	}

	// Revocation: the laptop stops receiving, and bob stops sealing for it.
	q.ok("alice", "", "device", "revoke", laptop.Device)
	q.json("bob", &sent, "send", "alice", "--json", "after the revocation")
	if len(sent.Devices) != 1 || sent.Devices[0].Device != alice.Device {
		t.Fatalf("send after revocation: %+v", sent.Devices)
	}
	if _, errOut, code := q.run("alice-laptop", "", "inbox"); code != exitError || !strings.Contains(errOut, "unknown or revoked device") {
		t.Fatalf("revoked laptop's inbox: exit %d, %s", code, errOut)
	}

	// A forged message (signed with another key than alice's) shows as
	// invalid, never its content.
	if err := forge(context.Background(), home("alice"), "bob", "transfer the money"); err != nil {
		t.Fatal(err)
	}
	bobListen.line(t, regexp.MustCompile(`"signature":"invalid"`))
	text, _, _ := q.run("bob", "", "read", "alice")
	if !strings.Contains(text, "[invalid signature: message hidden]") || strings.Contains(text, "money") {
		t.Fatalf("bob's view of a forged message:\n%s", text)
	}

	// TTL: a 2-second message, with an attachment, is gone from the sender's
	// and the recipient's stores (and disk) once it expires.
	q.json("alice", &sent, "send", "bob", "--json", "--ttl", "2s", "--file", file, "this vanishes")
	bobListen.message(t, "this vanishes")
	attDir := filepath.Join(home("bob"), "attachments", sent.ID)
	if _, err := os.Stat(attDir); err != nil {
		t.Fatalf("bob has not stored the attachment: %v", err)
	}
	waitFor(t, 30*time.Second, "the message to expire everywhere", func() bool {
		a := find(q.messages("alice", "read", "bob", "--json"), "message", "this vanishes")
		b := find(q.messages("bob", "read", "alice", "--json"), "message", "this vanishes")
		return a == nil && b == nil
	})
	if _, err := os.Stat(attDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the expired attachment is still on bob's disk: %v", err)
	}
	if find(q.messages("bob", "read", "alice", "--json"), "message", "hello bob") == nil {
		t.Fatal("expiry took the 1-hour messages too")
	}

	// A key change: carol deletes her account and her ID is registered
	// again with a new key. Alice's sends stop (exit 3) until she accepts.
	q.ok("carol", "", "account", "delete", "--yes")
	carolID, _ := protocol.ParseUserID(carol.User)
	if err := rejoinAs(context.Background(), srv.invite(t, 1), carolID, home("carol-new")); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := q.run("alice", "", "send", "carol", "still you?")
	if code != exitKey || !strings.Contains(errOut, "carol's identity key changed: nothing was sent") {
		t.Fatalf("send after a key change: exit %d, %s", code, errOut)
	}
	if _, _, code := q.run("alice", "", "send", "team", "hi all"); code != exitKey {
		t.Fatalf("group send after a key change: exit %d", code)
	}
	mustContain(t, q.ok("alice", "", "contacts"), "CHANGED")
	q.ok("alice", "", "contact", "accept", "carol", "--yes")
	q.json("alice", &sent, "send", "carol", "--json", "welcome back")
	if len(sent.Devices) != 1 || sent.Devices[0].Status != "queued" {
		t.Fatalf("send after accepting: %+v", sent)
	}
	q.env = nil // the new carol's key file is not encrypted
	if find(q.messages("carol-new", "inbox", "--json"), "message", "welcome back") == nil {
		t.Fatal("the new carol did not get alice's message")
	}

	bobListen.interrupt(t)
	srv.stop(t)
}

// buildBinaries builds qrtalk and qrtalkd into a temporary directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		if goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") == "" {
			t.Skip("no go command to build the binaries with")
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(goTool, "build", "-o", dir+string(os.PathSeparator), ".", "../qrtalkd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// qrtalkd is a running server process.
type qrtalkd struct {
	bin, data, addr string
	cmd             *exec.Cmd
	exited          chan error
	stderr          *syncBuffer
}

func startQrtalkd(t *testing.T, bins, tmp string) *qrtalkd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &qrtalkd{bin: filepath.Join(bins, "qrtalkd"), data: filepath.Join(tmp, "server"), addr: addr, exited: make(chan error, 1), stderr: &syncBuffer{}}
	s.cmd = exec.Command(s.bin, "serve", "--data", s.data, "--listen", addr)
	s.cmd.Env = []string{"HOME=" + tmp, "PATH=" + os.Getenv("PATH")}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	lr := newLineReader(stdout)
	lr.until(t, regexp.MustCompile(`qrtalk:invite\?`), 2*time.Minute)
	return s
}

// invite creates an invite with the given number of uses.
func (s *qrtalkd) invite(t *testing.T, uses int) string {
	t.Helper()
	cmd := exec.Command(s.bin, "invite", "--data", s.data, "--listen", s.addr, "--uses", strconv.Itoa(uses), "--expires", "1h")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("qrtalkd invite: %v\n%s", err, errText(err))
	}
	return strings.TrimSpace(string(out))
}

func (s *qrtalkd) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("qrtalkd exited with %v; stderr:\n%s", err, s.stderr.String())
		}
		s.exited <- err // for the cleanup
	case <-time.After(time.Minute):
		t.Error("qrtalkd did not stop after SIGTERM")
	}
}

// cli runs qrtalk with a home directory per device.
type cli struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func (c *cli) command(home string, args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, append([]string{"--home", filepath.Join(c.dir, home)}, args...)...)
	cmd.Env = append([]string{"HOME=" + c.dir, "PATH=" + os.Getenv("PATH"), "TZ=UTC"}, c.env...)
	cmd.Dir = c.dir
	return cmd
}

// run runs qrtalk to the end and returns its output and exit status.
func (c *cli) run(home, stdin string, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := c.command(home, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("qrtalk %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// ok runs qrtalk, which must succeed, and returns its standard output.
func (c *cli) ok(home, stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(home, stdin, args...)
	if code != 0 {
		c.t.Fatalf("qrtalk --home %s %s: exit %d\n%s%s", home, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// json runs qrtalk and decodes its JSON output into v.
func (c *cli) json(home string, v any, args ...string) {
	c.t.Helper()
	out := c.ok(home, "", args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("qrtalk %v printed %q: %v", args, out, err)
	}
}

// messages runs a command printing JSON lines and decodes them.
func (c *cli) messages(home string, args ...string) []messageJSON {
	c.t.Helper()
	out := c.ok(home, "", args...)
	var ms []messageJSON
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m messageJSON
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			c.t.Fatalf("qrtalk %v printed %q: %v", args, l, err)
		}
		ms = append(ms, m)
	}
	return ms
}

func (c *cli) whoami(home string) accountJSON {
	c.t.Helper()
	var a accountJSON
	c.json(home, &a, "id", "--json")
	return a
}

// start runs qrtalk in the background, its output read line by line.
func (c *cli) start(home string, args ...string) *running {
	c.t.Helper()
	cmd := c.command(home, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	r := &running{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	r.lines = newLineReader(stdout)
	go func() { r.exited <- cmd.Wait() }()
	c.t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

// running is a qrtalk process in the background.
type running struct {
	cmd    *exec.Cmd
	lines  *lineReader
	stderr *syncBuffer
	exited chan error
}

// line waits for an output line matching re.
func (r *running) line(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	got := r.lines.until(t, re, time.Minute)
	return got[len(got)-1]
}

// message waits for a message with the given text, as a JSON line.
func (r *running) message(t *testing.T, text string) messageJSON {
	t.Helper()
	quoted, _ := json.Marshal(text)
	l := r.line(t, regexp.MustCompile(`"type":"message".*"text":`+regexp.QuoteMeta(string(quoted))))
	var m messageJSON
	if err := json.Unmarshal([]byte(l), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// event waits for an event of a type.
func (r *running) event(t *testing.T, typ string) {
	t.Helper()
	r.line(t, regexp.MustCompile(`^\{"type":"`+typ+`"`))
}

// wait waits for the process to exit with the given status.
func (r *running) wait(t *testing.T, code int) {
	t.Helper()
	select {
	case err := <-r.exited:
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		}
		if got != code {
			t.Fatalf("exit %d (%v), want %d; stderr:\n%s", got, err, code, r.stderr.String())
		}
		r.exited <- err // for the cleanup
	case <-time.After(time.Minute):
		t.Fatalf("still running after a minute; stderr:\n%s", r.stderr.String())
	}
}

// interrupt stops a listener with Ctrl-C: it exits 0.
func (r *running) interrupt(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(os.Interrupt)
	r.wait(t, 0)
}

// find returns the first message or event of a type with the given text.
func find(ms []messageJSON, typ, text string) *messageJSON {
	for i := range ms {
		if ms[i].Type == typ && (text == "" || (ms[i].Text != nil && *ms[i].Text == text)) {
			return &ms[i]
		}
	}
	return nil
}

// waitFor polls cond until it holds, or fails the test at the deadline.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mustContain(t *testing.T, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Fatalf("output lacks %q:\n%s", want, s)
	}
}

func writeQR(t *testing.T, text, path string) {
	t.Helper()
	img, err := qr.PNG(text, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}

func errText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
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
		sc.Buffer(nil, 1<<20)
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

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
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
