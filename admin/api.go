package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

func init() {
	caddy.RegisterModule(JSONAPI{})
}

// DefaultMaxBodySize is the default limit on a JSON API request body.
const DefaultMaxBodySize = 16 << 20

// JSONAPI is the `tagcache_api` HTTP handler: TagCache's JSON HTTP API over
// one store of the tagcache app, served by Caddy like any site (so behind
// automatic HTTPS). It answers every request it gets and never calls the
// next handler; mount it under a path with `handle_path /cache/* { ... }`.
//
// Every route but GET /health needs credentials of a user of the app's auth
// block (HTTP Basic, or a bearer token from POST /auth/login) with the
// route's permission. With no users configured, only loopback clients are
// served.
type JSONAPI struct {
	// Store is the name of the store the API serves. Default: "default".
	Store string `json:"store,omitempty"`

	// MaxBodySize is the largest request body accepted, in bytes; a larger
	// one is answered 413. Values travel in JSON strings (base64 makes them
	// a third larger), so this should exceed the store's max_item_size.
	// Default: 16777216 (16 MiB).
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	store  *store.Store
	users  *auth.Users
	app    auth.App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (JSONAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tagcache_api",
		New: func() caddy.Module { return new(JSONAPI) },
	}
}

// Provision finds the store and the users in the tagcache app, which it
// loads with default settings if the config does not have it, so that a
// site with just `tagcache_api` works.
func (h *JSONAPI) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxBodySize == 0 {
		h.MaxBodySize = DefaultMaxBodySize
	}
	appIface, err := ctx.App("tagcache")
	if err != nil {
		return err
	}
	app, ok := appIface.(auth.App)
	if !ok {
		return fmt.Errorf("the tagcache app (%T) does not serve stores", appIface)
	}
	return h.useApp(app)
}

// useApp takes the configured store and the users from app.
func (h *JSONAPI) useApp(app auth.App) error {
	st, err := app.Store(h.Store)
	if err != nil {
		return err
	}
	h.store, h.users, h.app = st, app.Users(), app
	return nil
}

// Validate checks the configuration.
func (h *JSONAPI) Validate() error {
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size must be positive, got %d", h.MaxBodySize)
	}
	return nil
}

// call is one request to a route.
type call struct {
	w http.ResponseWriter
	r *http.Request
	// user is the authenticated user, "" for a loopback client when no
	// users are configured.
	user string
	// key is the key of GET /get/{key}.
	key string
}

// route is one endpoint. serve returns the status and the JSON body.
type route struct {
	method string
	// perm is the permission the route needs; public routes need none and
	// are served without credentials.
	perm   auth.Permission
	public bool
	serve  func(h *JSONAPI, c *call) (int, any)
}

// routes maps paths to endpoints; GET /get/{key} is matched by prefix.
var routes = map[string]route{
	"/health":           {method: http.MethodGet, public: true, serve: (*JSONAPI).health},
	"/stats":            {method: http.MethodGet, perm: auth.PermRead, serve: (*JSONAPI).stats},
	"/keys-by-tag":      {method: http.MethodGet, perm: auth.PermRead, serve: (*JSONAPI).keysByTag},
	"/keys":             {method: http.MethodGet, perm: auth.PermRead, serve: (*JSONAPI).keys},
	"/tags":             {method: http.MethodGet, perm: auth.PermRead, serve: (*JSONAPI).tags},
	"/keys/bulk/get":    {method: http.MethodPost, perm: auth.PermRead, serve: (*JSONAPI).bulkGet},
	"/put":              {method: http.MethodPost, perm: auth.PermWrite, serve: (*JSONAPI).put},
	"/add":              {method: http.MethodPost, perm: auth.PermWrite, serve: (*JSONAPI).add},
	"/incr":             {method: http.MethodPost, perm: auth.PermWrite, serve: (*JSONAPI).incr},
	"/decr":             {method: http.MethodPost, perm: auth.PermWrite, serve: (*JSONAPI).decr},
	"/invalidate-key":   {method: http.MethodPost, perm: auth.PermWrite, serve: (*JSONAPI).invalidateKey},
	"/keys/bulk/put":    {method: http.MethodPost, perm: auth.PermWrite, serve: (*JSONAPI).bulkPut},
	"/keys/bulk/delete": {method: http.MethodPost, perm: auth.PermWrite, serve: (*JSONAPI).bulkDelete},
	"/invalidate-tag":   {method: http.MethodPost, perm: auth.PermPurge, serve: (*JSONAPI).invalidateTag},
	"/flush":            {method: http.MethodPost, perm: auth.PermAdmin, serve: (*JSONAPI).flush},
	"/snapshot":         {method: http.MethodPost, perm: auth.PermAdmin, serve: (*JSONAPI).snapshot},
	"/auth/login":       {method: http.MethodPost, public: true, serve: (*JSONAPI).login},
	"/auth/rotate":      {method: http.MethodPost, perm: auth.PermAdmin, serve: (*JSONAPI).rotate},
	"/auth/password":    {method: http.MethodPost, perm: auth.PermAdmin, serve: (*JSONAPI).changePassword},
}

