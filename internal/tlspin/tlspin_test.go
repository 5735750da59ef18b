package tlspin

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// serve starts an HTTPS server with cert and returns its URL.
func serve(t *testing.T, cert *tls.Certificate) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	if cert != nil {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func get(url string, cfg *tls.Config) error {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && string(b) != "hello" {
		err = errors.New("wrong body " + string(b))
	}
	return err
}

func TestPinnedSelfSigned(t *testing.T) {
	key := testkeys.Key(0)
	fp := protocol.ServerFingerprint(key.Public())
	cert, err := SelfSigned(key, []string{"chat.example.org", "203.0.113.7"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if !slices.Contains(leaf.DNSNames, "chat.example.org") || !slices.Contains(leaf.DNSNames, "localhost") {
		t.Errorf("DNS names %v", leaf.DNSNames)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, want := range []string{"203.0.113.7", "127.0.0.1", "::1"} {
		if !slices.Contains(ips, want) {
			t.Errorf("IP addresses %v lack %s", ips, want)
		}
	}
	if err := VerifyLeaf(leaf, fp); err != nil {
		t.Errorf("the certificate does not hold the key: %v", err)
	}

	s := serve(t, &cert)
	if err := get(s.URL, Config(fp)); err != nil {
		t.Errorf("pinned client refused the pinned server: %v", err)
	}
	other := protocol.ServerFingerprint(testkeys.Key(1).Public())
	if err := get(s.URL, Config(other)); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong pin: got %v, want ErrMismatch", err)
	}
	// A pin is not enough to skip TLS 1.2 checks we do not make: 1.3 only.
	if Config(fp).MinVersion != tls.VersionTLS13 {
		t.Error("pinned config allows TLS below 1.3")
	}
	// The same pin accepted through the WebPKI-or-pinned config, with no
	// root that would trust a self-signed certificate.
	if err := get(s.URL, WebPKIOrPinned(fp, "127.0.0.1", nil)); err != nil {
		t.Errorf("WebPKIOrPinned refused the pinned server: %v", err)
	}
	if err := get(s.URL, WebPKIOrPinned(other, "127.0.0.1", nil)); !errors.Is(err, ErrMismatch) {
		t.Errorf("WebPKIOrPinned accepted an untrusted certificate with the wrong pin: %v", err)
	}
}

func TestWebPKIOrPinned(t *testing.T) {
	// httptest's certificate, trusted by its own client's roots, holds
	// some other key: the pin fails and the chain decides.
	s := serve(t, nil)
	roots := s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	fp := protocol.ServerFingerprint(testkeys.Key(0).Public())
	if err := get(s.URL, WebPKIOrPinned(fp, "example.com", roots)); err != nil {
		t.Errorf("trusted certificate refused: %v", err)
	}
	if err := get(s.URL, WebPKIOrPinned(fp, "wrong.example", roots)); err == nil {
		t.Error("trusted certificate accepted for a name it does not have")
	}
	if err := get(s.URL, Config(fp)); !errors.Is(err, ErrMismatch) {
		t.Errorf("strict pin accepted a CA certificate: %v", err)
	}
	// A certificate with a non-v1 key never matches a pin.
	if err := VerifyLeaf(s.Certificate(), fp); !errors.Is(err, ErrMismatch) {
		t.Errorf("VerifyLeaf of a foreign key: %v", err)
	}
}
