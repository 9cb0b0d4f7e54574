// Package handler is the HTTP response cache of caddy-tagcache: the
// `http.handlers.tagcache` Caddy module (directive `tagcache`). It is a
// shared cache per RFC 9111 whose entries live in a store of the tagcache
// app, tagged with the origin's surrogate keys and with their URL, so a tag
// invalidated by any front (PURGE here, the admin or JSON API, the TCP and
// memcached protocols) removes the cached responses.
package handler

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/store"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's settings.
const (
	DefaultMaxBodySize       = 8 << 20
	DefaultStatusHeader      = "Cache-Status"
	DefaultCacheName         = "tagcache"
	DefaultMaxHeuristicTTL   = 24 * time.Hour
	DefaultRevalidateTimeout = 30 * time.Second
)

// maxBackgroundRevalidations bounds the revalidations running detached
// from client requests at a time; a stale hit beyond it is still served
// and revalidated by a later request.
const maxBackgroundRevalidations = 64

// Handler is the `http.handlers.tagcache` module: a shared HTTP cache in
// front of the rest of the route. GET and HEAD responses are stored per
// RFC 9111 in a store of the tagcache app, tagged with the origin's
// surrogate keys; the PURGE method and unsafe methods remove them.
type Handler struct {
	// Store is the name of the tagcache store that holds the responses;
	// they count against its memory budget and its max_item_size limits
	// the largest response stored. Default: "default".
	Store string `json:"store,omitempty"`

	// DefaultTTL is the freshness lifetime of a response that has no
	// explicit one (Cache-Control max-age or s-maxage, Expires,
	// Surrogate-Control, CDN-Cache-Control) and a status that is
	// cacheable by default; it replaces heuristic freshness. Default: 0,
	// which stores such responses only with heuristic freshness.
	DefaultTTL caddy.Duration `json:"default_ttl,omitempty"`

	// MaxHeuristicTTL caps heuristic freshness, which is 10% of the time
	// since Last-Modified (RFC 9111 section 4.2.2). Default: 24h.
	MaxHeuristicTTL caddy.Duration `json:"max_heuristic_ttl,omitempty"`

	// StaleWhileRevalidate is the stale-while-revalidate window for
	// responses that do not set one: a stale response is served at once
	// while one background request revalidates it. Default: 0.
	StaleWhileRevalidate caddy.Duration `json:"stale_while_revalidate,omitempty"`

	// StaleIfError is the stale-if-error window for responses that do not
	// set one: a stale response is served when upstream fails or answers
	// 5xx. Default: 0.
	StaleIfError caddy.Duration `json:"stale_if_error,omitempty"`

	// KeepStale keeps a response this long after it became useless
	// (stale and past its stale-while-revalidate and stale-if-error
	// windows), so that it can still be revalidated with a conditional
	// request, where a 304 refreshes it without sending the body again,
	// and answer clients that accept stale responses (max-stale).
	// Default: 0, a response is dropped once useless.
	KeepStale caddy.Duration `json:"keep_stale,omitempty"`

	// MaxBodySize is the largest body stored, in bytes. A larger body
	// streams to the client and is not stored. Default: 8388608 (8 MiB).
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// Key changes how requests map to entries. Default: scheme, host, path
	// and sorted query.
	Key *KeyConfig `json:"key,omitempty"`

	// Tags are added to every stored response; Caddy placeholders are
	// replaced per request, for example "{http.request.host}".
	// Default: none.
	Tags []string `json:"tags,omitempty"`

	// TagHeaders are the response fields the origin's tags are read from.
	// Surrogate-Key is split on spaces, Cache-Tag on commas, any other
	// field on both. Default: Surrogate-Key, Cache-Tag and xkey.
	TagHeaders []string `json:"tag_headers,omitempty"`

	// KeepTagHeaders passes the tag fields on to clients. Default: false,
	// they are removed from responses.
	KeepTagHeaders bool `json:"keep_tag_headers,omitempty"`

	// CacheSetCookie stores responses that carry Set-Cookie, without their
	// Set-Cookie fields: the client whose request filled the cache gets
	// its cookies, later hits never replay them. Default: false, such
	// responses are not stored.
	CacheSetCookie bool `json:"cache_set_cookie,omitempty"`

	// StatusHeader is the name of the RFC 9211 cache status field.
	// Default: "Cache-Status".
	StatusHeader string `json:"status_header,omitempty"`

	// CacheName identifies this cache in the cache status field.
	// Default: "tagcache".
	CacheName string `json:"cache_name,omitempty"`

	// PurgeFrom lists the client IP ranges (CIDR or single addresses)
	// allowed to PURGE without credentials. Clients authenticated with
	// HTTP Basic as a tagcache user with the purge permission are allowed
	// from anywhere. Default: loopback (127.0.0.0/8 and ::1).
	PurgeFrom []string `json:"purge_from,omitempty"`

	// SoftPurge makes every PURGE mark responses stale instead of
	// removing them, as the Fastly-Soft-Purge: 1 request field does for
	// one purge. Stale responses are served within their
	// stale-while-revalidate and stale-if-error windows and refreshed.
	// Default: false.
	SoftPurge bool `json:"soft_purge,omitempty"`

	// RevalidateTimeout bounds a background revalidation. Default: 30s.
	RevalidateTimeout caddy.Duration `json:"revalidate_timeout,omitempty"`

	st        *store.Store
	users     *auth.Users
	logger    *zap.Logger
	ctx       caddy.Context
	now       func() time.Time
	key       KeyConfig
	tagFields []string
	tagSeps   []tagSeparators
	purgeNets []netip.Prefix

	statusField    string
	hitPrefix      string // "<name>; hit; ttl="
	ignoreAllQuery bool

	// fills coalesces misses; revalidations dedupes background
	// revalidations, which background bounds.
	fills, revalidations *flights
	background           chan struct{}

	// itemLimit is the store's max_item_size once a response was refused
	// for it, so that later misses stop capturing bodies the store will
	// not take; 0 until then.
	itemLimit *atomic.Int64
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tagcache",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the store in the tagcache app and applies defaults. A
// site can use the directive without the global option: the app is then
// loaded with its defaults.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.ctx = ctx
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	app, err := ctx.AppIfConfigured("tagcache")
	if errors.Is(err, caddy.ErrNotConfigured) {
		app, err = ctx.App("tagcache")
	}
	if err != nil {
		return fmt.Errorf("loading the tagcache app: %v", err)
	}
	a, ok := app.(auth.App)
	if !ok {
		return fmt.Errorf("the tagcache app is a %T, not an auth.App", app)
	}
	if h.st, err = a.Store(h.Store); err != nil {
		return err
	}
	h.users = a.Users()
	if err := h.setup(); err != nil {
		return err
	}
	return initMetrics(ctx.GetMetricsRegistry())
}

