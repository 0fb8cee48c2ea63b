package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
)

// GuardConfig says whom the node's HTTP APIs answer. Any web page the
// user's browser shows can send requests to the node's address, and a page
// whose name its attacker points at that address (DNS rebinding) can read
// the answers too; the Guard refuses both, and on an address other
// machines reach, everyone without the token.
type GuardConfig struct {
	// Addr is the address the API listens on, host:port. A loopback
	// address (127.0.0.0/8, ::1, localhost) needs no token; any other
	// does.
	Addr string
	// AllowedHosts are the names and addresses, besides localhost, the
	// loopback addresses and Addr's host, that a request's Host header
	// may give (with any port): a name such as "mybox.lan", a ".lan"
	// that allows every name ending so, or "*", which turns the check
	// off (behind a reverse proxy that checks Host itself).
	AllowedHosts []string
	// CORSOrigins are the web origins (scheme://host[:port], as a browser
	// sends them in Origin) whose pages may call the API, besides pages
	// served from localhost, a loopback address or an allowed host; "*"
	// allows every origin.
	CORSOrigins []string
	// Token is the API token: required in "Authorization: Bearer TOKEN"
	// unless Addr is a loopback address, where it is not checked.
	Token string
	// TokenFile is the file that keeps Token, named in the answer to a
	// request without it.
	TokenFile string
}

// Guard checks every request before it reaches the APIs: its Host, its
// Origin (answering CORS preflights for the origins allowed), and, off
// loopback, its token. The status page's files need no token (the page
// sends it with its API calls), and a link of another site may open the
// page, not call the API.
type Guard struct {
	cfg       GuardConfig
	loopback  bool     // Addr is loopback: no token needed
	bindAny   bool     // Addr is every address: any IP is one of the node's
	bindHost  string   // Addr's host, normalized ("" for every address)
	anyHost   bool     // AllowedHosts has "*"
	hosts     []string // the other AllowedHosts, normalized
	anyOrigin bool     // CORSOrigins has "*"
	origins   map[string]bool
	tokenSum  [sha256.Size]byte
}

// NewGuard checks c and returns its Guard.
func NewGuard(c GuardConfig) (*Guard, error) {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("API address %q: %w", c.Addr, err)
	}
	g := &Guard{cfg: c, bindHost: normHost(host), origins: map[string]bool{}}
	g.loopback = isLoopback(g.bindHost)
	if ip := net.ParseIP(g.bindHost); g.bindHost == "" || (ip != nil && ip.IsUnspecified()) {
		g.bindAny, g.bindHost = true, ""
	}
	if !g.loopback && c.Token == "" {
		return nil, fmt.Errorf("API address %q is not a loopback address, and there is no API token to require", c.Addr)
	}
	g.tokenSum = sha256.Sum256([]byte(c.Token))
	for _, h := range c.AllowedHosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "*":
			g.anyHost = true
			continue
		case h == "" || strings.ContainsAny(h, "/@ ") || h == ".":
			return nil, fmt.Errorf("allowed host %q: want a host name or address, such as mybox.lan, .lan or 192.168.1.5", h)
		}
		if name, _, err := net.SplitHostPort(h); err == nil {
			h = name // the port does not matter
		}
		g.hosts = append(g.hosts, normHost(h))
	}
	for _, o := range c.CORSOrigins {
		o = strings.TrimSpace(o)
		if o == "*" {
			g.anyOrigin = true
			continue
		}
		n, ok := normOrigin(o)
		if !ok {
			return nil, fmt.Errorf("CORS origin %q: want scheme://host[:port] as a browser sends it, such as https://app.example or http://192.168.1.5:3000", o)
		}
		g.origins[n] = true
	}
	return g, nil
}

// TokenRequired says whether requests need the token: whether the API
// listens on more than loopback.
func (g *Guard) TokenRequired() bool { return !g.loopback }

