// Package tagcache is a Caddy plugin that embeds a tag-aware in-memory cache
// and serves it to Caddy sites and other fronts. This package is the
// `tagcache` Caddy app, which owns the named stores; the cache core itself is
// the store package.
package tagcache

import (
	"fmt"
	"math/bits"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/admin"
	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/listeners"
	"github.com/tagcache/caddy-tagcache/store"
)

func init() {
	caddy.RegisterModule(App{})
}

// DefaultStore is the name of the store used when no name is given.
const DefaultStore = storepool.DefaultName

// App is the tagcache app: it owns the named in-memory stores that the
// tagcache fronts (HTTP cache, protocol listeners, APIs) read and write.
//
// Stores survive config reloads with their data: a reload applies changed
// settings such as max_memory to the live store, and a store that is no
// longer configured is closed and freed.
type App struct {
	// Stores configures the stores by name. A store named "default" always
	// exists, with default settings unless it is configured here; other
	// names are independent namespaces with their own memory budget.
	Stores map[string]*StoreConfig `json:"stores,omitempty"`

	// Auth configures the users that every front (HTTP purge, protocol
	// listeners, JSON API) authenticates. Default: no users, so fronts that
	// need auth accept loopback clients only.
	Auth *auth.Config `json:"auth,omitempty"`

	// Listeners serve the stores over wire protocols (`tcp` for the
	// tab-delimited TagCache protocol, `memcached`), each on its own
	// address with its own TLS, auth and limits. A reload keeps their
	// ports open and their stores' data; connections of the old config
	// are closed after the command they are answering. Default: none.
	Listeners []*listeners.Listener `json:"listeners,omitempty"`

	users    *auth.Users
	stores   map[string]*store.Store
	acquired []string
	// created lists the stores this config load created, rather than took
	// over from the previous config: only those load their snapshot.
	created      map[string]bool
	snapshotStop []func()
	logger       *zap.Logger
}

