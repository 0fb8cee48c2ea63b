package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mycel-net/mycel/node/api"
)

// importBackend counts the imports that reach it and answers status.
type importBackend struct {
	Backend
	imports atomic.Int32
}

func (b *importBackend) Status() api.Status { return api.Status{ID: "me"} }

func (b *importBackend) Import(context.Context, api.ImportRequest) (api.ImportResult, error) {
	b.imports.Add(1)
	return api.ImportResult{CID: "c"}, nil
}

const testToken = "0123456789abcdef"

// guarded serves a Handler over a fresh importBackend behind the guard of
// c (Token and TokenFile filled in when left out).
func guarded(t *testing.T, c GuardConfig) (*httptest.Server, *importBackend) {
	t.Helper()
	if c.Token == "" {
		c.Token, c.TokenFile = testToken, "/data/api-token"
	}
	g, err := NewGuard(c)
	if err != nil {
		t.Fatal(err)
	}
	b := &importBackend{}
	srv := httptest.NewServer(g.Wrap(Handler(b)))
	t.Cleanup(srv.Close)
	return srv, b
}

// call sends a request to srv with the headers given ("Host" sets the
// request's Host) and returns the response and its body.
func call(t *testing.T, srv *httptest.Server, method, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const importBody = `{"path": "/etc/passwd"}`

// On loopback the API answers requests to its loopback names and
// addresses, with any port, and to the allowed hosts; a name of anyone
// else's (a page that rebinds its own name to 127.0.0.1) is refused
// before the request does anything.
func TestGuardHost(t *testing.T) {
	srv, b := guarded(t, GuardConfig{Addr: "127.0.0.1:5150", AllowedHosts: []string{"mybox.lan", ".home.arpa"}})
	for _, host := range []string{"", "127.0.0.1:5150", "localhost:5150", "LOCALHOST", "localhost.:80", "[::1]:5150", "127.0.0.2",
		"mybox.lan:5150", "MyBox.Lan", "nas.home.arpa:1", "home.arpa"} {
		h := []string{}
		if host != "" {
			h = []string{"Host", host}
		}
		if resp, body := call(t, srv, "GET", "/api/v0/status", "", h...); resp.StatusCode != http.StatusOK {
			t.Errorf("Host %q: %s %s", host, resp.Status, body)
		}
	}
	for _, host := range []string{"evil.example", "evil.example:5150", "localhost.evil.example", "127.0.0.1.nip.io:5150",
		"192.168.1.5:5150", "0.0.0.0:5150", "mybox.lan.evil.example", "xhome.arpa", "[::1"} {
		resp, body := call(t, srv, "POST", "/api/v0/models/import", importBody, "Host", host)
		var e api.ErrorBody
		if resp.StatusCode != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "DNS rebinding") ||
			!strings.Contains(e.Error, "--allowed-hosts") {
			t.Errorf("Host %q: %s %s", host, resp.Status, body)
		}
	}
	if n := b.imports.Load(); n != 0 {
		t.Errorf("%d imports ran from refused requests", n)
	}

	// "*" turns the check off.
	srv, _ = guarded(t, GuardConfig{Addr: "127.0.0.1:5150", AllowedHosts: []string{"*"}})
	if resp, body := call(t, srv, "GET", "/api/v0/status", "", "Host", "anything.example"); resp.StatusCode != http.StatusOK {
		t.Errorf("Host with --allowed-hosts '*': %s %s", resp.Status, body)
	}
}

