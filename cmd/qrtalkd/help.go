package main

import (
	"fmt"
	"strings"

	"github.com/qrtalk/qrtalk/internal/config"
)

const exitHelp = `Exit status:
  0  success (serve: stopped by SIGINT or SIGTERM, shut down cleanly)
  1  runtime error (a port in use, an unreadable key, a broken store...)
  2  usage error (an unknown command or flag, a bad option value)
`

const precedenceHelp = `Every option is also an environment variable (shown in brackets) and a key
of the config file (--config FILE, or QRTALKD_CONFIG): a flag wins over the
environment, which wins over the file, which wins over the default.
docs/qrtalkd.conf.example is a commented config file with every option.
`

func (a *app) mainHelp() {
	var b strings.Builder
	b.WriteString(`qrtalkd is the QRTalk server: end-to-end encrypted, ephemeral messaging
that you host yourself. It keeps anonymous IDs, public keys and, while a
recipient is offline, ciphertext it cannot read.

Usage:
  qrtalkd [serve] [options]    run the server (the default command)
  qrtalkd invite [options]     create an invite; works while the server runs
  qrtalkd info [options]       print the URL, fingerprint and data directory
  qrtalkd version              print the version
  qrtalkd help [command]       show the help of a command

Run 'qrtalkd COMMAND --help' for the options of a command.

Examples:
  qrtalkd
      Start with the defaults: data in ~/.local/share/qrtalkd, HTTPS on
      port 8443 with a certificate on the server's own key. The first start
      prints the server's fingerprint and an invite, as text and QR code.
  qrtalkd serve --data /var/lib/qrtalkd --public-url https://chat.example.org:8443
  qrtalkd invite --data /var/lib/qrtalkd --uses 5 --expires 72h

`)
	b.WriteString(exitHelp)
	fmt.Fprint(a.stdout, b.String())
}

func (a *app) serveHelp() {
	var b strings.Builder
	b.WriteString(`Usage: qrtalkd [serve] [options]

Runs the server. On first start it creates the data directory, the server
key (data/server.key: back it up, clients pin its fingerprint) and the
database, and prints the URL, the fingerprint and an invite, as text and as a
QR code. Later starts print an invite again when none is left. SIGINT or
SIGTERM stops it gracefully: in-flight requests finish, queued messages are
written, then it exits 0.

TLS: by default a self-signed certificate on the server key, which clients
verify by the fingerprint from their invite. Or --tls-cert/--tls-key, or
--acme-domain for Let's Encrypt (which must reach this machine on port 80,
see --acme-http-listen).

Examples:
  qrtalkd serve
  qrtalkd serve --data /var/lib/qrtalkd --public-url https://chat.example.org:8443 \
      --metrics-listen 127.0.0.1:9090
  QRTALKD_ACME_DOMAIN=chat.example.org QRTALKD_LISTEN=:443 qrtalkd serve
  qrtalkd serve --config /etc/qrtalkd.conf

Flags of serve:
  --qr[=auto|true|false]
        Draw the startup invite as a QR code: auto (default) when standard
        output is a terminal.

Options:
`)
	config.WriteUsage(&b)
	b.WriteString("\n" + precedenceHelp + "\n" + exitHelp)
	fmt.Fprint(a.stdout, b.String())
}

// locating are the options that tell invite and info where the server is.
var locating = []string{config.ConfigOption, "data", "public-url", "listen", "acme-domain"}

func (a *app) inviteHelp() {
	var b strings.Builder
	b.WriteString(`Usage: qrtalkd invite [--uses N] [--expires DURATION] [--qr=auto|true|false] [options]

Creates an invite in the server's data directory and prints it as a
qrtalk:invite URI (server URL, server fingerprint and a secret token) and,
on a terminal, as a QR code for a phone to scan. It works while the server
runs. Printed to a pipe, the output is the URI alone, for scripts.

Only a hash of the token is stored. Whoever holds the URI can register until
it is used up or expires: hand it over privately.

Examples:
  qrtalkd invite
  qrtalkd invite --data /var/lib/qrtalkd --uses 10 --expires 168h
  qrtalkd invite --qr=false --config /etc/qrtalkd.conf

Flags of invite:
  --uses N             how many accounts it can create (default 1, at most 10000)
  --expires DURATION   how long it stays valid (default 24h, from 1m to 2160h)
  --qr[=auto|true|false]
                       draw the QR code: auto (default) on a terminal

Options that locate the server (invite accepts every serve option, so the
server's config file and environment work as they are):
`)
	config.WriteUsage(&b, locating...)
	b.WriteString("\n" + precedenceHelp + "\n" + exitHelp)
	fmt.Fprint(a.stdout, b.String())
}

func (a *app) infoHelp() {
	var b strings.Builder
	b.WriteString(`Usage: qrtalkd info [options]

Prints the server's public URL, the fingerprint of its key (base64url, as in
invites, and the numeric form people read aloud), its data directory and its
registration mode, without starting it. The server must have started once in
that data directory.

Examples:
  qrtalkd info
  qrtalkd info --config /etc/qrtalkd.conf

Options that locate the server (info accepts every serve option):
`)
	config.WriteUsage(&b, append(locating, "registration")...)
	b.WriteString("\n" + precedenceHelp + "\n" + exitHelp)
	fmt.Fprint(a.stdout, b.String())
}
