package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
)

func completionCommand() *command {
	return &command{
		name: "completion", args: "bash | zsh | fish",
		summary: "print a shell completion script",
		about: `Prints a completion script for bash, zsh or fish: commands, options, and
the names of your contacts and groups (read from the account in --home, or
QRTALK_HOME, without network).
`,
		examples: `  source <(qrtalk completion bash)                       # in ~/.bashrc
  qrtalk completion zsh > "${fpath[1]}/_qrtalk"            # zsh
  qrtalk completion fish > ~/.config/fish/completions/qrtalk.fish
`,
		run: (*app).completion,
	}
}

// errCaptured stops a command right after its options are defined.
var errCaptured = errors.New("flags captured")

// flagsOf returns the options a command defines (its global ones left out),
// by running it until it parses: every command parses first, before it
// touches anything.
func flagsOf(c *command) []*flag.Flag {
	a := &app{getenv: func(string) string { return "" }}
	var fs *flag.FlagSet
	a.capture = func(f *flag.FlagSet) { fs = f }
	if err := c.run(a, context.Background(), c, nil); !errors.Is(err, errCaptured) || fs == nil {
		return nil
	}
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !globalNames[f.Name] {
			out = append(out, f)
		}
	})
	return out
}

// argKinds says what a command's first arguments are, for completion.
var argKinds = map[string]string{
	"send": "names", "read": "names", "typing": "names", "chat": "names",
	"contact verify": "contacts", "contact accept": "contacts", "contact remove": "contacts",
	"group add": "groups", "group remove": "groups",
	"join": "files", "contact add": "files", "device join": "files",
	"completion": "shells", "help": "commands",
}

func (a *app) completion(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pos, err := a.parseArgs(fs, c, args, 1, 1)
	if err != nil {
		return err
	}
	switch pos[0] {
	case "bash":
		fmt.Fprint(a.stdout, bashCompletion())
	case "zsh":
		fmt.Fprint(a.stdout, "#compdef qrtalk\n# zsh completion for qrtalk, through zsh's bash completion support.\nautoload -U +X bashcompinit && bashcompinit\n")
		fmt.Fprint(a.stdout, bashCompletion())
	case "fish":
		fmt.Fprint(a.stdout, fishCompletion())
	default:
		return usage("the shells are bash, zsh and fish", "completion: unknown shell %q", pos[0])
	}
	return nil
}

func bashCompletion() string {
	top, subs := commandNames()
	var b strings.Builder
	b.WriteString(`# bash completion for qrtalk. Load it with: source <(qrtalk completion bash)
_qrtalk_names() {
    local home=()
    [[ -n $_qrtalk_home ]] && home=(--home "$_qrtalk_home")
    qrtalk "${home[@]}" __complete "$1" 2>/dev/null
}
_qrtalk() {
    local cur prev cmd="" sub="" i _qrtalk_home=""
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --home) _qrtalk_home="${COMP_WORDS[i+1]}"; ((i++)) ;;
            --passphrase-file|--name|--ttl|--file|--png|--save|--wait|--count|--timeout|--qr) ((i++)) ;;
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd="${COMP_WORDS[i]}"; elif [[ -z $sub ]]; then sub="${COMP_WORDS[i]}"; fi ;;
        esac
    done
    case "$prev" in
        --home|--save) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --passphrase-file|--file|--png) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --ttl) COMPREPLY=($(compgen -W "10s 5m 1h 1d 1w" -- "$cur")); return ;;
        --qr) COMPREPLY=($(compgen -W "auto true false" -- "$cur")); return ;;
        --name|--wait|--count|--timeout) return ;;
    esac
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "--home --passphrase-file --help --version `)
	b.WriteString(strings.Join(top, " "))
	b.WriteString(`" -- "$cur"))
        return
    fi
    local key="$cmd" argi=0
    case "$cmd" in
`)
	groups := make([]string, 0, len(subs))
	for g := range subs {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		fmt.Fprintf(&b, "        %s)\n            if [[ -z $sub ]]; then COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return; fi\n            key=\"$cmd $sub\" ;;\n",
			g, strings.Join(subs[g], " "))
	}
	b.WriteString(`    esac
    if [[ $cur == -* ]]; then
        case "$key" in
`)
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		var names []string
		for _, f := range flagsOf(c) {
			names = append(names, "--"+f.Name)
		}
		names = append(names, "--home", "--passphrase-file", "--help")
		keys := "\"" + c.name + "\""
		if c.alias != "" {
			keys += "|\"" + c.alias + "\""
		}
		fmt.Fprintf(&b, "            %s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")) ;;\n", keys, strings.Join(names, " "))
	}
	b.WriteString(`        esac
        return
    fi
    case "$key" in
`)
	kinds := map[string][]string{}
	for name, kind := range argKinds {
		kinds[kind] = append(kinds[kind], "\""+name+"\"")
	}
	for _, kind := range []string{"names", "contacts", "groups", "files", "shells", "commands"} {
		sort.Strings(kinds[kind])
		var action string
		switch kind {
		case "names", "contacts", "groups":
			action = `COMPREPLY=($(compgen -W "$(_qrtalk_names ` + kind + `)" -- "$cur"))`
		case "files":
			action = `COMPREPLY=($(compgen -f -- "$cur"))`
		case "shells":
			action = `COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"))`
		case "commands":
			action = `COMPREPLY=($(compgen -W "` + strings.Join(top, " ") + `" -- "$cur"))`
		}
		fmt.Fprintf(&b, "        %s) %s ;;\n", strings.Join(kinds[kind], "|"), action)
	}
	b.WriteString(`    esac
}
complete -o default -F _qrtalk qrtalk
`)
	return b.String()
}

