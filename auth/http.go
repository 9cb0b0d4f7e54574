package auth

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Errors of AuthenticateRequest, besides ErrBadCredentials, ErrBadToken,
// ErrTokenExpired and *RateLimitError.
var (
	ErrNoCredentials = errors.New("authentication required: send HTTP Basic credentials or a bearer token")
	ErrNoUsers       = errors.New("no tagcache users are configured, so only clients on this machine (loopback) are served; " +
		"add a user to the tagcache global option: auth { user <name> <hash> }, with the hash from `caddy hash-password`")
)

// AuthenticateRequest checks the credentials of an HTTP request: HTTP Basic
// (failures rate-limited per client IP, see Login) or a bearer token from
// IssueToken. It returns the user's name and permissions.
//
// With no users configured, it grants every permission to clients on
// loopback, with the name "", and refuses the others with ErrNoUsers.
func (u *Users) AuthenticateRequest(r *http.Request) (string, Permission, error) {
	if !u.Enabled() {
		if IsLocal(r) {
			return "", PermAll, nil
		}
		return "", 0, ErrNoUsers
	}
	authz := r.Header.Get("Authorization")
	if scheme, rest, ok := strings.Cut(authz, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return u.CheckToken(strings.TrimSpace(rest))
	}
	username, password, ok := r.BasicAuth()
	if !ok {
		return "", 0, ErrNoCredentials
	}
	perm, err := u.Login(ClientIP(r), username, password)
	if err != nil {
		return "", 0, err
	}
	return username, perm, nil
}

// StatusCode is the HTTP status for an error of AuthenticateRequest or
// Login: 429 for a rate-limited client, 403 for ErrNoUsers, else 401.
func StatusCode(err error) int {
	if _, ok := errors.AsType[*RateLimitError](err); ok {
		return http.StatusTooManyRequests
	}
	if errors.Is(err, ErrNoUsers) {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// ClientIP is the request's client address: Caddy's client_ip (which
// honours the server's trusted_proxies), else the peer address.
func ClientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// IsLocal reports whether a request comes from this machine: its client IP
// is a loopback address and it carries no proxy forwarding header. A
// request that came through a proxy is never local, even from a proxy on
// this machine: its original client is not known to be here.
func IsLocal(r *http.Request) bool {
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" {
		return false
	}
	addr, err := netip.ParseAddr(ClientIP(r))
	return err == nil && addr.Unmap().IsLoopback()
}
