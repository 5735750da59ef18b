package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// A command is one thing qrtalk does. Commands of two words ("contact add")
// are looked up by both.
type command struct {
	name     string // "send", "contact add"
	args     string // the synopsis after the name
	summary  string // one line, for 'qrtalk --help'
	about    string // what it does, for 'qrtalk NAME --help'
	examples string // indented example lines with comments
	hidden   bool   // left out of 'qrtalk --help' (internal helpers)
	alias    string // another name it answers to ("device list" for "devices")
	run      func(a *app, ctx context.Context, c *command, args []string) error
}

// commands returns the command table; help, completion and dispatch all
// read it.
func commands() []*command {
	return []*command{
		joinCommand(),
		idCommand(),
		contactAddCommand(),
		contactVerifyCommand(),
		contactAcceptCommand(),
		contactRemoveCommand(),
		contactsCommand(),
		sendCommand(),
		typingCommand(),
		listenCommand(),
		inboxCommand(),
		readCommand(),
		chatCommand(),
		groupCreateCommand(),
		groupAddCommand(),
		groupRemoveCommand(),
		groupsCommand(),
		deviceLinkCommand(),
		deviceJoinCommand(),
		devicesCommand(),
		deviceRevokeCommand(),
		accountDeleteCommand(),
		completionCommand(),
		{name: "version", summary: "print the version", about: "Prints the version of qrtalk and of the protocol it speaks.",
			examples: "  qrtalk version\n", run: func(a *app, ctx context.Context, c *command, args []string) error {
				fs := a.flagSet(c)
				pos, err := a.parse(fs, c, args)
				if err != nil {
					return err
				}
				return a.version(ctx, pos)
			}},
		{name: "help", args: "[command]", summary: "show the help of a command", about: "Shows the help of a command, or of qrtalk.",
			examples: "  qrtalk help send\n", run: (*app).helpCommand},
		{name: "__complete", hidden: true, run: (*app).completeNames},
	}
}

// groupWords are the first words of two-word commands.
var groupWords = map[string]string{
	"contact": "contacts",
	"group":   "groups",
	"device":  "devices",
	"account": "",
}

// findCommand finds the command named by the first one or two arguments.
func findCommand(args []string) (*command, []string, error) {
	all := commands()
	if len(args) >= 2 {
		two := args[0] + " " + args[1]
		for _, c := range all {
			if c.name == two || c.alias == two {
				return c, args[2:], nil
			}
		}
	}
	for _, c := range all {
		if c.name == args[0] || c.alias == args[0] {
			return c, args[1:], nil
		}
	}
	if _, ok := groupWords[args[0]]; ok {
		var subs []string
		for _, c := range all {
			if strings.HasPrefix(c.name, args[0]+" ") {
				subs = append(subs, strings.TrimPrefix(c.name, args[0]+" "))
			}
		}
		if len(args) == 1 {
			return nil, nil, usage("run 'qrtalk "+args[0]+" "+subs[0]+" --help', or 'qrtalk --help' for every command",
				"%s needs a subcommand: %s", args[0], strings.Join(subs, ", "))
		}
		return nil, nil, usage("run 'qrtalk --help' for every command",
			"unknown command %q; %s takes %s", args[0]+" "+args[1], args[0], strings.Join(subs, ", "))
	}
	return nil, nil, usage("run 'qrtalk --help' for the commands", "unknown command %q", args[0])
}

// flagSet returns a command's flag set, with the global options.
func (a *app) flagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.globalFlags(fs)
	return fs
}

// globalFlags registers the options every command takes.
func (a *app) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.home, "home", a.home, "the account directory, `DIR` [QRTALK_HOME]")
	fs.StringVar(&a.passphraseFile, "passphrase-file", a.passphraseFile, "read the key file's passphrase from `FILE` [QRTALK_PASSPHRASE]")
}

var globalNames = map[string]bool{"home": true, "passphrase-file": true}

// parse parses a command's options, which may come before, between and
// after its arguments ("--" ends them), and returns the arguments. For
// --help it prints the help and returns errHelpShown.
func (a *app) parse(fs *flag.FlagSet, c *command, args []string) ([]string, error) {
	if a.capture != nil {
		a.capture(fs)
		return nil, errCaptured
	}
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			a.commandHelp(c, fs)
			return nil, errHelpShown
		}
		if err != nil {
			return nil, usage("run 'qrtalk "+c.name+" --help' for its options", "%s: %v", c.name, flagError(err))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseArgs is parse, then nargs: a command's options, and from min to
// max arguments (max -1: no limit).
func (a *app) parseArgs(fs *flag.FlagSet, c *command, args []string, min, max int) ([]string, error) {
	pos, err := a.parse(fs, c, args)
	if err != nil {
		return nil, err
	}
	if err := nargs(c, pos, min, max); err != nil {
		return nil, err
	}
	return pos, nil
}

// nargs checks the number of arguments.
func nargs(c *command, pos []string, min, max int) error {
	hint := "usage: qrtalk " + c.name + " " + c.args
	switch {
	case len(pos) < min:
		return usage(hint, "%s: missing argument", c.name)
	case max >= 0 && len(pos) > max:
		return usage(hint, "%s: unexpected argument %q", c.name, pos[max])
	}
	return nil
}

func (a *app) helpCommand(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pos, err := a.parse(fs, c, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		a.mainHelp()
		return nil
	}
	found, rest, err := findCommand(pos)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usage("run 'qrtalk --help' for the commands", "help: unexpected argument %q", rest[0])
	}
	// The command prints its own help, options included.
	return found.run(a, ctx, found, []string{"--help"})
}

