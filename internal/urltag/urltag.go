// Package urltag names the internal tag that the HTTP cache puts on every
// response it stores, so that a URL can be purged through the store's tag
// invalidation from any front (PURGE on the site, the admin API) without
// one front calling another.
package urltag

import "strings"

// Prefix starts every URL tag. Tags from origins that start with it are
// not accepted by the HTTP cache, so they cannot collide.
const Prefix = "url:"

// For returns the tag of every cached response for host and path: all of
// its query strings and Vary variants. host is compared without case and
// without a default port; path is the unescaped request path.
func For(host, path string) string {
	host = strings.ToLower(host)
	host = strings.TrimSuffix(strings.TrimSuffix(host, ":80"), ":443")
	if path == "" {
		path = "/"
	}
	return Prefix + host + path
}
