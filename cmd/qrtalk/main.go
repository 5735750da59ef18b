// Command qrtalk is the QRTalk command-line client: end-to-end encrypted,
// ephemeral messages from a terminal or a script.
//
//	qrtalk join <invite>            create an account from an invite
//	qrtalk id                       show your ID, fingerprint and contact code
//	qrtalk contact add <code>       add a contact (by ID, code or QR image)
//	qrtalk send <contact> message   send a message
//	qrtalk listen                   print messages as they arrive
//
// Run 'qrtalk --help' for every command and the exit statuses, and
// 'qrtalk COMMAND --help' for a command's options and examples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/qrtalk/qrtalk/protocol"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// without it, the module version from the build info is shown.
var version = ""

// Exit statuses, documented in 'qrtalk --help'.
const (
	exitOK        = 0
	exitError     = 1 // anything that went wrong at run time
	exitUsage     = 2 // a mistake on the command line
	exitKey       = 3 // a contact's key changed, or a fingerprint or key did not verify
	exitNoAccount = 4 // no account in the home directory: join first
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		getenv:    os.Getenv,
		stdinTTY:  isTerminal(os.Stdin),
		stdoutTTY: isTerminal(os.Stdout),
		stderrTTY: isTerminal(os.Stderr),
		now:       time.Now,
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is one run of the command, with everything it touches outside
// itself.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// Whether each standard stream is a terminal: a terminal gets QR
	// codes, progress bars and prompts; a pipe gets plain text.
	stdinTTY, stdoutTTY, stderrTTY bool
	now                            func() time.Time

	// Global options, set before or after the command name.
	home           string
	passphraseFile string

	// capture, when set, receives a command's flag set instead of the
	// command running (completion lists the options this way).
	capture func(*flag.FlagSet)
}

// run runs the command line and returns the exit status.
func (a *app) run(ctx context.Context, args []string) int {
	g := flag.NewFlagSet("qrtalk", flag.ContinueOnError)
	g.SetOutput(io.Discard)
	a.globalFlags(g)
	showVersion := g.Bool("version", false, "")
	if err := g.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.mainHelp()
			return exitOK
		}
		return a.exit(usage("run 'qrtalk --help' for the commands and options", "%v", flagError(err)))
	}
	if *showVersion {
		return a.exit(a.version(ctx, nil))
	}
	args = g.Args()
	if len(args) == 0 {
		a.mainHelp()
		return exitUsage
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		return a.exit(err)
	}
	return a.exit(cmd.run(a, ctx, cmd, rest))
}

// exit prints err, if any, as one line and a hint line, and returns the
// exit status for it.
func (a *app) exit(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	msg, hint, code := explain(err)
	fmt.Fprintf(a.stderr, "qrtalk: %s\n", oneLine(msg))
	if hint != "" {
		fmt.Fprintf(a.stderr, "hint: %s\n", oneLine(hint))
	}
	return code
}

// errHelpShown ends a command whose --help was printed.
var errHelpShown = errors.New("help shown")

// A cliError is an error with what to do about it and an exit status.
type cliError struct {
	err  error
	hint string
	code int
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// usage is a mistake on the command line (exit status 2).
func usage(hint, format string, args ...any) error {
	return &cliError{err: fmt.Errorf(format, args...), hint: hint, code: exitUsage}
}

// withHint adds a hint to err, keeping its exit status.
func withHint(err error, hint string) error {
	return &cliError{err: err, hint: hint}
}

// withCode gives err an exit status and a hint.
func withCode(err error, code int, hint string) error {
	return &cliError{err: err, hint: hint, code: code}
}

// flagError rewords the flag package's errors for double-dash flags.
func flagError(err error) error {
	s := err.Error()
	s = strings.Replace(s, "flag provided but not defined: -", "unknown option --", 1)
	s = strings.Replace(s, "flag needs an argument: -", "option needs a value: --", 1)
	if i := strings.Index(s, " for flag -"); i >= 0 {
		s = s[:i] + " for --" + s[i+len(" for flag -"):]
	}
	return errors.New(s)
}

// oneLine keeps an error message to one printable line: it may carry text
// from the server or from another user.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return -1
		}
		return r
	}, s)
}

func (a *app) version(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return usage("", "version takes no arguments")
	}
	fmt.Fprintf(a.stdout, "qrtalk %s (protocol v%d, %s, %s/%s)\n", versionString(), protocol.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// isTerminal reports whether f is a terminal (not merely a character
// device: /dev/null is one too).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
