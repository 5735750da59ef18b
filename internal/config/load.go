package config

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxFileSize bounds the config file; a larger file is surely not one.
const MaxFileSize = 1 << 20

// Flags are the options registered on a flag.FlagSet. Create them with
// AddFlags before fs.Parse, and call Load after.
type Flags struct {
	fs     *flag.FlagSet
	values map[string]*flagValue
	config *flagValue
}

type flagValue struct {
	val    string
	isBool bool
}

func (v *flagValue) String() string     { return v.val }
func (v *flagValue) Set(s string) error { v.val = s; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.isBool }

// AddFlags registers --config and a flag for every option on fs. Values are
// checked by Load, not by fs.Parse, so that a bad flag gets the same error
// as a bad variable or file line.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, values: map[string]*flagValue{}, config: &flagValue{}}
	fs.Var(f.config, ConfigOption, "config file (env "+EnvName(ConfigOption)+")")
	for _, o := range Options() {
		v := &flagValue{isBool: o.Bool}
		f.values[o.Name] = v
		fs.Var(v, o.Name, o.Help)
	}
	return f
}

// Load parses args with a FlagSet of its own and returns the configuration:
// a shortcut for AddFlags, Parse and Flags.Load, for tests and embedders.
func Load(args []string, env Environment) (*Config, error) {
	fs := flag.NewFlagSet("qrtalkd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, &UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return nil, &UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return f.Load(env)
}

// setting is one value and where it came from.
type setting struct {
	val    string
	source string // "--listen", "QRTALKD_LISTEN" or "FILE:LINE"
}

// Load resolves the configuration: defaults, then the config file, then the
// environment, then the flags that fs.Parse saw. Every error is a
// *UsageError naming the source of the bad value.
func (f *Flags) Load(env Environment) (*Config, error) {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	c := &Config{}
	// The config file: --config, else QRTALKD_CONFIG.
	path := ""
	if set[ConfigOption] {
		path = f.config.val
		if path == "" {
			return nil, usage(errors.New("--config: empty file name"), "")
		}
	} else if p, ok := env.lookup(EnvName(ConfigOption)); ok && p != "" {
		path = p
	}
	var file map[string]setting
	if path != "" {
		var err error
		if file, err = readFile(path); err != nil {
			return nil, &UsageError{Err: err}
		}
		c.File = path
	}

	for _, o := range Options() {
		s := setting{val: o.Default, source: "default"}
		if fv, ok := file[o.Name]; ok {
			s = fv
		}
		if ev, ok := env.lookup(o.Env()); ok {
			s = setting{val: ev, source: o.Env()}
		}
		if set[o.Name] {
			s = setting{val: f.values[o.Name].val, source: o.Flag()}
		}
		if o.Name == "data" && s.source == "default" {
			d, err := defaultData(env)
			if err != nil {
				return nil, &UsageError{Err: err}
			}
			s.val = d
		}
		if err := o.set(c, s.val); err != nil {
			shown := s.val
			if o.Secret {
				shown = redactSecret(shown)
			}
			var what string
			switch {
			case s.source == o.Flag():
				what = fmt.Sprintf("%s %q", o.Flag(), shown)
			case s.source == o.Env():
				what = fmt.Sprintf("%s=%q", o.Env(), shown)
			case s.source == "default":
				what = fmt.Sprintf("default %s %q", o.Name, shown)
			default:
				what = fmt.Sprintf("%s: %s = %q", s.source, o.Name, shown)
			}
			return nil, usage(fmt.Errorf("%s: %v", what, err),
				"run 'qrtalkd serve --help' for the options and their forms")
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	c.Warnings = append(c.Warnings, unknownEnv(env)...)
	return c, nil
}

func usage(err error, hint string) error {
	if hint != "" {
		err = WithHint(err, hint)
	}
	return &UsageError{Err: err}
}

// check validates the options against each other.
func (c *Config) check() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return usage(errors.New("tls-cert and tls-key go together: set both or neither"), "")
	case c.ACMEDomain != "" && c.TLSCert != "":
		return usage(errors.New("acme-domain and tls-cert both set: choose one source of certificates"), "")
	case c.ACMEEmail != "" && c.ACMEDomain == "":
		return usage(errors.New("acme-email is set but acme-domain is not"), "set --acme-domain to the name of this server, or drop --acme-email")
	case c.MetricsListen != "" && sameAddr(c.MetricsListen, c.Listen):
		return usage(fmt.Errorf("metrics-listen and listen are the same address %q", c.Listen), "give metrics a port of its own, e.g. 127.0.0.1:9090")
	case c.ACMEDomain != "" && c.ACMEHTTPListen != "" && sameAddr(c.ACMEHTTPListen, c.Listen):
		return usage(fmt.Errorf("acme-http-listen and listen are the same address %q", c.Listen), "")
	case c.Bus != "" && !c.StoreIsPostgres():
		return usage(errors.New("bus is set but the store is a SQLite file of this node: the nodes of a cluster must share a PostgreSQL store"),
			"set --store to the postgres:// URL of the database every node uses, or drop --bus for a single node")
	}
	if c.StoreIsPostgres() && c.Bus == "" {
		c.Warnings = append(c.Warnings, "store is PostgreSQL but bus is not set: run only one node this way; "+
			"several nodes need a bus (--bus nats://...) to deliver live to devices connected to another node and to wake them")
	}
	if c.ACMEDomain != "" && c.PublicURL != "" && !strings.HasPrefix(c.PublicURL+"/", "https://"+c.ACMEDomain+"/") &&
		!strings.HasPrefix(c.PublicURL, "https://"+c.ACMEDomain+":") {
		c.Warnings = append(c.Warnings, fmt.Sprintf("public-url %s is not on acme-domain %s: clients will not find the certificate's name in it", c.PublicURL, c.ACMEDomain))
	}
	return nil
}

func sameAddr(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	return ha == hb || ha == "" || hb == "" || isUnspecified(ha) || isUnspecified(hb)
}

// unknownEnv lists the QRTALKD_ variables that name no option.
func unknownEnv(env Environment) []string {
	if env.Environ == nil {
		return nil
	}
	known := map[string]bool{EnvName(ConfigOption): true}
	for _, o := range Options() {
		known[o.Env()] = true
	}
	var out []string
	for _, kv := range env.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, EnvPrefix) && !known[k] {
			out = append(out, fmt.Sprintf("environment variable %s names no option; it is ignored", k))
		}
	}
	sort.Strings(out)
	return out
}

