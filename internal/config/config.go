// Package config is the one definition of qrtalkd's options.
//
// Each option is declared once, in Options, with its name, type, default and
// help text. From that declaration come its flag (--max-blob-size), its
// environment variable (QRTALKD_MAX_BLOB_SIZE), its config-file key
// (max-blob-size), the help text of the command, and the commented reference
// config file docs/qrtalkd.conf.example, which a test keeps in sync.
//
// A value is taken, in this order of precedence, from the command line, the
// environment, the config file (--config FILE or QRTALKD_CONFIG), or the
// default. Every value is validated, and an error names where the bad value
// came from: the flag, the variable, or the file and line.
package config

//go:generate go test -run TestReferenceFile -update .

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// EnvPrefix starts the name of every environment variable of qrtalkd.
const EnvPrefix = "QRTALKD_"

// ConfigOption is the name of the option that names the config file. It
// exists as a flag and an environment variable, but not as a key of the
// file itself.
const ConfigOption = "config"

// Registration modes, as the server package names them.
const (
	RegistrationInvite = "invite"
	RegistrationOpen   = "open"
	RegistrationClosed = "closed"
)

// Log formats.
const (
	LogText = "text"
	LogJSON = "json"
)

// A Rate is a token bucket: Limit requests per second on average, Burst at
// once. A Limit of rate.Inf means no limit.
type Rate struct {
	Limit rate.Limit
	Burst int
}

// Config is qrtalkd's configuration after defaults, the config file, the
// environment and the flags have been applied and validated.
type Config struct {
	// File is the config file that was read, or "" if none was.
	File string

	// Data is the data directory, as an absolute path.
	Data string
	// Store is where users, devices, invites and queues are kept: "" for
	// the SQLite file in Data, an absolute path for a SQLite file
	// elsewhere, or a postgres:// URL (see StoreIsPostgres).
	Store string
	// BlobDir is the directory of blob contents, as an absolute path, or ""
	// for blobs/ in Data (see BlobPath).
	BlobDir string
	// Bus is the NATS URL (or comma-separated URLs) that carries live
	// deliveries between the nodes of a cluster, or "" for a single node.
	Bus string
	// BusPrefix is the cluster's subject prefix on the bus.
	BusPrefix string
	// Listen is the address of the main (TLS) listener.
	Listen string
	// PublicURL is the https URL put in invites, without a trailing slash.
	// Empty means: derive it from the listener (see DefaultPublicURL).
	PublicURL string

	TLSCert string
	TLSKey  string

	ACMEDomain     string
	ACMEEmail      string
	ACMEHTTPListen string

	// MetricsListen is the address of the plain-HTTP metrics listener, or
	// "" for none.
	MetricsListen string

	Registration string
	MaxBlobSize  int64

	SessionLifetime time.Duration
	LiveLifetime    time.Duration
	AckTimeout      time.Duration
	SweepInterval   time.Duration
	ShutdownTimeout time.Duration

	RateIP        Rate
	RateDevice    Rate
	RateDirectory Rate

	// TrustedProxies are CIDR prefixes, masked (10.0.0.0/8).
	TrustedProxies []string
	LogIP          bool
	LogLevel       slog.Level
	LogFormat      string

	// Warnings are things worth telling the operator that do not stop the
	// server, such as an unknown QRTALKD_ variable (a typo, probably).
	Warnings []string
}

// BlobPath returns the directory of blob contents: BlobDir, or blobs/ in
// the data directory.
func (c *Config) BlobPath() string {
	if c.BlobDir != "" {
		return c.BlobDir
	}
	return filepath.Join(c.Data, "blobs")
}

// StoreIsPostgres reports whether Store names a PostgreSQL database.
func (c *Config) StoreIsPostgres() bool { return isPostgresURL(c.Store) }

func isPostgresURL(v string) bool {
	return strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://")
}