// setup validates the config and derives the runtime settings.
func (h *Handler) setup() error {
	if h.MaxBodySize == 0 {
		h.MaxBodySize = DefaultMaxBodySize
	}
	if h.MaxHeuristicTTL == 0 {
		h.MaxHeuristicTTL = caddy.Duration(DefaultMaxHeuristicTTL)
	}
	if h.RevalidateTimeout == 0 {
		h.RevalidateTimeout = caddy.Duration(DefaultRevalidateTimeout)
	}
	if h.StatusHeader == "" {
		h.StatusHeader = DefaultStatusHeader
	}
	if h.CacheName == "" {
		h.CacheName = DefaultCacheName
	}
	if err := h.Validate(); err != nil {
		return err
	}
	if h.Key != nil {
		h.key = *h.Key
		h.key.Headers = slices.Clone(h.key.Headers)
	}
	for i, name := range h.key.Headers {
		h.key.Headers[i] = http.CanonicalHeaderKey(name)
	}
	for _, p := range h.key.IgnoreQuery {
		h.ignoreAllQuery = h.ignoreAllQuery || p == "*"
	}
	fields := h.TagHeaders
	if len(fields) == 0 {
		fields = DefaultTagHeaders
	}
	h.tagFields, h.tagSeps = nil, nil
	for _, f := range fields {
		h.tagFields = append(h.tagFields, http.CanonicalHeaderKey(f))
		h.tagSeps = append(h.tagSeps, separatorsFor(f))
	}
	h.purgeNets = nil
	from := h.PurgeFrom
	if len(from) == 0 {
		from = []string{"127.0.0.0/8", "::1/128"}
	}
	for _, s := range from {
		p, err := parsePrefix(s)
		if err != nil {
			return err
		}
		h.purgeNets = append(h.purgeNets, p)
	}
	h.statusField = http.CanonicalHeaderKey(h.StatusHeader)
	h.hitPrefix = h.CacheName + "; hit; ttl="
	h.background = make(chan struct{}, maxBackgroundRevalidations)
	h.fills, h.revalidations = new(flights), new(flights)
	h.itemLimit = new(atomic.Int64)
	return nil
}

