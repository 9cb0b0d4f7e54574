// Package store is the tag-aware in-memory cache core of caddy-tagcache.
//
// It is plain Go with no Caddy import, so it can be embedded as a library:
//
//	st, err := store.New(store.Config{MaxMemory: 64 << 20})
//	if err != nil { ... }
//	defer st.Close()
//	_, err = st.Set("user:42", []byte("hello"), store.Params{Tags: []string{"users"}})
//	it, ok := st.Get("user:42")
//	n := st.InvalidateTags("users") // removes user:42, n == 1
//
// # Entries
//
// An entry has a binary-safe key, a value, client flags (uint32), a CAS unique
// (uint64, changed by every write to the entry), an absolute expiry in Unix
// milliseconds (0 means never) and zero or more tags.
//
// Values are immutable once stored: every write that changes a value stores a
// new buffer. Item.Value and Item.Tags returned by reads therefore stay valid
// forever, are shared with the store and must not be modified; this is what
// lets the protocol fronts write a hit without copying it. The store copies
// every key, value and tag it keeps, so callers may pass strings and slices
// that alias reusable buffers.
//
// # Concurrency
//
// Keys are spread over a power-of-two number of shards, each with its own
// lock; the tag index (tag -> keys) is sharded the same way. No operation on a
// single key takes a global lock. A key is listed under exactly the tags of its
// live entry: overwrites, deletes, expiry, eviction, invalidation and flushes
// keep the index exact. Invalidating a tag removes its keys in bounded batches
// so readers of unrelated keys are never blocked for long.
//
// # Expiry and memory
//
// An expired entry is never returned. Expired entries are reclaimed when they
// are next touched, by eviction (which prefers them) and by a background
// sweep that samples each shard with bounded work per tick, as Redis's active
// expiry does.
//
// The memory budget counts keys, values, tags and a fixed per-entry overhead
// that approximates the Go heap cost of an entry. A write that takes the store
// over budget evicts by sampled LRU (expired entries first) until the store
// fits again. A write is visible to the next read at once and is never
// silently dropped: an item that can never fit is refused with an error.
package store
