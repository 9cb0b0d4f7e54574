package store

import (
	"errors"
	"strings"
)

// This file holds the conditional, flag-driven variants of the basic
// operations that memcached's meta commands and binary protocol need: writes
// and deletes guarded by a CAS unique, client-chosen CAS uniques, counters
// created on a miss, and the "win token" that tells exactly one client to
// recache an entry that is missing, stale or about to expire while the others
// keep using what is there.

// MaxKeyLength returns the longest key the store accepts, in bytes.
func (s *Store) MaxKeyLength() int { return s.limits.Load().maxKey }

// MaxItemSize returns the largest value the store accepts, in bytes.
func (s *Store) MaxItemSize() int { return s.limits.Load().maxItem }

// Mode selects what Write does with an existing or absent entry.
type Mode uint8

const (
	// ModeSet stores whether or not the key has a live entry.
	ModeSet Mode = iota
	// ModeAdd stores only if the key has no live entry, else ErrExists.
	ModeAdd
	// ModeReplace stores only if the key has a live entry, else
	// ErrNotFound.
	ModeReplace
	// ModeAppend adds the value after the live entry's, keeping its flags,
	// expiry and tags; ErrNotFound if there is none.
	ModeAppend
	// ModePrepend adds the value before the live entry's, as ModeAppend.
	ModePrepend
)

// WriteOptions are the conditions and meta state of a Write.
type WriteOptions struct {
	Mode Mode
	// CAS, if nonzero, must be the live entry's CAS unique: ErrNotFound if
	// there is no entry, ErrCASMismatch if it differs. ModeAdd ignores it.
	CAS uint64
	// Invalidate, with CAS in ModeSet or ModeReplace, also accepts a CAS
	// lower than the entry's: the value is then stored stale, keeping the
	// entry's expiry and win token (memcached's ms I flag), so that a late
	// writer of older data marks the entry for revalidation instead of
	// failing.
	Invalidate bool
	// Create makes ModeAppend and ModePrepend store the value with the
	// given params when the key has no live entry (memcached's ms N flag).
	Create bool
	// NewCAS, if nonzero, is the CAS unique the entry takes instead of a
	// fresh one (memcached's E flag).
	NewCAS uint64
}

// Write stores value under key as o directs and returns the entry's new
// CAS unique and value length. p applies to new values; appends and
// prepends to an existing entry keep its flags, expiry and tags.
func (s *Store) Write(key string, value []byte, p Params, o WriteOptions) (cas uint64, size int, err error) {
	concat := o.Mode == ModeAppend || o.Mode == ModePrepend
	cas, err = s.update(key, func(old *entry) (change, error) {
		c := change{value: value, params: p, cas: o.NewCAS}
		if old == nil {
			if o.Mode == ModeReplace || (concat && !o.Create) || (o.CAS != 0 && o.Mode != ModeAdd) {
				return change{}, ErrNotFound
			}
			size = len(value)
			return c, nil
		}
		if o.Mode == ModeAdd {
			return change{}, ErrExists
		}
		if o.CAS != 0 && o.CAS != old.cas {
			if !o.Invalidate || concat || o.CAS > old.cas {
				return change{}, ErrCASMismatch
			}
			c.stale, c.won = true, old.won()
			c.params.Expires = old.expires
		}
		switch o.Mode {
		case ModeAppend:
			c.value, c.suffix, c.params = old.value(), value, old.params()
		case ModePrepend:
			c.suffix, c.params = old.value(), old.params()
		}
		size = len(c.value) + len(c.suffix)
		return c, nil
	})
	return cas, size, err
}

// ArithOptions direct Arith.
type ArithOptions struct {
	// Delta is added to the counter, or subtracted if Decr. Additions wrap
	// around at 2^64; subtractions stop at 0.
	Delta uint64
	Decr  bool
	// CAS, if nonzero, must be the live entry's CAS unique, else
	// ErrCASMismatch.
	CAS uint64
	// Create makes an absent key a counter holding Initial (Delta is not
	// applied), with no flags and the expiry CreateExpires, instead of
	// failing with ErrNotFound.
	Create        bool
	Initial       uint64
	CreateExpires int64
	// Touch sets the counter's expiry to Expires.
	Touch   bool
	Expires int64
	// NewCAS, if nonzero, is the CAS unique the entry takes instead of a
	// fresh one.
	NewCAS uint64
}

