package config

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

var update = flag.Bool("update", false, "rewrite "+ReferencePath+" from the definitions")

// env returns an Environment holding exactly kv (KEY, VALUE, KEY, VALUE...).
func env(kv ...string) Environment {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return Environment{
		LookupEnv: func(k string) (string, bool) { v, ok := m[k]; return v, ok },
		Environ: func() []string {
			var out []string
			for k, v := range m {
				out = append(out, k+"="+v)
			}
			return out
		},
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qrtalkd.conf")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env("HOME", "/home/ann"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Data:            "/home/ann/.local/share/qrtalkd",
		Listen:          ":8443",
		ACMEHTTPListen:  ":80",
		Registration:    RegistrationInvite,
		MaxBlobSize:     100 << 20,
		SessionLifetime: time.Hour,
		LiveLifetime:    10 * time.Minute,
		AckTimeout:      3 * time.Second,
		SweepInterval:   30 * time.Second,
		ShutdownTimeout: 40 * time.Second,
		RateIP:          Rate{Limit: 50, Burst: 100},
		RateDevice:      Rate{Limit: 200, Burst: 400},
		RateDirectory:   Rate{Limit: 2, Burst: 30},
		LogLevel:        slog.LevelInfo,
		LogFormat:       LogText,
		BusPrefix:       "qrtalk",
	}
	if !equalConfig(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}

	c, err = Load(nil, env("HOME", "/home/ann", "XDG_DATA_HOME", "/srv/data"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "/srv/data/qrtalkd" {
		t.Errorf("with XDG_DATA_HOME: data = %q", c.Data)
	}

	_, err = Load(nil, env())
	if err == nil || Hint(err) == "" || !IsUsage(err) {
		t.Errorf("no HOME: want a usage error with a hint, got %v", err)
	}
	if _, err := Load([]string{"--data", "/d"}, env()); err != nil {
		t.Errorf("no HOME but --data: %v", err)
	}
}

func equalConfig(a, b Config) bool {
	as, bs := a.TrustedProxies, b.TrustedProxies
	a.TrustedProxies, b.TrustedProxies = nil, nil
	a.Warnings, b.Warnings = nil, nil
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		if as[i] != bs[i] {
			return false
		}
	}
	return reflect.DeepEqual(a, b)
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "listen = 127.0.0.1:1001\nregistration = open\nlog-ip = true\n")
	cases := []struct {
		name     string
		args     []string
		env      []string
		listen   string
		reg      string
		logIP    bool
		fileUsed string
	}{
		{"default", nil, nil, ":8443", "invite", false, ""},
		{"file by flag", []string{"--config", file}, nil, "127.0.0.1:1001", "open", true, file},
		{"file by env", nil, []string{"QRTALKD_CONFIG", file}, "127.0.0.1:1001", "open", true, file},
		{"env over file", []string{"--config", file}, []string{"QRTALKD_LISTEN", "127.0.0.1:1002", "QRTALKD_LOG_IP", "no"},
			"127.0.0.1:1002", "open", false, file},
		{"flag over env over file", []string{"--config", file, "--listen=127.0.0.1:1003", "--registration", "closed"},
			[]string{"QRTALKD_LISTEN", "127.0.0.1:1002", "QRTALKD_REGISTRATION", "invite"},
			"127.0.0.1:1003", "closed", true, file},
		{"bare bool flag over env", []string{"--log-ip"}, []string{"QRTALKD_LOG_IP", "false"}, ":8443", "invite", true, ""},
		{"bool flag =false over file", []string{"--config", file, "--log-ip=false"}, nil, "127.0.0.1:1001", "open", false, file},
		{"--config flag over QRTALKD_CONFIG", []string{"--config", file}, []string{"QRTALKD_CONFIG", "/nonexistent"},
			"127.0.0.1:1001", "open", true, file},
		{"env without file", nil, []string{"QRTALKD_LISTEN", "[::1]:1004"}, "[::1]:1004", "invite", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, env(append([]string{"HOME", "/h"}, tc.env...)...))
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen != tc.listen || c.Registration != tc.reg || c.LogIP != tc.logIP || c.File != tc.fileUsed {
				t.Errorf("got listen %q registration %q log-ip %v file %q; want %q %q %v %q",
					c.Listen, c.Registration, c.LogIP, c.File, tc.listen, tc.reg, tc.logIP, tc.fileUsed)
			}
		})
	}
}

