package web

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, r)
	return w
}

// wantSecurityHeaders checks the headers every response must carry,
// errors included.
func wantSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{
		"default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
		"media-src 'self' blob:", "connect-src 'self'", "manifest-src 'self'", "worker-src 'self'",
		"base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
	} {
		if !slices.Contains(strings.Split(csp, "; "), d) {
			t.Errorf("%s: CSP lacks %q: %q", what, d, csp)
		}
	}
	// Nothing that would reopen what the policy closes.
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "unsafe-hashes", "*", "http:", "https:", "wasm-unsafe-eval"} {
		if strings.Contains(csp, bad) {
			t.Errorf("%s: CSP contains %q: %q", what, bad, csp)
		}
	}
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"X-Frame-Options":        "DENY",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
	pp := h.Get("Permissions-Policy")
	if !strings.Contains(pp, "camera=(self)") || !strings.Contains(pp, "microphone=()") || !strings.Contains(pp, "geolocation=()") {
		t.Errorf("%s: Permissions-Policy = %q, want the camera for self only", what, pp)
	}
}

func TestIndex(t *testing.T) {
	for _, method := range []string{"GET", "HEAD"} {
		w := get(t, method, "/", nil)
		if w.Code != 200 {
			t.Fatalf("%s /: %d", method, w.Code)
		}
		wantSecurityHeaders(t, method+" /", w.Header())
		if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s /: Content-Type %q", method, ct)
		}
		index, _ := fs.ReadFile(App(), "index.html")
		if method == "GET" && w.Body.String() != string(index) {
			t.Errorf("GET / is not index.html")
		}
		if method == "HEAD" && w.Body.Len() != 0 {
			t.Errorf("HEAD / has a body of %d bytes", w.Body.Len())
		}
	}
	// The query string of a qrtalk: link opened in the browser still gets
	// the app.
	if w := get(t, "GET", "/?invite=qrtalk%3Ainvite%3Fv%3D1", nil); w.Code != 200 {
		t.Errorf("GET /?invite=...: %d", w.Code)
	}
}

func TestEveryFileServed(t *testing.T) {
	paths := Files()
	if len(paths) < 10 {
		t.Fatalf("only %d embedded files: %v", len(paths), paths)
	}
	for _, p := range paths {
		want, err := fs.ReadFile(App(), p[1:])
		if err != nil {
			t.Fatal(err)
		}
		if p == "/sw.js" {
			if !strings.Contains(string(want), VersionPlaceholder) {
				t.Errorf("sw.js lacks %s: its cache would not change with the app", VersionPlaceholder)
			}
			want = []byte(strings.ReplaceAll(string(want), VersionPlaceholder, Version()))
		}
		w := get(t, "GET", p, nil)
		if w.Code != 200 {
			t.Errorf("GET %s: %d", p, w.Code)
			continue
		}
		wantSecurityHeaders(t, p, w.Header())
		if w.Body.String() != string(want) {
			t.Errorf("GET %s: body differs from the embedded file", p)
		}
		if ct := w.Header().Get("Content-Type"); ct != ContentType(p) || ct == "" {
			t.Errorf("GET %s: Content-Type %q, want %q", p, ct, ContentType(p))
		}
		sum := sha256.Sum256(want)
		if etag := w.Header().Get("ETag"); etag != `"`+base64.RawURLEncoding.EncodeToString(sum[:18])+`"` {
			t.Errorf("GET %s: ETag %q is not the content hash", p, etag)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache (revalidate every use)", p, cc)
		}
		// Revalidation: the same ETag gives 304, another one the file.
		if w := get(t, "GET", p, map[string]string{"If-None-Match": w.Header().Get("ETag")}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("GET %s with its ETag: %d, %d bytes; want 304, none", p, w.Code, w.Body.Len())
		}
		if w := get(t, "GET", p, map[string]string{"If-None-Match": `"an-older-version"`}); w.Code != 200 {
			t.Errorf("GET %s with a stale ETag: %d, want 200", p, w.Code)
		}
	}
}

