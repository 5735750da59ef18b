package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qrtalk/qrtalk/client"
)

// The JSON form of a message or event, one object per line, for listen,
// inbox and read. The field names are stable; new fields may be added.
const jsonFieldsHelp = `--json prints one JSON object per line:
  type          "message", or an event: "delivered", "read", "typing", "group"
  id            the message ID (hex)
  time          when it was sent (RFC 3339)
  expires       when it expires everywhere (RFC 3339)
  expires_in_s  seconds left until then
  conversation  the contact's or group's name (messages only)
  from          the sender's user ID
  from_name     the sender's name on this device ("me" for you)
  outgoing      true for a message you sent (from this or another device)
  signature     "verified", "unverified key", "unsigned" or "invalid"
  content_type  the message's MIME type
  text          the text (absent when the signature is invalid: the
                message is never shown)
  attachments   [{name, size, media_type, saved}] (saved: the path written
                with --save)
  state         your message's state: "sent", "delivered" or "read"
  about         the message IDs a receipt is about
`

type attachmentJSON struct {
	Name      string `json:"name"`
	Size      uint64 `json:"size"`
	MediaType string `json:"media_type"`
	Saved     string `json:"saved,omitempty"`
}

type messageJSON struct {
	Type         string           `json:"type"`
	ID           string           `json:"id"`
	Time         string           `json:"time"`
	Expires      string           `json:"expires"`
	ExpiresIn    int64            `json:"expires_in_s"`
	Conversation string           `json:"conversation,omitempty"`
	From         string           `json:"from"`
	FromName     string           `json:"from_name"`
	Outgoing     bool             `json:"outgoing"`
	Signature    string           `json:"signature"`
	ContentType  string           `json:"content_type,omitempty"`
	Text         *string          `json:"text,omitempty"`
	Attachments  []attachmentJSON `json:"attachments,omitempty"`
	State        string           `json:"state,omitempty"`
	About        []string         `json:"about,omitempty"`
}

// A printer shows received messages and events, as text or JSON lines,
// saving attachments on the way when asked.
type printer struct {
	a        *app
	acc      *client.Account
	json     bool
	save     string
	showLeft bool // read: the time left before expiry
}

func (p *printer) print(ctx context.Context, r *client.Received) error {
	var saved []string
	if p.save != "" && r.Message != nil && len(r.Message.Attachments) > 0 && !r.Outgoing {
		var err error
		saved, err = p.saveAttachments(ctx, r)
		if err != nil {
			fmt.Fprintf(p.a.stderr, "qrtalk: saving the attachments of %s: %s\n", r.ID.String()[:12], oneLine(err.Error()))
		}
	}
	if p.json {
		return p.a.printJSON(p.toJSON(r, saved))
	}
	_, err := fmt.Fprint(p.a.stdout, p.text(r, saved))
	return err
}

func (p *printer) toJSON(r *client.Received, saved []string) messageJSON {
	m := messageJSON{Type: "message", ID: r.ID.String(), Time: r.Sent.UTC().Format(time.RFC3339Nano),
		Expires: r.Expires.UTC().Format(time.RFC3339Nano), ExpiresIn: int64(r.Expires.Sub(p.a.now()) / time.Second),
		Conversation: r.Conversation, From: r.From.String(), FromName: r.FromName, Outgoing: r.Outgoing, Signature: r.Signature}
	if m.ExpiresIn < 0 {
		m.ExpiresIn = 0
	}
	if r.Event != "" {
		m.Type, m.Conversation = r.Event, ""
		for _, id := range r.EventIDs {
			m.About = append(m.About, id.String())
		}
		return m
	}
	if r.Outgoing {
		m.State = r.State
		if m.State == "" {
			m.State = "sent"
		}
	}
	if r.Message == nil {
		return m
	}
	m.ContentType = r.Message.ContentType
	if isText(r.Message.ContentType) {
		t := strings.ToValidUTF8(string(r.Message.Body), "\uFFFD")
		m.Text = &t
	}
	for i, att := range r.Message.Attachments {
		aj := attachmentJSON{Name: att.Name, Size: att.Size, MediaType: att.MediaType}
		if i < len(saved) {
			aj.Saved = saved[i]
		}
		m.Attachments = append(m.Attachments, aj)
	}
	return m
}