func TestFileParsing(t *testing.T) {
	p := writeFile(t, "\xef\xbb\xbf# comment\r\n\n   # indented comment\n"+
		"data = \"/srv/q rtalk \"\r\n"+
		"max-blob-size=1.5 GiB\n"+
		"  trusted-proxies =  10.1.2.3/8, 192.0.2.7 ,fd00::/8  \n"+
		"public-url = https://Chat.Example.org/\n"+
		"rate-ip = 600/m:10\n"+
		"acme-http-listen =\n")
	c, err := Load([]string{"--config", p}, env("HOME", "/h"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "/srv/q rtalk " {
		t.Errorf("quoted data = %q", c.Data)
	}
	if c.MaxBlobSize != 3<<29 {
		t.Errorf("max-blob-size = %d", c.MaxBlobSize)
	}
	if got := strings.Join(c.TrustedProxies, ","); got != "10.0.0.0/8,192.0.2.7/32,fd00::/8" {
		t.Errorf("trusted-proxies = %s", got)
	}
	if c.PublicURL != "https://chat.example.org" {
		t.Errorf("public-url = %q", c.PublicURL)
	}
	if c.RateIP != (Rate{Limit: 10, Burst: 10}) {
		t.Errorf("rate-ip = %+v", c.RateIP)
	}
	if c.ACMEHTTPListen != "" {
		t.Errorf("acme-http-listen = %q, want empty", c.ACMEHTTPListen)
	}
}

func TestFileErrors(t *testing.T) {
	cases := []struct {
		name, content string
		want          string // regexp; FILE stands for the path
		hint          string
	}{
		{"unknown key", "listen = :1\n\nlistn = :2\n", `^FILE:3: unknown key "listn"$`, `did you mean "listen"?`},
		{"unknown far key", "# x\nfoo = 1\n", `^FILE:2: unknown key "foo"$`, "qrtalkd serve --help"},
		{"no equals", "listen: :8443\n", `^FILE:1: expected key = value, got "listen: :8443"$`, `key = value`},
		{"duplicate", "log-ip = true\n#\nlog-ip = false\n", `^FILE:3: log-ip is set twice \(first on line 1\)$`, ""},
		{"bad quote", "data = \"/x\n", `^FILE:1: data: malformed quoted value "/x$`, ""},
		{"config key", "config = /etc/other\n", `^FILE:1: a config file cannot name another config file$`, ""},
		{"bad size", "# a\n# b\nmax-blob-size = 12XB\n", `^FILE:3: max-blob-size = "12XB": unknown size unit "XB"`, "--help"},
		{"bad duration", "live-lifetime = 10 minutes\n", `^FILE:1: live-lifetime = "10 minutes": not a duration`, ""},
		{"bad enum", "registration = public\n", `^FILE:1: registration = "public": must be invite, open or closed$`, ""},
		{"bad utf8", "data = \xff\n", `^FILE:1: not valid UTF-8$`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.content)
			_, err := Load([]string{"--config", p}, env("HOME", "/h"))
			if err == nil {
				t.Fatal("no error")
			}
			re := regexp.MustCompile(strings.ReplaceAll(tc.want, "FILE", regexp.QuoteMeta(p)))
			if !re.MatchString(err.Error()) {
				t.Errorf("error %q\ndoes not match %q", err, re)
			}
			if !IsUsage(err) {
				t.Errorf("not a usage error: %v", err)
			}
			if !strings.Contains(Hint(err), tc.hint) {
				t.Errorf("hint %q does not contain %q", Hint(err), tc.hint)
			}
		})
	}

	_, err := Load([]string{"--config", "/nonexistent/qrtalkd.conf"}, env("HOME", "/h"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || Hint(err) == "" {
		t.Errorf("missing file: %v (hint %q)", err, Hint(err))
	}
	_, err = Load([]string{"--config="}, env("HOME", "/h"))
	if err == nil {
		t.Error("empty --config accepted")
	}
	big := writeFile(t, strings.Repeat("#", MaxFileSize+1))
	if _, err := Load([]string{"--config", big}, env("HOME", "/h")); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
}

func TestValidation(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--listen", "8443"}, nil, `--listen "8443": must be host:port`},
		{[]string{"--listen", ":99999"}, nil, `port "99999" must be a number from 0 to 65535`},
		{[]string{"--listen", "bad host!:1"}, nil, `neither an IP address nor a host name`},
		{nil, []string{"QRTALKD_LISTEN", "nope"}, `QRTALKD_LISTEN="nope": must be host:port`},
		{[]string{"--public-url", "http://chat.example.org"}, nil, `must be an https URL`},
		{[]string{"--public-url", "https://u:p@chat.example.org"}, nil, `must be an https URL`},
		{[]string{"--public-url", "https://chat.example.org/?x=1"}, nil, `must be an https URL`},
		{[]string{"--acme-domain", "https://chat.example.org"}, nil, `must be a domain name`},
		{[]string{"--acme-domain", "203.0.113.1"}, nil, `must be a domain name`},
		{[]string{"--acme-domain", "-bad.example"}, nil, `must be a domain name`},
		{[]string{"--acme-domain", "a.example", "--acme-email", "Ann <ann@example.org>"}, nil, `plain e-mail address`},
		{[]string{"--acme-email", "ann@example.org"}, nil, `acme-email is set but acme-domain is not`},
		{[]string{"--metrics-listen", "9090"}, nil, `--metrics-listen "9090": must be host:port`},
		{[]string{"--metrics-listen", "127.0.0.1:8443"}, nil, `metrics-listen and listen are the same address`},
		{[]string{"--registration", "Invite"}, nil, `must be invite, open or closed`},
		{[]string{"--max-blob-size", "100"}, nil, `100 bytes is less than 1KiB; did you mean 100MiB?`},
		{[]string{"--max-blob-size", "2TiB"}, nil, `more than 1TiB`},
		{[]string{"--max-blob-size", "99999999999999999999"}, nil, `size too large`},
		{[]string{"--max-blob-size", "MiB"}, nil, `not a size`},
		{[]string{"--max-blob-size", "-1"}, nil, `not a size`},
		{[]string{"--session-lifetime", "2h"}, nil, `must be between 1s and 1h0m0s`},
		{[]string{"--session-lifetime", "0"}, nil, `must be between`},
		{[]string{"--live-lifetime", "1s"}, nil, `must be between 10s and 24h0m0s`},
		{[]string{"--ack-timeout", "3"}, nil, `not a duration`},
		{[]string{"--sweep-interval", "-1s"}, nil, `must be between`},
		{[]string{"--shutdown-timeout", "1h"}, nil, `must be between`},
		{[]string{"--rate-ip", "50"}, nil, `must be COUNT/PERIOD[:BURST]`},
		{[]string{"--rate-ip", "0/s"}, nil, `COUNT from 1`},
		{[]string{"--rate-device", "5/fortnight"}, nil, `PERIOD from 1ms to 24h`},
		{[]string{"--rate-directory", "5/s:0"}, nil, `BURST from 1`},
		{[]string{"--trusted-proxies", "10.0.0.0/8,example.org"}, nil, `"example.org" is not a network`},
		{[]string{"--log-ip=maybe"}, nil, `must be true or false`},
		{[]string{"--log-level", "verbose"}, nil, `must be debug, info, warn or error`},
		{[]string{"--log-format", "xml"}, nil, `must be text or json`},
		{[]string{"--tls-cert", "/c.pem"}, nil, `tls-cert and tls-key go together`},
		{[]string{"--tls-cert", "/c.pem", "--tls-key", "/k.pem", "--acme-domain", "a.example"}, nil, `choose one source of certificates`},
		{[]string{"--data", "/srv/q#1"}, nil, `must not contain`},
		{[]string{"--data="}, nil, `must not be empty`},
		{[]string{"--store", "mysql://db/q"}, nil, `must be empty, a file path (SQLite) or a postgres:// URL`},
		{[]string{"--store", "postgres:///q"}, nil, `needs a host`},
		{[]string{"--store", "/srv/q?x.db"}, nil, `must not contain`},
		{[]string{"--bus", "nats://127.0.0.1:4222"}, nil, `the nodes of a cluster must share a PostgreSQL store`},
		{[]string{"--bus", "http://127.0.0.1:4222", "--store", "postgres://db/q"}, nil, `must be nats://host:port or tls://host:port`},
		{[]string{"--bus", "nats://:4222", "--store", "postgres://db/q"}, nil, `needs a host`},
		{[]string{"--bus", "nats://h:99999", "--store", "postgres://db/q"}, nil, `from 1 to 65535`},
		{[]string{"--bus", "nats://h:1/x", "--store", "postgres://db/q"}, nil, `no path or query`},
		{[]string{"--bus", "nats://h:1,", "--store", "postgres://db/q"}, nil, `must be nats://host:port`},
		{[]string{"--bus-prefix", "a..b"}, nil, `empty token`},
		{[]string{"--bus-prefix", "qrtalk.>"}, nil, `only letters, digits`},
		{[]string{"--bus-prefix="}, nil, `must not be empty`},
		{[]string{"--no-such-flag"}, nil, `flag provided but not defined`},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(append(tc.args, tc.env...), " "), func(t *testing.T) {
			_, err := Load(tc.args, env(append([]string{"HOME", "/h"}, tc.env...)...))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !IsUsage(err) {
				t.Errorf("not a usage error: %v", err)
			}
		})
	}
}

