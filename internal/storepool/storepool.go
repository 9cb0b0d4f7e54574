// Package storepool holds the live stores of the tagcache app across config
// reloads.
//
// Caddy rebuilds every module on each config load, so the stores cannot live
// in the App value: they live in a package-level caddy.UsagePool keyed by
// store name. The app acquires each of its stores in Provision and releases
// it in Cleanup; a store whose last reference is released is closed.
//
// The pool is in its own leaf package, rather than in the root package, so
// that the admin API module can read it too: the root package blank-imports
// admin/ to register it, so admin/ cannot import the root package. An admin
// module has no config and is provisioned before the apps, so it cannot be
// handed the app either; it finds the stores at request time here. Keeping
// the UsagePool itself here, instead of mirroring it in a second registry,
// means there is one reference count and nothing to keep in step. The package
// is internal so that code outside this module cannot take or drop
// references; plugins reach stores through auth.App.
package storepool

import (
	"fmt"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/store"
)

// DefaultName is the name of the store used when none is given.
const DefaultName = "default"

// pool maps a store name to its *entry.
var pool = caddy.NewUsagePool()

// entry is a pooled store; the pool calls Destruct when its last reference
// is released.
type entry struct {
	st *store.Store
	// snapshot is where the store's snapshot goes, as the loaded config
	// says; nil if it has none.
	snapshot atomic.Pointer[SnapshotTarget]
}

// SnapshotTarget is where and how a store's snapshot is written.
type SnapshotTarget struct {
	Path        string
	Compression int
}

// Destruct closes the store, which stops its sweeper and frees its data.
func (e *entry) Destruct() error {
	e.st.Close()
	return nil
}

// Acquire returns the store named name and takes a reference to it. If no
// config holds the store yet, it is created with cfg and loaded is false;
// otherwise the live store is returned unchanged (its settings are not
// touched) and loaded is true. Every successful Acquire must be matched by
// exactly one Release.
func Acquire(name string, cfg store.Config) (st *store.Store, loaded bool, err error) {
	v, loaded, err := pool.LoadOrNew(name, func() (caddy.Destructor, error) {
		s, err := store.New(cfg)
		if err != nil {
			return nil, err
		}
		return &entry{st: s}, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*entry).st, loaded, nil
}

// Release drops a reference taken by Acquire. Dropping the last reference
// closes the store.
func Release(name string) error {
	_, err := pool.Delete(name)
	return err
}

// Lookup returns the live store named name without taking a reference. The
// store may be closed at any time after a config reload that drops it.
func Lookup(name string) (*store.Store, bool) {
	if e := lookupEntry(name); e != nil {
		return e.st, true
	}
	return nil, false
}

// Range calls fn for every live store until fn returns false. fn must not
// call Acquire or Release.
func Range(fn func(name string, st *store.Store) bool) {
	pool.Range(func(key, value any) bool {
		return fn(key.(string), value.(*entry).st)
	})
}

// References reports how many loaded configs hold the store named name.
func References(name string) int {
	n, _ := pool.References(name)
	return n
}

func lookupEntry(name string) *entry {
	var found *entry
	pool.Range(func(key, value any) bool {
		if key.(string) == name {
			found = value.(*entry)
			return false
		}
		return true
	})
	return found
}

// SetSnapshot records where the named store's snapshot goes (nil: it has
// none), so that any front can ask for a snapshot.
func SetSnapshot(name string, tgt *SnapshotTarget) {
	if e := lookupEntry(name); e != nil {
		e.snapshot.Store(tgt)
	}
}

// Snapshot returns where the named store's snapshot goes.
func Snapshot(name string) (SnapshotTarget, bool) {
	if e := lookupEntry(name); e != nil {
		if tgt := e.snapshot.Load(); tgt != nil {
			return *tgt, true
		}
	}
	return SnapshotTarget{}, false
}

// SaveSnapshot writes the named store's snapshot to its configured file.
func SaveSnapshot(name string) (store.SnapshotStats, error) {
	st, tgt, err := snapshotOf(name)
	if err != nil {
		return store.SnapshotStats{}, err
	}
	return st.SaveFile(tgt.Path, tgt.Compression)
}

// RestoreSnapshot replaces the named store's entries with those of its
// snapshot file.
func RestoreSnapshot(name string) (store.SnapshotStats, error) {
	st, tgt, err := snapshotOf(name)
	if err != nil {
		return store.SnapshotStats{}, err
	}
	st.Flush(0)
	return st.LoadFile(tgt.Path)
}

// snapshotOf returns the named store and where its snapshot goes.
func snapshotOf(name string) (*store.Store, *SnapshotTarget, error) {
	e := lookupEntry(name)
	if e == nil {
		return nil, nil, fmt.Errorf("no store named %q", name)
	}
	tgt := e.snapshot.Load()
	if tgt == nil {
		return nil, nil, fmt.Errorf("store %q has no snapshot configured", name)
	}
	return e.st, tgt, nil
}
