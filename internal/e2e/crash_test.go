package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// buildQrtalkd compiles cmd/qrtalkd once per test binary.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "qrtalkd-e2e-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "qrtalkd")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/qrtalkd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

type daemonProc struct {
	cmd *exec.Cmd
	url string
	fp  protocol.Fingerprint
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startQrtalkd runs the real binary and waits for the fingerprint line it
// prints when it is listening.
func startQrtalkd(t *testing.T, data string, port int, extra ...string) *daemonProc {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	args := append([]string{"serve", "--data", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--public-url", url}, extra...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan protocol.Fingerprint, 1)
	go func() {
		defer close(found) // qrtalkd exited (or closed stdout) without it
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Fingerprint:"); ok {
				if fp, err := protocol.ParseFingerprint(strings.TrimSpace(rest)); err == nil {
					found <- fp
				}
			}
		}
	}()
	select {
	case fp, ok := <-found:
		if !ok {
			t.Fatal("qrtalkd exited before printing its fingerprint (its stderr is above)")
		}
		p := &daemonProc{cmd: cmd, url: url, fp: fp}
		p.waitReady(t)
		return p
	case <-time.After(60 * time.Second):
		t.Fatal("qrtalkd did not print its fingerprint within 60 s")
	}
	return nil
}

// waitReady polls /v1/info until the server answers.
func (p *daemonProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := client.Dial(ctx, client.Options{Server: p.url, ServerFP: p.fp}, nil)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("qrtalkd at %s not ready: %v", p.url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func register(t *testing.T, p *daemonProc, i int) *client.Conn {
	t.Helper()
	dev, err := client.NewDeviceFromKeys(protocol.NewUserID(), protocol.NewDeviceID(), testkeys.Key(i), testkeys.Key(i+1), testkeys.Key(i+2), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Register(context.Background(), client.Options{Server: p.url, ServerFP: p.fp}, dev, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCrashLosesNothingQueued kills qrtalkd with SIGKILL while 1,000
// messages are being sent to an offline device. After a restart, every
// message whose send was answered "queued" is delivered, once each after
// de-duplication by message ID.
func TestCrashLosesNothingQueued(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs qrtalkd; skipped with -short")
	}
	data := t.TempDir()
	port := freePort(t)
	srv := startQrtalkd(t, data, port, "--registration", "open", "--rate-ip", "off", "--rate-device", "off")
	alice, bob := register(t, srv, 0), register(t, srv, 3)

	const total, senders = 1000, 8
	var queued sync.Map // message ID -> true, for sends answered "queued"
	var answered, next atomic.Int64
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > total {
					return
				}
				env, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte(fmt.Sprintf("message %d", n))},
					alice.Device().Sender(), []protocol.DeviceRecipient{{User: bob.Device().User, Device: bob.Device().ID, Key: bob.Device().Enc.Public()}},
					protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := alice.Send(ctx, env)
				cancel()
				if err != nil {
					select {
					case <-killed:
						return // the server is gone: expected
					default:
						t.Errorf("send %d before the kill: %v", n, err)
						return
					}
				}
				if resp.Results[0].Status == api.StatusQueued {
					queued.Store(resp.ID, true)
				}
				answered.Add(1)
			}
		})
	}
	// Kill it in the middle of the load.
	deadline := time.Now().Add(60 * time.Second)
	for answered.Load() < total/3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Say so before killing: a send that fails from here on is expected.
	close(killed)
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()
	wg.Wait()
	var want []protocol.MessageID
	queued.Range(func(k, _ any) bool { want = append(want, k.(protocol.MessageID)); return true })
	t.Logf("killed after %d answered sends; %d answered queued", answered.Load(), len(want))
	if len(want) < total/4 {
		t.Fatalf("only %d sends answered queued before the kill", len(want))
	}

	// Restart on the same data directory and drain bob's queue.
	srv = startQrtalkd(t, data, port, "--registration", "open", "--rate-ip", "off", "--rate-device", "off")
	bob2, err := client.Dial(context.Background(), client.Options{Server: srv.url, ServerFP: srv.fp}, bob.Device())
	if err != nil {
		t.Fatal(err)
	}
	got := map[protocol.MessageID]int{}
	for {
		inbox, err := bob2.Inbox(context.Background(), 500, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(inbox.Envelopes) == 0 {
			break
		}
		var ids []protocol.MessageID
		for _, raw := range inbox.Envelopes {
			env, err := protocol.ParseEnvelope(raw)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := env.Open(bob.Device().Recipient(), alice.Device().Identity.Public(), time.Now()); err != nil {
				t.Fatalf("a recovered message does not open: %v", err)
			}
			got[env.ID]++
			ids = append(ids, env.ID)
		}
		if err := bob2.Ack(context.Background(), ids...); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range want {
		if got[id] == 0 {
			t.Errorf("message %s was answered queued but is lost", id)
		}
	}
	t.Logf("recovered %d distinct messages (%d answered queued before the kill)", len(got), len(want))
}
