package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/qrtalk/qrtalk/protocol"
)

// ParseSize parses a byte size: a number with an optional unit. B, K/KiB,
// M/MiB, G/GiB and T/TiB are powers of 1024; KB, MB, GB and TB powers of
// 1000. Units are case-insensitive and may follow a space. A fraction is
// allowed with a unit (1.5GiB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, errors.New("not a size (use e.g. 100MiB, 1.5GB or 1048576)")
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("unknown size unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)", unit)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, errors.New("size too large")
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, errors.New("not a size (use e.g. 100MiB, 1.5GB or 1048576)")
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, errors.New("size too large")
	}
	return int64(v), nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// FormatSize writes n with the largest binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseBool accepts true/false, yes/no, on/off and 1/0, in any case.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, errors.New("must be true or false")
}

// ParseRate parses COUNT/PERIOD[:BURST], where PERIOD is s, m, h or a
// duration (10s), and BURST defaults to 2×COUNT; or "off" for no limit.
func ParseRate(s string) (Rate, error) {
	const form = "must be COUNT/PERIOD[:BURST], e.g. 50/s, 600/m:100 or 5/10s, or off"
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return Rate{Limit: rate.Inf}, nil
	}
	spec, burstS, hasBurst := strings.Cut(s, ":")
	countS, periodS, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, errors.New(form)
	}
	count, err := strconv.Atoi(countS)
	if err != nil || count < 1 || count > 1e6 {
		return Rate{}, errors.New(form + " (COUNT from 1 to 1000000)")
	}
	var period time.Duration
	switch periodS {
	case "s":
		period = time.Second
	case "m", "min":
		period = time.Minute
	case "h":
		period = time.Hour
	default:
		period, err = time.ParseDuration(periodS)
		if err != nil || period < time.Millisecond || period > 24*time.Hour {
			return Rate{}, errors.New(form + " (PERIOD from 1ms to 24h)")
		}
	}
	burst := 2 * count
	if hasBurst {
		burst, err = strconv.Atoi(burstS)
		if err != nil || burst < 1 || burst > 1e6 {
			return Rate{}, errors.New(form + " (BURST from 1 to 1000000)")
		}
	}
	return Rate{Limit: rate.Limit(float64(count) / period.Seconds()), Burst: burst}, nil
}

// checkAddr accepts host:port or :port, with a numeric port.
func checkAddr(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New("must be host:port or :port, e.g. :8443 or 127.0.0.1:8443 or [::1]:8443")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil {
		if _, err := checkDomain(host); err != nil {
			return fmt.Errorf("host %q is neither an IP address nor a host name", host)
		}
	}
	return nil
}

func checkPublicURL(v string) (string, error) {
	bad := errors.New("must be an https URL such as https://chat.example.org or https://203.0.113.7:8443")
	u, err := url.Parse(v)
	if err != nil {
		return "", bad
	}
	// Host names are case-insensitive; one server has one URL in invites.
	u.Host = strings.ToLower(u.Host)
	s, err := protocol.CheckServerURL(u.String())
	if err != nil {
		return "", bad
	}
	return s, nil
}

// checkDomain accepts a DNS name: labels of letters, digits and hyphens.
func checkDomain(v string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(v, "."))
	bad := errors.New("must be a domain name such as chat.example.org (no scheme, no port)")
	if d == "" || len(d) > 253 || net.ParseIP(d) != nil {
		return "", bad
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", bad
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", bad
			}
		}
	}
	return d, nil
}

func checkEmail(v string) error {
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" {
		return errors.New("must be a plain e-mail address such as admin@example.org")
	}
	return nil
}

// parseCIDRs parses a comma-separated list of prefixes or single addresses
// and returns them masked and canonical.
func parseCIDRs(v string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()).String())
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network such as 10.0.0.0/8 or an IP address", f)
		}
		out = append(out, p.Masked().String())
	}
	return out, nil
}

// checkPostgresURL checks the form of a postgres:// URL; the database
// itself is checked when qrtalkd connects.
func checkPostgresURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return errors.New("not a valid postgres:// URL")
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return errors.New("a postgres:// URL needs a host (postgres://user@host:5432/database)")
	}
	return nil
}

// checkBusURL checks a NATS URL, or a comma-separated list of them.
func checkBusURL(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			return errors.New("not a valid URL")
		}
		switch {
		case u.Scheme != "nats" && u.Scheme != "tls":
			return errors.New("must be nats://host:port or tls://host:port (several separated by commas)")
		case u.Hostname() == "":
			return errors.New("a NATS URL needs a host")
		case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
			return errors.New("a NATS URL has no path or query")
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("port %q must be a number from 1 to 65535", p)
			}
		}
	}
	return nil
}

// checkSubjectPrefix checks a NATS subject prefix: tokens of letters,
// digits, '-' and '_', separated by dots.
func checkSubjectPrefix(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	for tok := range strings.SplitSeq(v, ".") {
		if tok == "" {
			return errors.New("has an empty token (two dots, or a dot at an end)")
		}
		for _, r := range tok {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return errors.New("only letters, digits, '-', '_' and dots")
			}
		}
	}
	return nil
}

// redactSecret hides the password in a URL-valued setting (each of a
// comma-separated list), for error messages.
func redactSecret(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = "(unparsable URL)"
			}
			continue
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx") // a token
			}
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
