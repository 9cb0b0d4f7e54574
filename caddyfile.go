package tagcache

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("tagcache", parseGlobalOption)
}

// parseGlobalOption sets up the tagcache app from the `tagcache` global
// option. If the option appears more than once, the blocks are merged.
func parseGlobalOption(d *caddyfile.Dispenser, existingVal any) (any, error) {
	app := new(App)
	if existing, ok := existingVal.(httpcaddyfile.App); ok {
		if err := json.Unmarshal(existing.Value, app); err != nil {
			return nil, fmt.Errorf("merging tagcache options: %v", err)
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{
		Name:  "tagcache",
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. Syntax:
//
//	tagcache {
//		store [<name>] {
//			max_memory       <size>
//			shards           <count>
//			max_item_size    <size>
//			max_key_length   <size>
//			max_tags_per_key <count>
//			sweep_interval   <duration>
//			snapshot {
//				path        <file>
//				interval    <duration>
//				on_shutdown
//				compression none|zstd
//			}
//		}
//		auth {
//			user <username> <bcrypt-hash> [<permission>...]
//			token_ttl <duration>
//		}
//		listen <protocol> <address> {
//			store           <name>
//			tls             [internal] [<names>...]
//			auth            required
//			max_connections <count>
//			idle_timeout    <duration>
//			max_line_length <size>
//			max_value_size  <size>
//			event_loops     <count>|auto|off
//		}
//	}
//
// A `store` without a name configures the store named `default`, which
// exists even if it is not configured; a bare `tagcache` gives just that
// store with default settings. Sizes are bytes or human sizes such as
// 512MiB, 64MB or 1KiB; durations are Caddy durations such as 500ms or 1s.
//
// Each `listen` serves a store over a wire protocol, the module
// tagcache.listeners.<protocol> (tcp, memcached), on a network address
// such as :11211 or unix//run/tagcache.sock; its block is optional. `tls`
// alone takes a certificate for the listener's host (localhost if none);
// `internal` has Caddy's internal CA issue it. A negative idle_timeout
// disables it. `event_loops auto` (the default) starts with one loop and
// adds loops while they raise throughput; a count runs that many; `off`
// serves every connection from a goroutine of its own.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "store":
			if err := a.unmarshalStore(d); err != nil {
				return err
			}
		case "auth":
			if err := a.unmarshalAuth(d); err != nil {
				return err
			}
		case "listen":
			l, err := unmarshalListen(d)
			if err != nil {
				return err
			}
			a.Listeners = append(a.Listeners, l)
		default:
			return d.Errf("unrecognized tagcache option '%s'", d.Val())
		}
	}
	return nil
}

// unmarshalStore parses one `store [<name>] { ... }` block.
func (a *App) unmarshalStore(d *caddyfile.Dispenser) error {
	name := DefaultStore
	switch args := d.RemainingArgs(); len(args) {
	case 0:
	case 1:
		name = args[0]
	default:
		return d.ArgErr()
	}
	if a.Stores == nil {
		a.Stores = make(map[string]*StoreConfig)
	}
	if _, dup := a.Stores[name]; dup {
		return d.Errf("store '%s' is configured more than once", name)
	}
	sc := new(StoreConfig)
	a.Stores[name] = sc

	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "max_memory", "max_item_size", "max_key_length", "shards", "max_tags_per_key", "sweep_interval":
		case "snapshot":
			if err := sc.unmarshalSnapshot(d); err != nil {
				return err
			}
			continue
		default:
			return d.Errf("unrecognized store option '%s'", opt)
		}
		arg, err := singleArg(d)
		if err != nil {
			return err
		}
		switch opt {
		case "max_memory":
			sc.MaxMemory, err = parseSize(arg, math.MaxInt64)
		case "max_item_size":
			sc.MaxItemSize, err = parseIntSize(arg, math.MaxInt)
		case "max_key_length":
			sc.MaxKeyLength, err = parseIntSize(arg, math.MaxInt)
		case "shards":
			sc.Shards, err = parseCount(arg)
		case "max_tags_per_key":
			sc.MaxTagsPerKey, err = parseCount(arg)
		case "sweep_interval":
			var dur caddy.Duration
			dur, err = parseDuration(arg)
			sc.SweepInterval = dur
		}
		if err != nil {
			return d.Errf("store '%s': %s: %v", name, opt, err)
		}
		if err := sc.Validate(); err != nil {
			return d.Errf("store '%s': %v", name, err)
		}
	}
	return nil
}

// unmarshalSnapshot parses a store's `snapshot { ... }` block; a bare
// `snapshot` uses the default path with no trigger but the explicit ones
// (admin API, protocols).
func (sc *StoreConfig) unmarshalSnapshot(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if sc.Snapshot != nil {
		return d.Err("snapshot configured more than once")
	}
	sc.Snapshot = new(SnapshotConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "on_shutdown":
			if d.NextArg() {
				return d.ArgErr()
			}
			sc.Snapshot.OnShutdown = true
			continue
		case "path", "interval", "compression":
		default:
			return d.Errf("unrecognized snapshot option '%s'", opt)
		}
		arg, err := singleArg(d)
		if err != nil {
			return err
		}
		switch opt {
		case "path":
			sc.Snapshot.Path = arg
		case "interval":
			sc.Snapshot.Interval, err = parseDuration(arg)
		case "compression":
			sc.Snapshot.Compression = arg
		}
		if err == nil {
			err = sc.Snapshot.Validate()
		}
		if err != nil {
			return d.Errf("snapshot: %s: %v", opt, err)
		}
	}
	return nil
}

