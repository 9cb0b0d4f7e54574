// Command caddy is Caddy with its standard modules and the tagcache plugin,
// for development, CI and the README's quick start.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/tagcache/caddy-tagcache"
)

func main() {
	caddycmd.Main()
}
