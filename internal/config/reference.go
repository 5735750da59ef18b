package config

import (
	"fmt"
	"io"
	"strings"
)

// ReferencePath is where the reference config file lives in the
// repository, relative to its root.
const ReferencePath = "docs/qrtalkd.conf.example"

// RegenerateCommand rebuilds ReferencePath from the definitions.
const RegenerateCommand = "go generate ./internal/config"

// WriteReference writes the commented reference config file: every option
// commented out at its default (or at an example value), with its help,
// flag and environment variable.
func WriteReference(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`# qrtalkd configuration file: the reference.
#
# Generated from internal/config; do not edit by hand, run
#     ` + RegenerateCommand + `
#
# Use it with: qrtalkd serve --config /etc/qrtalkd.conf   (or QRTALKD_CONFIG)
#
# Every key here is also a flag (--key) and an environment variable
# (QRTALKD_KEY, upper case, '-' as '_'). A flag wins over the environment,
# which wins over this file, which wins over the default.
#
# Format: one "key = value" per line. Lines starting with # are comments
# (there are no comments at the end of a line). A value may be written in
# double quotes, Go style, to keep spaces at its ends. An unknown key or a
# key given twice is an error.
#
# Every line below is commented out, showing the default (or an example when
# there is no fixed default): uncomment what you change.
`)
	for _, o := range Options() {
		b.WriteString("\n")
		wrap(&b, "# ", o.Help, 78)
		fmt.Fprintf(&b, "# Flag: %s    Environment: %s\n", o.Flag(), o.Env())
		switch {
		case o.DefaultDoc != "":
			wrap(&b, "# ", "Default: "+o.DefaultDoc+".", 78)
		case o.Default == "":
			b.WriteString("# Default: empty.\n")
		}
		val := o.Default
		if o.DefaultDoc != "" || val == "" {
			val = o.Example
		}
		fmt.Fprintf(&b, "#%s = %s\n", o.Name, val)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteUsage writes the help of the named options (all of them if names is
// empty), one block each: the flag, its environment variable, its default
// and its help.
func WriteUsage(w io.Writer, names ...string) error {
	var b strings.Builder
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	if len(names) == 0 || want[ConfigOption] {
		fmt.Fprintf(&b, "  --%s FILE  [%s]\n", ConfigOption, EnvName(ConfigOption))
		wrap(&b, "        ", "Read options from FILE (key = value lines; see docs/qrtalkd.conf.example).", 78)
	}
	for _, o := range Options() {
		if len(names) > 0 && !want[o.Name] {
			continue
		}
		arg := " " + o.Type
		if o.Bool {
			arg = "[=true|false]"
		}
		def := ""
		switch {
		case o.DefaultDoc != "":
			def = "  (default: " + o.DefaultDoc + ")"
		case o.Default != "":
			def = "  (default " + o.Default + ")"
		}
		fmt.Fprintf(&b, "  %s%s  [%s]%s\n", o.Flag(), arg, o.Env(), def)
		wrap(&b, "        ", o.Help, 78)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap writes text as lines of at most width columns, each starting with
// prefix.
func wrap(b *strings.Builder, prefix, text string, width int) {
	line := prefix
	for _, word := range strings.Fields(text) {
		if len(line) > len(prefix) && len(line)+1+len(word) > width {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = prefix
		}
		if len(line) > len(prefix) {
			line += " "
		}
		line += word
	}
	if len(line) > len(prefix) {
		b.WriteString(line + "\n")
	}
}
