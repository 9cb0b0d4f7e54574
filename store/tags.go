package store

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
)

// invalidateBatch is how many keys InvalidateTags takes from a tag at a
// time, so that neither a tag shard nor a key shard is held for long.
const invalidateBatch = 4096

type tagShard struct {
	mu sync.RWMutex
	m  map[string]*tagSet
	_  [40]byte
}

// tagSet lists the keys carrying one tag. The keys are the entries'
// entryExt.key strings. Many tags (an HTTP response's URL tag, say) are
// carried by one key, which is held without a map: a map costs some 200
// bytes even for one key.
type tagSet struct {
	name string
	one  string              // the only key, while keys is nil; "" if none
	keys map[string]struct{} // the keys, once there are two or more
}

func (set *tagSet) add(key string) {
	switch {
	case set.keys != nil:
		set.keys[key] = struct{}{}
	case set.one == "" || set.one == key:
		set.one = key
	default:
		set.keys = map[string]struct{}{set.one: {}, key: {}}
		set.one = ""
	}
}

// remove unlists key and reports whether the set is now empty.
func (set *tagSet) remove(key string) (empty bool) {
	if set.keys == nil {
		if set.one == key {
			set.one = ""
		}
		return set.one == ""
	}
	delete(set.keys, key)
	return len(set.keys) == 0
}

func (set *tagSet) has(key string) bool {
	if set.keys == nil {
		return set.one != "" && set.one == key
	}
	_, ok := set.keys[key]
	return ok
}

func (set *tagSet) len() int {
	if set.keys == nil {
		if set.one == "" {
			return 0
		}
		return 1
	}
	return len(set.keys)
}

// all yields the keys.
func (set *tagSet) all(yield func(string) bool) {
	if set.keys == nil {
		if set.one != "" {
			yield(set.one)
		}
		return
	}
	for k := range set.keys {
		if !yield(k) {
			return
		}
	}
}

func (s *Store) tagShardFor(tag string) *tagShard {
	return &s.tagShards[maphash.String(s.seed, tag)&s.mask]
}

// tagAdd lists key under tag and returns the tag's canonical name, which
// entries share instead of holding copies. The caller holds the key's shard
// write lock.
func (s *Store) tagAdd(tag, key string) string {
	ts := s.tagShardFor(tag)
	ts.mu.Lock()
	set := ts.m[tag]
	if set == nil {
		set = &tagSet{name: strings.Clone(tag)}
		ts.m[set.name] = set
		s.used.Add(tagSetOverhead + int64(len(tag)))
	}
	set.add(key)
	ts.mu.Unlock()
	return set.name
}

// tagRemove unlists key from tag. The caller holds the key's shard write
// lock.
func (s *Store) tagRemove(tag, key string) {
	ts := s.tagShardFor(tag)
	ts.mu.Lock()
	if set := ts.m[tag]; set != nil {
		if set.remove(key) {
			delete(ts.m, tag)
			s.used.Add(-(tagSetOverhead + int64(len(tag))))
		}
	}
	ts.mu.Unlock()
}

// tagKeys appends up to limit (all if limit <= 0) keys listed under tag to
// dst. Some may belong to entries that expired and were not reclaimed yet.
func (s *Store) tagKeys(tag string, dst []string, limit int) []string {
	ts := s.tagShardFor(tag)
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	set := ts.m[tag]
	if set == nil {
		return dst
	}
	for k := range set.all {
		if limit > 0 && len(dst) >= limit {
			break
		}
		dst = append(dst, k)
	}
	return dst
}

// KeysByTag returns up to limit (all if limit <= 0) keys of live entries
// carrying tag, in no particular order.
func (s *Store) KeysByTag(tag string, limit int) []string {
	s.checkFlush()
	keys := s.tagKeys(tag, nil, 0)
	live := keys[:0]
	for _, k := range keys {
		if limit > 0 && len(live) >= limit {
			break
		}
		if s.liveWithTag(k, tag) {
			live = append(live, k)
		}
	}
	return live
}

// TagCount returns the number of live entries carrying tag.
func (s *Store) TagCount(tag string) int {
	return len(s.KeysByTag(tag, 0))
}

