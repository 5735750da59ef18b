package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/protocol"
)

// maxJSONBody bounds the plain JSON bodies (registration).
const maxJSONBody = 16 << 10

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", api.ContentJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	writeJSON(w, e.HTTP, e)
}

// readBody reads a whole request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *api.Error) {
	if r.ContentLength > limit {
		return nil, api.ErrTooLarge.With("body exceeds %d bytes", limit)
	}
	body, err := readAllSized(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, api.ErrTooLarge.With("body exceeds %d bytes", limit)
		}
		return nil, api.ErrMalformed.With("reading body: %v", err)
	}
	return body, nil
}

// readAllSized reads r to its end. When the request said its length (n ≥
// 0), the buffer is allocated once at that size instead of grown by
// io.ReadAll's doublings (30% of the bytes allocated on the live path);
// a body longer or shorter than it said is still read whole or refused by
// the server's own length check.
func readAllSized(r io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, n+1) // +1: the read that meets EOF needs no growth
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// decodeJSON decodes exactly one JSON value, refusing unknown fields.
func decodeJSON(body []byte, v any) *api.Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.ErrBadJSON.With("%v", err)
	}
	if dec.More() {
		return api.ErrBadJSON.With("data after the JSON value")
	}
	return nil
}

// protocolError maps an error of package protocol to the API's catalogue,
// keeping the protocol's detail without repeating the sentinel's words.
func protocolError(err error, fallback *api.Error) *api.Error {
	pairs := []struct {
		sentinel error
		api      *api.Error
	}{
		{protocol.ErrVersion, api.ErrVersion},
		{protocol.ErrTooLarge, api.ErrTooLarge},
		{protocol.ErrKeySize, api.ErrBadKey},
		{protocol.ErrKeyExponent, api.ErrBadKey},
		{protocol.ErrBadSignature, api.ErrBadSignature},
		{protocol.ErrClockSkew, api.ErrClockSkew},
		{protocol.ErrReplay, api.ErrReplay},
	}
	for _, p := range pairs {
		if errors.Is(err, p.sentinel) {
			return p.api.With("%s", detail(err, p.sentinel))
		}
	}
	return fallback.With("%v", err)
}

// detail removes the sentinel's own text from an error's message.
func detail(err, sentinel error) string {
	msg := err.Error()
	msg = strings.Replace(msg, sentinel.Error()+": ", "", 1)
	return strings.Replace(msg, ": "+sentinel.Error(), "", 1)
}

// proxyList holds the networks whose X-Forwarded-For is believed.
type proxyList struct{ nets []netip.Prefix }

func parseProxies(cidrs []string) (*proxyList, error) {
	p := &proxyList{}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("server: trusted proxy %q: %w", c, err)
		}
		p.nets = append(p.nets, pfx.Masked())
	}
	return p, nil
}

func (p *proxyList) trusted(a netip.Addr) bool {
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the address a request came from: the peer, or, behind a
// trusted proxy, the last untrusted address in X-Forwarded-For.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap()
	if !s.proxies.trusted(a) {
		return a
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		h = h.Unmap()
		if !s.proxies.trusted(h) {
			return h
		}
		a = h
	}
	return a
}