// TestScaleOut: the store and bus options of a cluster node, and what is
// said about them.
func TestScaleOut(t *testing.T) {
	c, err := Load([]string{"--store", "postgres://qrtalk@db:5432/q?sslmode=disable", "--bus", "nats://n1:4222,tls://n2:4222",
		"--bus-prefix", "qrtalk.prod-1"}, env("HOME", "/h"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.StoreIsPostgres() || c.Bus != "nats://n1:4222,tls://n2:4222" || c.BusPrefix != "qrtalk.prod-1" || len(c.Warnings) != 0 {
		t.Errorf("cluster node: %+v", c)
	}
	// PostgreSQL without a bus: allowed, with a warning.
	c, err = Load(nil, env("HOME", "/h", "QRTALKD_STORE", "postgresql://db/q"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "bus is not set") {
		t.Errorf("warnings: %q", c.Warnings)
	}
	// A path: a SQLite file, made absolute.
	c, err = Load([]string{"--data", "/d", "--store", "other.db"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if c.StoreIsPostgres() || !filepath.IsAbs(c.Store) || filepath.Base(c.Store) != "other.db" {
		t.Errorf("store path: %q", c.Store)
	}
	// Blobs: in the data directory by default; elsewhere (a shared mount)
	// with blob-dir, made absolute.
	if got := c.BlobPath(); got != filepath.Join("/d", "blobs") {
		t.Errorf("default blob path: %q", got)
	}
	c, err = Load([]string{"--data", "/d", "--blob-dir", "shared/blobs"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.BlobPath(); !filepath.IsAbs(got) || !strings.HasSuffix(got, filepath.Join("shared", "blobs")) {
		t.Errorf("blob-dir: %q", got)
	}
	// A password never shows in an error.
	for _, args := range [][]string{
		{"--store", "postgres://u:hunter2@/q"},
		{"--bus", "nats://u:hunter2@h:1/x", "--store", "postgres://db/q"},
		{"--bus", "nats://hunter2@h:1/x", "--store", "postgres://db/q"},
		{"--store", "postgres://u@/q?password=hunter2"},
	} {
		_, err := Load(args, env("HOME", "/h"))
		if err == nil {
			t.Fatalf("%q: no error", args)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error shows the password: %v", args, err)
		}
	}
}

func TestValues(t *testing.T) {
	sizes := map[string]int64{
		"1048576": 1 << 20, "100MiB": 100 << 20, "100M": 100 << 20, "100 mib": 100 << 20, "100MB": 100e6,
		"1.5GiB": 3 << 29, "2KB": 2000, "1k": 1024, "3T": 3 << 40, "7b": 7,
	}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, n := range []int64{100 << 20, 1 << 10, 1 << 40, 3 << 30, 1000} {
		if got, _ := ParseSize(FormatSize(n)); got != n {
			t.Errorf("FormatSize(%d) = %q does not parse back", n, FormatSize(n))
		}
	}
	rates := map[string]Rate{
		"50/s":     {50, 100},
		"600/m:10": {10, 10},
		"5/10s":    {0.5, 10},
		"3600/h:1": {1, 1},
		"off":      {rate.Inf, 0},
		"OFF":      {rate.Inf, 0},
	}
	for in, want := range rates {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
}

func TestUnknownEnvWarning(t *testing.T) {
	c, err := Load(nil, env("HOME", "/h", "QRTALKD_LISTN", ":1", "QRTALKD_CONFIG", "", "QRTALK_TEST_X", "y"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "QRTALKD_LISTN") {
		t.Errorf("warnings = %q", c.Warnings)
	}
}

func TestDefaultPublicURL(t *testing.T) {
	cases := []struct{ listen, acme, host, want string }{
		{":8443", "", "box", "https://box:8443"},
		{"0.0.0.0:8443", "", "box", "https://box:8443"},
		{"[::]:443", "", "box.example.org", "https://box.example.org"},
		{"127.0.0.1:40123", "", "box", "https://127.0.0.1:40123"},
		{"[::1]:8443", "", "box", "https://[::1]:8443"},
		{"[::1]:443", "", "box", "https://[::1]"},
		{":8443", "chat.example.org", "box", "https://chat.example.org:8443"},
		{":443", "chat.example.org", "box", "https://chat.example.org"},
		{":8443", "", "", "https://localhost:8443"},
	}
	for _, tc := range cases {
		got, err := DefaultPublicURL(tc.listen, tc.acme, tc.host)
		if err != nil || got != tc.want {
			t.Errorf("DefaultPublicURL(%q, %q, %q) = %q, %v; want %q", tc.listen, tc.acme, tc.host, got, err, tc.want)
		}
	}
	if _, err := DefaultPublicURL(":8443", "", "bad host"); err == nil {
		t.Error("a hostname with a space made a URL")
	}
}

func TestOptionDefinitions(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range Options() {
		if seen[o.Name] || o.Name == ConfigOption {
			t.Errorf("option %q defined twice", o.Name)
		}
		seen[o.Name] = true
		if !regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`).MatchString(o.Name) {
			t.Errorf("option name %q is not lower-case-with-dashes", o.Name)
		}
		if o.Help == "" || o.Type == "" || o.set == nil {
			t.Errorf("option %q lacks help, type or setter", o.Name)
		}
		if o.Default == "" && o.DefaultDoc == "" && o.Example == "" {
			t.Errorf("option %q has neither a default nor an example for the reference file", o.Name)
		}
		// Every default and example is itself a valid value.
		for _, v := range []string{o.Default, o.Example} {
			if v == "" {
				continue
			}
			if err := o.set(&Config{}, v); err != nil {
				t.Errorf("option %q: value %q is invalid: %v", o.Name, v, err)
			}
		}
	}
	o, _ := Lookup("max-blob-size")
	if o.Flag() != "--max-blob-size" || o.Env() != "QRTALKD_MAX_BLOB_SIZE" || o.Key() != "max-blob-size" {
		t.Errorf("derived names: %s %s %s", o.Flag(), o.Env(), o.Key())
	}
}

func TestUsage(t *testing.T) {
	var b bytes.Buffer
	if err := WriteUsage(&b); err != nil {
		t.Fatal(err)
	}
	for _, o := range Options() {
		if !strings.Contains(b.String(), o.Flag()) || !strings.Contains(b.String(), "["+o.Env()+"]") {
			t.Errorf("usage lacks %s or %s", o.Flag(), o.Env())
		}
	}
	b.Reset()
	WriteUsage(&b, "data", "config")
	if strings.Contains(b.String(), "--listen") || !strings.Contains(b.String(), "--data DIR") || !strings.Contains(b.String(), "--config FILE") {
		t.Errorf("usage of data and config:\n%s", b.String())
	}
}

// TestReferenceFile keeps docs/qrtalkd.conf.example in sync with the
// definitions, and checks that every value it shows is accepted.
func TestReferenceFile(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReference(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", filepath.FromSlash(ReferencePath))
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v\nhint: run %s", err, RegenerateCommand)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Errorf("%s is out of date with internal/config.\nhint: run %s", ReferencePath, RegenerateCommand)
	}

	// Uncommenting every option line gives a file that parses, each value
	// of which is valid for its option.
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if m := regexp.MustCompile(`^#([a-z-]+ = .*)$`).FindStringSubmatch(l); m != nil {
			lines = append(lines, m[1])
		}
	}
	if len(lines) != len(Options()) {
		t.Fatalf("reference has %d option lines, want %d", len(lines), len(Options()))
	}
	settings, err := parseFile("reference", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range Options() {
		if err := o.set(&Config{}, settings[o.Name].val); err != nil {
			t.Errorf("reference value of %s: %v", o.Name, err)
		}
	}
}
