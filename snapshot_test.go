package tagcache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tagcache/caddy-tagcache/store"
)

func snapshotApp(name, path string) *App {
	return &App{Stores: map[string]*StoreConfig{
		name: {Snapshot: &SnapshotConfig{Path: path, Compression: "zstd"}},
	}}
}

// TestSnapshotRestart plays a process restart: the store is freed when the
// last config lets it go, and a new one loads the snapshot.
func TestSnapshotRestart(t *testing.T) {
	ctx := newTestContext(t)
	path := filepath.Join(t.TempDir(), "snap", "unit-snap.snap")
	a := snapshotApp("unit-snap", path)
	mustProvisionStart(t, ctx, a)
	st, _ := a.Store("unit-snap")
	expires := st.Now() + 3_600_000
	st.Set("k", []byte("v"), store.Params{Flags: 7, Expires: expires, Tags: []string{"t1", "t2"}})
	if _, err := a.SaveSnapshot("unit-snap"); err != nil {
		t.Fatal(err)
	}
	mustStopCleanup(t, a)

	b := snapshotApp("unit-snap", path)
	mustProvisionStart(t, ctx, b)
	defer mustStopCleanup(t, b)
	st2, _ := b.Store("unit-snap")
	if st2 == st {
		t.Fatal("the store survived its last config; the test needs a fresh one")
	}
	it, ok := st2.Get("k")
	if !ok || string(it.Value) != "v" || it.Flags != 7 || it.Expires != expires || len(it.Tags) != 2 {
		t.Fatalf("after restart: %+v, %v", it, ok)
	}
	if n := st2.InvalidateTags("t2"); n != 1 {
		t.Fatalf("tag index not rebuilt: InvalidateTags = %d", n)
	}
}

// TestSnapshotNotReloadedOnReload checks that a config reload keeps the live
// store instead of loading the file again.
func TestSnapshotNotReloadedOnReload(t *testing.T) {
	ctx := newTestContext(t)
	path := filepath.Join(t.TempDir(), "unit-reload.snap")
	a := snapshotApp("unit-reload", path)
	mustProvisionStart(t, ctx, a)
	st, _ := a.Store("unit-reload")
	st.Set("in-snapshot", []byte("1"), store.Params{})
	if _, err := a.SaveSnapshot("unit-reload"); err != nil {
		t.Fatal(err)
	}
	st.Delete("in-snapshot")
	st.Set("after", []byte("2"), store.Params{})

	b := snapshotApp("unit-reload", path)
	mustProvisionStart(t, ctx, b)
	mustStopCleanup(t, a)
	defer mustStopCleanup(t, b)
	st2, _ := b.Store("unit-reload")
	if _, ok := st2.Get("in-snapshot"); ok {
		t.Fatal("a reload loaded the snapshot again")
	}
	if _, ok := st2.Get("after"); !ok {
		t.Fatal("a reload lost data")
	}
}

// TestSnapshotCorruptStartsEmpty checks that a damaged snapshot does not
// stop the app from starting, and is kept aside.
func TestSnapshotCorruptStartsEmpty(t *testing.T) {
	ctx := newTestContext(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "unit-corrupt.snap")
	if err := os.WriteFile(path, []byte("TCSNAP garbage that is not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := snapshotApp("unit-corrupt", path)
	mustProvisionStart(t, ctx, a)
	defer mustStopCleanup(t, a)
	st, _ := a.Store("unit-corrupt")
	if n := st.Stats().Items; n != 0 {
		t.Fatalf("%d items from a corrupt snapshot", n)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("corrupt snapshot not kept aside: %v", aside)
	}
}

func TestSnapshotConfigValidate(t *testing.T) {
	sc := &StoreConfig{Snapshot: &SnapshotConfig{Compression: "lz4"}}
	if err := sc.Validate(); err == nil {
		t.Fatal("unknown compression accepted")
	}
	a := &App{Stores: map[string]*StoreConfig{"unit-nosnap": {}}}
	ctx := newTestContext(t)
	mustProvisionStart(t, ctx, a)
	defer mustStopCleanup(t, a)
	if _, err := a.SaveSnapshot("unit-nosnap"); err == nil {
		t.Fatal("snapshot of a store without a snapshot config succeeded")
	}
}