// Any change to a file of the app changes the service worker's bytes, so
// that browsers install it and replace the cached shell; a change to the
// service worker alone changes its bytes too.
func TestVersionFollowsEveryFile(t *testing.T) {
	base := fstest.MapFS{
		"index.html":    {Data: []byte("<!doctype html>")},
		"js/ui/main.js": {Data: []byte("console.log(1)")},
		"sw.js":         {Data: []byte("const VERSION = '" + VersionPlaceholder + "';")},
	}
	serve := func(fsys fstest.MapFS) (version, body, etag string) {
		s, err := loadSite(fsys)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", "/sw.js", nil))
		return s.version, w.Body.String(), w.Header().Get("ETag")
	}
	v0, body0, etag0 := serve(base)
	if body0 != "const VERSION = '"+v0+"';" || len(v0) < 16 {
		t.Fatalf("sw.js = %q, version %q", body0, v0)
	}
	changed := func(name, data string) fstest.MapFS {
		m := fstest.MapFS{}
		for k, v := range base {
			m[k] = v
		}
		m[name] = &fstest.MapFile{Data: []byte(data)}
		return m
	}
	for _, c := range []struct{ name, data string }{
		{"js/ui/main.js", "console.log(2)"},
		{"index.html", "<!doctype html><title>x</title>"},
		{"icons/new.png", "png"},
	} {
		v, body, etag := serve(changed(c.name, c.data))
		if v == v0 || body == body0 || etag == etag0 {
			t.Errorf("changing %s left the service worker as it was (version %q)", c.name, v)
		}
	}
	_, body, etag := serve(changed("sw.js", "/* new */ const VERSION = '"+VersionPlaceholder+"';"))
	if body == body0 || etag == etag0 {
		t.Errorf("changing sw.js left its bytes as they were")
	}
	if v, _, _ := serve(base); v != v0 {
		t.Errorf("the same files give another version: %q, %q", v, v0)
	}
}

func TestGzip(t *testing.T) {
	compressed := 0
	for _, p := range Files() {
		plain := get(t, "GET", p, nil)
		gz := get(t, "GET", p, map[string]string{"Accept-Encoding": "br;q=1.0, gzip;q=0.8"})
		if gz.Code != 200 {
			t.Fatalf("GET %s with gzip: %d", p, gz.Code)
		}
		wantSecurityHeaders(t, p+" gzip", gz.Header())
		if gz.Header().Get("Content-Encoding") != "gzip" {
			if gz.Body.String() != plain.Body.String() || gz.Header().Get("ETag") != plain.Header().Get("ETag") {
				t.Errorf("GET %s: not compressed, yet another body or ETag", p)
			}
			if strings.HasSuffix(p, ".js") && len(plain.Body.Bytes()) > 4096 {
				t.Errorf("GET %s: a %d-byte module is not compressed", p, plain.Body.Len())
			}
			continue
		}
		compressed++
		zr, err := gzip.NewReader(gz.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || string(got) != plain.Body.String() {
			t.Errorf("GET %s: the gzip body does not decompress to the file (%v)", p, err)
		}
		if gz.Body.Len() >= plain.Body.Len() {
			t.Errorf("GET %s: gzip %d bytes, plain %d", p, gz.Body.Len(), plain.Body.Len())
		}
		etag := gz.Header().Get("ETag")
		if etag == plain.Header().Get("ETag") || etag == "" {
			t.Errorf("GET %s: the gzip representation has the ETag of the plain one", p)
		}
		if !strings.Contains(gz.Header().Get("Vary"), "Accept-Encoding") || !strings.Contains(plain.Header().Get("Vary"), "Accept-Encoding") {
			t.Errorf("GET %s: no Vary: Accept-Encoding", p)
		}
		if w := get(t, "GET", p, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag}); w.Code != http.StatusNotModified {
			t.Errorf("GET %s with its gzip ETag: %d", p, w.Code)
		}
		// gzip refused with q=0, or not offered: the plain file.
		for _, ae := range []string{"gzip;q=0", "identity", "deflate, br"} {
			if w := get(t, "GET", p, map[string]string{"Accept-Encoding": ae}); w.Header().Get("Content-Encoding") != "" || w.Body.String() != plain.Body.String() {
				t.Errorf("GET %s with Accept-Encoding %q: encoded %q", p, ae, w.Header().Get("Content-Encoding"))
			}
		}
	}
	if compressed < 5 {
		t.Errorf("only %d files are served compressed", compressed)
	}
	if get(t, "GET", "/icons/icon-512.png", map[string]string{"Accept-Encoding": "gzip"}).Header().Get("Content-Encoding") != "" {
		t.Errorf("a PNG is compressed again")
	}
}

