package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

func sendCommand() *command {
	return &command{
		name: "send", args: "<contact | group> [options] [message... | -]",
		summary: "send a message (from arguments or standard input)",
		about: `Sends a message to a contact or a group, encrypted once for every device of
every recipient and your own other devices, and prints what became of each
device's copy: delivered (it was online and has it), queued (the server holds
it, encrypted, until the device fetches it or the message expires) or
rejected.

The message is the arguments, or standard input with '-' or when there are
no arguments and standard input is not a terminal (at most 256 KiB; send more
as a file). Files are encrypted here and uploaded with the message's TTL; a
progress bar shows on a terminal.

The TTL is counted from now; when it ends the message is gone from the
server and from every device: 10s, 5m, 1h, 1d, 1w or any duration from 1s
to 7 days (90s, 2h30m, 3d). Messages are signed with your identity key;
--unsigned leaves the signature off (the recipient sees "unsigned": it proves
nothing about who sent it).

If a contact's key changed, nothing is sent and the exit status is 3:
check the new fingerprint with them, then 'qrtalk contact accept'.
--json prints {id, to, expires, ttl_s, devices: [{user, name, device,
status, code, reason}]}.
`,
		examples: `  qrtalk send bob "see you at 6"
  qrtalk send team --ttl 5m --file plan.pdf "the plan, for 5 minutes"
  df -h / | qrtalk send ops --ttl 1d          # from a script
  qrtalk send bob --ttl 10s - < secret.txt
`,
		run: (*app).send,
	}
}

// fileList collects repeated --file options.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

// ttlFlag parses a TTL option.
type ttlFlag struct{ d time.Duration }

func (t *ttlFlag) String() string {
	if t.d == 0 {
		return "1h"
	}
	return formatTTL(t.d)
}
func (t *ttlFlag) Set(s string) error {
	d, err := parseTTL(s)
	if err != nil {
		return err
	}
	t.d = d
	return nil
}

var dayWeek = regexp.MustCompile(`^(\d{1,3})([dw])(.*)$`)

// parseTTL reads a TTL: a preset (10s 5m 1h 1d 1w), days or weeks (3d,
// 2w), or a Go duration (90s, 2h30m), possibly after days ("1d12h").
// It must be whole seconds from 1s to 7 days.
func parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	var d time.Duration
	if m := dayWeek.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		unit := 24 * time.Hour
		if m[2] == "w" {
			unit *= 7
		}
		d = time.Duration(n) * unit
		s = m[3]
	}
	if s != "" {
		r, err := time.ParseDuration(s)
		if err != nil || r < 0 {
			return 0, errors.New("not a duration: use 10s, 5m, 1h, 1d, 1w or a duration like 90m")
		}
		d += r
	}
	if d < protocol.MinTTL || d > protocol.MaxTTL {
		return 0, errors.New("must be from 1s to 7 days (1w)")
	}
	if d%time.Second != 0 {
		return 0, errors.New("must be whole seconds")
	}
	return d, nil
}

// formatTTL writes a duration the way people say it: 10s, 5m, 1h30m, 2d.
func formatTTL(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var parts []string
	for _, u := range []struct {
		d time.Duration
		s string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			parts = append(parts, fmt.Sprintf("%d%s", n, u.s))
			d -= n * u.d
		}
	}
	if len(parts) == 0 {
		return "0s"
	}
	return strings.Join(parts, "")
}

// formatLeft is a remaining time, rounded for reading: 42s, 4m10s, 59m,
// 23h5m, 6d23h.
func formatLeft(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Hour:
		return formatTTL(d.Truncate(time.Second))
	case d < 24*time.Hour:
		return formatTTL(d.Truncate(time.Minute))
	}
	return formatTTL(d.Truncate(time.Hour))
}

