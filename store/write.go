package store

import (
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"
)

// change is what a write stores: value followed by suffix (append and
// prepend store two parts without concatenating them first), with params.
type change struct {
	value, suffix []byte
	params        Params
	// isNumber stores n in decimal (as int64 if signed) instead of value:
	// counters are formatted into a stack buffer, not a heap one.
	isNumber, signed bool
	n                uint64
	// cas, if nonzero, is the CAS unique the entry takes instead of the
	// next one of its shard's sequence (memcached's meta E flag).
	cas uint64
	// stale and won are the entry's meta state after the write (see
	// meta.go); a write clears both unless it sets them.
	stale, won bool
}

func (e *entry) params() Params {
	return Params{Flags: e.flags, Expires: e.expires, Tags: e.tags()}
}

// update is the one write path: it validates the key, runs decide under the
// key's shard lock with the live entry (nil if none), and installs what
// decide returns, evicting others if the store goes over budget. It returns
// the new CAS unique, or 0 when the write stored an already expired entry.
func (s *Store) update(key string, decide func(old *entry) (change, error)) (uint64, error) {
	lim := s.limits.Load()
	if err := lim.checkKey(key); err != nil {
		return 0, err
	}
	s.checkFlush()
	sh := s.shardFor(key)
	sh.mu.Lock()
	old := s.liveLocked(sh, key)
	c, err := decide(old)
	if err == nil {
		err = s.checkChange(lim, key, &c)
	}
	if err != nil {
		sh.mu.Unlock()
		return 0, err
	}
	if c.params.Expires != 0 && c.params.Expires <= s.now() {
		if old != nil {
			s.removeLocked(sh, old, &sh.deletes)
		}
		sh.mu.Unlock()
		sh.sets.Add(1)
		return 0, nil
	}
	e := s.installLocked(sh, old, key, &c)
	cas := e.cas
	over := s.overBudget()
	if over {
		over = s.evictLocked(sh, e, s.now(), localEvictions)
	}
	sh.mu.Unlock()
	sh.sets.Add(1)
	if over {
		s.evictOthers(s.now(), e)
	}
	return cas, nil
}

// checkChange enforces the item size, tag limits and the budget on c,
// normalizing its tags.
func (s *Store) checkChange(lim *limits, key string, c *change) error {
	n := len(c.value) + len(c.suffix)
	if n > lim.maxItem {
		return &LimitError{Err: ErrValueTooLarge, Size: int64(n), Max: int64(lim.maxItem)}
	}
	tags, err := lim.checkTags(c.params.Tags)
	if err != nil {
		return err
	}
	c.params.Tags = tags
	size := int64(entryOverhead + len(key) + n)
	if len(tags) > 0 {
		size += int64(extOverhead + len(key) + len(tags)*tagRefOverhead)
	}
	for _, t := range tags {
		// The tag's set may be new; count it as if it were.
		size += int64(tagSetOverhead + len(t))
	}
	if max := s.maxMem.Load(); size > max {
		return &LimitError{Err: ErrValueTooLarge, Size: size, Max: max}
	}
	return nil
}

