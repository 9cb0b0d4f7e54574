package memcached

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// UnmarshalCaddyfile sets up the protocol's options from Caddyfile tokens.
// Syntax:
//
//	memcached {
//		binding auto|ascii|binary
//		disable_flush
//	}
//
// The listener's own options (address, store, TLS, auth, limits) belong to
// the listener that serves this protocol, not here.
func (m *Memcached) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the protocol name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "binding":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.Binding = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "disable_flush":
			if d.NextArg() {
				return d.ArgErr()
			}
			m.DisableFlush = true
		default:
			return d.Errf("unrecognized memcached option '%s'", d.Val())
		}
	}
	return m.Validate()
}
