package handler

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/urltag"
	"github.com/tagcache/caddy-tagcache/store"
)

// DefaultTagHeaders are the response fields that carry an origin's tags:
// Fastly's Surrogate-Key (space-separated), Cloudflare's Cache-Tag
// (comma-separated) and Varnish's xkey (either).
var DefaultTagHeaders = []string{"Surrogate-Key", "Cache-Tag", "Xkey"}

// tagSeparators says how a tag field's value is split.
type tagSeparators uint8

const (
	splitSpaces tagSeparators = 1 << iota
	splitCommas
)

// separatorsFor returns the separators of a tag field: Surrogate-Key is
// space-separated, Cache-Tag comma-separated (a Cloudflare tag may contain
// spaces), any other field either.
func separatorsFor(field string) tagSeparators {
	switch http.CanonicalHeaderKey(field) {
	case "Surrogate-Key":
		return splitSpaces
	case "Cache-Tag":
		return splitCommas
	}
	return splitSpaces | splitCommas
}

// appendTags appends the tags of one field value to dst. Empty tags, tags
// longer than the store accepts and tags in the reserved URL namespace are
// dropped: an origin must not be able to forge a URL tag.
func appendTags(dst []string, value string, sep tagSeparators) []string {
	for value != "" {
		i := 0
		for i < len(value) && !isTagSeparator(value[i], sep) {
			i++
		}
		tag := value[:i]
		if i < len(value) {
			value = value[i+1:]
		} else {
			value = ""
		}
		if sep&splitSpaces == 0 {
			tag = strings.TrimSpace(tag)
		}
		if validTag(tag) && !strings.HasPrefix(tag, urltag.Prefix) {
			dst = append(dst, tag)
		}
	}
	return dst
}

func isTagSeparator(c byte, sep tagSeparators) bool {
	switch c {
	case ' ', '\t':
		return sep&splitSpaces != 0
	case ',':
		return sep&splitCommas != 0
	}
	return false
}

// validTag reports whether the store accepts tag.
func validTag(tag string) bool {
	return tag != "" && len(tag) <= store.MaxTagLength
}

// purgeTags parses the tags of a PURGE request's Surrogate-Key fields, which
// may be space- or comma-separated. URL tags are allowed here: the client
// is trusted to purge.
func purgeTags(values []string) []string {
	var tags []string
	for _, v := range values {
		for f := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
			if validTag(f) {
				tags = append(tags, f)
			}
		}
	}
	return tags
}

// responseTags returns the tags a stored response carries: the origin's
// tags from the configured fields, the configured tags with placeholders
// replaced, and the URL tag that purges every variant of the URL.
func (h *Handler) responseTags(r *http.Request, hdr http.Header) []string {
	tags := make([]string, 0, 4)
	for i, field := range h.tagFields {
		for _, v := range hdr[field] {
			tags = appendTags(tags, v, h.tagSeps[i])
		}
	}
	if len(h.Tags) > 0 {
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		for _, t := range h.Tags {
			if repl != nil {
				t = repl.ReplaceAll(t, "")
			}
			if validTag(t) {
				tags = append(tags, t)
			}
		}
	}
	return append(tags, urlTag(r))
}

// urlTag is the tag of every cached response for the request's URL, in
// the form the admin API purges too.
func urlTag(r *http.Request) string {
	return urltag.For(r.Host, r.URL.Path)
}
