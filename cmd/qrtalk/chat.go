package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/protocol"
)

// chatTTLs are the TTLs the chat view's picker cycles through.
var (
	chatTTLs     = []time.Duration{10 * time.Second, 5 * time.Minute, time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}
	chatTTLNames = []string{"10s", "5m", "1h", "1d", "1w"}
)

// chatDefaultTTL is the index in chatTTLs the picker starts at (1h, as
// 'qrtalk send').
const chatDefaultTTL = 2

// chatTypingShown is how long a typing event stays on the screen, and
// chatTypingEvery how often typing sends one while keys are pressed.
const (
	chatTypingShown = 5 * time.Second
	chatTypingEvery = 4 * time.Second
)

func chatCommand() *command {
	return &command{
		name: "chat", args: "<contact | group>",
		summary: "an interactive view of a conversation",
		about: `Opens a full-screen view of a conversation: its history, new messages as
they arrive, and an input line. Each message shows its sender, signature
status and the time left before it expires; it vanishes from the view when
it does. A message whose signature does not verify shows only "[invalid
signature: message hidden]". Your own messages show "sent", "delivered" or
"read". "NAME is typing" shows for a few seconds when a typing event comes.
Messages shown are marked read (the senders get a read receipt).

Keys:
  Enter          send the input line
  Tab            next TTL for what you send: 10s, 5m, 1h, 1d, 1w (shown
                 in the status line; 1h at first)
  Backspace      delete a character; Ctrl-U clears the line
  Esc, Ctrl-C    quit

It needs a terminal: from a script, use 'qrtalk send' and 'qrtalk listen'.
`,
		examples: `  qrtalk chat bob
  qrtalk chat team
`,
		run: (*app).chat,
	}
}

// chatBackend is what the chat view needs of an account; *client.Account
// has it, and tests give a fake.
type chatBackend interface {
	Send(ctx context.Context, to string, body []byte, opts client.SendOptions) (*client.SendResult, error)
	SendTyping(ctx context.Context, to string) error
	Messages(ctx context.Context, who string, markRead bool) ([]*client.Received, error)
}

var errChatNoTerminal = errors.New("chat: needs a terminal (standard input and output)")

func (a *app) chat(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	if !a.stdinTTY || !a.stdoutTTY {
		return withHint(errChatNoTerminal, "use 'qrtalk send "+shellWord(pos[0])+" MESSAGE' to send and 'qrtalk listen' to receive")
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	to := pos[0]
	// The first read also checks the name.
	msgs, err := acc.Messages(ctx, to, true)
	if err != nil {
		return err
	}
	m := newChatModel(ctx, acc, to, a.now, a.clock)
	m.msgs = chatVisible(msgs, a.now())
	m.members = map[protocol.UserID]bool{}
	if ct, err := acc.Contact(ctx, to); err == nil {
		m.title, m.members[ct.User] = ct.Name, true
	} else if g, err := acc.Group(ctx, to); err == nil {
		m.title = g.Name
		for _, u := range g.Members {
			m.members[u] = true
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var in io.Reader = a.stdin
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(runCtx), tea.WithInput(in), tea.WithOutput(a.stdout))
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		handle := func(r *client.Received) { p.Send(chatReceivedMsg{r}) }
		queued, err := acc.Sync(runCtx, 0)
		for _, r := range queued {
			handle(r)
		}
		if err == nil && runCtx.Err() == nil {
			err = acc.Listen(runCtx, handle)
		}
		if err != nil && runCtx.Err() == nil {
			p.Send(chatListenErrMsg{err})
		}
	}()
	_, err = p.Run()
	cancel()
	<-listenDone
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && ctx.Err() == nil {
		return err
	}
	return nil
}

// The messages the chat view gets besides keys.
type (
	chatReceivedMsg  struct{ r *client.Received } // from Listen
	chatTickMsg      time.Time                    // every second: countdowns, expiry
	chatListenErrMsg struct{ err error }
	chatLoadedMsg    struct {
		seq  int // which load: an older one's result comes too late
		msgs []*client.Received
		err  error
	}
	chatSentMsg struct {
		res *client.SendResult
		err error
	}
)

// chatModel is the chat view's state.
type chatModel struct {
	ctx     context.Context
	acc     chatBackend
	to      string // the name given on the command line
	title   string
	members map[protocol.UserID]bool // whose typing events show here
	now     func() time.Time
	clock   func(time.Time) string

	msgs       []*client.Received
	input      []rune
	ttl        int // index in chatTTLs
	typing     map[string]time.Time
	lastTyping time.Time
	sending    int
	loads      int    // loads started
	loaded     int    // the newest load whose result is shown
	status     string // the last error or notice
	width      int
	height     int
}

func newChatModel(ctx context.Context, acc chatBackend, to string, now func() time.Time, clock func(time.Time) string) *chatModel {
	return &chatModel{ctx: ctx, acc: acc, to: to, title: to, now: now, clock: clock,
		ttl: chatDefaultTTL, typing: map[string]time.Time{}, width: 80, height: 24}
}

func (m *chatModel) Init() tea.Cmd { return chatTick() }

func chatTick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return chatTickMsg(t) })
}