// ArithResult is the outcome of an Arith.
type ArithResult struct {
	// Value is the counter after the operation.
	Value uint64
	// CAS is the entry's new CAS unique and Expires its expiry.
	CAS     uint64
	Expires int64
	// Created reports that the key was absent and Create made it.
	Created bool
}

// Arith changes the unsigned 64-bit decimal counter under key with
// memcached's incr and decr semantics. ErrNotFound if there is no entry
// (and not Create), ErrNotNumeric if its value is not a decimal number.
// An existing entry keeps its flags, tags and (unless Touch) expiry.
func (s *Store) Arith(key string, o ArithOptions) (ArithResult, error) {
	var r ArithResult
	cas, err := s.update(key, func(old *entry) (change, error) {
		var p Params
		if old == nil {
			if !o.Create {
				return change{}, ErrNotFound
			}
			r.Value, r.Created = o.Initial, true
			p.Expires = o.CreateExpires
		} else {
			if o.CAS != 0 && o.CAS != old.cas {
				return change{}, ErrCASMismatch
			}
			v, ok := parseUint(old.value())
			if !ok {
				return change{}, ErrNotNumeric
			}
			switch {
			case !o.Decr:
				r.Value = v + o.Delta
			case o.Delta > v:
				r.Value = 0
			default:
				r.Value = v - o.Delta
			}
			p = old.params()
		}
		if o.Touch {
			p.Expires = o.Expires
		}
		r.Expires = p.Expires
		return change{isNumber: true, n: r.Value, params: p, cas: o.NewCAS}, nil
	})
	if err != nil {
		return ArithResult{}, err
	}
	r.CAS = cas
	return r, nil
}

// GetOptions direct GetMeta.
type GetOptions struct {
	// NoBump reads without recording an access: the entry's last access
	// and "fetched" state stay as they were (memcached's mg u flag).
	NoBump bool
	// Touch sets the entry's expiry to Expires (memcached's mg T flag).
	Touch   bool
	Expires int64
	// Create makes an absent key an empty entry with the expiry
	// CreateExpires and gives this caller its win token (memcached's mg N
	// flag). NewCAS, if nonzero, is the created entry's CAS unique.
	Create        bool
	CreateExpires int64
	NewCAS        uint64
	// RecacheBefore, if nonzero, gives this caller the win token when the
	// entry expires before this Unix ms time (memcached's mg R flag).
	RecacheBefore int64
}

// MetaItem is what GetMeta returns: the entry and its win token.
type MetaItem struct {
	Item
	// Created reports that GetMeta created the entry (GetOptions.Create).
	Created bool
	// Won reports that this caller won the right to recache the entry: it
	// was created by this call, is stale, or expires before RecacheBefore,
	// and no other caller had won it since it was last written or
	// invalidated.
	Won bool
	// TokenSent reports that another caller had already won it.
	TokenSent bool
}

// GetMeta returns the live entry under key with its win token state,
// applying o. Reads that change nothing (no Touch, Create or RecacheBefore,
// and an entry that is not stale with an unclaimed token) take the shard's
// read lock only.
func (s *Store) GetMeta(key string, o GetOptions) (MetaItem, bool) {
	s.checkFlush()
	sh := s.shardFor(key)
	if !o.Touch && !o.Create && o.RecacheBefore == 0 {
		sh.mu.RLock()
		e := sh.m[key]
		switch {
		case e == nil:
			sh.mu.RUnlock()
			sh.misses.Add(1)
			return MetaItem{}, false
		case !s.expired(e) && (!e.stale() || e.won()):
			m := MetaItem{Item: s.access(e, o.NoBump), TokenSent: e.won()}
			sh.mu.RUnlock()
			sh.hits.Add(1)
			return m, true
		}
		sh.mu.RUnlock()
	}
	for {
		sh.mu.Lock()
		if e := s.liveLocked(sh, key); e != nil {
			m := s.metaLocked(sh, e, o)
			sh.mu.Unlock()
			sh.hits.Add(1)
			return m, true
		}
		sh.mu.Unlock()
		if !o.Create {
			sh.misses.Add(1)
			return MetaItem{}, false
		}
		cas, err := s.update(key, func(old *entry) (change, error) {
			if old != nil {
				return change{}, ErrExists
			}
			return change{params: Params{Expires: o.CreateExpires}, cas: o.NewCAS, won: true}, nil
		})
		if errors.Is(err, ErrExists) {
			continue // another caller created it first: report theirs
		}
		sh.misses.Add(1)
		if err != nil || cas == 0 {
			return MetaItem{}, false
		}
		it := Item{Value: emptyValue, CAS: cas, Expires: o.CreateExpires, LastAccess: s.now()}
		return MetaItem{Item: it, Created: true, Won: true}, true
	}
}