// Validate checks the settings.
func (h *Handler) Validate() error {
	switch {
	case h.MaxBodySize < 0:
		return fmt.Errorf("max_body_size must be positive, got %d", h.MaxBodySize)
	case h.DefaultTTL < 0, h.MaxHeuristicTTL < 0, h.StaleWhileRevalidate < 0, h.StaleIfError < 0, h.RevalidateTimeout < 0, h.KeepStale < 0:
		return fmt.Errorf("durations must not be negative")
	case strings.ContainsAny(h.CacheName, ";,\" \t\r\n"):
		return fmt.Errorf("cache_name %q must be a token (no spaces, commas, semicolons or quotes)", h.CacheName)
	}
	for _, t := range h.Tags {
		if t == "" {
			return fmt.Errorf("tags must not be empty")
		}
	}
	for _, s := range h.PurgeFrom {
		if _, err := parsePrefix(s); err != nil {
			return err
		}
	}
	return nil
}

// parsePrefix parses a CIDR range or a single IP address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("purge_from: invalid CIDR %q: %v", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("purge_from: invalid IP address %q: %v", s, err)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// maxHeuristic is the cap of heuristic freshness.
func (h *Handler) maxHeuristic() time.Duration { return time.Duration(h.MaxHeuristicTTL) }

// bodyLimit is the largest body worth capturing: max_body_size, or less
// once the store refused a response as too large for its max_item_size.
func (h *Handler) bodyLimit() int64 {
	if lim := h.itemLimit.Load(); lim > 0 {
		return min(h.MaxBodySize, lim-fixedLen-1024)
	}
	return h.MaxBodySize
}

// ServeHTTP answers GET and HEAD from the cache when it can, forwards the
// rest of them to next while storing what may be stored, handles PURGE,
// and invalidates a URL's responses after a successful unsafe method.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return h.serveCacheable(w, r, next)
	case methodPurge:
		return h.servePurge(w, r)
	case http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
		return h.serveUnsafe(w, r, next)
	}
	httpMetrics.bypasses.Inc()
	h.setStatus(w.Header(), h.CacheName+"; fwd=method")
	return next.ServeHTTP(w, r)
}

// bypassReason says why a GET or HEAD goes upstream without looking at the
// cache, or "" if it may use it.
func bypassReason(r *http.Request) string {
	switch {
	case len(r.Header["Upgrade"]) > 0:
		return "upgrade"
	case len(r.Header["If-Match"]) > 0, len(r.Header["If-Unmodified-Since"]) > 0:
		return "precondition"
	}
	return ""
}

// lookup is what the cache holds for a request.
type lookup struct {
	// primary is the URL's key and key the key of the response entry
	// (primary, or a variant's key when primary holds a vary index).
	// Both alias the key buffer until detach.
	primary, key string
	varied       bool
	found        bool
	item         store.Item
	s            stored
}

// lookup finds the stored response for r, building keys in *bp.
func (h *Handler) lookup(bp *[]byte, r *http.Request) lookup {
	buf := h.appendKey((*bp)[:0], r)
	n := len(buf)
	lk := lookup{primary: bytesString(buf)}
	lk.key = lk.primary
	it, ok := h.st.Get(lk.primary)
	if ok && len(it.Value) > 0 && it.Value[0] == kindVary {
		vi, valid := decodeVaryIndex(it.Value)
		buf = appendVariant(buf, lk.primary, r, vi)
		lk.varied = true
		lk.key = bytesString(buf[n:])
		it, ok = h.st.Get(lk.key)
		ok = ok && valid
	}
	*bp = buf
	if ok {
		lk.s, lk.found = decodeStored(it.Value)
		lk.item = it
	}
	return lk
}

// detach copies the keys out of the key buffer so that it can be reused.
func (lk *lookup) detach() {
	lk.primary = strings.Clone(lk.primary)
	if lk.varied {
		lk.key = strings.Clone(lk.key)
	} else {
		lk.key = lk.primary
	}
}

// What the cache does with a request for which it has a response.
type action uint8

const (
	serveFresh           action = iota
	serveStale                  // within the client's max-stale
	serveStaleRevalidate        // within stale-while-revalidate
	revalidate                  // validate upstream before answering
)

