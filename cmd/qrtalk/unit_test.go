package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// runApp runs qrtalk in-process, with no account and no terminal.
func runApp(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, now: time.Now,
		getenv: func(k string) string {
			if k == "HOME" {
				return "/nonexistent-home"
			}
			return ""
		}}
	code = a.run(context.Background(), args)
	return code, out.String(), errOut.String()
}

// Every command has a help with its synopsis, every option it defines,
// the global options, an example and the exit statuses.
func TestEveryCommandHelp(t *testing.T) {
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			args := append(strings.Fields(c.name), "--help")
			code, out, errOut := runApp(args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, want := range []string{"Usage: qrtalk " + c.name, "--home DIR", "--passphrase-file FILE", "Examples:\n  ", "Exit status"} {
				if !strings.Contains(out, want) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
			for _, f := range flagsOf(c) {
				if !strings.Contains(out, "--"+f.Name) {
					t.Errorf("help lacks --%s", f.Name)
				}
			}
			for _, l := range strings.Split(out, "\n") {
				if len([]rune(l)) > 80 && !strings.HasPrefix(l, "  qrtalk ") {
					t.Errorf("line longer than 80 columns: %q", l)
				}
			}
			// 'qrtalk help NAME' prints the same.
			if _, out2, _ := runApp(append([]string{"help"}, strings.Fields(c.name)...)...); out2 != out {
				t.Errorf("'help %s' differs from '%s --help'", c.name, c.name)
			}
		})
	}
	_, out, _ := runApp("--help")
	for _, c := range commands() {
		if !c.hidden && !strings.Contains(out, "  "+c.name) {
			t.Errorf("qrtalk --help does not list %q", c.name)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"--frob"}, "unknown option --frob"},
		{[]string{"send", "bob", "--ttl"}, "send: option needs a value: --ttl"},
		{[]string{"send", "bob", "--ttl", "0s", "hi"}, `invalid value "0s" for --ttl: must be from 1s to 7 days`},
		{[]string{"contact", "verify", "bob"}, "contact verify: missing argument"},
		{[]string{"group", "add", "a", "b", "c"}, `group add: unexpected argument "c"`},
		{[]string{"device", "revoke", "zz"}, `"zz" is not a device ID`},
		{[]string{"id", "--qr", "maybe"}, `--qr "maybe": must be auto, true or false`},
		{[]string{"listen", "--count", "-1"}, "cannot be negative"},
		{[]string{"completion", "powershell"}, `unknown shell "powershell"`},
	} {
		code, out, errOut := runApp(tc.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != exitUsage || out != "" || !strings.HasPrefix(lines[0], "qrtalk: ") || !strings.Contains(lines[0], tc.msg) || len(lines) > 2 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.msg)
		}
		if len(lines) == 2 && !strings.HasPrefix(lines[1], "hint: ") {
			t.Errorf("%v: second line is not a hint: %q", tc.args, lines[1])
		}
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		hint string
	}{
		{fmt.Errorf("%w: /x", client.ErrNoAccount), exitNoAccount, "qrtalk join"},
		{fmt.Errorf("%w: bob", client.ErrKeyChanged), exitKey, "qrtalk contact accept"},
		{fmt.Errorf("x: %w", protocol.ErrMismatch), exitKey, ""},
		{fmt.Errorf("%w: y", client.ErrServerKey), exitKey, "do not go on"},
		{fmt.Errorf("registering: %w", api.ErrInvite), exitError, "ask the server's operator for a new invite"},
		{fmt.Errorf("%w: x", client.ErrNoContact), exitError, "qrtalk contacts"},
		{usage("do this", "bad"), exitUsage, "do this"},
		{withHint(errors.New("x"), "h"), exitError, "h"},
		{context.Canceled, exitError, ""},
	} {
		msg, hint, code := explain(tc.err)
		if code != tc.code || !strings.Contains(hint, tc.hint) || (tc.hint == "" && hint != "") {
			t.Errorf("%v: code %d hint %q; want %d and %q", tc.err, code, hint, tc.code, tc.hint)
		}
		if strings.Contains(msg, "(code 40300; ") {
			t.Errorf("the API hint is repeated in the message: %q", msg)
		}
	}
}

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"10s": 10 * time.Second, "5m": 5 * time.Minute, "1h": time.Hour, "1d": 24 * time.Hour, "1w": 7 * 24 * time.Hour,
		"90m": 90 * time.Minute, "2h30m": 150 * time.Minute, "3d": 72 * time.Hour, "1d12h": 36 * time.Hour, "1S": time.Second,
		"168h": 7 * 24 * time.Hour, "7d": 7 * 24 * time.Hour,
	} {
		if got, err := parseTTL(in); err != nil || got != want {
			t.Errorf("parseTTL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0s", "-5s", "8d", "2w", "1w1s", "500ms", "1.5s", "soon", "d", "1x"} {
		if got, err := parseTTL(in); err == nil {
			t.Errorf("parseTTL(%q) = %v, want an error", in, got)
		}
	}
}

func TestFormatDurations(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second: "10s", 90 * time.Minute: "1h30m", 7 * 24 * time.Hour: "7d", 0: "0s",
	} {
		if got := formatTTL(d); got != want {
			t.Errorf("formatTTL(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		42*time.Second + 300*time.Millisecond: "42s", 4*time.Minute + 10*time.Second: "4m10s",
		59*time.Minute + 59*time.Second: "59m59s", 23*time.Hour + 5*time.Minute + 30*time.Second: "23h5m",
		6*24*time.Hour + 23*time.Hour + 59*time.Minute: "6d23h", -time.Second: "0s",
	} {
		if got := formatLeft(d); got != want {
			t.Errorf("formatLeft(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSafeText(t *testing.T) {
	for in, want := range map[string]string{
		"hello":                 "hello",
		"\x1b[2Jcleared":        "\uFFFD[2Jcleared",
		"tab\there":             "tab\there",
		"bell\a":                "bell\uFFFD",
		"rtl \u202eevil":        "rtl \uFFFDevil",
		"c1 \u009b31m":          "c1 \uFFFD31m",
		"bad utf8 \xff":         "bad utf8 \uFFFD",
		"über ✓":                "über ✓",
		"line\rover":            "line\uFFFDover",
		"isolate \u2066x\u2069": "isolate \uFFFDx\uFFFD",
	} {
		if got := safeText(in); got != want {
			t.Errorf("safeText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	a := &app{getenv: func(string) string { return "" }}
	c := &command{name: "send"}
	fs := a.flagSet(c)
	ttl := fs.String("ttl", "", "")
	pos, err := a.parse(fs, c, []string{"bob", "--ttl", "5m", "hello", "--home", "h", "world", "--", "--not-a-flag", "-"})
	if err != nil || *ttl != "5m" || a.home != "h" || strings.Join(pos, "|") != "bob|hello|world|--not-a-flag|-" {
		t.Fatalf("pos %q, ttl %q, home %q, err %v", pos, *ttl, a.home, err)
	}
}

func TestShellWord(t *testing.T) {
	for in, want := range map[string]string{"bob": "bob", "bob smith": "'bob smith'", "o'neil": `'o'\''neil'`, "": "''"} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %q, want %q", in, got, want)
		}
	}
}
