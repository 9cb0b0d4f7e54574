package handler

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("tagcache", parseCaddyfile)
	// Before rewrite, so a hit skips the rest of the chain (and sees the
	// URL the client asked for); ahead of encode, so compressed variants
	// are stored and hits are not compressed again.
	httpcaddyfile.RegisterDirectiveOrder("tagcache", httpcaddyfile.Before, "rewrite")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Handler)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	tagcache [<matcher>] {
//		store                  <name>
//		default_ttl            <duration>
//		max_heuristic_ttl      <duration>
//		stale_while_revalidate <duration>
//		stale_if_error         <duration>
//		keep_stale             <duration>
//		max_body_size          <size>
//		tags                   <tag...>
//		tag_headers            <field...>
//		keep_tag_headers
//		cache_set_cookie
//		status_header          <field>
//		cache_name             <name>
//		purge_from             <cidr...>
//		soft_purge
//		revalidate_timeout     <duration>
//		key {
//			template     <template>
//			ignore_query <param...>
//			keep_query   <param...>
//			headers      <field...>
//			cookies      <name...>
//		}
//	}
//
// Every setting is optional. Sizes are bytes or human sizes such as 8MiB;
// durations are Caddy durations such as 30s or 5m. Placeholders in tags
// and the key template are replaced per request.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "store", "status_header", "cache_name":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch opt {
			case "store":
				h.Store = v
			case "status_header":
				h.StatusHeader = v
			case "cache_name":
				h.CacheName = v
			}
		case "default_ttl", "max_heuristic_ttl", "stale_while_revalidate", "stale_if_error", "keep_stale", "revalidate_timeout":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < 0 {
				return d.Errf("%s: invalid duration '%s'", opt, v)
			}
			switch opt {
			case "default_ttl":
				h.DefaultTTL = caddy.Duration(dur)
			case "max_heuristic_ttl":
				h.MaxHeuristicTTL = caddy.Duration(dur)
			case "stale_while_revalidate":
				h.StaleWhileRevalidate = caddy.Duration(dur)
			case "stale_if_error":
				h.StaleIfError = caddy.Duration(dur)
			case "keep_stale":
				h.KeepStale = caddy.Duration(dur)
			case "revalidate_timeout":
				h.RevalidateTimeout = caddy.Duration(dur)
			}
		case "max_body_size":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 || n > 1<<40 {
				return d.Errf("max_body_size: invalid size '%s'", v)
			}
			h.MaxBodySize = int64(n)
		case "tags", "tag_headers", "purge_from":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			switch opt {
			case "tags":
				h.Tags = append(h.Tags, args...)
			case "tag_headers":
				h.TagHeaders = append(h.TagHeaders, args...)
			case "purge_from":
				h.PurgeFrom = append(h.PurgeFrom, args...)
			}
		case "keep_tag_headers", "cache_set_cookie", "soft_purge":
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "keep_tag_headers":
				h.KeepTagHeaders = true
			case "cache_set_cookie":
				h.CacheSetCookie = true
			case "soft_purge":
				h.SoftPurge = true
			}
		case "key":
			if err := h.unmarshalKey(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized tagcache option '%s'", opt)
		}
	}
	return h.Validate()
}

// unmarshalKey parses the `key { ... }` block.
func (h *Handler) unmarshalKey(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if h.Key == nil {
		h.Key = new(KeyConfig)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		switch opt {
		case "template":
			if len(args) != 1 {
				return d.ArgErr()
			}
			h.Key.Template = args[0]
		case "ignore_query":
			h.Key.IgnoreQuery = append(h.Key.IgnoreQuery, args...)
		case "keep_query":
			h.Key.KeepQuery = append(h.Key.KeepQuery, args...)
		case "headers":
			h.Key.Headers = append(h.Key.Headers, args...)
		case "cookies":
			h.Key.Cookies = append(h.Key.Cookies, args...)
		default:
			return d.Errf("unrecognized tagcache key option '%s'", opt)
		}
	}
	return nil
}
