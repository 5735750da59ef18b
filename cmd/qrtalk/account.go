package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/qr"
	"github.com/qrtalk/qrtalk/protocol"
)

// homeDir is the account directory: --home, QRTALK_HOME, then
// $XDG_DATA_HOME/qrtalk, then ~/.local/share/qrtalk.
func (a *app) homeDir() (string, error) {
	if a.home != "" {
		return filepath.Abs(a.home)
	}
	if h := a.getenv("QRTALK_HOME"); h != "" {
		return filepath.Abs(h)
	}
	if x := a.getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "qrtalk"), nil
	}
	if h := a.getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "share", "qrtalk"), nil
	}
	return "", usage("give the account directory with --home DIR or QRTALK_HOME", "no home directory: $HOME is not set")
}

// givenPassphrase is the passphrase from --passphrase-file or
// QRTALK_PASSPHRASE, with where it came from; "" if neither is set.
func (a *app) givenPassphrase() (pass, source string, err error) {
	if a.passphraseFile != "" {
		b, err := os.ReadFile(a.passphraseFile)
		if err != nil {
			return "", "", withHint(fmt.Errorf("reading the passphrase: %w", err), "--passphrase-file names a file holding the passphrase on its first line")
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pass = strings.TrimRight(line, "\r")
		if pass == "" {
			return "", "", withHint(fmt.Errorf("the passphrase file %s is empty", a.passphraseFile), "put the passphrase on its first line")
		}
		return pass, "the passphrase in " + a.passphraseFile, nil
	}
	if p := a.getenv("QRTALK_PASSPHRASE"); p != "" {
		return p, "QRTALK_PASSPHRASE", nil
	}
	return "", "", nil
}

// openAccount opens the account in the home directory, asking for the
// passphrase on a terminal when the key file is encrypted and none was
// given.
func (a *app) openAccount() (*client.Account, error) {
	dir, err := a.homeDir()
	if err != nil {
		return nil, err
	}
	pass, source, err := a.givenPassphrase()
	if err != nil {
		return nil, err
	}
	acc, err := client.OpenAccount(dir, client.AccountOptions{Passphrase: pass, Now: a.now})
	if !errors.Is(err, client.ErrPassphrase) {
		return acc, err
	}
	if pass != "" {
		return nil, withHint(fmt.Errorf("wrong passphrase for the key file in %s", dir), "check "+source)
	}
	if !a.canPrompt() {
		return nil, withHint(fmt.Errorf("the key file in %s is encrypted and no passphrase was given", dir),
			"set QRTALK_PASSPHRASE, use --passphrase-file FILE, or run on a terminal to be asked")
	}
	for try := 0; try < 3; try++ {
		p, perr := a.readSecret(fmt.Sprintf("Passphrase for %s: ", dir))
		if perr != nil {
			return nil, perr
		}
		acc, err = client.OpenAccount(dir, client.AccountOptions{Passphrase: p, Now: a.now})
		if !errors.Is(err, client.ErrPassphrase) {
			return acc, err
		}
		fmt.Fprintln(a.stderr, "qrtalk: wrong passphrase")
	}
	return nil, withHint(fmt.Errorf("wrong passphrase for the key file in %s", dir), "three tries failed; check the passphrase and run the command again")
}

// readCode turns an argument into the text of a qrtalk: code: the text
// itself, "-" for standard input, or the path of an image of its QR code.
// isImage says whether it came from an image.
func (a *app) readCode(arg, kind string) (text string, isImage bool, err error) {
	arg = strings.TrimSpace(arg)
	switch {
	case strings.HasPrefix(arg, "qrtalk:"):
		return arg, false, nil
	case arg == "-":
		b, err := io.ReadAll(io.LimitReader(a.stdin, protocol.MaxURISize+1))
		if err != nil {
			return "", false, err
		}
		return strings.TrimSpace(string(b)), false, nil
	}
	if fi, serr := os.Stat(arg); serr == nil && !fi.IsDir() {
		text, err := qr.DecodeFile(arg)
		if err != nil {
			return "", true, fmt.Errorf("reading the QR code in %s: %w", arg, err)
		}
		return text, true, nil
	}
	return "", false, usage("give the qrtalk:"+kind+" text (quote it: it holds '&'), or the path of a PNG or JPEG of its QR code",
		"%q is neither a qrtalk:%s code nor an image file", arg, kind)
}

// printJSON writes v as one line of JSON, '&' and '<' as they are (codes
// hold '&').
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func joinCommand() *command {
	return &command{
		name: "join", args: "[options] <invite | image | ->",
		summary: "create your account from an invite (text or QR)",
		about: `Creates your account on the server named by an invite: new identity and
device keys (RSA-3072, a few seconds), the server's key pinned from the
invite, registration. Prints your new ID and fingerprint.

The invite is the qrtalk:invite text (quote it in a shell: it contains '&'),
the path of a PNG or JPEG photo of its QR code, or '-' to read the text from
standard input. The account goes in the home directory (--home), which must
not hold one already.

The keys are kept in a file readable by you only; with --passphrase (or
--passphrase-file, or QRTALK_PASSPHRASE) they are encrypted with it (age,
scrypt), and every later command needs it.
`,
		examples: `  qrtalk join 'qrtalk:invite?v=1&s=https%3A%2F%2Fchat.example.org%3A8443&sfp=...&t=...'
  qrtalk join ~/Pictures/invite.jpg
  qrtalk --home ~/.qrtalk-work join --passphrase invite.png
`,
		run: (*app).join,
	}
}

type accountJSON struct {
	User               string `json:"user"`
	Device             string `json:"device"`
	Fingerprint        string `json:"fingerprint"`
	FingerprintNumeric string `json:"fingerprint_numeric"`
	Server             string `json:"server"`
	ServerFingerprint  string `json:"server_fingerprint"`
	Home               string `json:"home"`
	ContactCode        string `json:"contact_code,omitempty"`
	PNG                string `json:"png,omitempty"`
}

func (a *app) join(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	askPass := fs.Bool("passphrase", false, "encrypt the key file with a passphrase (asked on the terminal unless given)")
	asJSON := fs.Bool("json", false, "print the account as JSON")
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	dir, err := a.homeDir()
	if err != nil {
		return err
	}
	text, _, err := a.readCode(pos[0], "invite")
	if err != nil {
		return err
	}
	inv, err := protocol.ParseInvite(text)
	if err != nil {
		return withHint(fmt.Errorf("reading the invite: %w", err), "ask the server's operator for an invite ('qrtalkd invite')")
	}
	pass, err := a.newPassphrase(*askPass, "join")
	if err != nil {
		return err
	}
	if a.stderrTTY {
		fmt.Fprintf(a.stderr, "Generating keys and joining %s...\n", inv.Server)
	}
	acc, err := client.Join(ctx, dir, text, client.AccountOptions{Passphrase: pass, Now: a.now})
	if err != nil {
		return err
	}
	defer acc.Close()
	dev := acc.Device()
	srv, sfp := acc.Server()
	if *asJSON {
		return a.printJSON(accountJSON{User: dev.User.String(), Device: dev.ID.String(), Fingerprint: dev.Fingerprint().String(),
			FingerprintNumeric: dev.Fingerprint().Numeric(), Server: srv, ServerFingerprint: sfp.String(), Home: dir,
			ContactCode: acc.ContactCard().URI()})
	}
	enc := ""
	if pass != "" {
		enc = " (keys encrypted with your passphrase)"
	}
	fmt.Fprintf(a.stdout, `Joined %s. Your account is in %s%s.
  ID:           %s
  Fingerprint:  %s
Next: 'qrtalk id' shows the code a contact scans to add you, verified.
`, srv, dir, enc, dev.User, dev.Fingerprint().Numeric())
	return nil
}

func idCommand() *command {
	return &command{
		name: "id", args: "[options]",
		summary: "show your ID, fingerprint and contact code (QR)",
		about: `Shows your user ID, your fingerprint (40 digits in groups of five: read them
out to a contact to verify each other) and your contact code, as text and as
a QR code. A contact who scans the code, or adds its text or a photo of it
with 'qrtalk contact add', has your key verified at once.

The QR code is drawn on a terminal (--qr=true draws it anyway); --png
writes it to an image file instead. Nothing is sent to the server.
`,
		examples: `  qrtalk id
  qrtalk id --png me.png          # send or print the image
  qrtalk id --json | jq -r .contact_code
`,
		run: (*app).id,
	}
}

func (a *app) id(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pngFile := fs.String("png", "", "write the QR code to `FILE` (PNG)")
	qrMode := fs.String("qr", "auto", "draw the QR code: auto (on a terminal), true or false")
	invert := fs.Bool("invert", false, "draw the QR code for a terminal with a light background")
	asJSON := fs.Bool("json", false, "print as JSON")
	if _, err := a.parseArgs(fs, c, args, 0, 0); err != nil {
		return err
	}
	draw, err := boolOrAuto("--qr", *qrMode, a.stdoutTTY && !*asJSON)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	dev := acc.Device()
	srv, sfp := acc.Server()
	code := acc.ContactCard().URI()
	if *pngFile != "" {
		img, err := qr.PNG(code, 0)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*pngFile, img, 0o644); err != nil {
			return err
		}
	}
	if *asJSON {
		return a.printJSON(accountJSON{User: dev.User.String(), Device: dev.ID.String(), Fingerprint: dev.Fingerprint().String(),
			FingerprintNumeric: dev.Fingerprint().Numeric(), Server: srv, ServerFingerprint: sfp.String(), Home: acc.Dir(),
			ContactCode: code, PNG: *pngFile})
	}
	fmt.Fprintf(a.stdout, "ID:            %s\nFingerprint:   %s\nServer:        %s\nContact code:  %s\n",
		dev.User, dev.Fingerprint().Numeric(), srv, code)
	if *pngFile != "" {
		fmt.Fprintf(a.stdout, "QR code:       %s\n", *pngFile)
	}
	if draw {
		pic, err := qr.Terminal(code, qr.TerminalOptions{Invert: *invert})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "\n%s\nA contact adds you, verified, by scanning this code or with\n'qrtalk contact add' and its text or a photo of it.\n", pic)
	}
	return nil
}