type deviceResultJSON struct {
	User   string `json:"user"`
	Name   string `json:"name"`
	Device string `json:"device"`
	Status string `json:"status"` // "delivered", "queued" or "rejected"
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

type sendJSON struct {
	ID      string             `json:"id"`
	To      string             `json:"to"`
	Expires string             `json:"expires"`
	TTL     int64              `json:"ttl_s"`
	Devices []deviceResultJSON `json:"devices"`
}

func (a *app) send(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	ttl := &ttlFlag{}
	var files fileList
	fs.Var(ttl, "ttl", "time to live: 10s, 5m, 1h, 1d, 1w or a `DURATION` from 1s to 7 days")
	unsigned := fs.Bool("unsigned", false, "leave the signature off (the recipient sees \"unsigned\")")
	fs.Var(&files, "file", "attach the file at `PATH` (repeat for more)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := a.parseArgs(fs, c, args, 1, -1)
	if err != nil {
		return err
	}
	to := pos[0]
	body, err := a.messageBody(pos[1:], len(files) > 0)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	opts := client.SendOptions{TTL: ttl.d, Unsigned: *unsigned, Files: files}
	if opts.TTL == 0 {
		opts.TTL = time.Hour
	}
	var bar *progressBar
	if len(files) > 0 && a.stderrTTY {
		bar = &progressBar{w: a.stderr}
		opts.Progress = bar.update
	}
	res, err := acc.Send(ctx, to, body, opts)
	bar.finish()
	if err != nil {
		if errors.Is(err, client.ErrKeyChanged) {
			return keyChanged(ctx, acc, to, err)
		}
		return err
	}
	names := a.namer(ctx, acc)
	if *asJSON {
		out := sendJSON{ID: res.ID.String(), To: to, Expires: res.Expires.UTC().Format(time.RFC3339), TTL: int64(opts.TTL / time.Second), Devices: []deviceResultJSON{}}
		for _, d := range res.Devices {
			out.Devices = append(out.Devices, deviceResultJSON{User: d.User.String(), Name: names(d.User), Device: d.Device.String(), Status: d.Status, Code: d.Code, Reason: d.Reason})
		}
		return a.printJSON(out)
	}
	fmt.Fprintf(a.stdout, "Sent to %s; expires in %s, at %s (message %s).\n", to, formatTTL(opts.TTL), a.clock(res.Expires), res.ID.String()[:12])
	if len(res.Devices) == 0 {
		fmt.Fprintln(a.stdout, "  no other device received it: the recipients have no device left")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, d := range res.Devices {
		status := d.Status
		if d.Status == api.StatusRejected {
			status = fmt.Sprintf("rejected: %s (code %d)", oneLine(d.Reason), d.Code)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", names(d.User), d.Device, status)
	}
	return tw.Flush()
}

// keyChanged explains a send stopped by a changed key: whose, and what
// to do.
func keyChanged(ctx context.Context, acc *client.Account, to string, err error) error {
	var changed []string
	if ct, cerr := acc.Contact(ctx, to); cerr == nil {
		changed = append(changed, ct.Name)
	} else if g, gerr := acc.Group(ctx, to); gerr == nil {
		for _, m := range g.Members {
			if ct, cerr := acc.Contact(ctx, m.String()); cerr == nil && ct.Changed {
				changed = append(changed, ct.Name)
			}
		}
	}
	if len(changed) == 0 {
		return withCode(fmt.Errorf("%w; nothing was sent", err), exitKey, "")
	}
	who := strings.Join(changed, ", ")
	what := fmt.Errorf("%w: %s; nothing was sent", client.ErrKeyChanged, who)
	if len(changed) == 1 {
		what = fmt.Errorf("%s's identity key changed: nothing was sent", who)
	}
	return withCode(what, exitKey, fmt.Sprintf("check the new fingerprint with %s in person ('qrtalk contact accept %s' shows it), then accept it",
		changed[0], shellWord(changed[0])))
}

// messageBody reads the message from the arguments or standard input.
func (a *app) messageBody(words []string, hasFiles bool) ([]byte, error) {
	switch {
	case len(words) == 1 && words[0] == "-":
	case len(words) > 0:
		return []byte(strings.Join(words, " ")), nil
	case !a.stdinTTY:
	case hasFiles:
		return nil, nil
	default:
		return nil, usage("give the message as arguments, or '-' to read it from standard input", "send: no message")
	}
	body, err := io.ReadAll(io.LimitReader(a.stdin, protocol.MaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the message: %w", err)
	}
	if len(body) > protocol.MaxBodySize {
		return nil, usage("send it as a file: --file PATH", "the message is longer than %d KiB", protocol.MaxBodySize>>10)
	}
	if len(body) == 0 && !hasFiles {
		return nil, usage("", "send: the message on standard input is empty")
	}
	return body, nil
}

// namer names users as this account knows them: "you", a contact's name,
// or the ID.
func (a *app) namer(ctx context.Context, acc *client.Account) func(protocol.UserID) string {
	cache := map[protocol.UserID]string{}
	return func(u protocol.UserID) string {
		if n, ok := cache[u]; ok {
			return n
		}
		n := u.String()
		if u == acc.Device().User {
			n = "you"
		} else if ct, err := acc.Contact(ctx, u.String()); err == nil {
			n = ct.Name
		}
		cache[u] = n
		return n
	}
}

// clock shows a time of day, with the date when it is not today.
func (a *app) clock(t time.Time) string {
	t = t.Local()
	now := a.now().Local()
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

// progressBar draws upload progress on a terminal, at most ten times a
// second.
type progressBar struct {
	w        io.Writer
	mu       sync.Mutex
	last     time.Time
	lastDone int64
	name     string
	done     bool
	drew     bool
}

func (p *progressBar) update(name string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name != p.name && p.drew {
		fmt.Fprintln(p.w)
	}
	if name == p.name && done == p.lastDone && p.drew {
		return
	}
	p.name = name
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.lastDone = now, done
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r%-20.20s [%s%s] %3d%%  %s / %s ", name, strings.Repeat("=", n), strings.Repeat(" ", width-n),
		int(frac*100), formatSize(done), formatSize(total))
	p.drew = true
}

func (p *progressBar) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drew && !p.done {
		fmt.Fprintln(p.w)
	}
	p.done = true
}

// formatSize writes a byte count for people: 812 B, 1.4 KB, 23 MB.
func formatSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f KB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

func typingCommand() *command {
	return &command{
		name: "typing", args: "<contact | group>",
		summary: "tell a contact or group you are typing",
		about: `Sends a typing event: an end-to-end encrypted message like any other, that
lives 10 seconds and shows as "NAME is typing" on the other side. For bots
and other front ends; 'qrtalk send' does not send it.
`,
		examples: "  qrtalk typing bob\n",
		run:      (*app).typing,
	}
}

func (a *app) typing(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	return acc.SendTyping(ctx, pos[0])
}
