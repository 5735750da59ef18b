package server

import (
	"net/http"
	"strings"

	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/web"
)

// fallback answers every request that no API route matched: GET and HEAD
// outside the API get the web client (embedded in the binary, package web);
// anything else, and every unknown path under /v1/, gets the JSON "no such
// route" error of the catalogue, so that API clients never receive HTML.
func (s *Server) fallback() http.Handler {
	app := web.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !isAPIPath(r.URL.Path) {
			app.ServeHTTP(w, r)
			return
		}
		writeError(w, api.ErrNoRoute.With("%s %s", r.Method, r.URL.Path))
	})
}

// isAPIPath reports whether p is /v1 or under it, where only the JSON API
// answers. Any other API version to come gets its own prefix here.
func isAPIPath(p string) bool {
	return p == "/v1" || strings.HasPrefix(p, "/v1/")
}
