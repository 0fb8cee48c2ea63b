package server

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"path"
	"strings"
)

// The status page: plain HTML, CSS and JavaScript that poll the control
// API and draw the node's state. It is served at "/" and its files under
// PageAssets. Off loopback its files need no token (they hold no secret):
// the page reads the token from its address's fragment, #token=..., which
// browsers never send, and sends it with its API calls.
//
//go:embed page
var pageFiles embed.FS

// PageAssets is the path prefix of the status page's scripts and styles.
const PageAssets = "/ui/"

// pageCSP lets the page load nothing but its own files and call nothing
// but its own origin, and no other site frame it.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// pageFile is one embedded file of the page, ready to serve.
type pageFile struct {
	body  []byte
	ctype string
	etag  string
}

// pageRoutes serves the status page at "/" and its files under
// PageAssets.
func pageRoutes(mux *http.ServeMux) {
	files := map[string]pageFile{}
	for _, name := range []string{"index.html", "app.js", "style.css", "icon.svg"} {
		b, err := pageFiles.ReadFile("page/" + name)
		if err != nil {
			panic(fmt.Sprintf("server: the status page's %s is not embedded: %v", name, err))
		}
		sum := sha256.Sum256(b)
		files[name] = pageFile{body: b, ctype: pageType(name), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	index := files["index.html"]
	delete(files, "index.html")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { servePage(w, r, index) })
	mux.HandleFunc("GET "+PageAssets+"{file}", func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.PathValue("file")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		servePage(w, r, f)
	})
}

func pageType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	panic("server: no content type for the status page's " + name)
}

// servePage answers with f and the headers that keep the page its own:
// no other site may frame it, load its files or make the browser read
// them as another type.
func servePage(w http.ResponseWriter, r *http.Request, f pageFile) {
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	hd.Set("Content-Security-Policy", pageCSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", f.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.body)
}

// isPage says whether r asks for the status page or one of its files,
// which the guard serves without the token.
func isPage(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/" || (strings.HasPrefix(r.URL.Path, PageAssets) && !strings.Contains(r.URL.Path[len(PageAssets):], "/"))
}

// pageNavigation says whether r is the browser opening the page itself
// from a link on another site: the guard lets that through (the page
// holds nothing another site can read, and no site can frame it), while
// it refuses another site's requests for the API.
func pageNavigation(r *http.Request) bool {
	return r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-Dest") == "document"
}