// A page of another site is refused, with no side effect, whether it
// sends its Origin or (a form, an image) only Sec-Fetch-Site; its CORS
// preflight gets no permission. Programs send no Origin and pass.
func TestGuardOrigin(t *testing.T) {
	srv, b := guarded(t, GuardConfig{Addr: "127.0.0.1:5150", AllowedHosts: []string{"mybox.lan"}, CORSOrigins: []string{"https://app.example"}})
	for _, h := range [][]string{
		{"Origin", "https://evil.example"},
		{"Origin", "http://evil.example:5150", "Host", "localhost:5150"},
		{"Origin", "null"},
		{"Origin", "https://app.example.evil.example"},
		{"Origin", "http://app.example"}, // not the scheme allowed
		{"Origin", "file://"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain"},
	} {
		for _, path := range []string{"/api/v0/models/import", "/v1/completions"} {
			resp, body := call(t, srv, "POST", path, importBody, h...)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%v to %s: %s (allow origin %q) %s", h, path, resp.Status, resp.Header.Get("Access-Control-Allow-Origin"), body)
			}
			if h[0] == "Origin" && !strings.Contains(body, "--cors-origins") {
				t.Errorf("%v to %s: the refusal does not say what allows an origin: %s", h, path, body)
			}
			if strings.HasPrefix(path, "/v1/") {
				var e struct {
					Error struct{ Message, Type string }
				}
				if json.Unmarshal([]byte(body), &e) != nil || e.Error.Message == "" {
					t.Errorf("%v to %s: not an OpenAI error: %s", h, path, body)
				}
			}
		}
	}
	if n := b.imports.Load(); n != 0 {
		t.Fatalf("%d imports ran from refused requests", n)
	}

	resp, _ := call(t, srv, "OPTIONS", "/api/v0/models/import", "",
		"Origin", "https://evil.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if resp.StatusCode/100 == 2 || resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight of another site: %s %v", resp.Status, resp.Header)
	}

	// The origins allowed: the one configured, pages on loopback and on
	// the allowed hosts (any port), and the request's own origin.
	for _, o := range []string{"https://app.example", "https://APP.example:443", "http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]", "http://mybox.lan:8000"} {
		resp, body := call(t, srv, "OPTIONS", "/v1/chat/completions", "",
			"Origin", o, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type, x-stainless-os")
		hd := resp.Header
		if resp.StatusCode != http.StatusNoContent || hd.Get("Access-Control-Allow-Origin") != o ||
			!strings.Contains(hd.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(hd.Get("Access-Control-Allow-Headers"), "Authorization") ||
			!strings.Contains(hd.Get("Access-Control-Allow-Headers"), "x-stainless-os") {
			t.Errorf("preflight of %s: %s %v %s", o, resp.Status, hd, body)
		}
		resp, body = call(t, srv, "POST", "/api/v0/models/import", importBody, "Origin", o, "Sec-Fetch-Site", "cross-site")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != o {
			t.Errorf("import from %s: %s %v %s", o, resp.Status, resp.Header, body)
		}
	}
	if n := b.imports.Load(); n != 6 {
		t.Errorf("%d imports from allowed origins, want 6", n)
	}
	if resp, body := call(t, srv, "GET", "/api/v0/status", "", "Origin", "http://mybox.lan:5150", "Host", "mybox.lan:5150"); resp.StatusCode != http.StatusOK {
		t.Errorf("same origin: %s %s", resp.Status, body)
	}
	for _, h := range [][]string{nil, {"Sec-Fetch-Site", "same-origin"}, {"Sec-Fetch-Site", "none"}, {"Sec-Fetch-Site", "same-site"}} {
		if resp, body := call(t, srv, "GET", "/api/v0/status", "", h...); resp.StatusCode != http.StatusOK {
			t.Errorf("%v: %s %s", h, resp.Status, body)
		}
	}

	// "*" allows every origin.
	srv, _ = guarded(t, GuardConfig{Addr: "127.0.0.1:5150", CORSOrigins: []string{"*"}})
	if resp, body := call(t, srv, "GET", "/api/v0/status", "", "Origin", "https://anywhere.example"); resp.StatusCode != http.StatusOK ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://anywhere.example" {
		t.Errorf("--cors-origins '*': %s %v %s", resp.Status, resp.Header, body)
	}
}

