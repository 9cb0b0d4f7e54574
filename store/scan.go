package store

// Scan returns keys of live entries for which match returns true (all if
// match is nil), walking the shards from cursor on, and the cursor to pass
// next; 0 means the walk is complete. Start with cursor 0. It visits whole
// shards until it has at least count keys, so it may return more. As with
// Redis's SCAN, a key that exists for the whole walk is returned exactly
// once; keys written or removed during it may or may not be.
func (s *Store) Scan(cursor uint64, count int, match func(key string) bool) (keys []string, next uint64) {
	s.checkFlush()
	for i := cursor; i < uint64(len(s.shards)); i++ {
		sh := &s.shards[i]
		sh.mu.RLock()
		for k, e := range sh.m {
			if !s.expired(e) && (match == nil || match(k)) {
				keys = append(keys, k)
			}
		}
		sh.mu.RUnlock()
		if len(keys) >= count && i+1 < uint64(len(s.shards)) {
			return keys, i + 1
		}
	}
	return keys, 0
}