func TestContentTypes(t *testing.T) {
	for name, want := range map[string]string{
		"/index.html":                           "text/html; charset=utf-8",
		"/app.css":                              "text/css; charset=utf-8",
		"/sw.js":                                "text/javascript; charset=utf-8",
		"/js/ui/main.js":                        "text/javascript; charset=utf-8",
		"/vendor/qrcode-generator/qrcode.mjs":   "text/javascript; charset=utf-8",
		"/vendor/jsqr/jsQR.js":                  "text/javascript; charset=utf-8",
		"/manifest.webmanifest":                 "application/manifest+json",
		"/icons/icon-192.png":                   "image/png",
		"/icons/icon-512.png":                   "image/png",
		"/icons/icon-maskable-512.png":          "image/png",
		"/icons/icon.svg":                       "image/svg+xml",
		"/vendor/jsqr/LICENSE":                  "text/plain; charset=utf-8",
		"/vendor/qrcode-generator/LICENSE":      "text/plain; charset=utf-8",
		"/vendor/VENDORED.md":                   "text/plain; charset=utf-8",
		"/something/unknown.bin (not embedded)": "application/octet-stream",
	} {
		name, _, _ = strings.Cut(name, " ")
		if got := ContentType(name); got != want {
			t.Errorf("ContentType(%s) = %q, want %q", name, got, want)
		}
		if strings.HasSuffix(name, ".bin") {
			continue
		}
		w := get(t, "GET", name, nil)
		if w.Code != 200 || w.Header().Get("Content-Type") != want {
			t.Errorf("GET %s: %d %q, want 200 %q", name, w.Code, w.Header().Get("Content-Type"), want)
		}
	}
	if got := get(t, "GET", "/sw.js", nil).Header().Get("Service-Worker-Allowed"); got != "/" {
		t.Errorf("sw.js: Service-Worker-Allowed %q", got)
	}
}

func TestNotFoundAndNoListings(t *testing.T) {
	for _, p := range []string{
		"/nope.html", "/js/", "/js", "/js/ui", "/js/ui/", "/vendor/", "/icons", "/index.html/",
		"/../web.go", "/js/../index.html", "//index.html", "/./index.html", "/app", "/web.go",
		"/.hidden", "/index.html%00",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = p // as the mux would pass it, unclean paths included
		w := httptest.NewRecorder()
		Handler().ServeHTTP(w, r)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %q: %d, want 404", p, w.Code)
		}
		wantSecurityHeaders(t, "404 "+p, w.Header())
		if strings.Contains(w.Body.String(), "<a href") || strings.Contains(w.Body.String(), "<pre>") {
			t.Errorf("GET %q: looks like a listing: %q", p, w.Body.String())
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("GET %q: Content-Type %q", p, ct)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		w := get(t, m, "/index.html", nil)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /index.html: %d Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
		wantSecurityHeaders(t, m, w.Header())
	}
}

// thirdParty finds what could make a browser reach another host: absolute
// URLs (any scheme a browser fetches), protocol-relative URLs in attributes
// and CSS, CSS imports, and web fonts.
var thirdParty = []*regexp.Regexp{
	// An absolute URL with a host: a name with a dot, localhost, or an IP
	// literal. "https://" alone, or a placeholder such as
	// "https://host[:port]" in a comment, names no host.
	regexp.MustCompile(`(?i)\b(?:https?|wss?|ftp)://(?:\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)+|localhost)[^\s"'<>)\x60]*`),
	regexp.MustCompile(`(?i)\b(?:src|href|action|poster|srcset|data)\s*=\s*["']?\s*//[^\s"'<>]*`),
	regexp.MustCompile(`(?i)url\(\s*["']?\s*//[^\s"')]*`),
	regexp.MustCompile(`(?i)@import\b[^;]*`),
	regexp.MustCompile(`(?i)@font-face\b`),
	regexp.MustCompile(`(?i)\bimportScripts\s*\(\s*["']\s*//[^"']*`),
	regexp.MustCompile(`(?i)\b(?:import|from)\s*\(?\s*["']//[^"']*`),
	regexp.MustCompile(`(?i)fonts\.(?:googleapis|gstatic)\.com|cdn\.jsdelivr|unpkg\.com|cdnjs\.`),
}