// unmarshalAuth parses the `auth { ... }` block. Permissions are read,
// write, purge, admin or all (the default); token_ttl is the lifetime of
// bearer tokens (default 1h).
func (a *App) unmarshalAuth(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if a.Auth == nil {
		a.Auth = new(auth.Config)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "user":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("user needs a name and a bcrypt hash (from `caddy hash-password`)")
			}
			uc := auth.UserConfig{Username: args[0], Password: args[1], Permissions: args[2:]}
			if _, err := auth.ParsePermissions(uc.Permissions); err != nil {
				return d.Errf("user '%s': %v", uc.Username, err)
			}
			a.Auth.Users = append(a.Auth.Users, uc)
		case "token_ttl":
			arg, err := singleArg(d)
			if err != nil {
				return err
			}
			dur, err := parseDuration(arg)
			if err == nil && dur < 0 {
				err = fmt.Errorf("duration must be positive")
			}
			if err != nil {
				return d.Errf("token_ttl: %v", err)
			}
			a.Auth.TokenTTL = dur
		default:
			return d.Errf("unrecognized auth option '%s'", d.Val())
		}
	}
	return nil
}

// unmarshalListen parses one `listen <protocol> <address> { ... }` line.
func unmarshalListen(d *caddyfile.Dispenser) (*listeners.Listener, error) {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return nil, d.Errf("listen needs a protocol and an address, as in: listen memcached :11211")
	}
	protocol, address := args[0], args[1]
	if _, err := caddy.ParseNetworkAddress(address); err != nil {
		return nil, d.Errf("listen %s: invalid address '%s': %v", protocol, address, err)
	}
	l := &listeners.Listener{Address: address}
	// Options the listener does not know belong to the protocol module,
	// which parses them as its own block: `<protocol> { <options> }`.
	protoTokens := []caddyfile.Token{{File: d.File(), Line: d.Line(), Text: protocol}, {File: d.File(), Line: d.Line(), Text: "{"}}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "tls":
			l.TLS = new(listeners.TLS)
			for _, arg := range d.RemainingArgs() {
				if arg == "internal" {
					l.TLS.Internal = true
				} else {
					l.TLS.Names = append(l.TLS.Names, arg)
				}
			}
			continue
		case "store", "auth", "max_connections", "idle_timeout", "max_line_length", "max_value_size", "event_loops":
		default:
			protoTokens = append(protoTokens, d.NextSegment()...)
			continue
		}
		arg, err := singleArg(d)
		if err != nil {
			return nil, err
		}
		switch opt {
		case "store":
			l.Store = arg
		case "auth":
			if arg != listeners.AuthRequired {
				return nil, d.Errf("listen %s %s: auth: want 'required', got '%s'", protocol, address, arg)
			}
			l.Auth = arg
		case "max_connections":
			l.MaxConnections, err = parseCount(arg)
		case "idle_timeout":
			l.IdleTimeout, err = parseDuration(arg)
		case "max_line_length":
			l.MaxLineLength, err = parseIntSize(arg, math.MaxInt32)
		case "max_value_size":
			l.MaxValueSize, err = parseIntSize(arg, store.MaxItemSizeLimit)
		case "event_loops":
			switch arg {
			case "off":
				l.EventLoops = -1
			case "auto":
				l.EventLoops = 0
			default:
				l.EventLoops, err = parseCount(arg)
			}
		}
		if err != nil {
			return nil, d.Errf("listen %s %s: %s: %v", protocol, address, opt, err)
		}
	}
	protoTokens = append(protoTokens, caddyfile.Token{File: d.File(), Line: d.Line() + 1, Text: "}"})
	proto, err := unmarshalProtocol(protocol, protoTokens)
	if err != nil {
		return nil, d.Errf("listen %s %s: %v", protocol, address, err)
	}
	l.ProtocolRaw = caddyconfig.JSONModuleObject(proto, "protocol", protocol, nil)
	return l, nil
}

// unmarshalProtocol makes the protocol module and gives it its options; a
// module without options refuses any.
func unmarshalProtocol(protocol string, tokens []caddyfile.Token) (any, error) {
	mod, err := caddy.GetModule("tagcache.listeners." + protocol)
	if err != nil {
		return nil, fmt.Errorf("unknown protocol '%s'", protocol)
	}
	inst := mod.New()
	if u, ok := inst.(caddyfile.Unmarshaler); ok {
		return inst, u.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	}
	if len(tokens) > 3 {
		return nil, fmt.Errorf("unrecognized option '%s'", tokens[2].Text)
	}
	return inst, nil
}

// singleArg returns the one argument of the current subdirective.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return "", d.ArgErr()
	}
	return args[0], nil
}

// parseSize parses a byte size such as 1048576, 512MiB or 64MB; it must be
// positive and at most limit.
func parseSize(s string, limit int64) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("invalid size '%s'", s)
	}
	if n == 0 || n > uint64(limit) {
		return 0, fmt.Errorf("size '%s' out of range", s)
	}
	return int64(n), nil
}

// parseIntSize is parseSize for settings held in an int.
func parseIntSize(s string, limit int) (int, error) {
	n, err := parseSize(s, int64(limit))
	return int(n), err
}

// parseCount parses a positive integer.
func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid count '%s': must be a positive integer", s)
	}
	return n, nil
}

// parseDuration parses a non-zero Caddy duration; a negative one disables
// what it configures.
func parseDuration(s string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration '%s': %v", s, err)
	}
	if dur == 0 {
		return 0, fmt.Errorf("duration must not be zero")
	}
	return caddy.Duration(dur), nil
}
