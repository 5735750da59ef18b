// Package tlspin verifies a qrtalkd server's TLS certificate by the server
// key fingerprint that clients learn from an invite or a contact card.
//
// By default qrtalkd serves a self-signed certificate whose public key is
// the server's own RSA key, the key whose fingerprint (protocol.
// ServerFingerprint) the invite carries. A client that pins that fingerprint
// therefore needs no certificate authority: it checks that the leaf
// certificate holds the pinned key, and the TLS handshake (CertificateVerify,
// signed with that key) proves that the server holds the private half.
// Names, dates and chains are not checked; the pin is a stronger statement
// than any of them.
//
// A server with a certificate from a CA (--tls-cert, --acme-domain) serves a
// different key in TLS. Clients of such a server use WebPKIOrPinned, which
// accepts either the pinned key or a certificate that the usual roots
// verify for the server's name; the pin is then enforced by the secure
// channel inside TLS, whose setup is wrapped to the server key.
package tlspin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/qrtalk/qrtalk/protocol"
)

// ErrMismatch is returned when the server's certificate does not hold the
// pinned key.
var ErrMismatch = errors.New("tlspin: server certificate does not hold the pinned server key")

// Config returns a TLS client configuration that accepts only a server
// whose leaf certificate holds the key with fingerprint fp. It requires TLS
// 1.3, which is all qrtalkd's own clients need.
func Config(fp protocol.Fingerprint) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The usual verification (CA chain, name, dates) is replaced, not
		// skipped: VerifyConnection runs whatever InsecureSkipVerify says.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no certificate", ErrMismatch)
			}
			return VerifyLeaf(cs.PeerCertificates[0], fp)
		},
	}
}

// WebPKIOrPinned returns a TLS client configuration that accepts a server
// whose leaf certificate holds the key with fingerprint fp, or else one
// whose certificate chain roots verify for serverName (nil roots: the
// system's). Use it for servers that may have a CA-issued certificate, and
// check the server key in the secure channel.
func WebPKIOrPinned(fp protocol.Fingerprint, serverName string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         serverName,
		InsecureSkipVerify: true, // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no certificate", ErrMismatch)
			}
			pinErr := VerifyLeaf(cs.PeerCertificates[0], fp)
			if pinErr == nil {
				return nil
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				DNSName:       serverName,
				Roots:         roots,
				Intermediates: inter,
			})
			if err != nil {
				return fmt.Errorf("%w, and the certificate is not trusted: %v", pinErr, err)
			}
			return nil
		},
	}
}

// VerifyLeaf checks that cert holds the v1 server key with fingerprint fp.
func VerifyLeaf(cert *x509.Certificate, fp protocol.Fingerprint) error {
	pub, err := protocol.ParsePublicKey(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	if !protocol.ServerFingerprint(pub).Equal(fp) {
		return ErrMismatch
	}
	return nil
}