// choose decides how to use a stored response of the given age for a
// request with the given directives (RFC 9111 sections 4 and 5.2.1,
// RFC 5861), and for revalidate the Cache-Status fwd reason.
func choose(s *stored, softPurged bool, reqCC *directives, age int64) (action, string) {
	ttl := s.lifetime - age
	switch {
	case reqCC.noCache:
		return revalidate, "request"
	case s.flags&flagNoCache != 0:
		return revalidate, "stale"
	}
	if !softPurged && ttl > 0 {
		if (reqCC.maxAge != unset && age > reqCC.maxAge) || (reqCC.minFresh != unset && ttl < reqCC.minFresh) {
			return revalidate, "request"
		}
		return serveFresh, ""
	}
	staleness := max(0, -ttl)
	if s.flags&flagMustRevalidate == 0 {
		if reqCC.maxStaleAny || (reqCC.maxStale != unset && staleness <= reqCC.maxStale) {
			return serveStale, ""
		}
		if staleness < s.swr {
			return serveStaleRevalidate, ""
		}
	}
	return revalidate, "stale"
}

// serveCacheable handles GET and HEAD.
func (h *Handler) serveCacheable(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if reason := bypassReason(r); reason != "" {
		httpMetrics.bypasses.Inc()
		h.setStatus(w.Header(), h.CacheName+"; fwd=bypass; detail="+reason)
		return next.ServeHTTP(w, r)
	}
	reqCC := requestDirectives(r.Header)
	bp := keyBufPool.Get().(*[]byte)
	lk := h.lookup(bp, r)
	fwd := "uri-miss"
	if lk.varied {
		fwd = "vary-miss"
	}

	if lk.found && len(r.Header["Authorization"]) > 0 && lk.s.flags&flagAuthOK == 0 {
		// RFC 9111 section 3.5: only responses that say so answer
		// requests with credentials.
		lk.found, fwd = false, "request"
	}
	if lk.found {
		now := h.now()
		age := lk.s.currentAge(now)
		act, why := choose(&lk.s, lk.item.Stale, &reqCC, age)
		switch act {
		case serveFresh:
			httpMetrics.hits.Inc()
			err := h.writeStored(w, r, &lk.s, age, h.hitStatus(lk.s.lifetime-age, ""))
			keyBufPool.Put(bp)
			return err
		case serveStale, serveStaleRevalidate:
			httpMetrics.stale.Inc()
			detail := "; detail=max-stale"
			if act == serveStaleRevalidate {
				detail = "; detail=stale-while-revalidate"
				lk.detach()
				h.revalidateInBackground(r, next, lk)
			}
			ttl := lk.s.lifetime - age
			if lk.item.Stale {
				ttl = min(ttl, 0) // soft-purged
			}
			err := h.writeStored(w, r, &lk.s, age, h.hitStatus(ttl, detail))
			keyBufPool.Put(bp)
			return err
		}
		lk.detach()
		keyBufPool.Put(bp)
		return h.forward(w, r, next, reqCC, lk, why)
	}
	lk.detach()
	keyBufPool.Put(bp)
	return h.forward(w, r, next, reqCC, lk, fwd)
}

// forward goes upstream for a request the cache cannot answer: to
// revalidate lk's stale response if found, else as a miss, coalesced with
// concurrent ones when the response may be stored. reqCC and lk are
// passed by value so that the hit path keeps them on its stack.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, reqCC directives, lk lookup, fwd string) error {
	if reqCC.onlyIfCached {
		return h.gatewayTimeout(w)
	}
	httpMetrics.misses.Inc()
	if lk.found || len(r.Header["Authorization"]) > 0 || r.Method != http.MethodGet || len(r.Header["Range"]) > 0 {
		return h.fetch(w, r, next, &reqCC, &lk, fwd, nil)
	}
	return h.coalesce(w, r, next, &reqCC, &lk, fwd)
}

// hitStatus is the Cache-Status entry of a hit, built with one allocation.
func (h *Handler) hitStatus(ttl int64, detail string) string {
	var buf [80]byte
	b := append(buf[:0], h.hitPrefix...)
	b = strconv.AppendInt(b, ttl, 10)
	return string(append(b, detail...))
}

// gatewayTimeout answers an only-if-cached request that the cache cannot
// satisfy (RFC 9111 section 5.2.1.7).
func (h *Handler) gatewayTimeout(w http.ResponseWriter) error {
	h.setStatus(w.Header(), h.CacheName+"; detail=only-if-cached")
	w.WriteHeader(http.StatusGatewayTimeout)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