// liveWithTag reports whether key's entry is live and carries tag,
// reclaiming it if it expired.
func (s *Store) liveWithTag(key, tag string) bool {
	sh := s.shardFor(key)
	sh.mu.RLock()
	e := sh.m[key]
	expired := e != nil && s.expired(e)
	ok := e != nil && !expired && e.hasTag(tag)
	sh.mu.RUnlock()
	if expired {
		s.reap(sh, key)
	}
	return ok
}

// TagInfo is one tag of ListTags.
type TagInfo struct {
	Tag string `json:"tag"`
	// Count is the number of entries listed under the tag; it may include
	// entries that expired and were not reclaimed yet.
	Count int `json:"count"`
}

// ListTags returns up to limit (all if limit <= 0) tags, in no particular
// order.
func (s *Store) ListTags(limit int) []TagInfo {
	s.checkFlush()
	var out []TagInfo
	for i := range s.tagShards {
		ts := &s.tagShards[i]
		ts.mu.RLock()
		for name, set := range ts.m {
			if limit > 0 && len(out) >= limit {
				break
			}
			out = append(out, TagInfo{Tag: name, Count: set.len()})
		}
		ts.mu.RUnlock()
	}
	return out
}

// InvalidateTags removes every entry carrying any of tags and returns how
// many live entries it removed.
//
// It detaches the tag's key set from the index first, so the removals need
// not unlist each key from it, then removes the keys in batches, shard by
// shard, holding each shard lock for a part of a batch only: readers of
// other keys are not held up. Entries tagged while it runs are listed in a
// new set and stay.
func (s *Store) InvalidateTags(tags ...string) int {
	s.checkFlush()
	removed := 0
	var b invalidation
	for _, tag := range tags {
		set := s.detachTag(tag)
		if set == nil {
			continue
		}
		b.keys = b.keys[:0]
		for k := range set.all {
			if b.keys = append(b.keys, k); len(b.keys) == invalidateBatch {
				removed += s.removeTagged(tag, &b)
				b.keys = b.keys[:0]
			}
		}
		removed += s.removeTagged(tag, &b)
	}
	s.invalidations.Add(uint64(removed))
	s.emit(Invalidation{Kind: TagsInvalidated, Tags: tags, Count: removed})
	return removed
}

// detachTag takes tag's set out of the index and returns it.
func (s *Store) detachTag(tag string) *tagSet {
	ts := s.tagShardFor(tag)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	set := ts.m[tag]
	if set != nil {
		delete(ts.m, tag)
		s.used.Add(-(tagSetOverhead + int64(len(tag))))
	}
	return set
}

// invalidation holds one batch of InvalidateTags, grouped by shard.
type invalidation struct {
	keys   []string
	shard  []uint32 // shard of keys[i]
	starts []int    // per shard, where its keys begin in order; then the next free slot
	order  []string // keys grouped by shard
}

// removeTagged removes the entries under b.keys that carry tag, visiting
// each shard once, so its map stays in cache for the whole group.
func (s *Store) removeTagged(tag string, b *invalidation) int {
	n := len(s.shards)
	b.shard = b.shard[:0]
	b.starts = slices.Grow(b.starts[:0], n+1)[:n+1]
	clear(b.starts)
	for _, k := range b.keys {
		i := uint32(maphash.String(s.seed, k) & s.mask)
		b.shard = append(b.shard, i)
		b.starts[i+1]++
	}
	for i := 1; i <= n; i++ {
		b.starts[i] += b.starts[i-1]
	}
	b.order = append(b.order[:0], b.keys...)
	for j, k := range b.keys {
		b.order[b.starts[b.shard[j]]] = k
		b.starts[b.shard[j]]++
	}
	// starts[i] now holds the end of shard i's group, which begins at the
	// end of shard i-1's.
	removed := 0
	now := s.now()
	begin := 0
	for i := 0; i < n; i++ {
		group := b.order[begin:b.starts[i]]
		begin = b.starts[i]
		if len(group) == 0 {
			continue
		}
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, key := range group {
			if e := sh.m[key]; e != nil && e.hasTag(tag) {
				if !e.expired(now) {
					removed++
				}
				s.removeLocked(sh, e, nil)
			}
		}
		sh.mu.Unlock()
	}
	return removed
}
