package server

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/node/api"
)

// checkPageHeaders fails t unless resp is a page file of type ctype with
// the headers that keep other sites from framing or reading it.
func checkPageHeaders(t *testing.T, what string, resp *http.Response, ctype string) {
	t.Helper()
	hd := resp.Header
	if resp.StatusCode != http.StatusOK || hd.Get("Content-Type") != ctype {
		t.Errorf("%s: %s, Content-Type %q; want 200 and %q", what, resp.Status, hd.Get("Content-Type"), ctype)
	}
	csp := hd.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: Content-Security-Policy %q lacks %s", what, csp, d)
		}
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer", "Cross-Origin-Resource-Policy": "same-origin"} {
		if hd.Get(k) != v {
			t.Errorf("%s: %s %q, want %q", what, k, hd.Get(k), v)
		}
	}
}

// The status page is served at / with its files under /ui/, each with
// its type and the headers that keep it its own; a file it names is
// there, one it does not name is not.
func TestPageServed(t *testing.T) {
	srv, _ := guarded(t, GuardConfig{Addr: "127.0.0.1:5150"})
	resp, index := call(t, srv, "GET", "/", "")
	checkPageHeaders(t, "/", resp, "text/html; charset=utf-8")
	if !strings.Contains(index, "<title>Mycel node</title>") {
		t.Fatalf("/ is not the status page:\n%s", index)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(index, -1)
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	if len(refs) != 3 {
		t.Errorf("the page names %v, want its script, its style and its icon", refs)
	}
	for _, m := range refs {
		ref := m[1]
		if !strings.HasPrefix(ref, PageAssets) {
			t.Errorf("the page loads %s, not one of its own files", ref)
			continue
		}
		resp, body := call(t, srv, "GET", ref, "")
		checkPageHeaders(t, ref, resp, types[ref[strings.LastIndexByte(ref, '.'):]])
		if len(body) < 100 {
			t.Errorf("%s: %d bytes", ref, len(body))
		}
		// Unchanged, it is not sent again.
		if resp, _ := call(t, srv, "GET", ref, "", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s with its ETag: %s, want 304", ref, resp.Status)
		}
	}
	if resp, body := call(t, srv, "HEAD", "/", ""); resp.StatusCode != http.StatusOK || body != "" {
		t.Errorf("HEAD /: %s, %d bytes", resp.Status, len(body))
	}
	for _, p := range []string{"/ui/", "/ui/nope.js", "/ui/page/app.js", "/index.html", "/nope"} {
		if resp, _ := call(t, srv, "GET", p, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %s, want 404", p, resp.Status)
		}
	}
	if resp, _ := call(t, srv, "POST", "/", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405", resp.Status)
	}
}

// The page stands behind the guard: a name the node does not have is
// refused (DNS rebinding), as is another site's page loading its files;
// a link of another site may open the page, and not the API.
func TestPageGuarded(t *testing.T) {
	srv, _ := guarded(t, GuardConfig{Addr: "127.0.0.1:5150"})
	for _, tc := range []struct {
		what, path string
		headers    []string
		want       int
	}{
		{"a rebound name", "/", []string{"Host", "evil.example:5150"}, http.StatusForbidden},
		{"another site's script tag", "/ui/app.js", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "script"}, http.StatusForbidden},
		{"another site's fetch", "/", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Dest", "empty"}, http.StatusForbidden},
		{"another site's frame", "/", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "iframe"}, http.StatusForbidden},
		{"a link of another site to the API", "/api/v0/status", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}, http.StatusForbidden},
		{"a link of another site to the page", "/", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}, http.StatusOK},
		{"the address typed", "/", []string{"Sec-Fetch-Site", "none", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}, http.StatusOK},
		{"the page's own script", "/ui/app.js", []string{"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "script"}, http.StatusOK},
		{"the page's own call", "/api/v0/status", []string{"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Dest", "empty"}, http.StatusOK},
	} {
		if resp, body := call(t, srv, "GET", tc.path, "", tc.headers...); resp.StatusCode != tc.want {
			t.Errorf("%s: %s %s, want %d", tc.what, resp.Status, body, tc.want)
		}
	}
}

