package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

func devicesCommand() *command {
	return &command{
		name: "devices", args: "[--json]", alias: "device list",
		summary: "list your devices, marking this one",
		about: `Lists your devices, as the server gives them and as your identity key
certified them (a device the server added on its own would not verify and is
refused). This device is marked. --json prints a JSON array of {device,
created, this}.
`,
		examples: "  qrtalk devices\n",
		run:      (*app).devices,
	}
}

type deviceJSON struct {
	Device  string `json:"device"`
	Created string `json:"created"`
	This    bool   `json:"this"`
}

func (a *app) devices(ctx context.Context, c *command, args []string) error {
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
	conn, err := acc.Conn(ctx)
	if err != nil {
		return err
	}
	dev := acc.Device()
	certs, err := conn.Devices(ctx, dev.User, dev.Identity.Public())
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]deviceJSON, 0, len(certs))
		for _, cert := range certs {
			out = append(out, deviceJSON{Device: cert.Device.String(), Created: cert.Created.UTC().Format(time.RFC3339), This: cert.Device == dev.ID})
		}
		return a.printJSON(out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tADDED\t")
	found := false
	for _, cert := range certs {
		mark := ""
		if cert.Device == dev.ID {
			mark, found = "(this device)", true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", cert.Device, cert.Created.Local().Format("2006-01-02 15:04"), mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !found {
		return withHint(fmt.Errorf("this device (%s) is not in your device list: it was revoked", dev.ID), "link it again with 'qrtalk device join', or join anew in another --home")
	}
	return nil
}

func deviceRevokeCommand() *command {
	return &command{
		name: "device revoke", args: "<device-id> [--yes]",
		summary: "revoke one of your devices",
		about: `Revokes one of your devices (its ID from 'qrtalk devices'; a unique prefix
will do), signed with your identity key: the server stops routing to it,
and your contacts stop encrypting for it. Revoking this device itself needs
--yes: it can no longer send or receive.
`,
		examples: "  qrtalk devices\n  qrtalk device revoke 3f2a1b2c\n",
		run:      (*app).deviceRevoke,
	}
}

func (a *app) deviceRevoke(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	yes := fs.Bool("yes", false, "also when it is this device")
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	prefix := strings.ToLower(strings.TrimSpace(pos[0]))
	if len(prefix) < 4 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return usage("give the device ID from 'qrtalk devices' (at least 4 of its hex digits)", "%q is not a device ID", pos[0])
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
	dev := acc.Device()
	certs, err := conn.Devices(ctx, dev.User, dev.Identity.Public())
	if err != nil {
		return err
	}
	var match []protocol.DeviceID
	for _, cert := range certs {
		if strings.HasPrefix(cert.Device.String(), prefix) {
			match = append(match, cert.Device)
		}
	}
	switch {
	case len(match) == 0:
		return withHint(fmt.Errorf("you have no device %s", prefix), "run 'qrtalk devices' for their IDs")
	case len(match) > 1:
		return usage("give more of its digits", "%s names %d devices", prefix, len(match))
	}
	id := match[0]
	if id == dev.ID && !*yes {
		return usage("run it with --yes if you mean it, or revoke it from another device", "%s is this device: revoked, it can no longer send or receive", id)
	}
	if err := conn.Revoke(ctx, id); err != nil {
		return err
	}
	if id == dev.ID {
		fmt.Fprintf(a.stdout, "Revoked %s, this device. It can no longer send or receive.\n", id)
		return nil
	}
	fmt.Fprintf(a.stdout, "Revoked %s. It can no longer send or receive, and nothing new is encrypted for it.\n", id)
	return nil
}
