package tagcache

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/store"
)

// Store names in these tests are unique to each test: the integration test's
// Caddy keeps running in this process with its own stores.

func newTestContext(t *testing.T) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

func mustProvisionStart(t *testing.T, ctx caddy.Context, a *App) {
	t.Helper()
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func mustStopCleanup(t *testing.T, a *App) {
	t.Helper()
	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
}

func TestAppDefaultStore(t *testing.T) {
	ctx := newTestContext(t)
	a := new(App)
	mustProvisionStart(t, ctx, a)
	defer mustStopCleanup(t, a)

	def, err := a.Store("")
	if err != nil {
		t.Fatalf(`Store(""): %v`, err)
	}
	byName, err := a.Store(DefaultStore)
	if err != nil || byName != def {
		t.Fatalf("Store(%q) = %p, %v; want the default store %p", DefaultStore, byName, err, def)
	}
	if got := def.Stats(); got.MaxMemory != store.DefaultMaxMemory || got.Shards != store.DefaultShards {
		t.Errorf("default store has max_memory %d, shards %d; want the defaults %d, %d",
			got.MaxMemory, got.Shards, store.DefaultMaxMemory, store.DefaultShards)
	}
	if _, err := a.Store("nope"); err == nil {
		t.Error(`Store("nope") succeeded; want an error for an unconfigured store`)
	}
}

func TestAppStoreNames(t *testing.T) {
	ctx := newTestContext(t)
	a := &App{Stores: map[string]*StoreConfig{"z-storenames": nil, "a-storenames": nil, "m-storenames": {}}}
	mustProvisionStart(t, ctx, a)
	defer mustStopCleanup(t, a)
	got := a.StoreNames()
	want := []string{DefaultStore, "a-storenames", "m-storenames", "z-storenames"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("StoreNames() = %q, want %q", got, want)
	}
}

// TestAppReload plays a config reload by hand in Caddy's order: the new app
// is provisioned and started before the old one is stopped and cleaned up.
func TestAppReload(t *testing.T) {
	ctx := newTestContext(t)
	old := &App{Stores: map[string]*StoreConfig{
		"unit-keep":  {MaxMemory: 8 << 20},
		"unit-drop":  {},
		"unit-small": {MaxMemory: 4 << 20, Shards: 16},
	}}
	mustProvisionStart(t, ctx, old)

	keep, _ := old.Store("unit-keep")
	drop, _ := old.Store("unit-drop")
	small, _ := old.Store("unit-small")
	if _, err := keep.Set("page:1", []byte("cached"), store.Params{Tags: []string{"product:42"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := drop.Set("gone", []byte("soon"), store.Params{}); err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 16<<10)
	for i := range 128 { // 2 MiB of values
		if _, err := small.Set(fmt.Sprintf("bulk:%d", i), value, store.Params{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := small.Stats().Bytes; got < 1<<20 {
		t.Fatalf("unit-small holds %d bytes before the reload; the test needs more than 1 MiB", got)
	}

	next := &App{Stores: map[string]*StoreConfig{
		"unit-keep":  {MaxMemory: 4 << 20, MaxItemSize: 2 << 20},
		"unit-small": {MaxMemory: 1 << 20, Shards: 64}, // shards cannot change live
	}}
	mustProvisionStart(t, ctx, next)
	mustStopCleanup(t, old)
	defer mustStopCleanup(t, next)

	keep2, _ := next.Store("unit-keep")
	if keep2 != keep {
		t.Fatal("reload replaced the unit-keep store; want the live store reused")
	}
	if it, ok := keep2.Get("page:1"); !ok || string(it.Value) != "cached" {
		t.Errorf("after reload Get(page:1) = %q, %v; want \"cached\", true", it.Value, ok)
	}
	if got := keep2.Stats().MaxMemory; got != 4<<20 {
		t.Errorf("after reload max_memory = %d; want the new budget %d", got, 4<<20)
	}

	small2, _ := next.Store("unit-small")
	st := small2.Stats()
	if st.MaxMemory != 1<<20 || st.Bytes > st.MaxMemory || st.Evictions == 0 {
		t.Errorf("after shrinking the budget: max_memory %d, bytes %d, evictions %d; want 1 MiB, bytes within it, evictions > 0",
			st.MaxMemory, st.Bytes, st.Evictions)
	}
	if st.Shards != 16 {
		t.Errorf("shards = %d after a reload asking for 64; want the live store's 16", st.Shards)
	}

	if _, ok := storepool.Lookup("unit-drop"); ok {
		t.Error("unit-drop is still in the pool after a reload that removed it")
	}
	if it, ok := drop.Get("gone"); ok || drop.Stats().Items != 0 {
		t.Errorf("removed store still holds data: Get = %q, %v; items %d", it.Value, ok, drop.Stats().Items)
	}
}

func TestAppCleanupFreesStores(t *testing.T) {
	ctx := newTestContext(t)
	a := &App{Stores: map[string]*StoreConfig{"unit-cleanup": {}}}
	mustProvisionStart(t, ctx, a)
	if n := storepool.References("unit-cleanup"); n != 1 {
		t.Fatalf("references = %d; want 1", n)
	}
	mustStopCleanup(t, a)
	if _, ok := storepool.Lookup("unit-cleanup"); ok {
		t.Error("store still pooled after the only config holding it was cleaned up")
	}
	if err := a.Cleanup(); err != nil { // Caddy may clean up twice on a failed load
		t.Errorf("second Cleanup: %v", err)
	}
}

// storeGoroutines counts goroutines running code of the store package (its
// background sweepers).
func storeGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "caddy-tagcache/store.") {
			count++
		}
	}
	return count
}

func waitStoreGoroutines(want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := storeGoroutines()
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProvisionStartsNothing checks what `caddy validate` relies on:
// Provision and Cleanup without Start leave no goroutine and no store.
func TestProvisionStartsNothing(t *testing.T) {
	before := storeGoroutines()

	ctx := newTestContext(t)
	a := &App{Stores: map[string]*StoreConfig{"unit-validate": {SweepInterval: caddy.Duration(time.Millisecond)}}}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storeGoroutines(); got != before {
		t.Errorf("Provision started %d store goroutines; want none", got-before)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if got := storeGoroutines(); got <= before {
		t.Errorf("Start left %d store goroutines, %d before; want the sweepers running", got, before)
	}
	mustStopCleanup(t, a)
	if got := waitStoreGoroutines(before); got != before {
		t.Errorf("Cleanup left %d store goroutines, %d before", got, before)
	}

	cfg := &caddy.Config{AppsRaw: caddy.ModuleMap{
		"tagcache": json.RawMessage(`{"stores":{"unit-validate":{"max_memory":1048576}}}`),
	}}
	if err := caddy.Validate(cfg); err != nil {
		t.Fatalf("caddy.Validate: %v", err)
	}
	if _, ok := storepool.Lookup("unit-validate"); ok {
		t.Error("caddy.Validate left the store in the pool")
	}
	if got := storeGoroutines(); got != before {
		t.Errorf("caddy.Validate left %d store goroutines, %d before", got, before)
	}
}

func TestAppInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want string
	}{
		{"shards", `{"stores":{"unit-bad":{"shards":100}}}`, "shards must be a power of two"},
		{"negative memory", `{"stores":{"unit-bad":{"max_memory":-1}}}`, "max_memory must be positive"},
		{"item size", `{"stores":{"unit-bad":{"max_item_size":1073741824}}}`, "max_item_size must be between"},
		{"key length", `{"stores":{"unit-bad":{"max_key_length":70000}}}`, "max_key_length must be between"},
		{"empty name", `{"stores":{"":{}}}`, "store name must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &caddy.Config{AppsRaw: caddy.ModuleMap{"tagcache": json.RawMessage(tc.json)}}
			err := caddy.Validate(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("caddy.Validate = %v; want an error containing %q", err, tc.want)
			}
			if _, ok := storepool.Lookup("unit-bad"); ok {
				t.Error("an invalid config left a store in the pool")
			}
		})
	}
}
