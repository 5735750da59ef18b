package protocol

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MaxURISize bounds the length of a qrtalk: URI accepted by the parsers.
const MaxURISize = 2048

// A ContactCard is what a user shows as a QR code so that a contact can add
// them and verify their identity key in one step:
//
//	qrtalk:contact?v=1&s=<server URL>&sfp=<server fingerprint>&u=<user ID>&fp=<identity fingerprint>
type ContactCard struct {
	Server   string      // https URL of the user's server
	ServerFP Fingerprint // fingerprint of the server's key
	User     UserID
	Identity Fingerprint // fingerprint of the user's identity key
}

// An Invite lets a new user register on a server:
//
//	qrtalk:invite?v=1&s=<server URL>&sfp=<server fingerprint>&t=<token>
type Invite struct {
	Server   string
	ServerFP Fingerprint
	Token    string // opaque to clients; 16 to 128 characters [A-Za-z0-9_-]
}

// URI returns the card as a qrtalk: URI.
func (c ContactCard) URI() string {
	return "qrtalk:contact?v=1&s=" + url.QueryEscape(c.Server) + "&sfp=" + c.ServerFP.String() +
		"&u=" + c.User.String() + "&fp=" + c.Identity.String()
}

// Verify checks, in constant time, that identity is the key whose
// fingerprint the card carries. It is the check that makes a scanned QR
// code an in-person verification.
func (c ContactCard) Verify(identity *PublicKey) error {
	if !c.Identity.Equal(IdentityFingerprint(identity)) {
		return fmt.Errorf("%w: identity key does not match the scanned fingerprint", ErrMismatch)
	}
	return nil
}

// URI returns the invite as a qrtalk: URI.
func (i Invite) URI() string {
	return "qrtalk:invite?v=1&s=" + url.QueryEscape(i.Server) + "&sfp=" + i.ServerFP.String() +
		"&t=" + url.QueryEscape(i.Token)
}

// ParseContactCard parses a qrtalk:contact URI.
func ParseContactCard(s string) (ContactCard, error) {
	var c ContactCard
	q, err := parseURI(s, "contact", "s", "sfp", "u", "fp")
	if err != nil {
		return c, err
	}
	if c.Server, err = CheckServerURL(q["s"]); err != nil {
		return c, err
	}
	if c.ServerFP, err = ParseFingerprint(q["sfp"]); err != nil {
		return c, err
	}
	if c.User, err = ParseUserID(q["u"]); err != nil {
		return c, err
	}
	if c.Identity, err = ParseFingerprint(q["fp"]); err != nil {
		return c, err
	}
	return c, nil
}

// ParseInvite parses a qrtalk:invite URI.
func ParseInvite(s string) (Invite, error) {
	var i Invite
	q, err := parseURI(s, "invite", "s", "sfp", "t")
	if err != nil {
		return i, err
	}
	if i.Server, err = CheckServerURL(q["s"]); err != nil {
		return i, err
	}
	if i.ServerFP, err = ParseFingerprint(q["sfp"]); err != nil {
		return i, err
	}
	if err := CheckToken(q["t"]); err != nil {
		return i, err
	}
	i.Token = q["t"]
	return i, nil
}

// CheckToken reports whether t has the form of an invite token.
func CheckToken(t string) error {
	if len(t) < 16 || len(t) > 128 {
		return fmt.Errorf("%w: token must be 16 to 128 characters", ErrMalformed)
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: token has a character outside [A-Za-z0-9_-]", ErrMalformed)
		}
	}
	return nil
}

// CheckServerURL validates a server URL, https://host[:port][/path], and
// returns its canonical form, by the grammar of docs/PROTOCOL.md section 7:
// ASCII only, no query, fragment or user information, a port from 1 to
// 65535 without a leading zero, the host's letters in lower case, the path
// kept as written but for its trailing slashes. The check is idempotent.
func CheckServerURL(s string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: server URL must be https://host[:port][/path]: %s in %q", ErrMalformed, why, s)
	}
	if len(s) > MaxURISize {
		return bad("too long")
	}
	if strings.ContainsAny(s, "?#@\\ \t\r\n") {
		return bad("a query, fragment, user information or white space")
	}
	if len(s) < 8 || !strings.EqualFold(s[:8], "https://") {
		return bad("not https")
	}
	rest := s[8:]
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return bad("an unclosed IPv6 literal")
		}
		host, port = authority[:end+1], authority[end+1:]
		if ip, err := netip.ParseAddr(host[1 : len(host)-1]); err != nil || !ip.Is6() || ip.Zone() != "" {
			return bad("a malformed IPv6 literal")
		}
		if port != "" && port[0] != ':' {
			return bad("text after the IPv6 literal")
		}
		port = strings.TrimPrefix(port, ":")
		if strings.HasPrefix(authority[end+1:], ":") && port == "" {
			return bad("an empty port")
		}
	} else {
		if i := strings.IndexByte(authority, ':'); i >= 0 {
			host, port = authority[:i], authority[i+1:]
			if port == "" {
				return bad("an empty port")
			}
		}
		if host == "" {
			return bad("no host")
		}
		for i := 0; i < len(host); i++ {
			if !isRegName(host[i]) {
				return bad("a character not allowed in a host name")
			}
		}
	}
	if port != "" {
		// Decimal digits only: strconv.Atoi alone would take "+443".
		n, err := strconv.Atoi(port)
		if err != nil || strings.Trim(port, "0123456789") != "" || n < 1 || n > 65535 || port[0] == '0' || len(port) > 5 {
			return bad("a port outside 1 to 65535")
		}
		port = ":" + port
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '%':
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return bad("a malformed % escape")
			}
			i += 2
		case isRegName(c) || c == ':' || c == '/' || c == '[' || c == ']':
		default:
			return bad("a character not allowed in a path")
		}
	}
	return "https://" + asciiLower(host) + port + strings.TrimRight(path, "/"), nil
}

// isRegName: the characters of an RFC 3986 reg-name without escapes.
func isRegName(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=", c) >= 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// parseURI checks the scheme, kind and version of a qrtalk: URI and returns
// its parameters, each of which must appear exactly once; no others may.
func parseURI(s, kind string, keys ...string) (map[string]string, error) {
	if len(s) > MaxURISize {
		return nil, fmt.Errorf("%w: URI is %d bytes, at most %d", ErrTooLarge, len(s), MaxURISize)
	}
	s = strings.TrimSpace(s)
	prefix := "qrtalk:" + kind + "?"
	if !strings.HasPrefix(s, prefix) {
		if strings.HasPrefix(s, "qrtalk:") {
			got, _, _ := strings.Cut(strings.TrimPrefix(s, "qrtalk:"), "?")
			return nil, fmt.Errorf("%w: this is a qrtalk:%s code, not a qrtalk:%s code", ErrMalformed, got, kind)
		}
		return nil, fmt.Errorf("%w: not a qrtalk:%s URI", ErrMalformed, kind)
	}
	vals, err := url.ParseQuery(s[len(prefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: URI query: %v", ErrMalformed, err)
	}
	if v := vals["v"]; len(v) != 1 || v[0] != "1" {
		return nil, fmt.Errorf("%w: qrtalk:%s version %q", ErrVersion, kind, strings.Join(v, ","))
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		v := vals[k]
		if len(v) != 1 {
			return nil, fmt.Errorf("%w: URI must have exactly one %q parameter", ErrMalformed, k)
		}
		out[k] = v[0]
	}
	if len(vals) != len(keys)+1 {
		return nil, fmt.Errorf("%w: URI has unknown parameters", ErrMalformed)
	}
	return out, nil
}