// An Option is one setting of qrtalkd.
type Option struct {
	// Name is the option's config-file key; the flag is "--"+Name and the
	// environment variable EnvPrefix + Name in upper case, '-' as '_'.
	Name string
	// Type names the kind of value, for the help text (ADDR, SIZE...).
	Type string
	// Default is the default value, as it would be written; "" is empty.
	Default string
	// DefaultDoc describes a default that is computed when qrtalkd starts;
	// it is shown instead of Default.
	DefaultDoc string
	// Help explains the option: what it does and why one would change it.
	Help string
	// Example is a value shown in the reference config file when the
	// default is empty or computed.
	Example string
	// Bool options can be given as a bare flag (--log-ip).
	Bool bool
	// Secret options are URLs that may hold a password: an error shows
	// the value with the password hidden.
	Secret bool

	set func(c *Config, v string) error
}

// Flag returns the option's command-line flag, e.g. "--listen".
func (o *Option) Flag() string { return "--" + o.Name }

// Env returns the option's environment variable, e.g. "QRTALKD_LISTEN".
func (o *Option) Env() string { return EnvName(o.Name) }

// Key returns the option's config-file key, e.g. "listen".
func (o *Option) Key() string { return o.Name }

// EnvName returns the environment variable of the option named name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Options returns the definitions of every option, in the order of the
// reference config file. Each call returns a fresh slice.
func Options() []Option {
	return []Option{
		{
			Name: "data", Type: "DIR",
			DefaultDoc: "$XDG_DATA_HOME/qrtalkd, or ~/.local/share/qrtalkd",
			Example:    "/var/lib/qrtalkd",
			Help: "Directory that holds the server key (server.key), the database (qrtalkd.db) " +
				"and the encrypted blobs (blobs/, unless blob-dir says otherwise). Created with mode 0700 on first start. " +
				"Back up server.key: clients pin its fingerprint.",
			set: func(c *Config, v string) error {
				if v == "" {
					return errors.New("must not be empty")
				}
				if strings.ContainsAny(v, "?#\x00") {
					return errors.New("must not contain '?', '#' or NUL (SQLite cannot open such a path)")
				}
				abs, err := filepath.Abs(v)
				if err != nil {
					return err
				}
				c.Data = abs
				return nil
			},
		},
		{
			Name: "store", Type: "STORE",
			DefaultDoc: "the SQLite file qrtalkd.db in the data directory",
			Example:    "postgres://qrtalk@db.internal:5432/qrtalk?sslmode=verify-full",
			Secret:     true,
			Help: "Where users, devices, invites and queued messages are kept. Empty: the SQLite file in the " +
				"data directory, for a single node. A path: a SQLite file there. A postgres:// URL: a PostgreSQL " +
				"database, which every node of a cluster shares (scale-out mode, with bus); the tables go in the " +
				"first schema of its search_path. Keep the password out of the URL: pgx reads PGPASSWORD and ~/.pgpass.",
			set: func(c *Config, v string) error {
				switch {
				case v == "":
				case isPostgresURL(v):
					if err := checkPostgresURL(v); err != nil {
						return err
					}
				default:
					if strings.Contains(v, "://") {
						return errors.New("must be empty, a file path (SQLite) or a postgres:// URL")
					}
					if strings.ContainsAny(v, "?#\x00") {
						return errors.New("must not contain '?', '#' or NUL (SQLite cannot open such a path)")
					}
					abs, err := filepath.Abs(v)
					if err != nil {
						return err
					}
					v = abs
				}
				c.Store = v
				return nil
			},
		},
		{
			Name: "blob-dir", Type: "DIR",
			DefaultDoc: "blobs in the data directory",
			Example:    "/mnt/qrtalk-blobs",
			Help: "Directory of the encrypted attachments (blobs), one file each. In a cluster it must be " +
				"one directory that every node mounts (NFS, for example): a blob uploaded through one node " +
				"is downloaded through another. Created with mode 0700 if missing.",
			set: func(c *Config, v string) error {
				if v == "" {
					c.BlobDir = ""
					return nil
				}
				if strings.ContainsRune(v, 0) {
					return errors.New("must not contain NUL")
				}
				abs, err := filepath.Abs(v)
				if err != nil {
					return err
				}
				c.BlobDir = abs
				return nil
			},
		},
		{
			Name: "bus", Type: "URL", Example: "nats://127.0.0.1:4222",
			Secret: true,
			Help: "NATS server that carries live deliveries and wake-ups between the nodes of a cluster " +
				"(scale-out mode): nats://host:4222 or tls://host:4222, several separated by commas for a NATS " +
				"cluster. Needs a postgres:// store shared by the nodes. Empty: a single node. When NATS is " +
				"unreachable, nodes keep working through the store and /readyz says degraded.",
			set: func(c *Config, v string) error {
				if v != "" {
					if err := checkBusURL(v); err != nil {
						return err
					}
				}
				c.Bus = v
				return nil
			},
		},
		{
			Name: "bus-prefix", Type: "SUBJECT", Default: "qrtalk",
			Help: "Subject prefix of this cluster on the bus: the nodes that share it route to each other. " +
				"Give each qrtalk cluster sharing one NATS a prefix of its own. Letters, digits, '-' and '_', " +
				"in tokens separated by dots.",
			set: func(c *Config, v string) error {
				if err := checkSubjectPrefix(v); err != nil {
					return err
				}
				c.BusPrefix = v
				return nil
			},
		},
		{
			Name: "listen", Type: "ADDR", Default: ":8443",
			Help: "Address of the HTTPS listener that clients connect to: host:port, or :port for every interface.",
			set: func(c *Config, v string) error {
				if err := checkAddr(v); err != nil {
					return err
				}
				c.Listen = v
				return nil
			},
		},
		{
			Name: "public-url", Type: "URL",
			DefaultDoc: "https://<listen host, or the machine's hostname>:<listen port>, or https://<acme-domain>",
			Example:    "https://chat.example.org",
			Help: "The https URL that clients reach this server at, put in every invite. " +
				"Set it when the server is behind a load balancer or a port mapping, " +
				"or when the machine's hostname is not the name clients use.",
			set: func(c *Config, v string) error {
				if v == "" {
					c.PublicURL = ""
					return nil
				}
				u, err := checkPublicURL(v)
				if err != nil {
					return err
				}
				c.PublicURL = u
				return nil
			},
		},
		{
			Name: "tls-cert", Type: "FILE", Example: "/etc/qrtalkd/fullchain.pem",
			Help: "PEM certificate chain to serve instead of the self-signed certificate. " +
				"With it, clients verify the server by the usual certificate authorities " +
				"and by the server key inside the secure channel. Needs tls-key.",
			set: func(c *Config, v string) error { c.TLSCert = v; return nil },
		},
		{
			Name: "tls-key", Type: "FILE", Example: "/etc/qrtalkd/privkey.pem",
			Help: "PEM private key of tls-cert. This is not the server key in the data directory.",
			set:  func(c *Config, v string) error { c.TLSKey = v; return nil },
		},
		{
			Name: "acme-domain", Type: "DOMAIN", Example: "chat.example.org",
			Help: "Get a certificate for this domain from Let's Encrypt (ACME), cached in <data>/acme. " +
				"The domain must point at this machine, and Let's Encrypt must reach it on port 80 " +
				"(see acme-http-listen) or, if listen is :443, on port 443.",
			set: func(c *Config, v string) error {
				if v == "" {
					c.ACMEDomain = ""
					return nil
				}
				d, err := checkDomain(v)
				if err != nil {
					return err
				}
				c.ACMEDomain = d
				return nil
			},
		},
		{
			Name: "acme-email", Type: "EMAIL", Example: "admin@example.org",
			Help: "Contact address given to Let's Encrypt for expiry notices. Optional.",
			set: func(c *Config, v string) error {
				if v != "" {
					if err := checkEmail(v); err != nil {
						return err
					}
				}
				c.ACMEEmail = v
				return nil
			},
		},
		{
			Name: "acme-http-listen", Type: "ADDR", Default: ":80",
			Help: "With acme-domain: where to answer Let's Encrypt's HTTP-01 challenges, which always " +
				"come to port 80 (binding it needs root or CAP_NET_BIND_SERVICE). Other requests there " +
				"are redirected to https. Empty: no HTTP listener; then only the TLS-ALPN-01 challenge " +
				"is possible, which needs listen on port 443.",
			set: func(c *Config, v string) error {
				if v != "" {
					if err := checkAddr(v); err != nil {
						return err
					}
				}
				c.ACMEHTTPListen = v
				return nil
			},
		},
		{
			Name: "metrics-listen", Type: "ADDR", Example: "127.0.0.1:9090",
			Help: "Address of a plain-HTTP listener for Prometheus (/metrics) and probes (/healthz, /readyz). " +
				"Empty: off. Keep it on a private interface.",
			set: func(c *Config, v string) error {
				if v != "" {
					if err := checkAddr(v); err != nil {
						return err
					}
				}
				c.MetricsListen = v
				return nil
			},
		},
		{
			Name: "registration", Type: "MODE", Default: RegistrationInvite,
			Help: "Who can create an account: invite (with a token from 'qrtalkd invite'), " +
				"open (anyone who reaches the server) or closed (nobody).",
			set: func(c *Config, v string) error {
				switch v {
				case RegistrationInvite, RegistrationOpen, RegistrationClosed:
					c.Registration = v
					return nil
				}
				return errors.New("must be invite, open or closed")
			},
		},
		{
			Name: "max-blob-size", Type: "SIZE", Default: "100MiB",
			Help: "Largest encrypted attachment a client may upload. Units: B, KiB, MiB, GiB " +
				"(K, M, G are the same), or KB, MB, GB (powers of 1000).",
			set: func(c *Config, v string) error {
				n, err := ParseSize(v)
				if err != nil {
					return err
				}
				if n < 1<<10 {
					return fmt.Errorf("%d bytes is less than 1KiB; did you mean %sMiB?", n, v)
				}
				if n > 1<<40 {
					return errors.New("is more than 1TiB")
				}
				c.MaxBlobSize = n
				return nil
			},
		},
		{
			Name: "session-lifetime", Type: "DURATION", Default: "1h",
			Help: "How long a device's secure-channel session lasts before the client must set up a new one. At most 1h.",
			set:  durationSetter(func(c *Config) *time.Duration { return &c.SessionLifetime }, time.Second, time.Hour),
		},
		{
			Name: "live-lifetime", Type: "DURATION", Default: "10m",
			Help: "Longest life of one live connection (WebSocket); the client then reconnects. " +
				"Keep it below the idle timeout of any proxy in front of the server.",
			set: durationSetter(func(c *Config) *time.Duration { return &c.LiveLifetime }, 10*time.Second, 24*time.Hour),
		},
		{
			Name: "ack-timeout", Type: "DURATION", Default: "3s",
			Help: "How long a message forwarded live waits for the device's acknowledgement before it is queued instead.",
			set:  durationSetter(func(c *Config) *time.Duration { return &c.AckTimeout }, 100*time.Millisecond, time.Minute),
		},
		{
			Name: "sweep-interval", Type: "DURATION", Default: "30s",
			Help: "How often expired messages, blobs and invites are deleted from disk. " +
				"Nothing expired is ever served, whatever this is.",
			set: durationSetter(func(c *Config) *time.Duration { return &c.SweepInterval }, time.Second, time.Hour),
		},
		{
			Name: "shutdown-timeout", Type: "DURATION", Default: "40s",
			Help: "On SIGINT or SIGTERM, how long in-flight requests (long-polls last up to 30s) " +
				"may take to finish before their connections are closed.",
			set: durationSetter(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, time.Second, 10*time.Minute),
		},
		{
			Name: "rate-ip", Type: "RATE", Default: "50/s:100",
			Help: "Requests allowed per client IP: COUNT/PERIOD[:BURST], PERIOD being s, m, h or a " +
				"duration such as 10s; BURST defaults to twice COUNT. \"off\" for no limit.",
			set: rateSetter(func(c *Config) *Rate { return &c.RateIP }),
		},
		{
			Name: "rate-device", Type: "RATE", Default: "200/s:400",
			Help: "Requests allowed per authenticated device, in the form of rate-ip.",
			set:  rateSetter(func(c *Config) *Rate { return &c.RateDevice }),
		},
		{
			Name: "rate-directory", Type: "RATE", Default: "2/s:30",
			Help: "Key-directory lookups allowed per device, in the form of rate-ip. " +
				"Low, so that nobody can walk the space of user IDs.",
			set: rateSetter(func(c *Config) *Rate { return &c.RateDirectory }),
		},
		{
			Name: "trusted-proxies", Type: "CIDRS", Example: "10.0.0.0/8,fd00::/8",
			Help: "Comma-separated networks (CIDR, or single IPs) of reverse proxies whose " +
				"X-Forwarded-For header is believed, for rate limits and logs. Empty: none.",
			set: func(c *Config, v string) error {
				p, err := parseCIDRs(v)
				if err != nil {
					return err
				}
				c.TrustedProxies = p
				return nil
			},
		},
		{
			Name: "log-ip", Type: "BOOL", Default: "false", Bool: true,
			Help: "Put client IP addresses in logs. Off by default: the fewer traces, the better.",
			set: func(c *Config, v string) error {
				b, err := ParseBool(v)
				if err != nil {
					return err
				}
				c.LogIP = b
				return nil
			},
		},
		{
			Name: "log-level", Type: "LEVEL", Default: "info",
			Help: "debug, info, warn or error. Logs never hold message content, keys or invite tokens.",
			set: func(c *Config, v string) error {
				switch strings.ToLower(v) {
				case "debug":
					c.LogLevel = slog.LevelDebug
				case "info":
					c.LogLevel = slog.LevelInfo
				case "warn", "warning":
					c.LogLevel = slog.LevelWarn
				case "error":
					c.LogLevel = slog.LevelError
				default:
					return errors.New("must be debug, info, warn or error")
				}
				return nil
			},
		},
		{
			Name: "log-format", Type: "FORMAT", Default: LogText,
			Help: "text (key=value lines) or json (one object per line), written to standard error.",
			set: func(c *Config, v string) error {
				switch v {
				case LogText, LogJSON:
					c.LogFormat = v
					return nil
				}
				return errors.New("must be text or json")
			},
		},
	}
}

