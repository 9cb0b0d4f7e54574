package memcached

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// TestGomemcache drives the server with a stock client,
// github.com/bradfitz/gomemcache, through every operation it offers.
func TestGomemcache(t *testing.T) {
	srv := startServer(t, serverOptions{})
	mc := memcache.New(srv.addr)
	mc.Timeout = 5 * time.Second
	defer mc.Close()

	if err := mc.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := mc.Get("missing"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Get missing: %v", err)
	}
	if err := mc.Set(&memcache.Item{Key: "k", Value: []byte("v1"), Flags: 42}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	it, err := mc.Get("k")
	if err != nil || string(it.Value) != "v1" || it.Flags != 42 {
		t.Fatalf("Get: %+v %v", it, err)
	}
	if err := mc.Add(&memcache.Item{Key: "k", Value: []byte("x")}); !errors.Is(err, memcache.ErrNotStored) {
		t.Fatalf("Add existing: %v", err)
	}
	if err := mc.Add(&memcache.Item{Key: "new", Value: []byte("n")}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := mc.Replace(&memcache.Item{Key: "none", Value: []byte("x")}); !errors.Is(err, memcache.ErrNotStored) {
		t.Fatalf("Replace missing: %v", err)
	}
	if err := mc.Replace(&memcache.Item{Key: "new", Value: []byte("r")}); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if err := mc.Append(&memcache.Item{Key: "k", Value: []byte(">")}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := mc.Prepend(&memcache.Item{Key: "k", Value: []byte("<")}); err != nil {
		t.Fatalf("Prepend: %v", err)
	}
	if err := mc.Append(&memcache.Item{Key: "none", Value: []byte(">")}); !errors.Is(err, memcache.ErrNotStored) {
		t.Fatalf("Append missing: %v", err)
	}

	// Compare-and-swap: the first swap wins, the second conflicts.
	it, err = mc.Get("k")
	if err != nil || string(it.Value) != "<v1>" {
		t.Fatalf("Get after append/prepend: %+v %v", it, err)
	}
	it.Value = []byte("swapped")
	if err := mc.CompareAndSwap(it); err != nil {
		t.Fatalf("CompareAndSwap: %v", err)
	}
	if err := mc.CompareAndSwap(it); !errors.Is(err, memcache.ErrCASConflict) {
		t.Fatalf("CompareAndSwap again: %v", err)
	}
	if err := mc.Delete("new"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	it.Key = "new"
	if err := mc.CompareAndSwap(it); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("CompareAndSwap on a deleted key: %v", err)
	}
	if err := mc.Delete("new"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Delete missing: %v", err)
	}

	// Counters are unsigned 64-bit.
	if _, err := mc.Increment("ctr", 1); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Increment missing: %v", err)
	}
	mc.Set(&memcache.Item{Key: "ctr", Value: []byte("18446744073709551614")})
	if n, err := mc.Increment("ctr", 3); err != nil || n != 1 {
		t.Fatalf("Increment wraps: %d %v", n, err)
	}
	if n, err := mc.Decrement("ctr", 10); err != nil || n != 0 {
		t.Fatalf("Decrement stops at 0: %d %v", n, err)
	}
	if _, err := mc.Increment("k", 1); err == nil || !strings.Contains(err.Error(), "non-numeric") {
		t.Fatalf("Increment non-numeric: %v", err)
	}

	// Expiry, on the harness's manual clock.
	mc.Set(&memcache.Item{Key: "ttl", Value: []byte("t"), Expiration: 10})
	if err := mc.Touch("ttl", 100); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if err := mc.Touch("none", 100); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Touch missing: %v", err)
	}
	srv.clock.Advance(50)
	if it, err := mc.GetAndTouch("ttl", 20); err != nil || string(it.Value) != "t" {
		t.Fatalf("GetAndTouch: %+v %v", it, err)
	}
	srv.clock.Advance(21)
	if _, err := mc.Get("ttl"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Get after expiry: %v", err)
	}

	// GetMulti over many keys, some missing.
	want := map[string]string{}
	for i := range 300 {
		key, value := fmt.Sprintf("multi:%d", i), strings.Repeat(fmt.Sprint(i), i%50+1)
		if i%3 == 0 {
			if err := mc.Set(&memcache.Item{Key: key, Value: []byte(value)}); err != nil {
				t.Fatal(err)
			}
			want[key] = value
		}
	}
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("multi:%d", i)
	}
	got, err := mc.GetMulti(keys)
	if err != nil || len(got) != len(want) {
		t.Fatalf("GetMulti: %d items, want %d (%v)", len(got), len(want), err)
	}
	for k, v := range want {
		if string(got[k].Value) != v {
			t.Fatalf("GetMulti %s = %q, want %q", k, got[k].Value, v)
		}
	}

	// A value near the limit, and one over it.
	big := bytes.Repeat([]byte("b"), 1<<20)
	if err := mc.Set(&memcache.Item{Key: "big", Value: big}); err != nil {
		t.Fatalf("Set 1 MiB: %v", err)
	}
	if it, err := mc.Get("big"); err != nil || !bytes.Equal(it.Value, big) {
		t.Fatalf("Get 1 MiB: %v", err)
	}
	if err := mc.Set(&memcache.Item{Key: "big", Value: append(big, 'x')}); err == nil {
		t.Fatal("Set over the item limit succeeded")
	}
	if err := mc.Set(&memcache.Item{Key: "after", Value: []byte("ok")}); err != nil {
		t.Fatalf("Set after a refused value: %v", err)
	}

	if err := mc.DeleteAll(); err != nil {
		t.Fatalf("DeleteAll: %v", err)
	}
	if _, err := mc.Get("after"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Get after DeleteAll: %v", err)
	}
	if err := mc.FlushAll(); err != nil {
		t.Fatalf("FlushAll: %v", err)
	}
}

// TestGomemcacheConcurrent runs many goroutines through one client (which
// pools connections) and checks every read against what its goroutine
// wrote.
func TestGomemcacheConcurrent(t *testing.T) {
	srv := startServer(t, serverOptions{})
	mc := memcache.New(srv.addr)
	mc.Timeout = 5 * time.Second
	mc.MaxIdleConns = 16
	defer mc.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprintf("g%d:%d", g, i%20)
				value := []byte(fmt.Sprintf("%d-%d", g, i))
				if err := mc.Set(&memcache.Item{Key: key, Value: value}); err != nil {
					errs <- err
					return
				}
				it, err := mc.Get(key)
				if err != nil || !bytes.Equal(it.Value, value) {
					errs <- fmt.Errorf("%s: got %+v %v, want %q", key, it, err, value)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