// metaLocked applies o to the live entry e and returns it. The caller holds
// sh's write lock.
func (s *Store) metaLocked(sh *shard, e *entry, o GetOptions) MetaItem {
	if o.Touch {
		e.expires = o.Expires
	}
	m := MetaItem{TokenSent: e.won()}
	expiring := o.RecacheBefore != 0 && e.expires != 0 && e.expires < o.RecacheBefore
	if !e.won() && (e.stale() || expiring) {
		m.Won = true
		s.used.Add(-e.size())
		extOf(e).won = true
		s.used.Add(e.size())
	}
	m.Item = s.access(e, o.NoBump)
	if o.Touch && s.expired(e) {
		s.removeLocked(sh, e, &sh.expirations)
	}
	return m
}

// access returns e's view, recording an access unless noBump. The caller
// holds at least the shard's read lock.
func (s *Store) access(e *entry, noBump bool) Item {
	if noBump {
		return s.view(e, e.atime.Load())
	}
	return s.read(e)
}

// DeleteOptions direct DeleteMeta.
type DeleteOptions struct {
	// CAS, if nonzero, must be the live entry's CAS unique, else
	// ErrCASMismatch.
	CAS uint64
	// Invalidate marks the entry stale instead of removing it: it gets a
	// new CAS unique and loses its win token, so that the next GetMeta
	// wins it (memcached's md I flag).
	Invalidate bool
	// ClearValue replaces the entry's value with an empty one instead of
	// removing it, keeping its tags and CAS unique; its flags become Flags
	// and it never expires unless Touch (memcached's md x flag).
	ClearValue bool
	Flags      uint32
	// Touch sets the kept entry's expiry to Expires (with Invalidate or
	// ClearValue).
	Touch   bool
	Expires int64
	// NewCAS, if nonzero, is the CAS unique the kept entry takes.
	NewCAS uint64
}

// DeleteMeta removes the live entry under key, or with Invalidate or
// ClearValue keeps it changed; ErrNotFound if there is none.
func (s *Store) DeleteMeta(key string, o DeleteOptions) error {
	s.checkFlush()
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := s.liveLocked(sh, key)
	switch {
	case e == nil:
		return ErrNotFound
	case o.CAS != 0 && o.CAS != e.cas:
		return ErrCASMismatch
	case !o.Invalidate && !o.ClearValue:
		s.removeLocked(sh, e, &sh.deletes)
		return nil
	}
	if o.ClearValue {
		c := change{params: Params{Flags: o.Flags, Tags: e.tags()}, cas: e.cas}
		if o.Touch {
			c.params.Expires = o.Expires
		}
		e = s.installLocked(sh, e, key, &c)
		sh.sets.Add(1)
	} else if o.Touch {
		e.expires = o.Expires
	}
	if o.Invalidate {
		s.markStaleLocked(sh, e)
		e.ext.won = false
	}
	if o.NewCAS != 0 {
		e.cas = o.NewCAS
	}
	if s.expired(e) {
		s.removeLocked(sh, e, &sh.expirations)
	}
	return nil
}

// extOf returns e's ext, creating it. The caller accounts for the size it
// adds.
func extOf(e *entry) *entryExt {
	if e.ext == nil {
		e.ext = &entryExt{key: strings.Clone(e.key())}
	}
	return e.ext
}