// Off loopback every request needs the token, compared whole; on
// loopback none does, and a client's key (an OpenAI SDK always sends
// one) is not looked at.
func TestGuardToken(t *testing.T) {
	srv, b := guarded(t, GuardConfig{Addr: "0.0.0.0:5150"})
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "Bearer " + testToken[:8]},
		{"Authorization", "Bearer " + testToken + "0"}, {"Authorization", testToken}, {"Authorization", "Basic " + testToken}, {"Authorization", "Bearer "}} {
		resp, body := call(t, srv, "POST", "/api/v0/models/import", importBody, h...)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "/data/api-token") || !strings.Contains(body, api.EnvToken) ||
			!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%v: %s %s", h, resp.Status, body)
		}
		resp, body = call(t, srv, "GET", "/v1/models", "", h...)
		var e struct {
			Error struct{ Message, Code string }
		}
		if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal([]byte(body), &e) != nil || !strings.HasSuffix(e.Error.Code, "api_key") {
			t.Errorf("%v to /v1: %s %s", h, resp.Status, body)
		}
	}
	if n := b.imports.Load(); n != 0 {
		t.Fatalf("%d imports ran without the token", n)
	}
	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken} {
		if resp, body := call(t, srv, "POST", "/api/v0/models/import", importBody, "Authorization", auth); resp.StatusCode != http.StatusOK {
			t.Errorf("%q: %s %s", auth, resp.Status, body)
		}
	}
	// Through the Go client; any address of the machine is a Host of a
	// node on every address, a name is not.
	cl := api.NewClient(srv.URL)
	if _, err := cl.Status(context.Background()); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("a client without the token: %v", err)
	}
	if st, err := cl.WithToken(testToken).Status(context.Background()); err != nil || st.ID != "me" {
		t.Errorf("a client with the token: %+v, %v", st, err)
	}
	if resp, body := call(t, srv, "GET", "/api/v0/status", "", "Authorization", "Bearer "+testToken, "Host", "192.168.1.5:5150"); resp.StatusCode != http.StatusOK {
		t.Errorf("an address of the node: %s %s", resp.Status, body)
	}
	resp, _ := call(t, srv, "GET", "/api/v0/status", "", "Authorization", "Bearer "+testToken, "Host", "evil.example:5150")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a rebound name with the token: %s", resp.Status)
	}
	// A preflight carries no token: it is answered for an allowed origin.
	resp, _ = call(t, srv, "OPTIONS", "/v1/models", "", "Origin", "http://localhost:3000", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("preflight off loopback: %s", resp.Status)
	}

	// A node on one address of the LAN answers that address, not others.
	srv, _ = guarded(t, GuardConfig{Addr: "192.168.1.5:5150"})
	for host, want := range map[string]int{"192.168.1.5:5150": 200, "127.0.0.1:80": 200, "192.168.1.6:5150": 403} {
		if resp, _ := call(t, srv, "GET", "/api/v0/status", "", "Authorization", "Bearer "+testToken, "Host", host); resp.StatusCode != want {
			t.Errorf("Host %s of a node on 192.168.1.5: %s, want %d", host, resp.Status, want)
		}
	}

	srv, b = guarded(t, GuardConfig{Addr: "localhost:5150"})
	for _, h := range [][]string{nil, {"Authorization", "Bearer unused"}, {"Authorization", "Bearer " + testToken}} {
		if resp, body := call(t, srv, "POST", "/api/v0/models/import", importBody, h...); resp.StatusCode != http.StatusOK {
			t.Errorf("on loopback, %v: %s %s", h, resp.Status, body)
		}
	}
}

func TestGuardConfig(t *testing.T) {
	for _, c := range []GuardConfig{
		{Addr: "0.0.0.0:5150"}, // no token
		{Addr: ":5150"},
		{Addr: "127.0.0.1"},
		{Addr: "127.0.0.1:5150", CORSOrigins: []string{"app.example"}},
		{Addr: "127.0.0.1:5150", CORSOrigins: []string{"https://app.example/path"}},
		{Addr: "127.0.0.1:5150", CORSOrigins: []string{"null"}},
		{Addr: "127.0.0.1:5150", AllowedHosts: []string{"https://mybox.lan"}},
		{Addr: "127.0.0.1:5150", AllowedHosts: []string{""}},
	} {
		if _, err := NewGuard(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for addr, need := range map[string]bool{"127.0.0.1:0": false, "[::1]:5150": false, "localhost:5150": false, "0.0.0.0:5150": true, "[::]:1": true, "192.168.1.5:5150": true, "mybox.lan:5150": true} {
		g, err := NewGuard(GuardConfig{Addr: addr, Token: "t", AllowedHosts: []string{"mybox.lan:8080"}, CORSOrigins: []string{"https://app.example/", "app://obsidian.md"}})
		if err != nil || g.TokenRequired() != need {
			t.Errorf("%s: %v; token required %v, want %v", addr, err, g != nil && g.TokenRequired(), need)
		}
	}
}