// getRoute is GET /get/{key}.
var getRoute = route{method: http.MethodGet, perm: auth.PermRead, serve: (*JSONAPI).get}

// ServeHTTP answers the request with JSON; it never calls next.
func (h *JSONAPI) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	w.Header().Set("Cache-Control", "no-store")
	c := &call{w: w, r: r}
	rt, ok := routes[r.URL.Path]
	if !ok {
		escaped, isGet := strings.CutPrefix(r.URL.EscapedPath(), "/get/")
		if !isGet {
			writeJSON(w, http.StatusNotFound, errorf("no such endpoint: %s", r.URL.Path))
			return nil
		}
		key, err := url.PathUnescape(escaped)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorf("invalid key in path: %v", err))
			return nil
		}
		rt, c.key = getRoute, key
	}
	if r.Method != rt.method && !(r.Method == http.MethodHead && rt.method == http.MethodGet) {
		w.Header().Set("Allow", rt.method)
		writeJSON(w, http.StatusMethodNotAllowed, errorf("method %s not allowed; use %s", r.Method, rt.method))
		return nil
	}
	if !rt.public {
		user, perm, err := h.users.AuthenticateRequest(r)
		if err != nil {
			status, body := authError(w, err, "unauthorized")
			writeJSON(w, status, body)
			return nil
		}
		if !perm.Has(rt.perm) {
			writeJSON(w, http.StatusForbidden, errorf("user %q lacks the %s permission", user, rt.perm))
			return nil
		}
		c.user = user
	}
	if rt.method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, h.MaxBodySize)
	}
	status, body := rt.serve(h, c)
	writeJSON(w, status, body)
	return nil
}

// errorBody is the body of every error but a miss.
type errorBody struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	// Message explains an Error that is a code (unauthorized,
	// invalid_credentials).
	Message string `json:"message,omitempty"`
}

func errorf(format string, args ...any) errorBody {
	return errorBody{Error: fmt.Sprintf(format, args...)}
}

// authError answers a request whose credentials failed: 401 with
// TagCache's "unauthorized" code and a Basic challenge, 403 without users
// for a client that is not local, 429 with Retry-After after too many
// failures.
func authError(w http.ResponseWriter, err error, code string) (int, any) {
	status := auth.StatusCode(err)
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="tagcache", charset="UTF-8"`)
		return status, errorBody{Error: code, Message: err.Error()}
	case http.StatusTooManyRequests:
		if rl, ok := errors.AsType[*auth.RateLimitError](err); ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.RetryAfter.Seconds()))))
		}
	}
	return status, errorBody{Error: err.Error()}
}

// writeJSON writes body as the JSON response. HTML characters are not
// escaped: this is an API, not a page, and values round-trip as sent.
func writeJSON(w http.ResponseWriter, status int, body any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		enc.Encode(errorf("encoding the response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// health is GET /health, the one route that needs no credentials.
func (h *JSONAPI) health(*call) (int, any) {
	return http.StatusOK, map[string]string{"status": "ok", "time": time.Now().UTC().Format(time.RFC3339)}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*JSONAPI)(nil)
	_ caddy.Validator             = (*JSONAPI)(nil)
	_ caddyhttp.MiddlewareHandler = (*JSONAPI)(nil)
	_ caddyfile.Unmarshaler       = (*JSONAPI)(nil)
)
