// Package web holds QRTalk's web client, the files of web/app embedded in
// the binary, and the http.Handler that serves them with the security
// headers a browser needs to run an end-to-end encrypted client safely: a
// strict Content-Security-Policy (no inline code, no third-party origin of
// any kind), no MIME sniffing, no referrer, the camera for this origin only.
//
// The files are ES modules and plain assets that the browser loads as they
// are: building the binary needs no Node and no bundler.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

//go:generate go run ./iconsgen app/icons

//go:embed app
var appFS embed.FS

// App returns the embedded web/app tree, rooted at web/app.
func App() fs.FS {
	sub, err := fs.Sub(appFS, "app")
	if err != nil {
		panic("web: embedded app missing: " + err.Error()) // cannot happen: go:embed guarantees it
	}
	return sub
}

// ContentSecurityPolicy is sent with every response of Handler.
//
//   - default-src 'none': anything not listed below is refused.
//   - script-src 'self': the app's own modules and the vendored QR code
//     libraries; no inline script, no eval.
//   - style-src 'self': app.css only; no style="" attributes (the UI sets
//     styles through classes or the CSSOM, which CSP allows).
//   - img-src 'self' blob: data:: decrypted image attachments are shown
//     from blob: URLs; the QR code encoder draws into data: URLs.
//   - media-src 'self' blob:: the camera preview (a MediaStream) and
//     decrypted audio or video attachments.
//   - connect-src 'self': the API and the live WebSocket on this origin
//     (CSP Level 3 lets 'self' match ws:/wss: of the same host); nothing
//     else, so decrypted data has nowhere else to go.
//   - manifest-src, worker-src 'self': the web app manifest and the
//     service worker that keeps the shell available offline.
//   - base-uri, form-action 'none': no <base> hijack, no form posts.
//   - frame-ancestors 'none': no framing, hence no clickjacking.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; " +
	"manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'"

// PermissionsPolicy lets this origin, and nothing it embeds, use the
// camera (to scan QR codes); every other powerful feature is off.
const PermissionsPolicy = "camera=(self), microphone=(), geolocation=(), payment=(), usb=(), " +
	"serial=(), hid=(), midi=(), display-capture=()"

// contentTypes maps the extensions of the app's files to their media types.
// A file of any other extension is served as application/octet-stream,
// which with nosniff the browser will neither run nor render.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".txt":         "text/plain; charset=utf-8",
	".md":          "text/plain; charset=utf-8",
}

// ContentType returns the media type Handler serves a file name with.
func ContentType(name string) string {
	base := path.Base(name)
	if t, ok := contentTypes[path.Ext(base)]; ok {
		return t
	}
	if strings.HasPrefix(base, "LICENSE") || strings.HasPrefix(base, "COPYING") {
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// A file is one embedded file, read once.
type file struct {
	data  []byte
	etag  string // strong validator: the SHA-256 of the content
	ctype string
	// gz is data compressed with gzip, kept when it saves at least a
	// tenth; gzEtag is its own validator (another representation).
	gz     []byte
	gzEtag string
}

// compressible reports whether a media type is text that gzip shrinks
// (not PNG, which is compressed already).
func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.Contains(ctype, "json") || strings.HasPrefix(ctype, "image/svg")
}

func gzipped(data []byte) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression) // a valid level: no error
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip
// (named, with a q-value other than 0).
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// VersionPlaceholder, in sw.js, is replaced by the app's version: a hash
// of every other file. A new binary with any change to the app therefore
// serves a byte-different service worker, which the browser installs; it
// names its cache after the version and deletes the older caches.
const VersionPlaceholder = "__QRTALK_APP_VERSION__"

// serviceWorker is the service worker's path in the app.
const serviceWorker = "sw.js"

// A site is a loaded app: every file, hashed, by URL path without the
// leading slash.
type site struct {
	files   map[string]*file
	version string
}

// loadSite reads and hashes every file of fsys once: the embedded files
// never change while the process runs.
func loadSite(fsys fs.FS) (*site, error) {
	s := &site{files: make(map[string]*file)}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		s.files[p] = &file{data: data, ctype: ContentType(p)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The version covers every file but the service worker itself, in a
	// fixed order.
	names := make([]string, 0, len(s.files))
	for p := range s.files {
		names = append(names, p)
	}
	sort.Strings(names)
	v := sha256.New()
	for _, p := range names {
		if p == serviceWorker {
			continue
		}
		sum := sha256.Sum256(s.files[p].data)
		fmt.Fprintf(v, "%s\x00%x\n", p, sum)
	}
	s.version = base64.RawURLEncoding.EncodeToString(v.Sum(nil)[:12])
	if sw, ok := s.files[serviceWorker]; ok {
		sw.data = bytes.ReplaceAll(sw.data, []byte(VersionPlaceholder), []byte(s.version))
	}
	for _, f := range s.files {
		sum := sha256.Sum256(f.data)
		f.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
		if compressible(f.ctype) {
			if gz := gzipped(f.data); len(gz) < len(f.data)-len(f.data)/10 {
				f.gz = gz
				f.gzEtag = `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `-gz"`
			}
		}
	}
	return s, nil
}

var (
	loadOnce sync.Once
	embedded *site
)

func embeddedSite() *site {
	loadOnce.Do(func() {
		var err error
		if embedded, err = loadSite(App()); err != nil {
			panic("web: reading the embedded app: " + err.Error()) // cannot happen with embed.FS
		}
	})
	return embedded
}

// Version returns the version of the embedded app, a hash of its files.
func Version() string { return embeddedSite().version }

// Files returns the URL paths of every embedded file.
func Files() []string {
	s := embeddedSite()
	out := make([]string, 0, len(s.files))
	for p := range s.files {
		out = append(out, "/"+p)
	}
	sort.Strings(out)
	return out
}

// Handler serves the web client: "/" is index.html, every other path an
// embedded file or a 404; directories are never listed. Only GET and HEAD
// are allowed.
//
// Every response carries the security headers. Caching: each file's ETag is
// its content hash and Cache-Control is "no-cache", so the browser keeps
// files but revalidates each use (a cheap 304): a new binary's app is
// picked up at the next load, never a stale mix of old and new modules.
// Text files go gzip-compressed to clients that accept it (compressed once,
// at the first use of the handler), each encoding with its own ETag.
func Handler() http.Handler { return embeddedSite() }

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Permissions-Policy", PermissionsPolicy)
	// Another site's window cannot keep a handle on ours (window.opener),
	// nor embed our files.
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for old browsers
	// No Strict-Transport-Security: the default certificate is
	// self-signed and pinned by fingerprint; HSTS would make a browser's
	// certificate warning impossible to pass, locking users out. An
	// operator with a CA certificate can add it at the proxy.
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setSecurityHeaders(h)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		plainError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	name := r.URL.Path
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	// A clean path only: no "..", no "//", no trailing slash (there are no
	// directories to list).
	if name != "/" && path.Clean(name) != name {
		plainError(w, http.StatusNotFound, "not found")
		return
	}
	if name == "/" {
		name = "/index.html"
	}
	f, ok := s.files[name[1:]]
	if !ok {
		plainError(w, http.StatusNotFound, "not found")
		return
	}
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "no-cache")
	if name == "/"+serviceWorker {
		// The service worker controls the whole origin from /.
		h.Set("Service-Worker-Allowed", "/")
	}
	body, etag := f.data, f.etag
	if f.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body, etag = f.gz, f.gzEtag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	// ServeContent answers If-None-Match with 304, HEAD without a body and
	// Range requests (of the representation sent); the zero modification
	// time leaves Last-Modified out, the ETag is the validator.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
}

func plainError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}
