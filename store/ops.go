package store

import (
	"math"
	"unsafe"
)

// Get returns the live entry under key.
func (s *Store) Get(key string) (Item, bool) {
	s.checkFlush()
	sh := s.shardFor(key)
	sh.mu.RLock()
	e := sh.m[key]
	if e == nil || s.expired(e) {
		sh.mu.RUnlock()
		sh.misses.Add(1)
		if e != nil {
			s.reap(sh, key)
		}
		return Item{}, false
	}
	it := s.read(e)
	sh.mu.RUnlock()
	sh.hits.Add(1)
	return it, true
}

// TagsOf returns the tags of the live entry under key. It does not count as
// an access.
func (s *Store) TagsOf(key string) ([]string, bool) {
	it, ok := s.Peek(key)
	return it.Tags, ok
}

// Peek returns the live entry under key without counting it as a hit or a
// miss and without recording an access, for listings such as memcached's
// stats cachedump.
func (s *Store) Peek(key string) (Item, bool) {
	s.checkFlush()
	sh := s.shardFor(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.m[key]
	if e == nil || s.expired(e) {
		return Item{}, false
	}
	return s.view(e, e.atime.Load()), true
}

// read records an access to e and returns its view. The caller holds at
// least the shard's read lock.
func (s *Store) read(e *entry) Item {
	prev := e.atime.Load()
	if next := fetchedBit | s.accessTick(); prev != next {
		e.atime.Store(next)
	}
	return s.view(e, prev)
}

// view returns e as an Item whose access information is prev, an atime
// value. The caller holds at least the shard's read lock.
func (s *Store) view(e *entry, prev uint32) Item {
	return Item{
		Value:      e.value(),
		Flags:      e.flags,
		CAS:        e.cas,
		Expires:    e.expires,
		Tags:       e.tags(),
		Stale:      e.stale(),
		Fetched:    prev&fetchedBit != 0,
		LastAccess: s.epoch + int64(prev&tickMask)<<tickShift,
	}
}

// Set stores value under key whether or not it exists and returns the new
// CAS unique.
func (s *Store) Set(key string, value []byte, p Params) (uint64, error) {
	return s.update(key, func(*entry) (change, error) {
		return change{value: value, params: p}, nil
	})
}

// Add stores value only if key has no live entry; otherwise ErrExists.
func (s *Store) Add(key string, value []byte, p Params) (uint64, error) {
	return s.update(key, func(old *entry) (change, error) {
		if old != nil {
			return change{}, ErrExists
		}
		return change{value: value, params: p}, nil
	})
}

// Replace stores value only if key has a live entry; otherwise ErrNotFound.
func (s *Store) Replace(key string, value []byte, p Params) (uint64, error) {
	return s.update(key, func(old *entry) (change, error) {
		if old == nil {
			return change{}, ErrNotFound
		}
		return change{value: value, params: p}, nil
	})
}

// CompareAndSwap stores value only if the live entry's CAS unique is cas:
// ErrNotFound if there is no entry, ErrCASMismatch if it changed.
func (s *Store) CompareAndSwap(key string, value []byte, p Params, cas uint64) (uint64, error) {
	return s.update(key, func(old *entry) (change, error) {
		switch {
		case old == nil:
			return change{}, ErrNotFound
		case old.cas != cas:
			return change{}, ErrCASMismatch
		}
		return change{value: value, params: p}, nil
	})
}

// Append adds value after the live entry's value, keeping its flags, expiry
// and tags; ErrNotFound if there is none.
func (s *Store) Append(key string, value []byte) (uint64, error) {
	return s.update(key, func(old *entry) (change, error) {
		if old == nil {
			return change{}, ErrNotFound
		}
		return change{value: old.value(), suffix: value, params: old.params()}, nil
	})
}

// Prepend adds value before the live entry's value, keeping its flags,
// expiry and tags; ErrNotFound if there is none.
func (s *Store) Prepend(key string, value []byte) (uint64, error) {
	return s.update(key, func(old *entry) (change, error) {
		if old == nil {
			return change{}, ErrNotFound
		}
		return change{value: value, suffix: old.value(), params: old.params()}, nil
	})
}

// Incr adds delta to the unsigned 64-bit decimal value under key, wrapping
// around on overflow, as memcached's incr does. ErrNotFound if there is no
// entry, ErrNotNumeric if the value is not a decimal number.
func (s *Store) Incr(key string, delta uint64) (uint64, error) {
	r, err := s.Arith(key, ArithOptions{Delta: delta})
	return r.Value, err
}

// Decr subtracts delta from the unsigned 64-bit decimal value under key,
// stopping at 0, as memcached's decr does.
func (s *Store) Decr(key string, delta uint64) (uint64, error) {
	r, err := s.Arith(key, ArithOptions{Delta: delta, Decr: true})
	return r.Value, err
}

// IncrBy adds delta to the signed 64-bit decimal value under key, failing
// with ErrOverflow rather than wrapping. The value must be written as
// strconv.FormatInt writes it (no '+', no leading zeros or spaces), as
// Redis's INCR requires; any other is ErrNotNumeric. An absent key is
// created with the value delta and the given params, as TagCache's INCR
// and DECR do; an existing entry keeps its flags, expiry and tags.
func (s *Store) IncrBy(key string, delta int64, p Params) (int64, error) {
	var n int64
	_, err := s.update(key, func(old *entry) (change, error) {
		if old == nil {
			n = delta
		} else {
			v, ok := ParseCanonicalInt(old.value())
			if !ok {
				return change{}, ErrNotNumeric
			}
			if (delta > 0 && v > math.MaxInt64-delta) || (delta < 0 && v < math.MinInt64-delta) {
				return change{}, ErrOverflow
			}
			n = v + delta
			p = old.params()
		}
		return change{isNumber: true, signed: true, n: uint64(n), params: p}, nil
	})
	return n, err
}

// ParseCanonicalInt parses a signed 64-bit integer written as
// strconv.FormatInt writes it, the rule of Redis's string2ll: no sign but
// '-', no leading zeros, no spaces. IncrBy takes only such values.
func ParseCanonicalInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// aliasString views immutable stored bytes as a string without copying.
func aliasString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// parseUint parses a memcached counter: decimal digits, optionally followed
// by the spaces memcached pads shrunk counters with.
func parseUint(b []byte) (uint64, bool) {
	i := 0
	var n uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if i == 0 {
		return 0, false
	}
	for ; i < len(b); i++ {
		if b[i] != ' ' {
			return 0, false
		}
	}
	return n, true
}

// Touch sets the expiry of the live entry under key. Like memcached's touch
// it keeps the CAS unique.
func (s *Store) Touch(key string, expires int64) error {
	_, ok := s.touch(key, expires, false)
	if !ok {
		return ErrNotFound
	}
	return nil
}

// GetAndTouch sets the expiry of the live entry under key and returns it.
func (s *Store) GetAndTouch(key string, expires int64) (Item, bool) {
	return s.touch(key, expires, true)
}

func (s *Store) touch(key string, expires int64, count bool) (it Item, ok bool) {
	s.withLive(key, func(sh *shard, e *entry) {
		if e == nil {
			if count {
				sh.misses.Add(1)
			}
			return
		}
		if count {
			sh.hits.Add(1)
		}
		e.expires = expires
		it, ok = s.read(e), true
		if s.expired(e) {
			s.removeLocked(sh, e, &sh.expirations)
		}
	})
	return it, ok
}

// GetAndDelete removes the live entry under key and returns it.
func (s *Store) GetAndDelete(key string) (it Item, ok bool) {
	s.withLive(key, func(sh *shard, e *entry) {
		if e == nil {
			sh.misses.Add(1)
			return
		}
		sh.hits.Add(1)
		it, ok = s.read(e), true
		s.removeLocked(sh, e, &sh.deletes)
	})
	if ok {
		s.emit(Invalidation{Kind: KeyDeleted, Key: key})
	}
	return it, ok
}

// Delete removes the live entry under key; ErrNotFound if there is none.
func (s *Store) Delete(key string) (err error) {
	s.withLive(key, func(sh *shard, e *entry) {
		if e == nil {
			err = ErrNotFound
			return
		}
		s.removeLocked(sh, e, &sh.deletes)
	})
	if err == nil {
		s.emit(Invalidation{Kind: KeyDeleted, Key: key})
	}
	return err
}

// withLive runs fn under key's shard write lock with the key's live entry,
// nil if there is none.
func (s *Store) withLive(key string, fn func(sh *shard, e *entry)) {
	s.checkFlush()
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	fn(sh, s.liveLocked(sh, key))
}
