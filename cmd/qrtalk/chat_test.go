package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/protocol"
)

// fakeChat is a chatBackend with no server: it records what is sent and
// returns the messages it holds.
type fakeChat struct {
	mu     sync.Mutex
	sent   []string
	ttls   []time.Duration
	typing int
	msgs   []*client.Received
}

func (f *fakeChat) Send(ctx context.Context, to string, body []byte, opts client.SendOptions) (*client.SendResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, string(body))
	f.ttls = append(f.ttls, opts.TTL)
	return &client.SendResult{}, nil
}

func (f *fakeChat) SendTyping(ctx context.Context, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.typing++
	return nil
}

func (f *fakeChat) Messages(ctx context.Context, who string, markRead bool) ([]*client.Received, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msgs, nil
}

// testClock is a clock the test moves.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

func newTestChat(t *testing.T) (*chatModel, *fakeChat, *testClock) {
	t.Helper()
	f := &fakeChat{}
	clk := &testClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	m := newChatModel(context.Background(), f, "bob", clk.now, func(t time.Time) string { return t.UTC().Format("15:04:05") })
	m.members = map[protocol.UserID]bool{bobID: true}
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 20})
	return m, f, clk
}

var bobID = protocol.UserID{1, 2, 3}

func textMsg(id byte, from string, out bool, text string, sent time.Time, ttl time.Duration) *client.Received {
	return &client.Received{ID: protocol.MessageID{id}, Conversation: "bob", FromName: from, From: bobID, Outgoing: out,
		Sent: sent, Expires: sent.Add(ttl), Signature: client.SigVerified,
		Message: &protocol.Message{ContentType: client.ContentText, Body: []byte(text)}}
}

// run runs a command as Bubble Tea would and hands its message back to
// the model, following batches; ticks are left out (they wait a second).
func run(m *chatModel, cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	switch msg := cmd().(type) {
	case tea.BatchMsg:
		for _, c := range msg {
			run(m, c)
		}
	case nil, chatTickMsg:
	default:
		_, next := m.Update(msg)
		run(m, next)
	}
}

func typeText(m *chatModel, s string) []tea.Cmd {
	var cmds []tea.Cmd
	for _, r := range s {
		k := tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}}
		if r == ' ' {
			k = tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}}
		}
		_, cmd := m.Update(k)
		cmds = append(cmds, cmd)
	}
	return cmds
}

func TestChatTypeAndSend(t *testing.T) {
	m, f, clk := newTestChat(t)
	for _, c := range typeText(m, "hello bob") {
		run(m, c)
	}
	if f.typing != 1 {
		t.Errorf("%d typing events for one burst of keys, want 1", f.typing)
	}
	if v := m.View(); !strings.Contains(v, "> hello bob") {
		t.Fatalf("input line not shown:\n%s", v)
	}
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyBackspace})
	run(m, cmd)
	typeText(m, "b")
	// The fake store has the message once it is sent, as the SDK's does.
	f.msgs = []*client.Received{textMsg(1, "me", true, "hello bob", clk.t, time.Hour)}
	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if cmd == nil {
		t.Fatal("Enter gave no command")
	}
	run(m, cmd)
	if len(f.sent) != 1 || f.sent[0] != "hello bob" || f.ttls[0] != time.Hour {
		t.Fatalf("sent %q with TTLs %v, want \"hello bob\" with 1h", f.sent, f.ttls)
	}
	v := m.View()
	if strings.Contains(v, "> hello") {
		t.Errorf("input line not cleared:\n%s", v)
	}
	if !strings.Contains(v, "12:00:00 me (verified, sent, 1h): hello bob") {
		t.Errorf("sent message not shown:\n%s", v)
	}
	// An empty line sends nothing.
	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	run(m, cmd)
	if len(f.sent) != 1 {
		t.Errorf("an empty line was sent")
	}
	// Typing again after a while sends another typing event.
	clk.t = clk.t.Add(10 * time.Second)
	for _, c := range typeText(m, "x") {
		run(m, c)
	}
	if f.typing != 2 {
		t.Errorf("%d typing events, want 2", f.typing)
	}
}

func TestChatTTLCycles(t *testing.T) {
	m, f, _ := newTestChat(t)
	if v := m.View(); !strings.Contains(v, "TTL 1h") {
		t.Fatalf("status line lacks the TTL:\n%s", v)
	}
	for _, want := range []string{"1d", "1w", "10s", "5m", "1h", "1d"} {
		m.Update(tea.KeyMsg{Type: tea.KeyTab})
		if v := m.View(); !strings.Contains(v, "TTL "+want+" ") {
			t.Fatalf("after Tab, want TTL %s:\n%s", want, v)
		}
	}
	typeText(m, "hi")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	run(m, cmd)
	if len(f.ttls) != 1 || f.ttls[0] != 24*time.Hour {
		t.Errorf("sent with TTLs %v, want 24h", f.ttls)
	}
}