// text is a message or event as lines for a terminal:
//
//	15:04:05 [team] bob (verified, 59m left): hello
//	    second line
//	    attachment: plan.pdf (1.2 MB, application/pdf) saved to ~/in/plan.pdf
//	15:04:07 * read by bob: 3f2a1b2c9d0e
func (p *printer) text(r *client.Received, saved []string) string {
	var b strings.Builder
	when := p.a.clock(r.Sent)
	who := safeText(r.FromName)
	if r.Outgoing && r.Event != "" {
		// An event from this user's other device (the SDK seals events
		// for every own device too).
		switch r.Event {
		case "delivered":
			fmt.Fprintf(&b, "%s * delivered to your other device: %s\n", when, shortIDs(r))
		case "read":
			fmt.Fprintf(&b, "%s * read on your other device: %s\n", when, shortIDs(r))
		case "typing":
			fmt.Fprintf(&b, "%s * you are typing on your other device\n", when)
		default:
			fmt.Fprintf(&b, "%s * %s from your other device\n", when, safeText(r.Event))
		}
		return b.String()
	}
	switch r.Event {
	case "delivered":
		fmt.Fprintf(&b, "%s * delivered to %s: %s\n", when, who, shortIDs(r))
		return b.String()
	case "read":
		fmt.Fprintf(&b, "%s * read by %s: %s\n", when, who, shortIDs(r))
		return b.String()
	case "typing":
		fmt.Fprintf(&b, "%s * %s is typing\n", when, who)
		return b.String()
	case "group":
		fmt.Fprintf(&b, "%s * %s updated a group\n", when, who)
		return b.String()
	case "":
	default:
		fmt.Fprintf(&b, "%s * %s from %s\n", when, safeText(r.Event), who)
		return b.String()
	}
	conv := r.Conversation
	if conv == "" {
		conv = who
	}
	status := []string{r.Signature}
	if r.Outgoing {
		state := r.State
		if state == "" {
			state = "sent"
		}
		status = append(status, state)
	}
	if p.showLeft {
		status = append(status, formatLeft(r.Expires.Sub(p.a.now()))+" left")
	}
	fmt.Fprintf(&b, "%s [%s] %s", when, safeText(conv), who)
	if r.Signature == client.SigInvalid || r.Message == nil {
		b.WriteString(": [invalid signature: message hidden]\n")
		return b.String()
	}
	fmt.Fprintf(&b, " (%s):", strings.Join(status, ", "))
	msg := r.Message
	switch {
	case isText(msg.ContentType) && len(msg.Body) > 0:
		lines := strings.Split(strings.TrimRight(string(msg.Body), "\n"), "\n")
		for i, l := range lines {
			if i == 0 {
				b.WriteString(" " + safeText(l) + "\n")
			} else {
				b.WriteString("    " + safeText(l) + "\n")
			}
		}
	case isText(msg.ContentType):
		b.WriteString("\n")
	default:
		fmt.Fprintf(&b, " [%s, %s]\n", safeText(msg.ContentType), formatSize(int64(len(msg.Body))))
	}
	for i, att := range msg.Attachments {
		fmt.Fprintf(&b, "    attachment: %s (%s, %s)", safeText(att.Name), formatSize(int64(att.Size)), safeText(att.MediaType))
		if i < len(saved) {
			fmt.Fprintf(&b, " saved to %s", saved[i])
		}
		b.WriteString("\n")
	}
	return b.String()
}

func shortIDs(r *client.Received) string {
	var ids []string
	for _, id := range r.EventIDs {
		ids = append(ids, id.String()[:12])
	}
	return strings.Join(ids, ", ")
}

func isText(ct string) bool {
	return strings.HasPrefix(ct, "text/plain")
}

// safeText keeps another user's text from driving the terminal: control
// characters (escape sequences included) become visible escapes.
func safeText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return r
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0, r == '\u2028', r == '\u2029',
			r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
			// C0 and C1 controls, and bidirectional overrides that could
			// disguise text.
			return '\uFFFD'
		}
		return r
	}, s)
}

