package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/daemon"
	"github.com/qrtalk/qrtalk/protocol"
)

// Bounds of an invite made by 'qrtalkd invite'.
const (
	maxInviteUses = 10000
	minInviteTTL  = time.Minute
	maxInviteTTL  = 90 * 24 * time.Hour
)

// invite creates an invite in the data directory's store. SQLite's WAL lets
// it write beside a running server, which sees the invite at once.
func (a *app) invite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("invite", flag.ContinueOnError)
	uses := fs.Int("uses", 1, "how many accounts the invite can create")
	expires := fs.Duration("expires", 24*time.Hour, "how long the invite stays valid")
	qrMode := qrFlag(fs)
	cfg, err := a.parse("invite", fs, args, (*app).inviteHelp)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if *uses < 1 || *uses > maxInviteUses {
		return usageError("", "invite: --uses must be from 1 to %d, got %d", maxInviteUses, *uses)
	}
	if *expires < minInviteTTL || *expires > maxInviteTTL {
		return usageError("", "invite: --expires must be from %v to %v, got %v", minInviteTTL, maxInviteTTL, *expires)
	}

	key, err := daemon.LoadKey(cfg.Data)
	if err != nil {
		return err
	}
	url, err := daemon.PublicURL(cfg, cfg.Listen, a.hostname)
	if err != nil {
		return err
	}
	// The same store the server uses: the SQLite file, or PostgreSQL in a
	// cluster, so that every node honours the invite.
	st, err := daemon.OpenStore(ctx, cfg)
	if err != nil {
		return config.WithHint(fmt.Errorf("opening the store: %w", err), "")
	}
	defer st.Close()
	inv, err := daemon.NewInvite(ctx, st, key, url, *uses, *expires, time.Now())
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("closing the store: %w", err)
	}

	// On a terminal, for a person: what the invite is, and its QR code.
	// Elsewhere, for a script: the URI alone on one line.
	if a.isTerminal {
		fmt.Fprintf(a.stdout, "Invite to %s (%s):\n\n  %s\n", url, describeInvite(&inv), inv.URI())
		if cfg.Registration != config.RegistrationInvite {
			fmt.Fprintf(a.stdout, "\n  Note: registration is %q in this configuration; the invite matters only in invite mode.\n", cfg.Registration)
		}
	} else {
		fmt.Fprintln(a.stdout, inv.URI())
	}
	if qrMode.show(a.isTerminal) {
		fmt.Fprintln(a.stdout)
		a.printQR(inv.URI())
	}
	return nil
}

// info prints what identifies the server, from its configuration and key,
// without starting it.
func (a *app) info(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("info", flag.ContinueOnError)
	cfg, err := a.parse("info", fs, args, (*app).infoHelp)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	key, err := daemon.LoadKey(cfg.Data)
	if err != nil {
		return err
	}
	url, err := daemon.PublicURL(cfg, cfg.Listen, a.hostname)
	if err != nil {
		return err
	}
	a.printServer(cfg, url, protocol.ServerFingerprint(key.Public()), "", nil)
	return nil
}