// load re-reads the conversation: the SDK deletes what expired and
// marks the rest read.
func (m *chatModel) load() tea.Cmd {
	m.loads++
	acc, ctx, to, seq := m.acc, m.ctx, m.to, m.loads
	return func() tea.Msg {
		msgs, err := acc.Messages(ctx, to, true)
		return chatLoadedMsg{seq, msgs, err}
	}
}

func (m *chatModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyMsg:
		return m, m.key(msg)
	case chatTickMsg:
		m.prune()
		return m, tea.Batch(m.load(), chatTick())
	case chatLoadedMsg:
		if msg.seq < m.loaded {
			return m, nil // loads run concurrently: a newer one is shown
		}
		m.loaded = msg.seq
		if msg.err != nil {
			m.status = "reading: " + oneLine(msg.err.Error())
			return m, nil
		}
		m.msgs = chatVisible(msg.msgs, m.now())
	case chatSentMsg:
		m.sending--
		if msg.err != nil {
			m.status = "not sent: " + oneLine(msg.err.Error())
			return m, nil
		}
		m.status = ""
		return m, m.load()
	case chatReceivedMsg:
		r := msg.r
		if r.Event == "typing" {
			if !r.Outgoing && m.members[r.From] {
				m.typing[r.FromName] = m.now().Add(chatTypingShown)
			}
			return m, nil
		}
		if r.Event == "" && !r.Outgoing {
			delete(m.typing, r.FromName) // the message they were typing
		}
		// A message, a receipt or a group change: the store has it.
		return m, m.load()
	case chatListenErrMsg:
		m.status = "not receiving: " + oneLine(msg.err.Error())
	}
	return m, nil
}

func (m *chatModel) key(k tea.KeyMsg) tea.Cmd {
	switch k.Type {
	case tea.KeyCtrlC, tea.KeyEsc:
		return tea.Quit
	case tea.KeyTab:
		m.ttl = (m.ttl + 1) % len(chatTTLs)
	case tea.KeyEnter:
		text := strings.TrimSpace(string(m.input))
		if text == "" {
			return nil
		}
		m.input = m.input[:0]
		m.sending++
		m.lastTyping = time.Time{}
		acc, ctx, to, ttl := m.acc, m.ctx, m.to, chatTTLs[m.ttl]
		return func() tea.Msg {
			res, err := acc.Send(ctx, to, []byte(text), client.SendOptions{TTL: ttl})
			return chatSentMsg{res, err}
		}
	case tea.KeyBackspace:
		if len(m.input) > 0 {
			m.input = m.input[:len(m.input)-1]
		}
	case tea.KeyCtrlU:
		m.input = m.input[:0]
	case tea.KeyRunes, tea.KeySpace:
		for _, r := range k.Runes {
			if r == '\n' || r == '\r' {
				r = ' '
			}
			m.input = append(m.input, r)
		}
		if now := m.now(); now.Sub(m.lastTyping) >= chatTypingEvery {
			m.lastTyping = now
			acc, ctx, to := m.acc, m.ctx, m.to
			return func() tea.Msg {
				acc.SendTyping(ctx, to) // best effort: a lost typing event does not matter
				return nil
			}
		}
	}
	return nil
}