// readFile parses a config file: "key = value" lines, blank lines, and
// comment lines starting with '#'. A value may be double-quoted (Go
// syntax) to keep leading or trailing spaces.
func readFile(path string) (map[string]setting, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, WithHint(fmt.Errorf("config file: %w", err),
			"check --config or "+EnvName(ConfigOption)+"; docs/qrtalkd.conf.example is a commented example")
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, MaxFileSize)
	}
	return parseFile(path, data)
}

func parseFile(path string, data []byte) (map[string]setting, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	out := map[string]setting{}
	lineOf := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxFileSize)
	n := 0
	for sc.Scan() {
		n++
		where := path + ":" + strconv.Itoa(n)
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("%s: not valid UTF-8", where)
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			hint := `write "key = value"; comments start with #`
			return nil, WithHint(fmt.Errorf("%s: expected key = value, got %q", where, abbreviate(line)), hint)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if strings.HasPrefix(val, `"`) {
			u, err := strconv.Unquote(val)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: malformed quoted value %s", where, key, abbreviate(val))
			}
			val = u
		}
		if key == ConfigOption {
			return nil, fmt.Errorf("%s: a config file cannot name another config file", where)
		}
		if _, known := Lookup(key); !known {
			err := fmt.Errorf("%s: unknown key %q", where, abbreviate(key))
			if s := suggest(key); s != "" {
				return nil, WithHint(err, fmt.Sprintf("did you mean %q?", s))
			}
			return nil, WithHint(err, "run 'qrtalkd serve --help' for the list of options")
		}
		if prev, dup := lineOf[key]; dup {
			return nil, fmt.Errorf("%s: %s is set twice (first on line %d)", where, key, prev)
		}
		lineOf[key] = n
		out[key] = setting{val: val, source: where}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
	}
	return out, nil
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// suggest returns the option name closest to key, if it is close.
func suggest(key string) string {
	best, bestD := "", 3
	for _, o := range Options() {
		if d := editDistance(strings.ToLower(key), o.Name); d < bestD {
			best, bestD = o.Name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