// boolOrAuto reads an auto|true|false option.
func boolOrAuto(name, v string, auto bool) (bool, error) {
	switch strings.ToLower(v) {
	case "auto", "":
		return auto, nil
	case "true", "yes", "1", "always":
		return true, nil
	case "false", "no", "0", "never":
		return false, nil
	}
	return false, usage("", "%s %q: must be auto, true or false", name, v)
}

func accountDeleteCommand() *command {
	return &command{
		name: "account delete", args: "--yes",
		summary: "delete your account, on the server and here",
		about: `Deletes your account from the server: your user, all your devices, your
queued messages and attachments. Then deletes this device's keys, contacts
and messages. Your other devices stop working. There is no undo, hence --yes.
`,
		examples: "  qrtalk account delete --yes\n",
		run:      (*app).accountDelete,
	}
}

// accountFiles are the files the client SDK keeps in an account directory.
// Only these are deleted, so that a --home pointed at a directory with
// other files in it loses nothing else.
var accountFiles = []string{"device.json", "device.json.age", "local.db", "local.db-wal", "local.db-shm", "local.db-journal", "attachments"}

func (a *app) accountDelete(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	yes := fs.Bool("yes", false, "yes, delete the account")
	if _, err := a.parseArgs(fs, c, args, 0, 0); err != nil {
		return err
	}
	if !*yes {
		return usage("run 'qrtalk account delete --yes' if you mean it", "account delete deletes your account on the server and on this device, for good; it needs --yes")
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	conn, err := acc.Conn(ctx)
	if err == nil {
		err = conn.DeleteAccount(ctx)
	}
	if err != nil {
		acc.Close()
		return fmt.Errorf("deleting the account on the server: %w", err)
	}
	user, dir := acc.Device().User, acc.Dir()
	srv, _ := acc.Server()
	acc.Close()
	for _, name := range accountFiles {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("the account is deleted on the server, but not all local files: %w", err)
		}
	}
	fmt.Fprintf(a.stdout, "Deleted account %s from %s, and its files from %s.\n", user, srv, dir)
	return nil
}