func fishCompletion() string {
	top, subs := commandNames()
	var b strings.Builder
	b.WriteString(`# fish completion for qrtalk: qrtalk completion fish > ~/.config/fish/completions/qrtalk.fish
complete -c qrtalk -f
complete -c qrtalk -l home -r -F -d 'the account directory'
complete -c qrtalk -l passphrase-file -r -F -d 'the passphrase of an encrypted key file'
complete -c qrtalk -l help -d 'show the help'
`)
	summaries := map[string]string{}
	for _, c := range commands() {
		summaries[c.name] = c.summary
	}
	for _, t := range top {
		sum := summaries[t]
		if sum == "" {
			sum = t + " commands"
		}
		fmt.Fprintf(&b, "complete -c qrtalk -n '__fish_use_subcommand' -a %s -d %s\n", t, fishQuote(sum))
	}
	groups := make([]string, 0, len(subs))
	for g := range subs {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		for _, s := range subs[g] {
			sum := summaries[g+" "+s]
			fmt.Fprintf(&b, "complete -c qrtalk -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a %s -d %s\n",
				g, strings.Join(subs[g], " "), s, fishQuote(sum))
		}
	}
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		cond := fishCondition(c.name)
		for _, f := range flagsOf(c) {
			_, u := flag.UnquoteUsage(f)
			opt := ""
			if name, _ := flag.UnquoteUsage(f); name != "" {
				opt = " -r"
			}
			fmt.Fprintf(&b, "complete -c qrtalk -n %s -l %s%s -d %s\n", fishQuote(cond), f.Name, opt, fishQuote(u))
		}
		switch argKinds[c.name] {
		case "names", "contacts", "groups":
			fmt.Fprintf(&b, "complete -c qrtalk -n %s -a '(qrtalk __complete %s 2>/dev/null)'\n", fishQuote(cond), argKinds[c.name])
		case "files":
			fmt.Fprintf(&b, "complete -c qrtalk -n %s -F\n", fishQuote(cond))
		case "shells":
			fmt.Fprintf(&b, "complete -c qrtalk -n %s -a 'bash zsh fish'\n", fishQuote(cond))
		}
	}
	return b.String()
}

func fishCondition(name string) string {
	words := strings.Fields(name)
	conds := make([]string, len(words))
	for i, w := range words {
		conds[i] = "__fish_seen_subcommand_from " + w
	}
	return strings.Join(conds, "; and ")
}

func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// completeNames prints contact and group names, one a line, for the
// completion scripts. It never asks for a passphrase, and prints nothing
// when the account cannot be opened.
func (a *app) completeNames(ctx context.Context, c *command, args []string) error {
	fs := a.flagSet(c)
	pos, err := a.parse(fs, c, args)
	if err != nil || len(pos) != 1 {
		return nil
	}
	a.stdinTTY, a.stderrTTY = false, false // no prompt
	acc, err := a.openAccount()
	if err != nil {
		return nil
	}
	defer acc.Close()
	if pos[0] == "names" || pos[0] == "contacts" {
		if list, err := acc.Contacts(ctx); err == nil {
			for _, ct := range list {
				fmt.Fprintln(a.stdout, ct.Name)
			}
		}
	}
	if pos[0] == "names" || pos[0] == "groups" {
		if list, err := acc.Groups(ctx); err == nil {
			for _, g := range list {
				fmt.Fprintln(a.stdout, g.Name)
			}
		}
	}
	return nil
}
