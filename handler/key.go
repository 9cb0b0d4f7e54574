package handler

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// KeyConfig changes how requests map to cache entries. By default the key
// is the scheme, host, path and the query with its parameters sorted; GET
// and HEAD share entries.
type KeyConfig struct {
	// Template replaces the scheme, host and path part of the key; Caddy
	// placeholders in it are replaced per request, for example
	// "{http.request.host}{http.request.uri.path}" to share entries
	// between http and https. The query (see IgnoreQuery and KeepQuery)
	// is still appended. Default: the scheme, host and path.
	Template string `json:"template,omitempty"`

	// IgnoreQuery lists query parameters left out of the key, compared as
	// they appear in the URL (not unescaped); "*" leaves out the whole
	// query. Default: none.
	IgnoreQuery []string `json:"ignore_query,omitempty"`

	// KeepQuery, when set, keeps only these query parameters in the key.
	// Default: all parameters are kept.
	KeepQuery []string `json:"keep_query,omitempty"`

	// Headers lists request fields whose values become part of the key.
	// Default: none.
	Headers []string `json:"headers,omitempty"`

	// Cookies lists request cookies whose values become part of the key.
	// Default: none.
	Cookies []string `json:"cookies,omitempty"`
}

// keyPrefix starts every HTTP cache key, which keeps HTTP entries apart
// from what other fronts store.
const keyPrefix = "http:"

// maxKeyLen is the longest key stored as is; a longer one is replaced by a
// hash so that it fits the store's default key limit of 250 bytes.
const maxKeyLen = 200

// keyBufPool holds buffers for building keys on the hit path without
// allocating.
var keyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// appendKey appends the primary cache key of r to dst.
func (h *Handler) appendKey(dst []byte, r *http.Request) []byte {
	start := len(dst)
	dst = append(dst, keyPrefix...)
	if h.key.Template != "" {
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl != nil {
			dst = append(dst, repl.ReplaceAll(h.key.Template, "")...)
		} else {
			dst = append(dst, h.key.Template...)
		}
	} else {
		if r.TLS != nil {
			dst = append(dst, "https://"...)
		} else {
			dst = append(dst, "http://"...)
		}
		dst = appendLower(dst, r.Host)
		dst = append(dst, r.URL.EscapedPath()...)
	}
	if !h.ignoreAllQuery && r.URL.RawQuery != "" {
		dst = h.appendQuery(dst, r.URL.RawQuery)
	}
	for _, name := range h.key.Headers {
		dst = append(dst, 0, 'h')
		dst = append(dst, name...)
		dst = append(dst, ':')
		dst = appendFieldValues(dst, r.Header[name], false)
	}
	for _, name := range h.key.Cookies {
		dst = append(dst, 0, 'c')
		dst = append(dst, name...)
		dst = append(dst, '=')
		dst = append(dst, cookieValue(r.Header["Cookie"], name)...)
	}
	return capKey(dst, start)
}

// appendVariant appends to dst the key of the variant that r selects among
// the responses under primary, given the Vary field names.
func appendVariant(dst []byte, primary string, r *http.Request, fields varyIndex) []byte {
	start := len(dst)
	dst = append(dst, primary...)
	dst = append(dst, 0, 'v')
	for {
		name, ok := fields.next()
		if !ok {
			break
		}
		dst = append(dst, 0)
		dst = appendFieldValues(dst, r.Header[name], name == "Accept-Encoding")
	}
	return capKey(dst, start)
}

// capKey replaces the key in dst[start:] by a hash of it if it is too long.
func capKey(dst []byte, start int) []byte {
	if len(dst)-start <= maxKeyLen {
		return dst
	}
	sum := sha256.Sum256(dst[start:])
	dst = append(dst[:start], keyPrefix...)
	dst = append(dst, '#')
	return hex.AppendEncode(dst, sum[:])
}

// appendQuery appends "?" and the query's parameters, filtered by the key
// config and sorted, so that parameter order does not split the cache.
func (h *Handler) appendQuery(dst []byte, rawQuery string) []byte {
	var small [16]string
	params := small[:0]
	for p := range strings.SplitSeq(rawQuery, "&") {
		if p == "" {
			continue
		}
		name, _, _ := strings.Cut(p, "=")
		if slices.Contains(h.key.IgnoreQuery, name) ||
			(len(h.key.KeepQuery) > 0 && !slices.Contains(h.key.KeepQuery, name)) {
			continue
		}
		params = append(params, p)
	}
	if len(params) == 0 {
		return dst
	}
	slices.Sort(params)
	dst = append(dst, '?')
	for i, p := range params {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, p...)
	}
	return dst
}

// appendFieldValues appends a field's list items joined by commas, without
// the whitespace around them, so that formatting does not split the
// cache. With sortItems the items are also lowercased and sorted, which
// suits Accept-Encoding.
func appendFieldValues(dst []byte, values []string, sortItems bool) []byte {
	var small [8]string
	items := small[:0]
	for _, v := range values {
		for v != "" {
			var item string
			item, v = nextListItem(v)
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
	}
	if sortItems {
		slices.SortFunc(items, func(a, b string) int {
			return strings.Compare(strings.ToLower(a), strings.ToLower(b))
		})
	}
	for i, item := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		if sortItems {
			dst = appendLower(dst, item)
		} else {
			dst = append(dst, item...)
		}
	}
	return dst
}

// appendLower appends s in ASCII lower case.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// cookieValue returns the value of the named cookie in the Cookie fields.
func cookieValue(values []string, name string) string {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return val
			}
		}
	}
	return ""
}
