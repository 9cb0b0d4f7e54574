package tagcache

// The fronts register their own Caddy modules; importing them here means
// `xcaddy build --with github.com/tagcache/caddy-tagcache` brings them all.
import (
	_ "github.com/tagcache/caddy-tagcache/admin"
	_ "github.com/tagcache/caddy-tagcache/handler"
	_ "github.com/tagcache/caddy-tagcache/listeners/memcached"
	_ "github.com/tagcache/caddy-tagcache/listeners/tabproto"
)
