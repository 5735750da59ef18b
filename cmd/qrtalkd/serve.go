package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/daemon"
	"github.com/qrtalk/qrtalk/internal/qr"
	"github.com/qrtalk/qrtalk/protocol"
)

// startupInviteTTL is how long the invite printed at start stays valid.
const startupInviteTTL = 24 * time.Hour

func (a *app) serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	qrMode := qrFlag(fs)
	cfg, err := a.parse("serve", fs, args, (*app).serveHelp)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := daemon.NewLogger(cfg, a.stderr)
	d, err := daemon.Start(ctx, cfg, daemon.Options{Logger: logger, Hostname: a.hostname})
	if err != nil {
		if ctx.Err() != nil {
			// Stopped by a signal while starting: Start undid what it
			// had begun, and that is a clean stop.
			logger.Info("stopped while starting")
			return nil
		}
		return err
	}

	a.printServer(cfg, d.URL(), d.Fingerprint(), d.TLSMode(), d.MetricsAddr())
	inv, err := d.StartupInvite(ctx, startupInviteTTL)
	if err != nil {
		logger.Warn("no startup invite", "err", err)
	}
	if inv != nil {
		fmt.Fprintf(a.stdout, "\nInvite (%s):\n  %s\n", describeInvite(inv), inv.URI())
		if qrMode.show(a.isTerminal) {
			fmt.Fprintln(a.stdout)
			a.printQR(inv.URI())
		}
	}
	fmt.Fprintf(a.stdout, "\nMore invites: qrtalkd invite --data %s\nStop with Ctrl-C or SIGTERM.\n", shellQuote(cfg.Data))

	select {
	case <-ctx.Done():
	case <-d.Failed():
	}
	if a.stopSignal != nil {
		a.stopSignal()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	d.Shutdown(sctx)
	return d.Wait()
}

// printServer prints what an operator needs to hand out: the URL and the
// fingerprint, in both forms.
func (a *app) printServer(cfg *config.Config, url string, fp protocol.Fingerprint, tlsMode string, metrics net.Addr) {
	w := a.stdout
	fmt.Fprintf(w, "qrtalkd %s\n\n", versionString())
	fmt.Fprintf(w, "  URL:           %s\n", url)
	fmt.Fprintf(w, "  Fingerprint:   %s\n", fp.String())
	fmt.Fprintf(w, "                 %s\n", fp.Numeric())
	fmt.Fprintf(w, "  Registration:  %s\n", cfg.Registration)
	fmt.Fprintf(w, "  Data:          %s\n", cfg.Data)
	if tlsMode != "" {
		fmt.Fprintf(w, "  TLS:           %s\n", tlsMode)
	}
	if metrics != nil {
		fmt.Fprintf(w, "  Metrics:       http://%s/metrics\n", metrics)
	}
	if cfg.PublicURL == "" && cfg.ACMEDomain == "" {
		fmt.Fprintf(w, "\n  The URL was derived from this machine; if clients reach it by another\n"+
			"  name or port, set --public-url (%s).\n", config.EnvName("public-url"))
	}
}

func describeInvite(inv *daemon.Invite) string {
	uses := "1 use"
	if inv.Uses != 1 {
		uses = fmt.Sprintf("%d uses", inv.Uses)
	}
	return fmt.Sprintf("%s, expires %s", uses, inv.Expires.Local().Format("2006-01-02 15:04 MST"))
}

// printQR draws text as a QR code for a terminal. A code that cannot be
// drawn is not fatal: the text is printed above it anyway.
func (a *app) printQR(text string) {
	s, err := qr.Terminal(text, qr.TerminalOptions{})
	if err != nil {
		fmt.Fprintf(a.stderr, "qrtalkd: cannot draw the QR code: %v\n", err)
		return
	}
	io.WriteString(a.stdout, s)
}

// qrMode is the --qr flag: auto (on a terminal), true or false.
type qrMode struct{ v string }

func qrFlag(fs *flag.FlagSet) *qrMode {
	m := &qrMode{v: "auto"}
	fs.Var(m, "qr", "draw the QR code: auto (on a terminal), true or false")
	return m
}

func (m *qrMode) String() string   { return m.v }
func (m *qrMode) IsBoolFlag() bool { return true }
func (m *qrMode) Set(s string) error {
	if s == "auto" {
		m.v = s
		return nil
	}
	b, err := config.ParseBool(s)
	if err != nil {
		return errors.New("must be auto, true or false")
	}
	m.v = fmt.Sprint(b)
	return nil
}

func (m *qrMode) show(terminal bool) bool {
	return m.v == "true" || m.v == "auto" && terminal
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '.' || c == '-' || c == '_') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
