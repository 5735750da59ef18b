package tlspin

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// SelfSignedLifetime is how long a certificate made by SelfSigned is valid.
// qrtalkd makes a new one at every start, and pinned clients do not check
// dates, so this only matters to tools such as curl.
const SelfSignedLifetime = 90 * 24 * time.Hour

// SelfSigned returns a self-signed TLS certificate whose public key is key's
// public key, so that a client pinning key's server fingerprint (Config)
// accepts it. hosts are the DNS names and IP addresses put in the
// certificate, for clients that check names; localhost, 127.0.0.1 and ::1
// are always added.
func SelfSigned(key *protocol.PrivateKey, hosts []string, now time.Time) (tls.Certificate, error) {
	// protocol.PrivateKey hides its crypto/rsa key; its PKCS #8 form gives
	// the crypto.Signer that x509 and tls need.
	k, err := x509.ParsePKCS8PrivateKey(key.Bytes())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlspin: server key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return tls.Certificate{}, fmt.Errorf("tlspin: server key %T is not a signer", k)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	fp := protocol.ServerFingerprint(key.Public())
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The fingerprint in the name lets a person match what a browser
		// shows with what qrtalkd printed.
		Subject:               pkix.Name{CommonName: "qrtalkd " + fp.String()[:16]},
		NotBefore:             now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:              now.Add(SelfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, h := range append(hosts, "localhost", "127.0.0.1", "::1") {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlspin: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: signer, Leaf: leaf}, nil
}
