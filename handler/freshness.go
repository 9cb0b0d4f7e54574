package handler

import (
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// policy is what the cache decided to do with a response from upstream:
// how long it is fresh and how it may be reused once stale.
type policy struct {
	// lifetime is the freshness lifetime in seconds (RFC 9111 section 4.2.1).
	lifetime int64
	// initialAge is the corrected initial age in seconds (section 4.2.3).
	initialAge int64
	// staleWhileRevalidate and staleIfError are the RFC 5861 windows in
	// seconds; both are 0 when the response must be revalidated once stale.
	staleWhileRevalidate, staleIfError int64
	// mustRevalidate forbids serving the response stale (must-revalidate,
	// proxy-revalidate, or s-maxage, which implies proxy-revalidate).
	mustRevalidate bool
	// noCache means the response may be stored but must be validated
	// before every use.
	noCache bool
	// authOK means the response may answer requests with Authorization
	// (RFC 9111 section 3.5).
	authOK bool
	// omit are fields that must not be stored (qualified private and
	// no-cache).
	omit []string
	// keep is keep_stale in seconds.
	keep int64
}

// Reasons a response is not stored, shown in Cache-Status detail.
const (
	reasonMethod       = "method"
	reasonRequest      = "request-no-store"
	reasonStatus       = "status"
	reasonVaryStar     = "vary-star"
	reasonTrailer      = "trailer"
	reasonSetCookie    = "set-cookie"
	reasonNoStore      = "no-store"
	reasonPrivate      = "private"
	reasonAuth         = "authorization"
	reasonNoFreshness  = "no-freshness"
	reasonExpired      = "expired"
	reasonTooLarge     = "too-large"
	reasonIncomplete   = "incomplete"
	reasonStoreRefused = "store-refused"
)

// heuristicFraction is the share of the time since Last-Modified that a
// response without explicit freshness is assumed fresh (RFC 9111 section
// 4.2.2 suggests 10%).
const heuristicFraction = 10

// heuristicallyCacheable reports whether status is cacheable by default
// (RFC 9110 section 15.1), so heuristic freshness and default_ttl apply.
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// decide returns the policy for a response to req, or the reason it must
// not be stored. reqTime is when the request went upstream and respTime
// when the response header arrived.
func (h *Handler) decide(req *http.Request, reqCC *directives, status int, hdr http.Header, reqTime, respTime time.Time) (policy, string) {
	var p policy
	switch {
	case req.Method != http.MethodGet:
		return p, reasonMethod
	case reqCC.noStore:
		return p, reasonRequest
	case status < 200 || status == http.StatusPartialContent || status == http.StatusNotModified:
		return p, reasonStatus
	case len(hdr["Trailer"]) > 0:
		return p, reasonTrailer
	case len(hdr["Set-Cookie"]) > 0 && !h.CacheSetCookie:
		return p, reasonSetCookie
	}
	if _, star := varyFields(hdr); star {
		return p, reasonVaryStar
	}

	// The most specific field that is present governs this cache: ours,
	// then the CDN's (RFC 9213 section 2.1), then Cache-Control.
	cc := parseDirectives(hdr["Cache-Control"])
	src := &cc
	cdn := parseDirectives(hdr["Cdn-Cache-Control"])
	if cdn.present {
		src = &cdn
	}
	sc := parseDirectives(hdr["Surrogate-Control"])
	if sc.present {
		src = &sc
	}
	switch {
	case src.noStore:
		return p, reasonNoStore
	case src.private:
		return p, reasonPrivate
	}
	p.authOK = src.public || src.sMaxAge != unset || src.mustRevalidate
	if req.Header.Get("Authorization") != "" && !p.authOK {
		return p, reasonAuth
	}

	date := parseDate(hdr, respTime)
	switch {
	case src.sMaxAge != unset:
		p.lifetime = src.sMaxAge
	case src.maxAge != unset:
		p.lifetime = src.maxAge
	case src == &cc && len(hdr["Expires"]) > 0:
		// An invalid Expires means already expired (section 5.3).
		if exp, err := http.ParseTime(hdr.Get("Expires")); err == nil {
			p.lifetime = max(0, int64(exp.Sub(date)/time.Second))
		}
	case h.DefaultTTL > 0 && heuristicallyCacheable(status):
		p.lifetime = int64(time.Duration(h.DefaultTTL) / time.Second)
	case heuristicallyCacheable(status) || src.public:
		lm, err := http.ParseTime(hdr.Get("Last-Modified"))
		if err != nil || !lm.Before(date) {
			return p, reasonNoFreshness
		}
		p.lifetime = min(int64(date.Sub(lm)/time.Second)/heuristicFraction, int64(h.maxHeuristic()/time.Second))
	default:
		return p, reasonNoFreshness
	}

	p.initialAge = initialAge(hdr, date, reqTime, respTime)
	p.mustRevalidate = src.mustRevalidate || src.proxyRevalidate || src.sMaxAge != unset
	p.noCache = src.noCache
	p.omit = append(src.privateFields, src.noCacheFields...)
	if !p.mustRevalidate && !p.noCache {
		p.staleWhileRevalidate = windowOr(src.staleWhileRevalidate, h.StaleWhileRevalidate)
		p.staleIfError = windowOr(src.staleIfError, h.StaleIfError)
	}
	p.keep = int64(time.Duration(h.KeepStale) / time.Second)
	if p.usefulFor() <= 0 {
		return p, reasonExpired
	}
	return p, ""
}

// usefulFor is how many seconds after it arrived the response can still be
// served, fresh or stale, or revalidated; afterwards the store drops it.
func (p *policy) usefulFor() int64 {
	return p.lifetime - p.initialAge + max(p.staleWhileRevalidate, p.staleIfError) + p.keep
}

// windowOr returns a response's stale window, or the configured default.
func windowOr(fromResponse int64, fallback caddy.Duration) int64 {
	if fromResponse != unset {
		return fromResponse
	}
	return int64(time.Duration(fallback) / time.Second)
}

// parseDate returns the response's Date, or fallback if it has none or an
// invalid one.
func parseDate(hdr http.Header, fallback time.Time) time.Time {
	if d, err := http.ParseTime(hdr.Get("Date")); err == nil {
		return d
	}
	return fallback
}

// initialAge computes corrected_initial_age (RFC 9111 section 4.2.3) in
// seconds: the larger of the apparent age and the upstream Age plus the
// time the response took to arrive.
func initialAge(hdr http.Header, date, reqTime, respTime time.Time) int64 {
	apparent := max(0, int64(respTime.Sub(date)/time.Second))
	ageValue := int64(0)
	if a := hdr.Get("Age"); a != "" {
		ageValue = parseDelta(strings.TrimSpace(a))
	}
	delay := max(0, int64(respTime.Sub(reqTime)/time.Second))
	return max(apparent, ageValue+delay)
}

// varyFields returns the canonical, sorted, de-duplicated field names of
// the response's Vary, and whether it contains "*".
func varyFields(hdr http.Header) (fields []string, star bool) {
	for _, v := range hdr["Vary"] {
		for v != "" {
			var item string
			item, v = nextListItem(v)
			item = strings.TrimSpace(item)
			switch {
			case item == "":
				continue
			case item == "*":
				return nil, true
			}
			fields = insertSorted(fields, http.CanonicalHeaderKey(item))
		}
	}
	return fields, false
}

// insertSorted adds s to the sorted slice ss unless it is there already.
func insertSorted(ss []string, s string) []string {
	i := 0
	for i < len(ss) && ss[i] < s {
		i++
	}
	if i < len(ss) && ss[i] == s {
		return ss
	}
	ss = append(ss, "")
	copy(ss[i+1:], ss[i:])
	ss[i] = s
	return ss
}
