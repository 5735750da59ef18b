// Command qrtalkd is the QRTalk server: end-to-end encrypted, ephemeral
// messaging that you host yourself.
//
//	qrtalkd [serve] [options]    run the server (the default command)
//	qrtalkd invite [options]     create an invite, also while the server runs
//	qrtalkd info [options]       print the URL, fingerprint and data directory
//	qrtalkd version              print the version
//
// Every option is a flag, a QRTALKD_ environment variable and a key of the
// config file; docs/qrtalkd.conf.example lists them all. Exit status: 0 on
// success, 1 on a runtime error, 2 on a usage error.
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

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/protocol"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// without it, the module version from the build info is shown.
var version = ""

// Exit statuses.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&app{
		stdout:     os.Stdout,
		stderr:     os.Stderr,
		env:        config.OSEnvironment(),
		isTerminal: isTerminal(os.Stdout),
		hostname:   os.Hostname,
		stopSignal: stop,
	}).run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is one run of the command, with everything it touches outside
// itself, so that tests can run it in-process.
type app struct {
	stdout, stderr io.Writer
	env            config.Environment
	isTerminal     bool
	hostname       func() (string, error)
	// stopSignal restores the default signal handling: a second Ctrl-C
	// during a slow shutdown then ends the process at once.
	stopSignal func()
}

// usageError is a mistake on the command line, with a hint.
func usageError(hint, format string, args ...any) error {
	return &config.UsageError{Err: config.WithHint(fmt.Errorf(format, args...), hint)}
}

type command struct {
	name    string
	summary string
	run     func(a *app, ctx context.Context, args []string) error
	help    func(a *app)
}

func commands() []command {
	return []command{
		{"serve", "run the server (the default command)", (*app).serve, (*app).serveHelp},
		{"invite", "create an invite; works while the server runs", (*app).invite, (*app).inviteHelp},
		{"info", "print the server's URL, fingerprint and data directory", (*app).info, (*app).infoHelp},
		{"version", "print the version", (*app).version, nil},
		{"help", "show the help of a command", nil, nil},
	}
}

func (a *app) run(ctx context.Context, args []string) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		a.mainHelp()
		return exitOK
	}
	if name == "help" {
		return a.helpCommand(args)
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return a.exit(c.run(a, ctx, args))
		}
	}
	return a.exit(usageError("run 'qrtalkd help' for the commands", "unknown command %q", name))
}

func (a *app) helpCommand(args []string) int {
	if len(args) == 0 {
		a.mainHelp()
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] && c.help != nil {
			c.help(a)
			return exitOK
		}
	}
	if args[0] == "version" || args[0] == "help" {
		a.mainHelp()
		return exitOK
	}
	return a.exit(usageError("run 'qrtalkd help' for the commands", "unknown command %q", args[0]))
}

// exit prints err, if any, as one line plus a hint line, and returns the
// exit status for it.
func (a *app) exit(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "qrtalkd: %v\n", err)
	if h := config.Hint(err); h != "" {
		fmt.Fprintf(a.stderr, "hint: %s\n", h)
	}
	if config.IsUsage(err) {
		return exitUsage
	}
	return exitRuntime
}

// parse parses a command's flags, the options included, and loads the
// configuration. It returns flag.ErrHelp (after printing the help) for
// --help.
func (a *app) parse(name string, fs *flag.FlagSet, args []string, help func(*app)) (*config.Config, error) {
	fs.SetOutput(io.Discard)
	opts := config.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(a)
			return nil, flag.ErrHelp
		}
		return nil, usageError("run 'qrtalkd "+name+" --help' for the options", "%s: %v", name, err)
	}
	if fs.NArg() > 0 {
		return nil, usageError("run 'qrtalkd "+name+" --help' for the options", "%s: unexpected argument %q", name, fs.Arg(0))
	}
	cfg, err := opts.Load(a.env)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func (a *app) version(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] != "--help" && args[0] != "-h" {
		return usageError("", "version takes no arguments")
	}
	fmt.Fprintf(a.stdout, "qrtalkd %s (protocol v%d, %s, %s/%s)\n", versionString(), protocol.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
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

// isTerminal reports whether f is a terminal (a character device), which
// is when the QR code is drawn by default.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
