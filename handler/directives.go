package handler

import (
	"net/http"
	"strings"
)

// unset marks a delta-seconds directive that is absent.
const unset = -1

// maxDelta is the largest delta-seconds value kept; RFC 9111 section 1.2.2
// says a larger one must be treated as 2^31, "infinity" for caches.
const maxDelta = 1 << 31

// directives are the parsed directives of a Cache-Control field, or of a
// field with the same syntax (Surrogate-Control, CDN-Cache-Control). Absent
// delta-seconds are unset; a directive that appears twice keeps its first
// value, and an invalid value counts as 0, which makes a response stale
// (RFC 9111 sections 4.2.1 and 1.2.2).
type directives struct {
	// present reports that the field had at least one directive.
	present bool

	maxAge, sMaxAge      int64
	maxStale, minFresh   int64
	staleWhileRevalidate int64
	staleIfError         int64

	noStore, noCache, private, public bool
	mustRevalidate, proxyRevalidate   bool
	onlyIfCached                      bool
	// maxStaleAny is a max-stale without a value: any staleness is fine.
	maxStaleAny bool

	// noCacheFields and privateFields are the field names of the qualified
	// forms no-cache="..." and private="...".
	noCacheFields, privateFields []string
}

// parseDirectives parses the values of a Cache-Control-like field. Unknown
// directives are ignored; directives targeted with ";" (Surrogate-Control's
// device tokens) are ignored because they name another surrogate.
func parseDirectives(values []string) directives {
	d := directives{
		maxAge: unset, sMaxAge: unset, maxStale: unset, minFresh: unset,
		staleWhileRevalidate: unset, staleIfError: unset,
	}
	for _, v := range values {
		for v != "" {
			var item string
			item, v = nextListItem(v)
			name, arg, hasArg := strings.Cut(item, "=")
			name = strings.TrimSpace(name)
			if name == "" || strings.IndexByte(name, ';') >= 0 {
				continue
			}
			arg = strings.TrimSpace(arg)
			d.present = true
			d.apply(name, arg, hasArg)
		}
	}
	return d
}

// apply records one directive.
func (d *directives) apply(name, arg string, hasArg bool) {
	switch {
	case strings.EqualFold(name, "max-age"):
		setDelta(&d.maxAge, arg)
	case strings.EqualFold(name, "s-maxage"):
		setDelta(&d.sMaxAge, arg)
	case strings.EqualFold(name, "min-fresh"):
		setDelta(&d.minFresh, arg)
	case strings.EqualFold(name, "stale-while-revalidate"):
		setDelta(&d.staleWhileRevalidate, arg)
	case strings.EqualFold(name, "stale-if-error"):
		setDelta(&d.staleIfError, arg)
	case strings.EqualFold(name, "max-stale"):
		if !hasArg {
			d.maxStaleAny = true
		} else {
			setDelta(&d.maxStale, arg)
		}
	case strings.EqualFold(name, "no-store"):
		d.noStore = true
	case strings.EqualFold(name, "no-cache"):
		if fields := fieldList(arg); hasArg && len(fields) > 0 {
			d.noCacheFields = append(d.noCacheFields, fields...)
		} else {
			d.noCache = true
		}
	case strings.EqualFold(name, "private"):
		if fields := fieldList(arg); hasArg && len(fields) > 0 {
			d.privateFields = append(d.privateFields, fields...)
		} else {
			d.private = true
		}
	case strings.EqualFold(name, "public"):
		d.public = true
	case strings.EqualFold(name, "must-revalidate"):
		d.mustRevalidate = true
	case strings.EqualFold(name, "proxy-revalidate"):
		d.proxyRevalidate = true
	case strings.EqualFold(name, "only-if-cached"):
		d.onlyIfCached = true
	}
}

// setDelta stores a delta-seconds argument unless the directive was seen
// before.
func setDelta(dst *int64, arg string) {
	if *dst == unset {
		*dst = parseDelta(arg)
	}
}

// parseDelta parses delta-seconds. Quotes are tolerated, as many caches do;
// Surrogate-Control's "N+M" form keeps N. An invalid value is 0 and a
// value above 2^31 is 2^31.
func parseDelta(s string) int64 {
	s = strings.Trim(s, `"`)
	if i := strings.IndexByte(s, '+'); i > 0 {
		s = s[:i]
	}
	if s == "" {
		return 0
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta)
}

// nextListItem splits the first element off a comma-separated list,
// keeping commas inside quoted strings.
func nextListItem(s string) (item, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inQuote = !inQuote
		case c == '\\' && inQuote:
			i++
		case c == ',' && !inQuote:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// fieldList parses the quoted field-name list of a qualified no-cache or
// private directive into canonical header names.
func fieldList(arg string) []string {
	arg = strings.Trim(arg, `"`)
	var fields []string
	for f := range strings.SplitSeq(arg, ",") {
		if f = strings.TrimSpace(f); f != "" {
			fields = append(fields, http.CanonicalHeaderKey(f))
		}
	}
	return fields
}

// requestDirectives returns the request's Cache-Control directives; a
// request without Cache-Control that carries "Pragma: no-cache" is treated
// as no-cache (RFC 9111 section 5.4).
func requestDirectives(h http.Header) directives {
	d := parseDirectives(h["Cache-Control"])
	if !d.present {
		for _, p := range h["Pragma"] {
			if containsToken(p, "no-cache") {
				d.noCache = true
			}
		}
	}
	return d
}

// containsToken reports whether the comma-separated list s contains token,
// ignoring case and surrounding whitespace.
func containsToken(s, token string) bool {
	for s != "" {
		var item string
		item, s = nextListItem(s)
		if strings.EqualFold(strings.TrimSpace(item), token) {
			return true
		}
	}
	return false
}