// Wrap returns h behind the guard's checks.
func (g *Guard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _ := splitHostHeader(r.Host); !g.hostAllowed(host) {
			g.refuse(w, r, http.StatusForbidden, "host_not_allowed", fmt.Sprintf(
				"Host %q is not a name of this node: its API answers requests to localhost, loopback addresses and its listen address, "+
					"so that no web page reaches it through a name of the page's own (DNS rebinding); "+
					"to call it by a name you trust, start the node with --allowed-hosts NAME", r.Host))
			return
		}
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !g.originAllowed(origin, r.Host) {
				g.refuse(w, r, http.StatusForbidden, "origin_not_allowed", fmt.Sprintf(
					"origin %q is not allowed: web pages from other sites may not call this node's API "+
						"(to let the pages of a site you trust call it, start the node with --cors-origins ORIGIN)", origin))
				return
			}
			hd := w.Header()
			hd.Set("Access-Control-Allow-Origin", origin)
			hd.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				g.preflight(w, r)
				return
			}
		} else if r.Header.Get("Sec-Fetch-Site") == "cross-site" && !pageNavigation(r) {
			// A form, image or link of another site's page: a browser
			// request that carries no Origin.
			g.refuse(w, r, http.StatusForbidden, "cross_site", "a request from another site's web page is not allowed: "+
				"this node's API answers programs, and pages of the origins given with --cors-origins")
			return
		}
		if !g.loopback && !isPage(r) {
			tok, ok := bearer(r)
			if !ok {
				g.refuse(w, r, http.StatusUnauthorized, "missing_api_key", fmt.Sprintf(
					"this node's API needs its token: send \"Authorization: Bearer TOKEN\" with the token in %s on the node's machine "+
						"(the mycel command reads it from the data directory, --data, or from $%s)", g.cfg.TokenFile, api.EnvToken))
				return
			}
			sum := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) != 1 {
				g.refuse(w, r, http.StatusUnauthorized, "invalid_api_key", fmt.Sprintf(
					"wrong API token: this node's token is the one in %s on the node's machine (the mycel command reads it from the data directory, --data, or from $%s)",
					g.cfg.TokenFile, api.EnvToken))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// preflight answers a CORS preflight of an allowed origin.
func (g *Guard) preflight(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Add("Vary", "Access-Control-Request-Method")
	hd.Add("Vary", "Access-Control-Request-Headers")
	hd.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	allow := []string{"Authorization", "Content-Type"}
	for _, f := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
		if f = strings.TrimSpace(f); isToken(f) && !strings.EqualFold(f, "authorization") && !strings.EqualFold(f, "content-type") {
			allow = append(allow, f)
		}
	}
	hd.Set("Access-Control-Allow-Headers", strings.Join(allow, ", "))
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		hd.Set("Access-Control-Allow-Private-Network", "true")
	}
	hd.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// refuse answers a request the guard stops, in the shape of the API it
// was for.
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mycel"`)
	}
	if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") {
		openai.WriteError(w, status, "invalid_request_error", code, msg)
		return
	}
	writeError(w, status, errors.New(msg))
}

// hostKnown says whether host (normalized) is one of the node's: a
// loopback name or address, the address it listens on (any IP when it
// listens on every address), or an allowed host.
func (g *Guard) hostKnown(host string) bool {
	if host == "" {
		return false
	}
	if isLoopback(host) || host == g.bindHost || g.listed(host) {
		return true
	}
	return g.bindAny && net.ParseIP(host) != nil
}

func (g *Guard) hostAllowed(host string) bool {
	return g.anyHost || g.hostKnown(host)
}

// listed says whether host is one of AllowedHosts.
func (g *Guard) listed(host string) bool {
	for _, h := range g.hosts {
		if host == h || (strings.HasPrefix(h, ".") && (host == h[1:] || strings.HasSuffix(host, h))) {
			return true
		}
	}
	return false
}

// originAllowed says whether a page of origin may call the API in a
// request to reqHost: an origin of CORSOrigins, one on a loopback name or
// address, the listen address or an allowed host (any port), or the
// request's own origin.
func (g *Guard) originAllowed(origin, reqHost string) bool {
	if g.anyOrigin {
		return true
	}
	o, ok := normOrigin(origin)
	if !ok {
		return false // "null" among them: sandboxed frames, files
	}
	if g.origins[o] {
		return true
	}
	u, _ := url.Parse(o)
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	host := normHost(u.Hostname())
	if isLoopback(host) || (host != "" && host == g.bindHost) || g.listed(host) {
		return true
	}
	rh, rp := splitHostHeader(reqHost)
	return host == rh && u.Port() == rp && g.hostKnown(rh)
}

// normOrigin is origin lower-cased, without a trailing slash or the
// scheme's default port; ok is false for what is not scheme://host[:port].
func normOrigin(origin string) (string, bool) {
	u, err := url.Parse(strings.TrimSuffix(strings.ToLower(origin), "/"))
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	host := u.Host
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return u.Scheme + "://" + host, true
}

// splitHostHeader splits a Host header into its normalized host and its
// port ("" when it has none).
func splitHostHeader(hostport string) (host, port string) {
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", ""
		}
		rest := hostport[end+1:]
		if rest != "" && !strings.HasPrefix(rest, ":") {
			return "", ""
		}
		return normHost(hostport[1:end]), strings.TrimPrefix(rest, ":")
	}
	if strings.Count(hostport, ":") == 1 {
		i := strings.IndexByte(hostport, ':')
		return normHost(hostport[:i]), hostport[i+1:]
	}
	return normHost(hostport), ""
}

// normHost is a host name lower-cased without a final dot, or an address
// in its canonical form.
func normHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}

// isLoopback says whether a normalized host is localhost or a loopback
// address.
func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// bearer returns the token of a request's "Authorization: Bearer TOKEN".
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	return tok, ok && strings.EqualFold(scheme, "Bearer") && tok != ""
}

// isToken says whether s is a header field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}