// Off loopback the page's files need no token, and the API still does:
// the page sends it, from the fragment of its address.
func TestPageOffLoopback(t *testing.T) {
	srv, _ := guarded(t, GuardConfig{Addr: "0.0.0.0:5150"})
	for _, p := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		if resp, _ := call(t, srv, "GET", p, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s without the token: %s", p, resp.Status)
		}
	}
	for _, p := range []string{"/api/v0/status", "/api/v0/logs", "/metrics", "/ui/../api/v0/status"} {
		if resp, _ := call(t, srv, "GET", p, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without the token: %s, want 401", p, resp.Status)
		}
	}
	if resp, _ := call(t, srv, "GET", "/api/v0/status", "", "Authorization", "Bearer "+testToken); resp.StatusCode != http.StatusOK {
		t.Errorf("status with the token: %s", resp.Status)
	}
	if resp, _ := call(t, srv, "POST", "/", "", "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another site's POST to the page: %s, want 403", resp.Status)
	}
	_, js := call(t, srv, "GET", "/ui/app.js", "")
	if !strings.Contains(js, "#token=") && !strings.Contains(js, "token=([^&]+)") {
		t.Errorf("the page's script does not read the token from its address's fragment")
	}
}

// Every endpoint the page's script calls is a route of the API.
func TestPageCallsRoutes(t *testing.T) {
	srv, _ := guarded(t, GuardConfig{Addr: "127.0.0.1:5150"})
	_, js := call(t, srv, "GET", "/ui/app.js", "")
	calls := regexp.MustCompile("(?:api|act)\\([\"`](/[a-z/]+)").FindAllStringSubmatch(js, -1)
	seen := map[string]bool{}
	for _, m := range calls {
		seen[m[1]] = true
	}
	for _, p := range []string{"/status", "/logs", "/models", "/swarm/", "/train/jobs", "/train/jobs/", "/pause", "/resume"} {
		if !seen[p] {
			t.Errorf("the page does not call %s (it calls %v)", p, seen)
		}
	}
	mux := Handler(&importBackend{}).(*http.ServeMux)
	for p := range seen {
		method := "GET"
		if p == "/pause" || p == "/resume" {
			method = "POST"
		}
		path := "/api/v0" + p
		if strings.HasSuffix(p, "/") {
			path += "x"
		}
		req, _ := http.NewRequest(method, path, nil)
		if _, pattern := mux.Handler(req); pattern == "" {
			t.Errorf("the page calls %s %s, which is no route of the API", method, path)
		}
	}
}

// The page's address, as mycel status --page prints it: with the token
// in its fragment where the node wants it, and only there.
func TestPageURL(t *testing.T) {
	ctx := context.Background()
	srv, _ := guarded(t, GuardConfig{Addr: "127.0.0.1:5150"})
	if u, err := api.NewClient(srv.URL).WithToken(testToken).PageURL(ctx); err != nil || u != srv.URL+"/" {
		t.Errorf("on loopback: %q, %v; want %s/ without the token", u, err, srv.URL)
	}
	srv, _ = guarded(t, GuardConfig{Addr: "0.0.0.0:5150"})
	if u, err := api.NewClient(srv.URL).WithToken(testToken).PageURL(ctx); err != nil || u != srv.URL+"/#token="+testToken {
		t.Errorf("off loopback: %q, %v; want the token in the fragment", u, err)
	}
	if _, err := api.NewClient(srv.URL).PageURL(ctx); err == nil || !strings.Contains(err.Error(), api.EnvToken) {
		t.Errorf("off loopback without a token: %v; want how to give it", err)
	}
	if _, err := api.NewClient(srv.URL).WithToken("wrong").PageURL(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("off loopback with a wrong token: %v", err)
	}
}
