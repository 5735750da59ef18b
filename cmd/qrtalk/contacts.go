package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/protocol"
)

func contactAddCommand() *command {
	return &command{
		name: "contact add", args: "<id | contact code | image> [--name NICK]",
		summary: "add a contact by ID, contact code or QR image",
		about: `Adds a contact. Give their contact code (the qrtalk:contact text that
'qrtalk id' shows; quote it in a shell), the path of a photo or PNG of its QR
code, or just their user ID.

A code or a QR image carries their fingerprint: the key the server gives for
them must match it, and the contact is verified at once. With an ID alone the
key is pinned as the server gives it, unverified, until you compare
fingerprints with them ('qrtalk contact verify').

Either way the key is pinned: if the server ever gives another one, sending
to them stops until you accept it ('qrtalk contact accept'). The nickname
stays on this device.
`,
		examples: `  qrtalk contact add bob-code.png --name bob
  qrtalk contact add 'qrtalk:contact?v=1&s=...&u=...&fp=...' --name bob
  qrtalk contact add 7kq2mxd4s6vbe3hy5rw2tnpa4i --name carol
`,
		run: (*app).contactAdd,
	}
}

type contactJSON struct {
	Name               string `json:"name"`
	User               string `json:"user"`
	Trust              string `json:"trust"` // "verified", "unverified" or "CHANGED"
	Verified           bool   `json:"verified"`
	Changed            bool   `json:"changed"`
	Fingerprint        string `json:"fingerprint"`
	FingerprintNumeric string `json:"fingerprint_numeric"`
	Added              string `json:"added"`
}

func toContactJSON(c *client.Contact) contactJSON {
	fp := c.Fingerprint()
	return contactJSON{Name: c.Name, User: c.User.String(), Trust: c.Trust(), Verified: c.Verified, Changed: c.Changed,
		Fingerprint: fp.String(), FingerprintNumeric: fp.Numeric(), Added: c.Added.UTC().Format(time.RFC3339)}
}

func (a *app) contactAdd(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	name := fs.String("name", "", "the contact's nickname on this device (default: the start of the ID)")
	asJSON := fs.Bool("json", false, "print the contact as JSON")
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	ref := strings.TrimSpace(pos[0])
	var card *protocol.ContactCard
	if _, err := protocol.ParseUserID(ref); err != nil {
		text, _, err := a.readCode(ref, "contact")
		if err != nil {
			if _, statErr := os.Stat(ref); statErr != nil && !strings.HasPrefix(ref, "qrtalk:") {
				return usage("give a user ID (26 letters and digits), the qrtalk:contact text, or the path of an image of its QR code",
					"%q is neither a user ID, a contact code nor an image file", ref)
			}
			return err
		}
		cc, err := protocol.ParseContactCard(text)
		if err != nil {
			return withHint(fmt.Errorf("reading the contact code: %w", err), "ask the contact to show theirs with 'qrtalk id'")
		}
		card, ref = &cc, text
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	ct, err := acc.AddContact(ctx, ref, *name)
	if err != nil {
		return err
	}
	if card != nil && !ct.Fingerprint().Equal(card.Identity) {
		// The contact existed with another key pinned: the SDK keeps it.
		return withCode(fmt.Errorf("%s is already a contact, pinned to another key than the code you scanned", ct.Name), exitKey,
			"check with them in person; if they have a new key, run 'qrtalk contact accept "+ct.Name+"' once it shows CHANGED")
	}
	if *asJSON {
		return a.printJSON(toContactJSON(ct))
	}
	if ct.Verified {
		fmt.Fprintf(a.stdout, "Added %s (%s), verified: the key the server gives matches the code.\n", ct.Name, ct.User)
		return nil
	}
	fmt.Fprintf(a.stdout, `Added %s (%s), unverified.
Their fingerprint:  %s
Compare it with theirs ('qrtalk id' on their side), then:
  qrtalk contact verify %s <their 40 digits>
`, ct.Name, ct.User, ct.Fingerprint().Numeric(), shellWord(ct.Name))
	return nil
}

func contactVerifyCommand() *command {
	return &command{
		name: "contact verify", args: "<name> <fingerprint digits | contact code | image>",
		summary: "verify a contact's fingerprint",
		about: `Marks a contact verified when what you give matches the key pinned for them:
the 40 digits of their fingerprint (as they read them out; spaces and dashes
do not matter), their contact code, or a photo of its QR code. A mismatch
changes nothing and exits with status 3: do not trust the contact until you
know why.
`,
		examples: `  qrtalk contact verify bob 12345 67890 13579 24680 11223 34455 66778 89900
  qrtalk contact verify bob bob-code.png
`,
		run: (*app).contactVerify,
	}
}

func (a *app) contactVerify(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pos, err := a.parseArgs(fs, c, args, 2, -1)
	if err != nil {
		return err
	}
	who := pos[0]
	given := strings.TrimSpace(strings.Join(pos[1:], " "))
	if !strings.HasPrefix(given, "qrtalk:") && !looksNumeric(given) {
		text, _, err := a.readCode(given, "contact")
		if err != nil {
			if _, statErr := os.Stat(given); statErr != nil {
				return usage("give their fingerprint's 40 digits, their qrtalk:contact text, or an image of its QR code",
					"%q is neither a fingerprint, a contact code nor an image file", given)
			}
			return err
		}
		given = text
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	ct, err := acc.VerifyContact(ctx, who, given)
	if errors.Is(err, protocol.ErrMismatch) {
		name := who
		if ct, cerr := acc.Contact(ctx, who); cerr == nil {
			name = ct.Name
		}
		return withCode(fmt.Errorf("the fingerprint does not match %s's pinned key; do not trust this contact until you know why", name), exitKey,
			"ask them to read out their fingerprint ('qrtalk id') and compare again; if it still differs, someone may be in between you")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s is verified: the fingerprint matches the pinned key.\n", ct.Name)
	return nil
}

// looksNumeric reports whether s is made of digits and separators only.
func looksNumeric(s string) bool {
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == ' ' || r == '-' || r == '\t':
		default:
			return false
		}
	}
	return digits > 0
}

func contactsCommand() *command {
	return &command{
		name: "contacts", args: "[--json]", alias: "contact list",
		summary: "list contacts: verified, unverified or CHANGED",
		about: `Lists your contacts by name, with their trust: verified (fingerprint checked
in person), unverified, or CHANGED (the server now gives another key; sending
to them is stopped until you accept it with 'qrtalk contact accept').
--json prints a JSON array of {name, user, trust, verified, changed,
fingerprint, fingerprint_numeric, added}.
`,
		examples: "  qrtalk contacts\n  qrtalk contacts --json | jq -r '.[] | select(.trust != \"verified\") | .name'\n",
		run:      (*app).contacts,
	}
}

func (a *app) contacts(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if _, err := a.parseArgs(fs, c, args, 0, 0); err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	list, err := acc.Contacts(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]contactJSON, 0, len(list))
		for _, ct := range list {
			out = append(out, toContactJSON(ct))
		}
		return a.printJSON(out)
	}
	if len(list) == 0 {
		fmt.Fprintln(a.stderr, "No contacts yet: add one with 'qrtalk contact add'.")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTRUST\tID")
	for _, ct := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ct.Name, ct.Trust(), ct.User)
	}
	return tw.Flush()
}