// allowed lists, per file, the matches that are no request: URLs in a
// vendored file's licence header or comments, and the SVG namespace name
// (an identifier that is never fetched). Each entry must still match, so
// the list cannot outlive what it excuses.
var allowed = map[string][]string{
	"icons/icon.svg": {
		"http://www.w3.org/2000/svg", // the SVG namespace
	},
	"vendor/qrcode-generator/qrcode.mjs": {
		"http://www.d-project.com/",                          // author's site, licence header comment
		"http://www.opensource.org/licenses/mit-license.php", // licence header comment
		"http://www.denso-wave.com/qrcode/faqpatent-e.html",  // trademark note, header comment
		"http://www.w3.org/2000/svg",                         // XML namespace of createSvgTag
	},
	"vendor/jsqr/jsQR.js": {
		"http://en.wikipedia.org/wiki/Bresenham", // a comment crediting the line algorithm
	},
	"vendor/jsqr/LICENSE": {
		"http://www.apache.org/licenses/", // the licence text itself
		"http://www.apache.org/licenses/LICENSE-2.0",
	},
}

// sameOrigin: a URL that names no host (there are none yet, but a test
// page might use one).
func TestNoThirdPartyReferences(t *testing.T) {
	used := map[string]bool{}
	n := 0
	err := fs.WalkDir(App(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		data, err := fs.ReadFile(App(), p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".png") {
			return nil // pixels; a PNG with a URL in a text chunk is still no request
		}
		for _, re := range thirdParty {
			for _, m := range re.FindAllString(string(data), -1) {
				if slices.Contains(allowed[p], m) {
					used[p+" "+m] = true
					continue
				}
				t.Errorf("%s: reference to another host: %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("scanned only %d files", n)
	}
	for p, urls := range allowed {
		for _, u := range urls {
			if !used[p+" "+u] {
				t.Errorf("allow-list entry %s %q matches nothing any more: remove it", p, u)
			}
		}
	}
}

// The scanner itself must catch what it is there to catch.
func TestThirdPartyScannerCatches(t *testing.T) {
	for _, bad := range []string{
		`<script src="https://cdn.example.com/x.js"></script>`,
		`<link href="//fonts.example.com/css" rel=stylesheet>`,
		`@import "theme.css";`,
		`body { background: url(//evil.example/bg.png) }`,
		`@font-face { font-family: X; src: local(X) }`,
		`fetch("http://tracker.example/p")`,
		`new WebSocket("wss://relay.example/")`,
		`importScripts('//cdn.example/w.js')`,
		`<img src=//pixel.example/p.gif>`,
		`import x from "//esm.example/x.js"`,
		`fetch("https://203.0.113.7/p")`,
		`new WebSocket("wss://[2001:db8::1]:8443/")`,
	} {
		found := false
		for _, re := range thirdParty {
			found = found || re.MatchString(bad)
		}
		if !found {
			t.Errorf("scanner misses %q", bad)
		}
	}
	for _, good := range []string{
		`<script type="module" src="js/ui/main.js"></script>`, `fetch('/v1/info')`, `new URL('/v1/live', location.href)`,
		`// server URL: https://host[:port][/path]`, `if (!s.startsWith("https://")) throw`,
	} {
		for _, re := range thirdParty {
			if re.MatchString(good) {
				t.Errorf("scanner flags same-origin %q", good)
			}
		}
	}
}

// No inline script or style anywhere in the HTML: the CSP would refuse
// them, and the app would break silently.
func TestNoInlineCode(t *testing.T) {
	inline := []*regexp.Regexp{
		regexp.MustCompile(`(?is)<script\b[^>]*>\s*[^<\s]`), // a script element with content
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?is)<style\b`),
		regexp.MustCompile(`(?i)=\s*["']?\s*javascript:`),
	}
	err := fs.WalkDir(App(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".html") {
			return err
		}
		data, _ := fs.ReadFile(App(), p)
		for _, re := range inline {
			if m := re.FindString(string(data)); m != "" {
				t.Errorf("%s: inline code %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// And no .js of the UI writes HTML or inline styles as text.
	err = fs.WalkDir(App(), "js/ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := fs.ReadFile(App(), p)
		for _, bad := range []string{".innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "setAttribute('style'", `setAttribute("style"`, "eval(", "new Function("} {
			if strings.Contains(string(data), bad) {
				t.Errorf("%s uses %s", p, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ExampleHandler() {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"))
	// Output: 200 text/html; charset=utf-8 nosniff
}