// StoreConfig configures one store. A zero or absent field takes its default.
type StoreConfig struct {
	// MaxMemory is the memory budget of the store in bytes, counting keys,
	// values, tags and per-entry overhead. When it is reached, expired
	// entries are evicted first, then the least recently used. Changing it
	// on reload applies to the live store at once. Default: 536870912
	// (512 MiB).
	MaxMemory int64 `json:"max_memory,omitempty"`

	// Shards is the number of independently locked shards, a power of two
	// of at most 65536. It is fixed when the store is created: a reload
	// that changes it keeps the live store's count and logs a warning.
	// Default: 256.
	Shards int `json:"shards,omitempty"`

	// MaxItemSize is the largest value in bytes that the store accepts, at
	// most 536870912 (512 MiB). Default: 1048576 (1 MiB).
	MaxItemSize int `json:"max_item_size,omitempty"`

	// MaxKeyLength is the longest key in bytes that the store accepts, at
	// most 65536 (64 KiB). Default: 250.
	MaxKeyLength int `json:"max_key_length,omitempty"`

	// MaxTagsPerKey is the largest number of tags one entry may carry.
	// Default: 64.
	MaxTagsPerKey int `json:"max_tags_per_key,omitempty"`

	// SweepInterval is how often a background sweep reclaims expired
	// entries, with bounded work per tick; expired entries are never
	// returned either way. A negative value disables the sweep. Default: 1s.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// Snapshot writes the store to a file and loads it when the store is
	// created, so that a restart starts warm. Default: none.
	Snapshot *SnapshotConfig `json:"snapshot,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tagcache",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision validates the config and acquires the stores from the pool that
// keeps them across reloads. A store that does not exist yet is created
// without its background sweeper, which Start launches: `caddy validate`
// runs Provision and Cleanup only and must start nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.Stores == nil {
		a.Stores = make(map[string]*StoreConfig)
	}
	if a.Stores[DefaultStore] == nil {
		a.Stores[DefaultStore] = new(StoreConfig)
	}
	for name, sc := range a.Stores {
		if sc == nil {
			a.Stores[name] = new(StoreConfig)
		}
	}
	if err := a.Validate(); err != nil {
		return err
	}
	var authCfg auth.Config
	if a.Auth != nil {
		authCfg = *a.Auth
	}
	users, err := auth.NewUsers(authCfg)
	if err != nil {
		return err
	}
	// Password changes and token revocations made at run time persist in
	// Caddy's storage; without users there are none.
	if users.Enabled() {
		if err := users.UseStorage(ctx, ctx.Storage(), a.logger.Named("auth")); err != nil {
			return err
		}
	}
	a.users = users

	// The store metrics (caddy_tagcache_*) go in this config's registry.
	if err := admin.RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}

	a.stores = make(map[string]*store.Store, len(a.Stores))
	a.created = make(map[string]bool)
	for _, name := range a.storeNames() {
		sc := a.Stores[name]
		cfg := sc.storeConfig()
		cfg.SweepInterval = -1 // started in Start
		st, loaded, err := storepool.Acquire(name, cfg)
		if err != nil {
			return fmt.Errorf("store %q: %v", name, err)
		}
		a.acquired = append(a.acquired, name)
		a.stores[name] = st
		a.created[name] = !loaded
		if want := sc.shards(); loaded && st.Shards() != want {
			a.logger.Warn("shard count of a live store cannot change; keeping it until the store is removed from the config",
				zap.String("store", name),
				zap.Int("shards", st.Shards()),
				zap.Int("configured_shards", want))
		}
	}

	seen := make(map[string]int, len(a.Listeners))
	for i, l := range a.Listeners {
		if l == nil {
			return fmt.Errorf("listener %d: empty", i)
		}
		if err := l.Provision(ctx, a); err != nil {
			return fmt.Errorf("listener %d (%s): %v", i, l.Address, err)
		}
		addr := l.NetworkAddress().String()
		if j, dup := seen[addr]; dup {
			return fmt.Errorf("listener %d: address %s is already used by listener %d", i, addr, j)
		}
		seen[addr] = i
	}
	return nil
}

// Validate checks the configured settings.
func (a *App) Validate() error {
	for name, sc := range a.Stores {
		if name == "" {
			return fmt.Errorf("store name must not be empty")
		}
		if sc == nil {
			continue // defaults
		}
		if err := sc.Validate(); err != nil {
			return fmt.Errorf("store %q: %v", name, err)
		}
	}
	return nil
}

// Start applies the configured settings to every store, starts their
// background sweepers and then the listeners. For a store kept from the
// previous config this is where a changed memory budget takes effect,
// evicting at once if the store is over it.
func (a *App) Start() error {
	for _, name := range a.storeNames() {
		if err := a.stores[name].Reconfigure(a.Stores[name].storeConfig()); err != nil {
			return fmt.Errorf("store %q: %v", name, err)
		}
	}
	// Snapshots load before the listeners open, so that no client sees a
	// store half loaded.
	a.startSnapshots()
	for i, l := range a.Listeners {
		if err := l.Start(); err != nil {
			// Caddy does not stop an app whose Start failed.
			for _, started := range a.Listeners[:i] {
				_ = started.Stop()
			}
			a.stopSnapshots()
			return fmt.Errorf("listener %d: %v", i, err)
		}
	}
	return nil
}

// Stop stops the listeners, then the periodic snapshots; if Caddy is
// exiting it writes the snapshots configured for shutdown, after the last
// client write. The stores and their sweepers outlive the config so that the
// next one keeps their data; Cleanup releases them.
func (a *App) Stop() error {
	var firstErr error
	for i, l := range a.Listeners {
		if err := l.Stop(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("listener %d: %v", i, err)
		}
	}
	a.stopSnapshots()
	return firstErr
}

// Cleanup releases the stores acquired in Provision; a store that no loaded
// config holds any more is closed and its memory freed.
func (a *App) Cleanup() error {
	var firstErr error
	for _, name := range a.acquired {
		if err := storepool.Release(name); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("store %q: %v", name, err)
		}
	}
	a.acquired = nil
	a.stores = nil
	return firstErr
}

// Store returns the store with the given name; "" means the default store.
// It is valid from Provision on.
func (a *App) Store(name string) (*store.Store, error) {
	if name == "" {
		name = DefaultStore
	}
	st, ok := a.stores[name]
	if !ok {
		return nil, fmt.Errorf("tagcache: no store named %q is configured", name)
	}
	return st, nil
}

// Users returns the configured users; it is valid from Provision on.
func (a *App) Users() *auth.Users { return a.users }

// MaxItemSize returns the largest value the named store accepts ("" means
// the default store), the default of a listener's max_value_size.
func (a *App) MaxItemSize(name string) int {
	if name == "" {
		name = DefaultStore
	}
	if sc := a.Stores[name]; sc != nil && sc.MaxItemSize > 0 {
		return sc.MaxItemSize
	}
	return store.DefaultMaxItemSize
}

// StoreNames returns the configured store names, "default" first and then
// the others in lexical order; it is valid from Provision on.
func (a *App) StoreNames() []string {
	names := a.storeNames()
	i := sort.SearchStrings(names, DefaultStore)
	if i == len(names) || names[i] != DefaultStore {
		return names // before Provision
	}
	copy(names[1:i+1], names[:i])
	names[0] = DefaultStore
	return names
}

// storeNames returns the configured store names in a stable order.
func (a *App) storeNames() []string {
	names := make([]string, 0, len(a.Stores))
	for name := range a.Stores {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Validate checks the settings against the store's limits.
func (sc *StoreConfig) Validate() error {
	switch {
	case sc.MaxMemory < 0:
		return fmt.Errorf("max_memory must be positive, got %d", sc.MaxMemory)
	case sc.Shards < 0 || sc.Shards > store.MaxShards || (sc.Shards > 0 && bits.OnesCount(uint(sc.Shards)) != 1):
		return fmt.Errorf("shards must be a power of two between 1 and %d, got %d", store.MaxShards, sc.Shards)
	case sc.MaxItemSize < 0 || sc.MaxItemSize > store.MaxItemSizeLimit:
		return fmt.Errorf("max_item_size must be between 1 and %d bytes, got %d", store.MaxItemSizeLimit, sc.MaxItemSize)
	case sc.MaxKeyLength < 0 || sc.MaxKeyLength > store.MaxKeyLengthLimit:
		return fmt.Errorf("max_key_length must be between 1 and %d bytes, got %d", store.MaxKeyLengthLimit, sc.MaxKeyLength)
	case sc.MaxTagsPerKey < 0:
		return fmt.Errorf("max_tags_per_key must be positive, got %d", sc.MaxTagsPerKey)
	}
	if sc.Snapshot != nil {
		return sc.Snapshot.Validate()
	}
	return nil
}

// storeConfig converts the settings to a store.Config; zero fields stay zero,
// which the store reads as its defaults.
func (sc *StoreConfig) storeConfig() store.Config {
	return store.Config{
		MaxMemory:     sc.MaxMemory,
		Shards:        sc.Shards,
		MaxKeyLength:  sc.MaxKeyLength,
		MaxItemSize:   sc.MaxItemSize,
		MaxTagsPerKey: sc.MaxTagsPerKey,
		SweepInterval: time.Duration(sc.SweepInterval),
	}
}

// shards returns the configured shard count with the default applied.
func (sc *StoreConfig) shards() int {
	if sc.Shards == 0 {
		return store.DefaultShards
	}
	return sc.Shards
}

// Interface guards
var (
	_ caddy.App             = (*App)(nil)
	_ caddy.Provisioner     = (*App)(nil)
	_ caddy.Validator       = (*App)(nil)
	_ caddy.CleanerUpper    = (*App)(nil)
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ auth.App              = (*App)(nil)
)
