package daemon

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/qrtalk/qrtalk/internal/config"
	"github.com/qrtalk/qrtalk/internal/tlspin"
	"github.com/qrtalk/qrtalk/protocol"
)

// TLS policy. The minimum is TLS 1.2, not 1.3: our own clients pin the
// server key and ask for 1.3 (tlspin.Config), but the same listener serves
// the web client to browsers and answers load balancers and probes, some of
// which still speak only 1.2. For 1.2 only ECDHE key exchange with AEAD
// ciphers is offered (forward secrecy, no CBC); 1.3's suites are not
// configurable and all good.
func baseTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// tlsMode names where the certificate comes from, for logs and Info.
const (
	tlsSelfSigned = "self-signed (server key)"
	tlsFiles      = "certificate files"
	tlsACME       = "acme (Let's Encrypt)"
)

// serverTLS builds the main listener's TLS configuration.
//
// By default the certificate is self-signed and its public key IS the
// server key: a client that pinned the server fingerprint from an invite
// checks the TLS leaf against that same fingerprint (tlspin.Config) and
// needs no certificate authority. It is made anew at every start, so it
// always names the current public URL host, and nothing but the key itself
// needs to be kept.
func serverTLS(cfg *config.Config, key *protocol.PrivateKey, publicURL string, now time.Time) (*tls.Config, *autocert.Manager, string, error) {
	tc := baseTLSConfig()
	useTicketKeys(tc, key, time.Now)
	switch {
	case cfg.ACMEDomain != "":
		m := newACMEManager(cfg)
		ac := m.TLSConfig()
		tc.GetCertificate = ac.GetCertificate
		tc.NextProtos = ac.NextProtos // includes acme-tls/1 for TLS-ALPN-01
		return tc, m, tlsACME, nil
	case cfg.TLSCert != "":
		r, err := newCertReloader(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, nil, "", err
		}
		tc.GetCertificate = r.get
		return tc, nil, tlsFiles, nil
	default:
		u, err := url.Parse(publicURL)
		if err != nil {
			return nil, nil, "", err
		}
		cert, err := tlspin.SelfSigned(key, []string{u.Hostname()}, now)
		if err != nil {
			return nil, nil, "", err
		}
		tc.Certificates = []tls.Certificate{cert}
		return tc, nil, tlsSelfSigned, nil
	}
}

// newACMEManager returns the autocert manager for cfg: certificates for
// cfg.ACMEDomain only (any other SNI name is refused before Let's Encrypt
// is asked, so nobody can make us request certificates for their names),
// cached in <data>/acme.
func newACMEManager(cfg *config.Config) *autocert.Manager {
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(cfg.ACMEDomain),
		Cache:      autocert.DirCache(filepath.Join(cfg.Data, ACMEDir)),
		Email:      cfg.ACMEEmail,
	}
}

// certReloader serves a certificate from files and reloads them when they
// change, so that a renewal (certbot and the like) needs no restart.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, config.WithHint(err, "check --tls-cert and --tls-key: a PEM certificate chain and its PEM private key")
	}
	return r, nil
}

func (r *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	fi, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	r.cert, r.modTime = &cert, fi.ModTime()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) > 30*time.Second {
		r.checked = now
		// On any error keep serving the certificate we have: a renewal
		// half-written is better retried than served.
		if fi, err := os.Stat(r.certFile); err == nil && !fi.ModTime().Equal(r.modTime) {
			old, oldMod := r.cert, r.modTime
			if r.load() != nil {
				r.cert, r.modTime = old, oldMod
			}
		}
	}
	return r.cert, nil
}

// tlsTicketPeriod is how long one derived TLS session-ticket key seals new
// tickets; the one before it still opens them.
const tlsTicketPeriod = 24 * time.Hour

// useTicketKeys makes the TLS session tickets of tc sealed with keys
// derived from the server key (HKDF-SHA256, one per tlsTicketPeriod,
// the current and the previous one accepted), instead of crypto/tls's
// random per-process keys. So a client's TLS resumption survives a restart
// of qrtalkd and works on every node of a cluster (they share the server
// key): a reconnect storm after a restart costs no RSA signature per client
// (docs/PERFORMANCE.md, scenario e). Deriving them from the server key
// adds no secret to keep and none to lose: whoever has the server key can
// already impersonate the server. TLS 1.3 resumption still runs an ECDHE
// exchange (psk_dhe_ke), so a ticket key does not open recorded traffic
// (TLS 1.2 clients get no tickets: theirs would; see below);
// and inside TLS, the secure channel protects every request on its own.
// The keys are rotated at the first handshake of a new period.
func useTicketKeys(tc *tls.Config, key *protocol.PrivateKey, now func() time.Time) {
	var mu sync.Mutex
	current := int64(-1)
	rotate := func() {
		period := now().UnixMilli() / tlsTicketPeriod.Milliseconds()
		mu.Lock()
		defer mu.Unlock()
		if period == current {
			return
		}
		keys := make([][32]byte, 0, 2)
		for _, p := range []int64{period, period - 1} {
			k, err := hkdf.Key(sha256.New, key.Bytes(), nil, fmt.Sprintf("qrtalk/v1/tls-ticket-key/%d", p), 32)
			if err != nil {
				return // cannot happen for 32 bytes of SHA-256; crypto/tls keeps its own keys
			}
			keys = append(keys, [32]byte(k))
		}
		tc.SetSessionTicketKeys(keys)
		current = period
	}
	rotate()
	// TLS 1.2 gets no tickets: a 1.2 ticket holds the connection's master
	// secret and travels in the clear, so a key derived from server.key
	// would let whoever obtains that file later decrypt every recorded
	// 1.2 connection, its ECDHE handshake included. Made on the first 1.2
	// hello, once tc is complete (serverTLS sets its certificates after).
	var no12Once sync.Once
	var no12 *tls.Config
	tc.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) {
			no12Once.Do(func() {
				no12 = tc.Clone()
				no12.GetConfigForClient = nil
				no12.SessionTicketsDisabled = true
			})
			return no12, nil
		}
		rotate()
		return nil, nil // nil: go on with tc itself
	}
}