// Lookup returns the definition of the option named name.
func Lookup(name string) (Option, bool) {
	for _, o := range Options() {
		if o.Name == name {
			return o, true
		}
	}
	return Option{}, false
}

func durationSetter(field func(*Config) *time.Duration, lo, hi time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration (use e.g. 90s, 10m, 1h30m)")
		}
		if d < lo || d > hi {
			return fmt.Errorf("must be between %v and %v", lo, hi)
		}
		*field(c) = d
		return nil
	}
}

func rateSetter(field func(*Config) *Rate) func(*Config, string) error {
	return func(c *Config, v string) error {
		r, err := ParseRate(v)
		if err != nil {
			return err
		}
		*field(c) = r
		return nil
	}
}

// DefaultPublicURL derives the URL put in invites when public-url is not
// set: the ACME domain if there is one, else the listener's host if it is a
// specific address, else hostname; the port is the listener's, left out
// when it is 443. listen is the address actually bound (so that port 0 has
// become a real port).
func DefaultPublicURL(listen, acmeDomain, hostname string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listen, err)
	}
	switch {
	case acmeDomain != "":
		host = acmeDomain
	case host == "" || isUnspecified(host):
		host = hostname
		if host == "" {
			host = "localhost"
		}
	}
	hp := net.JoinHostPort(host, port)
	if port == "443" {
		hp = host
		if strings.Contains(host, ":") {
			hp = "[" + host + "]"
		}
	}
	return checkPublicURL("https://" + hp)
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// Environment is what Load reads besides the command line. Its zero value
// is an empty environment, so that tests are hermetic; OSEnvironment is the
// process's.
type Environment struct {
	// LookupEnv returns an environment variable; nil means none is set.
	LookupEnv func(string) (string, bool)
	// Environ lists the environment as KEY=VALUE, to warn about unknown
	// QRTALKD_ variables; nil means none.
	Environ func() []string
}

// OSEnvironment returns the process's environment.
func OSEnvironment() Environment {
	return Environment{LookupEnv: os.LookupEnv, Environ: os.Environ}
}

func (e Environment) lookup(k string) (string, bool) {
	if e.LookupEnv == nil {
		return "", false
	}
	return e.LookupEnv(k)
}

// defaultData returns $XDG_DATA_HOME/qrtalkd or $HOME/.local/share/qrtalkd.
func defaultData(env Environment) (string, error) {
	if x, ok := env.lookup("XDG_DATA_HOME"); ok && filepath.IsAbs(x) {
		return filepath.Join(x, "qrtalkd"), nil
	}
	if h, ok := env.lookup("HOME"); ok && h != "" {
		return filepath.Join(h, ".local", "share", "qrtalkd"), nil
	}
	return "", WithHint(errors.New("no default data directory: neither XDG_DATA_HOME nor HOME is set"),
		"set one with --data DIR or "+EnvName("data"))
}