func TestChatExpiry(t *testing.T) {
	m, f, clk := newTestChat(t)
	f.msgs = []*client.Received{
		textMsg(1, "bob", false, "short lived", clk.t, 10*time.Second),
		textMsg(2, "bob", false, "long lived", clk.t, time.Hour),
	}
	run(m, m.load())
	v := m.View()
	if !strings.Contains(v, "bob (verified, 10s): short lived") || !strings.Contains(v, "long lived") {
		t.Fatalf("messages not shown with their time left:\n%s", v)
	}
	clk.t = clk.t.Add(4 * time.Second)
	m.Update(chatTickMsg(clk.t))
	if v := m.View(); !strings.Contains(v, "bob (verified, 6s): short lived") {
		t.Fatalf("countdown not updated:\n%s", v)
	}
	// Expired: gone from the view at the tick, even before the store is
	// read again (the fake still returns it; the SDK would not).
	clk.t = clk.t.Add(6 * time.Second)
	_, cmd := m.Update(chatTickMsg(clk.t))
	if v := m.View(); strings.Contains(v, "short lived") || !strings.Contains(v, "long lived") {
		t.Fatalf("the expired message is still shown, or the other is not:\n%s", v)
	}
	run(m, cmd)
	if v := m.View(); strings.Contains(v, "short lived") {
		t.Fatalf("the expired message came back:\n%s", v)
	}
}

func TestChatInvalidSignature(t *testing.T) {
	m, f, clk := newTestChat(t)
	bad := textMsg(1, "bob", false, "forged text", clk.t, time.Hour)
	bad.Signature = client.SigInvalid
	bad2 := textMsg(2, "bob", false, "", clk.t, time.Hour)
	bad2.Signature, bad2.Message = client.SigInvalid, nil
	f.msgs = []*client.Received{bad, bad2}
	run(m, m.load())
	v := m.View()
	if strings.Count(v, "12:00:00 bob: [invalid signature: message hidden]") != 2 {
		t.Errorf("invalid messages not shown as hidden:\n%s", v)
	}
	if strings.Contains(v, "forged") {
		t.Errorf("the content of an invalid message is shown:\n%s", v)
	}
}

func TestChatEventsAndMarks(t *testing.T) {
	m, f, clk := newTestChat(t)
	mine := textMsg(1, "me", true, "are you there", clk.t, time.Hour)
	f.msgs = []*client.Received{mine}
	run(m, m.load())
	if v := m.View(); !strings.Contains(v, "me (verified, sent, ") {
		t.Fatalf("own message lacks its state:\n%s", v)
	}
	// bob types: shown a few seconds.
	_, cmd := m.Update(chatReceivedMsg{&client.Received{Event: "typing", From: bobID, FromName: "bob", Sent: clk.t}})
	run(m, cmd)
	if v := m.View(); !strings.Contains(v, "bob is typing") {
		t.Fatalf("typing not shown:\n%s", v)
	}
	// Someone not in this conversation typing does not show.
	m.Update(chatReceivedMsg{&client.Received{Event: "typing", From: protocol.UserID{9}, FromName: "carol", Sent: clk.t}})
	if v := m.View(); strings.Contains(v, "carol") {
		t.Fatalf("typing of another conversation shown:\n%s", v)
	}
	// The read receipt comes: the store says read.
	read := *mine
	read.State = "read"
	f.msgs = []*client.Received{&read}
	_, cmd = m.Update(chatReceivedMsg{&client.Received{Event: "read", From: bobID, FromName: "bob", EventIDs: []protocol.MessageID{mine.ID}}})
	run(m, cmd)
	if v := m.View(); !strings.Contains(v, "me (verified, read, ") {
		t.Fatalf("read mark not shown:\n%s", v)
	}
	clk.t = clk.t.Add(chatTypingShown)
	m.Update(chatTickMsg(clk.t))
	if v := m.View(); strings.Contains(v, "is typing") {
		t.Fatalf("typing still shown after %s:\n%s", chatTypingShown, v)
	}
}

func TestChatSafeText(t *testing.T) {
	m, f, clk := newTestChat(t)
	f.msgs = []*client.Received{textMsg(1, "bob\x1b[2J", false, "hi\x1b]0;pwned\x07\nline two", clk.t, time.Hour)}
	run(m, m.load())
	v := m.View()
	if strings.ContainsAny(v, "\x1b\x07") {
		t.Errorf("control characters reach the terminal: %q", v)
	}
	if !strings.Contains(v, "    line two") {
		t.Errorf("second line not indented:\n%s", v)
	}
}

func TestChatQuitKeys(t *testing.T) {
	m, _, _ := newTestChat(t)
	for _, k := range []tea.KeyType{tea.KeyEsc, tea.KeyCtrlC} {
		_, cmd := m.Update(tea.KeyMsg{Type: k})
		if cmd == nil {
			t.Fatalf("%v: no command", k)
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Errorf("%v does not quit", k)
		}
	}
}

func TestChatNotATerminal(t *testing.T) {
	code, out, errOut := runApp("chat", "bob")
	if code != exitError || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "needs a terminal") || !strings.Contains(errOut, "qrtalk send bob") || !strings.Contains(errOut, "qrtalk listen") {
		t.Errorf("stderr lacks the reason or the hint:\n%s", errOut)
	}
}

// Loads run concurrently: an older one's result never replaces a newer.
func TestChatStaleLoad(t *testing.T) {
	m, f, clk := newTestChat(t)
	old := m.load()
	f.msgs = []*client.Received{textMsg(1, "bob", false, "newer", clk.t, time.Hour)}
	run(m, m.load())
	f.msgs = nil
	m.Update(old())
	if v := m.View(); !strings.Contains(v, "newer") {
		t.Fatalf("a stale load replaced a newer one:\n%s", v)
	}
}
