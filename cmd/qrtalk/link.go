package main

import (
	"context"
	"errors"
)

func deviceLinkCommand() *command {
	return &command{
		name: "device link", args: "[--png FILE]",
		summary: "link a new device: show a link code, wait for it",
		about: `Shows a link code, as text and QR code, for a new device of yours, and waits
(up to 10 minutes) for that device to run 'qrtalk device join' with it. The
new device sends its keys, encrypted under the code's secret; this device
certifies it with your identity key and sends the identity key back, the same
way. The server relays both without being able to read them. The code is a
secret: show it only to your new device.
`,
		examples: "  qrtalk device link                 # then, on the new device:\n  qrtalk device join link.png\n",
		run:      (*app).deviceLink,
	}
}

func deviceJoinCommand() *command {
	return &command{
		name: "device join", args: "[--passphrase] <link code | image | ->",
		summary: "make this a new device of yours, from a link code",
		about: `Makes this machine a new device of an existing account: give the link code
that 'qrtalk device link' shows on your other device (the qrtalk:link text,
the path of a photo of its QR code, or '-' for standard input). The account
goes in the home directory (--home), which must not hold one already.
--passphrase encrypts the key file, as for 'qrtalk join'.
`,
		examples: "  qrtalk device join link.png\n  qrtalk --home ~/.qrtalk-laptop device join 'qrtalk:link?v=1&...'\n",
		run:      (*app).deviceJoin,
	}
}

var errNoLinking = errors.New("device linking is not in this build yet")

func (a *app) deviceLink(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	fs.String("png", "", "also write the link code's QR code to `FILE` (PNG)")
	if _, err := a.parse(fs, c, args); err != nil {
		return err
	}
	return withHint(errNoLinking, "join on the new device with an invite instead, and add each other as contacts")
}

func (a *app) deviceJoin(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	fs.Bool("passphrase", false, "encrypt the key file with a passphrase")
	if _, err := a.parse(fs, c, args); err != nil {
		return err
	}
	return withHint(errNoLinking, "join on the new device with an invite instead, and add each other as contacts")
}
