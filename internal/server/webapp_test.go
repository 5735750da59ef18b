package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/web"
)

// The server's catch-all serves the web client for GET and HEAD outside
// /v1/, with its security headers, and keeps the JSON "no such route"
// error for everything else: API clients never get HTML.
func TestWebApp(t *testing.T) {
	ts := newTestServer(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client.PinnedTLSConfig(ts.opts.ServerFP)}}
	do := func(method, path string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, ts.ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	for _, p := range []string{"/", "/index.html", "/app.css", "/sw.js", "/manifest.webmanifest", "/js/ui/main.js", "/?invite=x"} {
		resp, body := do("GET", p)
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", p, resp.StatusCode, len(body))
		}
		if resp.Header.Get("Content-Security-Policy") != web.ContentSecurityPolicy {
			t.Errorf("GET %s: CSP %q", p, resp.Header.Get("Content-Security-Policy"))
		}
	}
	if resp, _ := do("GET", "/"); !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /: Content-Type %q", resp.Header.Get("Content-Type"))
	}
	if resp, body := do("HEAD", "/"); resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD /: %d, %d bytes", resp.StatusCode, len(body))
	}
	// An unknown file of the app: a plain 404 with the headers, no listing.
	for _, p := range []string{"/nope.js", "/js/", "/vendor/"} {
		resp, _ := do("GET", p)
		if resp.StatusCode != 404 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	// The API's unknown routes stay JSON errors of the catalogue.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/nowhere"}, {"GET", "/v1"}, {"GET", "/v1/"}, {"HEAD", "/v1/nowhere"},
		{"POST", "/"}, {"POST", "/index.html"}, {"PUT", "/app.css"}, {"DELETE", "/v1/info"},
		{"GET", "/v1/provision/00112233445566778899aabbccddeeff"},
	} {
		resp, body := do(c.method, c.path)
		if c.method == "HEAD" {
			if resp.StatusCode != api.ErrNoRoute.HTTP || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("HEAD %s: %d %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			continue
		}
		wantError(t, c.method+" "+c.path, resp.StatusCode, body, api.ErrNoRoute)
	}
	// And the API itself still answers.
	if resp, body := do("GET", "/v1/info"); resp.StatusCode != 200 || !strings.Contains(string(body), `"protocol_version"`) {
		t.Errorf("GET /v1/info: %d %s", resp.StatusCode, body)
	}
}