// saveAttachments decrypts a message's attachments into the --save
// directory under names that do not overwrite anything there: they are
// written to a fresh directory first, then moved beside the others.
func (p *printer) saveAttachments(ctx context.Context, r *client.Received) ([]string, error) {
	if err := os.MkdirAll(p.save, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(p.save, ".qrtalk-save-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	paths, err := p.acc.SaveAttachments(ctx, r, tmp)
	var out []string
	for _, path := range paths {
		dst := uniquePath(filepath.Join(p.save, filepath.Base(path)))
		if rerr := os.Rename(path, dst); rerr != nil {
			return out, rerr
		}
		out = append(out, dst)
	}
	return out, err
}

// uniquePath returns path, or path with "-2", "-3"... before its extension
// when a file of that name exists.
func uniquePath(path string) string {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return path
	}
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	for i := 2; ; i++ {
		p := fmt.Sprintf("%s-%d%s", base, i, ext)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
	}
}

func listenCommand() *command {
	return &command{
		name: "listen", args: "[options]",
		summary: "print messages and events as they arrive",
		about: `Fetches what is queued for this device, then holds a live channel to the
server and prints each message as it arrives: time, conversation, sender,
signature status and text, attachments below. A message whose signature
does not verify shows only "[invalid signature: message hidden]". Receipts
and typing show as short lines starting with '*'. Messages are kept,
encrypted, on this device until they expire; delivery receipts go back to
the sender. Ctrl-C stops.

Signature statuses: verified (signed by a contact you verified), unverified
key (signed, but you have not verified the sender's fingerprint, or they are
not a contact), unsigned (sent with --unsigned: it proves nothing about the
sender), invalid (hidden).

` + jsonFieldsHelp,
		examples: `  qrtalk listen
  qrtalk listen --save ~/Downloads/qrtalk
  qrtalk listen --json | jq -r 'select(.type == "message") | .text'
  qrtalk listen --count 1 --timeout 1m       # wait for one message
`,
		run: (*app).listen,
	}
}

func (a *app) listen(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	save := fs.String("save", "", "save attachments into `DIR`")
	count := fs.Int("count", 0, "stop after `N` messages (events do not count)")
	timeout := fs.Duration("timeout", 0, "stop after `DURATION`; with --count, fail if fewer messages came")
	if _, err := a.parseArgs(fs, c, args, 0, 0); err != nil {
		return err
	}
	if *count < 0 || *timeout < 0 {
		return usage("", "listen: --count and --timeout cannot be negative")
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	p := &printer{a: a, acc: acc, json: *asJSON, save: *save}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *timeout > 0 {
		var cancelT context.CancelFunc
		runCtx, cancelT = context.WithTimeout(runCtx, *timeout)
		defer cancelT()
	}
	got := 0
	var printErr error
	handle := func(r *client.Received) {
		if err := p.print(runCtx, r); err != nil && printErr == nil {
			printErr = err // stdout closed: stop
			cancel()
		}
		if r.Event == "" {
			got++
			if *count > 0 && got >= *count {
				cancel()
			}
		}
	}
	// What is queued first, which also finds a revoked device or an
	// unreachable server at once rather than retrying quietly.
	queued, err := acc.Sync(runCtx, 0)
	for _, r := range queued {
		handle(r)
	}
	if err != nil && runCtx.Err() == nil {
		return err
	}
	if a.stderrTTY && !*asJSON && runCtx.Err() == nil {
		srv, _ := acc.Server()
		fmt.Fprintf(a.stderr, "Listening on %s as %s (Ctrl-C to stop)...\n", srv, acc.Device().User)
	}
	if runCtx.Err() == nil {
		err = acc.Listen(runCtx, handle)
	}
	switch {
	case printErr != nil:
		return printErr
	case *count > 0 && got >= *count:
		return nil
	case errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		if *count > 0 {
			return withHint(fmt.Errorf("listen: %d of %d messages in %s", got, *count, *timeout), "")
		}
		return nil
	case ctx.Err() != nil:
		return nil // interrupted: the normal way to stop
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func inboxCommand() *command {
	return &command{
		name: "inbox", args: "[options]",
		summary: "fetch the messages queued while you were away",
		about: `Fetches the messages the server queued for this device while it was away,
prints them like 'qrtalk listen' does, and keeps them, encrypted, on this
device until they expire ('qrtalk read' shows them again). The server deletes
them once fetched. --wait waits that long for a first message when none is
queued.

` + jsonFieldsHelp,
		examples: `  qrtalk inbox
  qrtalk inbox --wait 30s --json
`,
		run: (*app).inbox,
	}
}

func (a *app) inbox(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	save := fs.String("save", "", "save attachments into `DIR`")
	wait := fs.Duration("wait", 0, "wait up to `DURATION` for a first message (at most 30s)")
	if _, err := a.parseArgs(fs, c, args, 0, 0); err != nil {
		return err
	}
	if *wait < 0 || *wait > 30*time.Second {
		return usage("", "inbox: --wait must be from 0 to 30s")
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	p := &printer{a: a, acc: acc, json: *asJSON, save: *save}
	got, err := acc.Sync(ctx, *wait)
	for _, r := range got {
		if perr := p.print(ctx, r); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	if len(got) == 0 && !*asJSON && a.stderrTTY {
		fmt.Fprintln(a.stderr, "No new messages.")
	}
	return nil
}

func readCommand() *command {
	return &command{
		name: "read", args: "<contact | group> [options]",
		summary: "show a conversation, with each message's time left",
		about: `Shows the messages of a conversation kept on this device, oldest first, with
the time each has left before it expires (then it is gone here and
everywhere), and marks them read: the senders get a read receipt
(--no-mark: neither). Your own messages show whether they were delivered or
read. It does not fetch new messages: 'qrtalk inbox' or 'qrtalk listen' do.

` + jsonFieldsHelp,
		examples: `  qrtalk read bob
  qrtalk read team --save ~/Downloads/qrtalk
  qrtalk read bob --json | jq -r .text
`,
		run: (*app).read,
	}
}

func (a *app) read(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	save := fs.String("save", "", "save attachments into `DIR`")
	noMark := fs.Bool("no-mark", false, "do not mark messages read or send read receipts")
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	msgs, err := acc.Messages(ctx, pos[0], !*noMark)
	if err != nil {
		return err
	}
	p := &printer{a: a, acc: acc, json: *asJSON, save: *save, showLeft: true}
	for _, r := range msgs {
		if err := p.print(ctx, r); err != nil {
			return err
		}
	}
	if len(msgs) == 0 && !*asJSON && a.stderrTTY {
		fmt.Fprintf(a.stderr, "No messages with %s: none yet, or they expired.\n", pos[0])
	}
	return nil
}
