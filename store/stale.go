package store

import "strings"

// MarkStale marks the live entry under key stale, as a soft purge: it stays
// readable, with Item.Stale set, until it is rewritten, so that a front can
// serve it while it revalidates. The CAS unique changes. ErrNotFound if
// there is no entry.
func (s *Store) MarkStale(key string) (err error) {
	s.withLive(key, func(sh *shard, e *entry) {
		if e == nil {
			err = ErrNotFound
			return
		}
		s.markStaleLocked(sh, e)
	})
	return err
}

// StaleTags marks every live entry carrying any of tags stale (see
// MarkStale) and returns how many it marked.
func (s *Store) StaleTags(tags ...string) int {
	s.checkFlush()
	marked := 0
	var keys []string
	for _, tag := range tags {
		keys = s.tagKeys(tag, keys[:0], 0)
		for _, key := range keys {
			sh := s.shardFor(key)
			sh.mu.Lock()
			if e := s.liveLocked(sh, key); e != nil && e.hasTag(tag) && !e.stale() {
				s.markStaleLocked(sh, e)
				marked++
			}
			sh.mu.Unlock()
		}
	}
	return marked
}

func (s *Store) markStaleLocked(sh *shard, e *entry) {
	s.used.Add(-e.size())
	if e.ext == nil {
		e.ext = &entryExt{key: strings.Clone(e.key())}
	}
	e.ext.stale = true
	sh.seq++
	e.cas = sh.seq<<s.shardBits | sh.idx
	s.used.Add(e.size())
}
