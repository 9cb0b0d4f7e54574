package storepool

import (
	"testing"

	"github.com/tagcache/caddy-tagcache/store"
)

func TestAcquireRelease(t *testing.T) {
	cfg := store.Config{MaxMemory: 1 << 20, Shards: 4, SweepInterval: -1}
	a, loaded, err := Acquire("pool-test", cfg)
	if err != nil || loaded {
		t.Fatalf("first Acquire = %v, loaded %v; want a new store", err, loaded)
	}
	b, loaded, err := Acquire("pool-test", store.Config{Shards: 8})
	if err != nil || !loaded || b != a {
		t.Fatalf("second Acquire = %p, loaded %v, %v; want the same store %p, loaded", b, loaded, err, a)
	}
	if b.Shards() != 4 {
		t.Errorf("a loaded store was reconfigured: shards %d, want 4", b.Shards())
	}
	if n := References("pool-test"); n != 2 {
		t.Errorf("References = %d; want 2", n)
	}
	if _, err := a.Set("k", []byte("v"), store.Params{}); err != nil {
		t.Fatal(err)
	}

	if err := Release("pool-test"); err != nil {
		t.Fatal(err)
	}
	if got, ok := Lookup("pool-test"); !ok || got != a {
		t.Fatal("store gone after releasing one of two references")
	}
	if _, ok := a.Get("k"); !ok {
		t.Error("data lost while a reference remains")
	}

	if err := Release("pool-test"); err != nil {
		t.Fatal(err)
	}
	if _, ok := Lookup("pool-test"); ok {
		t.Error("store still pooled after its last reference was released")
	}
	if _, ok := a.Get("k"); ok || a.Stats().Items != 0 {
		t.Error("store not closed after its last reference was released")
	}
}

func TestAcquireInvalidConfig(t *testing.T) {
	if _, _, err := Acquire("pool-bad", store.Config{Shards: 3}); err == nil {
		t.Fatal("Acquire with 3 shards succeeded; want an error")
	}
	if _, ok := Lookup("pool-bad"); ok {
		t.Error("a failed Acquire left an entry in the pool")
	}
	if n := References("pool-bad"); n != 0 {
		t.Errorf("References = %d after a failed Acquire; want 0", n)
	}
}

func TestRange(t *testing.T) {
	for _, name := range []string{"range-a", "range-b"} {
		if _, _, err := Acquire(name, store.Config{SweepInterval: -1}); err != nil {
			t.Fatal(err)
		}
		defer Release(name)
	}
	seen := map[string]bool{}
	Range(func(name string, st *store.Store) bool {
		seen[name] = st != nil
		return true
	})
	if !seen["range-a"] || !seen["range-b"] {
		t.Errorf("Range saw %v; want range-a and range-b", seen)
	}
}
