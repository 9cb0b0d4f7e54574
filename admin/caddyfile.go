package admin

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("tagcache_api", parseCaddyfile)
	// Among the handlers that answer requests themselves, next to
	// `metrics`: after `respond`, so that a more specific respond route
	// still wins, and before `reverse_proxy` and `file_server`, which would
	// otherwise take every request of a site that also serves the API on a
	// path matcher.
	httpcaddyfile.RegisterDirectiveOrder("tagcache_api", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	api := new(JSONAPI)
	err := api.UnmarshalCaddyfile(h.Dispenser)
	return api, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	tagcache_api [<matcher>] {
//		store         <name>
//		max_body_size <size>
//	}
//
// The handler answers every request it gets; to serve the API under a
// path, use `handle_path /cache/* { tagcache_api }`.
func (h *JSONAPI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		arg := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "store":
			h.Store = arg
		case "max_body_size":
			n, err := humanize.ParseBytes(arg)
			if err != nil || n == 0 || n > 1<<40 {
				return d.Errf("max_body_size: invalid size '%s'", arg)
			}
			h.MaxBodySize = int64(n)
		default:
			return d.Errf("unrecognized tagcache_api option '%s'", opt)
		}
	}
	return nil
}