// commandHelp prints a command's help: synopsis, description, options
// (from its flag set, so that they cannot drift), global options, examples.
func (a *app) commandHelp(c *command, fs *flag.FlagSet) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: qrtalk %s %s\n\n", c.name, c.args)
	b.WriteString(c.about)
	if !strings.HasSuffix(c.about, "\n") {
		b.WriteString("\n")
	}
	var own, global []string
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if name != "" {
			left += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && !globalNames[f.Name] {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		text := wrap(usage, 80-27)
		var line string
		if len(left) > 24 {
			line = fmt.Sprintf("  %s\n%s", left, indent(text, 27))
		} else {
			line = fmt.Sprintf("  %-24s %s", left, strings.TrimLeft(indent(text, 27), " "))
		}
		if globalNames[f.Name] {
			global = append(global, line)
		} else {
			own = append(own, line)
		}
	})
	if len(own) > 0 {
		b.WriteString("\nOptions:\n")
		b.WriteString(strings.Join(own, "\n"))
		b.WriteString("\n")
	}
	b.WriteString("\nGlobal options:\n")
	b.WriteString(strings.Join(global, "\n"))
	b.WriteString("\n  --help                   show this help\n")
	if c.examples != "" {
		b.WriteString("\nExamples:\n")
		b.WriteString(c.examples)
	}
	b.WriteString("\nExit status: 0 ok, 1 error, 2 usage, 3 key changed or not verified, 4 no account\n(see 'qrtalk --help').\n")
	fmt.Fprint(a.stdout, b.String())
}

const exitHelp = `Exit status:
  0  success
  1  error (the server unreachable, a wrong passphrase, an unknown contact...)
  2  usage error (an unknown command or option, a missing argument)
  3  a key did not verify: a contact's identity key changed (sending stops
     until you accept it), a fingerprint or scanned code did not match, or
     the server's key is not the one pinned
  4  no account in the home directory: run 'qrtalk join' first
`

// mainHelp prints the list of commands.
func (a *app) mainHelp() {
	var b strings.Builder
	b.WriteString(`qrtalk is the QRTalk client: end-to-end encrypted, ephemeral messages.
The server relays ciphertext it cannot read; every message has a time to live
after which it is gone from the server and from every device.

Usage: qrtalk [--home DIR] COMMAND [options] [arguments]

Commands:
`)
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		left := c.name
		if c.args != "" {
			left += " " + c.args
		}
		if len(left) > 26 {
			fmt.Fprintf(&b, "  %s\n  %-26s  %s\n", left, "", c.summary)
		} else {
			fmt.Fprintf(&b, "  %-26s  %s\n", left, c.summary)
		}
	}
	b.WriteString(`
Run 'qrtalk COMMAND --help' for a command's options and examples.

Global options (before or after the command):
  --home DIR              the account directory; several identities can live
                          on one machine, one directory each [QRTALK_HOME]
                          (default: $XDG_DATA_HOME/qrtalk,
                          or ~/.local/share/qrtalk)
  --passphrase-file FILE  the passphrase of an encrypted key file
                          [QRTALK_PASSPHRASE holds the passphrase itself];
                          on a terminal qrtalk asks for it
  --version               print the version

Getting started:
  qrtalk join 'qrtalk:invite?v=1&s=...'   # or a photo of its QR code
  qrtalk id                               # show your code to a contact
  qrtalk contact add contact-code.png --name bob
  qrtalk send bob "hello"
  qrtalk listen

Scripts: --json on id, contacts, groups, devices, send, listen, inbox and
read prints JSON (one object per line for messages). A message is read from
standard input with '-', or when none is given and input is not a terminal:
  df -h / | qrtalk send ops --ttl 1d

`)
	b.WriteString(exitHelp)
	fmt.Fprint(a.stdout, b.String())
}

// commandNames lists the visible commands' words, for completion.
func commandNames() (top []string, subs map[string][]string) {
	subs = map[string][]string{}
	seen := map[string]bool{}
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		first, second, two := strings.Cut(c.name, " ")
		if !seen[first] {
			top = append(top, first)
			seen[first] = true
		}
		if two {
			subs[first] = append(subs[first], second)
		}
		if c.alias != "" {
			if f, s, ok := strings.Cut(c.alias, " "); ok {
				subs[f] = append(subs[f], s)
			}
		}
	}
	sort.Strings(top)
	return top, subs
}

// wrap breaks text into lines of at most width columns, at spaces.
func wrap(text string, width int) string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return strings.Join(append(lines, line), "\n")
}

// indent indents every line of text by n spaces.
func indent(text string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(text, "\n", "\n"+pad)
}