// prune drops what expired since the last read, and old typing events.
func (m *chatModel) prune() {
	now := m.now()
	m.msgs = chatVisible(m.msgs, now)
	for name, until := range m.typing {
		if !now.Before(until) {
			delete(m.typing, name)
		}
	}
}

// chatVisible keeps the messages (not events) that have not expired.
func chatVisible(msgs []*client.Received, now time.Time) []*client.Received {
	var out []*client.Received
	for _, r := range msgs {
		if r.Event == "" && now.Before(r.Expires) {
			out = append(out, r)
		}
	}
	return out
}

func (m *chatModel) View() string {
	now := m.now()
	var lines []string
	for _, r := range m.msgs {
		lines = append(lines, m.messageLines(r, now)...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Chat with %s — Enter: send, Tab: TTL, Esc: quit\n", safeText(m.title))
	// Room for the messages: the screen less the title, typing, status
	// and input lines.
	room := m.height - 4
	if room < 1 {
		room = 1
	}
	if len(lines) > room {
		lines = lines[len(lines)-room:]
	}
	for i := len(lines); i < room; i++ {
		b.WriteString("\n")
	}
	for _, l := range lines {
		b.WriteString(m.fit(l) + "\n")
	}
	var typing []string
	for name, until := range m.typing {
		if now.Before(until) {
			typing = append(typing, safeText(name))
		}
	}
	if len(typing) > 0 {
		sort.Strings(typing)
		b.WriteString(strings.Join(typing, ", ") + " is typing…")
	}
	b.WriteString("\n")
	status := "TTL " + chatTTLNames[m.ttl] + " (Tab)"
	if m.sending > 0 {
		status += " · sending…"
	}
	if m.status != "" {
		status += " · " + m.status
	}
	b.WriteString(m.fit(status) + "\n")
	b.WriteString(m.fit("> "+safeText(string(m.input))) + "█")
	return b.String()
}

// fit cuts a line to the width of the screen.
func (m *chatModel) fit(s string) string {
	w := m.width - 1
	if w < 10 {
		w = 10
	}
	rs := []rune(s)
	if len(rs) > w {
		return string(rs[:w-1]) + "…"
	}
	return s
}

// messageLines is one message as lines for the view:
//
//	15:04:05 bob (verified, 59m12s): hello
//	15:04:09 me (verified, read, 4m10s): hi
//	15:04:10 bob: [invalid signature: message hidden]
func (m *chatModel) messageLines(r *client.Received, now time.Time) []string {
	head := m.clock(r.Sent) + " " + safeText(r.FromName)
	if r.Signature == client.SigInvalid || r.Message == nil {
		return []string{head + ": [invalid signature: message hidden]"}
	}
	status := []string{r.Signature}
	if r.Outgoing {
		state := r.State
		if state == "" {
			state = "sent"
		}
		status = append(status, state)
	}
	status = append(status, formatLeft(r.Expires.Sub(now)))
	head += " (" + strings.Join(status, ", ") + "):"
	msg := r.Message
	var out []string
	switch {
	case isText(msg.ContentType) && len(msg.Body) > 0:
		for i, l := range strings.Split(strings.TrimRight(string(msg.Body), "\n"), "\n") {
			if i == 0 {
				out = append(out, head+" "+safeText(l))
			} else {
				out = append(out, "    "+safeText(l))
			}
		}
	case isText(msg.ContentType):
		out = append(out, head)
	default:
		out = append(out, fmt.Sprintf("%s [%s, %s]", head, safeText(msg.ContentType), formatSize(int64(len(msg.Body)))))
	}
	for _, att := range msg.Attachments {
		out = append(out, fmt.Sprintf("    attachment: %s (%s) — 'qrtalk read %s --save DIR' saves it",
			safeText(att.Name), formatSize(int64(att.Size)), shellWord(m.to)))
	}
	return out
}