// installLocked stores c under key, reusing old's entry if there is one. The
// caller holds sh's write lock.
func (s *Store) installLocked(sh *shard, old *entry, key string, c *change) *entry {
	e := old
	if e == nil {
		e = &entry{}
		sh.ring = append(sh.ring, e)
	} else {
		// The map key aliases the old data; the assignment below replaces
		// it with the new one (a map assignment to an existing string key
		// stores the new key so that the old one can be collected), which
		// saves a delete.
		s.used.Add(-e.size())
	}
	value := c.value
	var digits [20]byte
	switch {
	case c.isNumber && c.signed:
		value = strconv.AppendInt(digits[:0], int64(c.n), 10)
	case c.isNumber:
		value = strconv.AppendUint(digits[:0], c.n, 10)
	}
	buf := make([]byte, len(key)+len(value)+len(c.suffix))
	copy(buf[copy(buf, key):], value)
	copy(buf[len(key)+len(value):], c.suffix)
	e.data = unsafe.Pointer(&buf[0])
	e.keyLen = uint32(len(key))
	e.valLen = uint32(len(value) + len(c.suffix))
	e.flags = c.params.Flags
	e.expires = c.params.Expires
	sh.seq++
	e.cas = sh.seq<<s.shardBits | sh.idx
	if c.cas != 0 {
		e.cas = c.cas
	}
	e.atime.Store(s.accessTick())
	s.setTagsLocked(e, c.params.Tags)
	if c.stale || c.won {
		ext := extOf(e)
		ext.stale, ext.won = c.stale, c.won
	}
	sh.m[e.key()] = e
	s.used.Add(e.size())
	return e
}

// setTagsLocked makes tags the entry's tags and updates the tag index for
// the difference. It also clears the stale mark: a write is fresh.
func (s *Store) setTagsLocked(e *entry, tags []string) {
	var old []string
	if e.ext != nil {
		old = e.ext.tags
		e.ext.stale, e.ext.won = false, false
	}
	if sameTags(old, tags) {
		if len(tags) == 0 {
			e.ext = nil
		}
		return
	}
	if e.ext == nil {
		e.ext = &entryExt{key: strings.Clone(e.key())}
	}
	key := e.ext.key
	for _, t := range old {
		if !contains(tags, t) {
			s.tagRemove(t, key)
		}
	}
	var canon []string
	if len(tags) > 0 {
		canon = make([]string, len(tags))
		for i, t := range tags {
			if j := indexOf(old, t); j >= 0 {
				canon[i] = old[j]
			} else {
				canon[i] = s.tagAdd(t, key)
			}
		}
	}
	e.ext.tags = canon
	if len(canon) == 0 {
		e.ext = nil
	}
}

func sameTags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, t := range b {
		if !contains(a, t) {
			return false
		}
	}
	return true
}

func indexOf(list []string, s string) int {
	for i, t := range list {
		if t == s {
			return i
		}
	}
	return -1
}

// liveLocked returns the live entry under key, reclaiming an expired one.
// The caller holds sh's write lock.
func (s *Store) liveLocked(sh *shard, key string) *entry {
	e := sh.m[key]
	if e != nil && s.expired(e) {
		s.removeLocked(sh, e, &sh.expirations)
		return nil
	}
	return e
}

// reap removes the entry under key if it is expired; readers call it after
// finding one under the read lock.
func (s *Store) reap(sh *shard, key string) {
	sh.mu.Lock()
	s.liveLocked(sh, key)
	sh.mu.Unlock()
}

// removeLocked deletes e from sh and the tag index and counts it in counter
// (nil for invalidations, which the store counts). The caller holds sh's
// write lock.
func (s *Store) removeLocked(sh *shard, e *entry, counter *atomic.Uint64) {
	delete(sh.m, e.key())
	if e.ext != nil {
		for _, t := range e.ext.tags {
			s.tagRemove(t, e.ext.key)
		}
	}
	s.used.Add(-e.size())
	if counter != nil {
		counter.Add(1)
	}
	// Dead: its ring slot is skipped and reclaimed by compaction.
	e.data, e.ext = nil, nil
	if sh.dead++; sh.dead > minCompact && sh.dead > len(sh.ring)/2 {
		sh.compact()
	}
}

// minCompact is how many dead ring slots a shard tolerates before
// compacting, whatever its size.
const minCompact = 64

// compact drops the dead entries from the ring. It runs after as many
// removals as there are live entries, so its cost per removal is constant.
func (sh *shard) compact() {
	live := sh.ring[:0]
	for _, e := range sh.ring {
		if e.data != nil {
			live = append(live, e)
		}
	}
	clear(sh.ring[len(live):])
	sh.ring, sh.dead = live, 0
}