func contactAcceptCommand() *command {
	return &command{
		name: "contact accept", args: "<name> [--yes]",
		summary: "accept a contact's changed key (read the warning)",
		about: `Accepts the new identity key that the server gives for a contact marked
CHANGED, so that sending to them works again. The new key is unverified.

A key changes when the contact re-installed or lost their device, and also
when someone is trying to read your messages to them. Check the new
fingerprint with them in person or on a call before you accept. On a
terminal qrtalk asks; elsewhere --yes is needed.
`,
		examples: "  qrtalk contact accept bob\n  qrtalk contact verify bob 12345 67890 ...   # after checking with bob\n",
		run:      (*app).contactAccept,
	}
}

func (a *app) contactAccept(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	yes := fs.Bool("yes", false, "accept without asking")
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	acc, err := a.openAccount()
	if err != nil {
		return err
	}
	defer acc.Close()
	ct, err := acc.Contact(ctx, pos[0])
	if err != nil {
		return err
	}
	if !ct.Changed {
		return withHint(fmt.Errorf("%s's key has not changed: nothing to accept", ct.Name), "'qrtalk contacts' marks a changed key CHANGED")
	}
	seen := protocol.IdentityFingerprint(ct.Pending)
	fmt.Fprintf(a.stderr, `WARNING: the server now gives %s another identity key.
  pinned fingerprint:  %s
  new fingerprint:     %s
This happens when %s re-installed or lost their device, and also when someone
is trying to read your messages to them. Check the new fingerprint with %s in
person or on a call before you trust it.
`, ct.Name, ct.Fingerprint().Numeric(), seen.Numeric(), ct.Name, ct.Name)
	if !*yes {
		if !a.canPrompt() {
			return usage("run 'qrtalk contact accept "+shellWord(ct.Name)+" --yes' once you have checked the new fingerprint",
				"contact accept: not on a terminal, and no --yes")
		}
		ok, err := a.confirm(fmt.Sprintf("Accept the new key for %s?", ct.Name))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("not accepted; sending to %s stays stopped", ct.Name)
		}
	}
	ct, err = acc.AcceptKeyChange(ctx, ct.Name, seen)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Accepted the new key for %s; it is unverified. Its fingerprint: %s\nOnce you have compared it with them: qrtalk contact verify %s <their 40 digits>\n",
		ct.Name, ct.Fingerprint().Numeric(), shellWord(ct.Name))
	return nil
}

func contactRemoveCommand() *command {
	return &command{
		name: "contact remove", args: "<name>",
		summary: "forget a contact",
		about: `Forgets a contact and their pinned key. Messages with them stay on this
device until they expire. Adding them again pins their key anew.
`,
		examples: "  qrtalk contact remove bob\n",
		run:      (*app).contactRemove,
	}
}

func (a *app) contactRemove(ctx context.Context, c *command, args []string) error {
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
	ct, err := acc.Contact(ctx, pos[0])
	if err != nil {
		return err
	}
	if err := acc.RemoveContact(ctx, ct.User.String()); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Removed %s. Messages with them stay until they expire.\n", ct.Name)
	return nil
}

// shellWord quotes s for a shell command line when it needs it.
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
