package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/qr"
	"github.com/qrtalk/qrtalk/protocol"
)

func deviceLinkCommand() *command {
	return &command{
		name: "device link", args: "[options]",
		summary: "link a new device: show a link code, wait for it",
		about: `Shows a link code, as text and QR code, for a new device of yours, and waits
(up to 10 minutes) for that device to run 'qrtalk device join' with it. The
new device sends its keys, encrypted under the code's secret; this device
certifies it with your identity key and sends the identity key back, the same
way. The server relays both without being able to read them, and cannot slip
in a device of its own.

The code is a secret for those 10 minutes: show it only to your new device.
--png writes its QR code to a file (readable by you only), deleted once the
link is done. Contacts and groups stay on each device: add them on the new
one too.
`,
		examples: `  qrtalk device link                 # then, on the new device:
  qrtalk device join photo-of-the-code.jpg
`,
		run: (*app).deviceLink,
	}
}

func deviceJoinCommand() *command {
	return &command{
		name: "device join", args: "[--passphrase] <link code | image | ->",
		summary: "make this a new device of yours, from a link code",
		about: `Makes this machine a new device of an existing account: give the link code
that 'qrtalk device link' shows on your other device (the qrtalk:link text,
the path of a photo of its QR code, or '-' for standard input). Your other
device must be waiting with 'qrtalk device link'. The account goes in the
home directory (--home), which must not hold one already; --passphrase
encrypts the key file, as for 'qrtalk join'.
`,
		examples: `  qrtalk device join link.png
  qrtalk --home ~/.qrtalk-laptop device join 'qrtalk:link?v=1&s=...'
`,
		run: (*app).deviceJoin,
	}
}

// linkHint says what to do when a link fails.
func linkHint(err error) string {
	switch {
	case errors.Is(err, client.ErrLinkExpired):
		return "run 'qrtalk device link' again on your other device, and use the new code within 10 minutes"
	case errors.Is(err, client.ErrLinkUsed):
		return "run 'qrtalk device link' again on your other device for a new code"
	case errors.Is(err, client.ErrLinkFailed):
		return "run 'qrtalk device link' again on your other device"
	}
	return ""
}

func (a *app) deviceLink(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pngFile := fs.String("png", "", "also write the QR code to `FILE` (deleted once linked)")
	qrMode := fs.String("qr", "auto", "draw the QR code: auto (on a terminal), true or false")
	invert := fs.Bool("invert", false, "draw the QR code for a terminal with a light background")
	if _, err := a.parseArgs(fs, c, args, 0, 0); err != nil {
		return err
	}
	draw, err := boolOrAuto("--qr", *qrMode, a.stdoutTTY)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	conn, err := acc.Conn(ctx)
	if err != nil {
		return err
	}
	lk, err := conn.StartLink(ctx)
	if err != nil {
		return err
	}
	code := lk.Code()
	fmt.Fprintf(a.stdout, "Link code for your new device (a secret: show it to that device only; it works\nonce, until %s):\n%s\n", a.clock(lk.Expires()), code)
	if draw {
		pic, err := qr.Terminal(code, qr.TerminalOptions{Invert: *invert})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "\n%s\n", pic)
	}
	if *pngFile != "" {
		img, err := qr.PNG(code, 0)
		if err != nil {
			return err
		}
		// Written whole, then renamed: a watcher never sees half an image.
		tmp := filepath.Join(filepath.Dir(*pngFile), "."+filepath.Base(*pngFile)+".tmp")
		if err := os.WriteFile(tmp, img, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, *pngFile); err != nil {
			os.Remove(tmp)
			return err
		}
		defer os.Remove(*pngFile)
		fmt.Fprintf(a.stdout, "QR code: %s\n", *pngFile)
	}
	fmt.Fprintf(a.stdout, "On the new device: qrtalk device join <the code, or a photo of the QR code>\n")
	if a.stderrTTY {
		fmt.Fprintln(a.stderr, "Waiting for the new device (Ctrl-C to give up)...")
	}
	cert, err := lk.Complete(ctx)
	if err != nil {
		return withHint(err, linkHint(err))
	}
	fmt.Fprintf(a.stdout, "Linked device %s. It receives your messages from now on; 'qrtalk devices' lists it.\n", cert.Device)
	return nil
}

func (a *app) deviceJoin(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	askPass := fs.Bool("passphrase", false, "encrypt the key file with a passphrase (asked on the terminal unless given)")
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	dir, err := a.homeDir()
	if err != nil {
		return err
	}
	// Checked first: once linked, the device exists on the server.
	for _, name := range []string{"device.json", "device.json.age"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%w: %s", client.ErrExists, dir)
		}
	}
	text, _, err := a.readCode(pos[0], "link")
	if err != nil {
		return err
	}
	if _, err := protocol.ParseLinkCode(text); err != nil {
		return withHint(fmt.Errorf("reading the link code: %w", err), "run 'qrtalk device link' on your other device and give the code it shows")
	}
	pass, err := a.newPassphrase(*askPass, "device join")
	if err != nil {
		return err
	}
	if a.stderrTTY {
		fmt.Fprintln(a.stderr, "Linking with your other device...")
	}
	dev, conn, err := client.JoinLink(ctx, text, client.Options{Now: a.now}, a.now())
	if err != nil {
		return withHint(err, linkHint(err))
	}
	acc, err := client.Adopt(dir, dev, conn, client.AccountOptions{Passphrase: pass, Now: a.now})
	if err != nil {
		return withHint(fmt.Errorf("linked as device %s, but saving the account failed: %w", dev.ID, err),
			"revoke that device from your other device ('qrtalk device revoke "+dev.ID.String()+"') and link again")
	}
	defer acc.Close()
	srv, _ := acc.Server()
	fmt.Fprintf(a.stdout, `This is now device %s of %s, on %s. Your account is in %s.
  Fingerprint:  %s
Contacts and groups stay on each device: add your contacts here too.
`, dev.ID, dev.User, srv, dir, dev.Fingerprint().Numeric())
	return nil
}

// newPassphrase returns the passphrase to encrypt a new key file with:
// the one given (file or environment), else one asked twice on the
// terminal when ask is set, else none.
func (a *app) newPassphrase(ask bool, cmd string) (string, error) {
	pass, _, err := a.givenPassphrase()
	if err != nil || pass != "" || !ask {
		return pass, err
	}
	if !a.canPrompt() {
		return "", usage("set QRTALK_PASSPHRASE or use --passphrase-file FILE", "%s --passphrase: no terminal to ask for the passphrase on", cmd)
	}
	p1, err := a.readSecret("New passphrase for the key file: ")
	if err != nil {
		return "", err
	}
	if p1 == "" {
		return "", usage("", "the passphrase is empty")
	}
	p2, err := a.readSecret("The same passphrase again: ")
	if err != nil {
		return "", err
	}
	if p1 != p2 {
		return "", usage("run the command again", "the passphrases differ")
	}
	return p1, nil
}
