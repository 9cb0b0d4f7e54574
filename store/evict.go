package store

import (
	"math/rand/v2"
	"time"
)

const (
	// evictionSamples is how many entries a victim is chosen from, as
	// Redis's maxmemory-samples.
	evictionSamples = 5
	// localEvictions bounds how many victims a write takes from its own
	// shard before it spreads the rest over the others.
	localEvictions = 8
	// sweepSamples entries are examined per shard and round; a shard is
	// sampled again while a quarter of a sample was expired, up to
	// sweepRounds times per tick.
	sweepSamples = 20
	sweepRounds  = 16
)

func (s *Store) overBudget() bool { return s.used.Load() > s.maxMem.Load() }

// evictLocked removes up to n victims from sh, never keep, while the store
// is over budget. It reports whether the store is still over budget. The
// caller holds sh's write lock.
func (s *Store) evictLocked(sh *shard, keep *entry, now int64, n int) bool {
	for ; n > 0; n-- {
		if !s.overBudget() {
			return false
		}
		v := s.victimLocked(sh, keep, now)
		if v == nil {
			break
		}
		if v.expired(now) {
			s.removeLocked(sh, v, &sh.expirations)
		} else {
			s.removeLocked(sh, v, &sh.evictions)
		}
	}
	return s.overBudget()
}

// victimLocked samples sh uniformly and returns an expired entry if it
// finds one, else the least recently used of the sample.
func (s *Store) victimLocked(sh *shard, keep *entry, now int64) *entry {
	var victim *entry
	var victimAge uint32
	nowTick := s.tick(now)
	seen := 0
	// At most half the ring is dead, so 4x the probes find a full sample
	// almost always; a shard of dead entries and keep ends the loop.
	for probe := 0; probe < 4*evictionSamples && seen < evictionSamples && len(sh.ring) > 0; probe++ {
		e := sh.ring[rand.IntN(len(sh.ring))]
		if e.data == nil || e == keep {
			continue
		}
		if e.expired(now) {
			return e
		}
		if age := (nowTick - e.atime.Load()) & tickMask; victim == nil || age > victimAge {
			victim, victimAge = e, age
		}
		seen++
	}
	return victim
}

// evictOthers evicts one victim per shard in turn, never keep, until the
// store fits its budget or nothing is left to evict.
func (s *Store) evictOthers(now int64, keep *entry) {
	for s.overBudget() {
		progress := false
		for range s.shards {
			sh := &s.shards[s.evictCursor.Add(1)&s.mask]
			sh.mu.Lock()
			before := len(sh.m)
			over := s.evictLocked(sh, keep, now, 1)
			progress = progress || len(sh.m) < before
			sh.mu.Unlock()
			if !over {
				return
			}
		}
		if !progress {
			return
		}
	}
}

// sweep reclaims expired entries with bounded work: per shard it walks
// sweepSamples ring slots from where it stopped last time, again while a
// quarter of them were expired, at most sweepRounds times, releasing the lock
// between walks. Every entry is visited within a bounded number of ticks.
func (s *Store) sweep(now int64) {
	s.checkFlush()
	for i := range s.shards {
		sh := &s.shards[i]
		for round := 0; round < sweepRounds; round++ {
			sh.mu.Lock()
			seen, expired := 0, 0
			for ; seen < sweepSamples && seen < len(sh.ring); seen++ {
				if sh.sweepPos >= len(sh.ring) {
					sh.sweepPos = 0
				}
				e := sh.ring[sh.sweepPos]
				sh.sweepPos++
				if e.data != nil && e.expired(now) {
					s.removeLocked(sh, e, &sh.expirations)
					expired++
				}
			}
			sh.mu.Unlock()
			if seen < sweepSamples || expired*4 < seen {
				break
			}
		}
	}
}

// maxClockTick is the coarsest step of the access clock that the background
// goroutine keeps; sampled LRU needs no finer one (Redis uses 1s).
const maxClockTick = 100 * time.Millisecond

// setSweepInterval starts, restarts or (d < 0) stops the background
// goroutine, which sweeps every d and keeps the coarse access clock.
func (s *Store) setSweepInterval(d time.Duration) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if d == s.sweepInterval && (s.sweepStop != nil) == (d > 0) {
		return
	}
	if s.sweepStop != nil {
		close(s.sweepStop)
		<-s.sweepDone
		s.sweepStop, s.sweepDone = nil, nil
	}
	s.sweepInterval = d
	if d <= 0 {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	s.sweepStop, s.sweepDone = stop, done
	go s.background(d, stop, done)
}

func (s *Store) background(sweepEvery time.Duration, stop, done chan struct{}) {
	defer close(done)
	useCoarse := s.clock == nil
	if useCoarse {
		s.coarseTick.Store(s.tick(s.now()))
		s.coarse.Store(true)
		defer s.coarse.Store(false)
	}
	t := time.NewTicker(min(sweepEvery, maxClockTick))
	defer t.Stop()
	lastSweep := s.now()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := s.now()
		if useCoarse {
			s.coarseTick.Store(s.tick(now))
		}
		if now-lastSweep >= sweepEvery.Milliseconds() {
			s.sweep(now)
			lastSweep = now
		}
	}
}

// Flush removes every entry: now if delay <= 0, else once delay has passed
// (replacing an earlier pending flush), as memcached's flush_all [delay].
func (s *Store) Flush(delay time.Duration) {
	if delay <= 0 {
		s.flushMu.Lock()
		s.flushAt.Store(0)
		s.flushNow()
		s.flushMu.Unlock()
		s.emit(Invalidation{Kind: Flushed})
		return
	}
	s.flushAt.Store(s.now() + delay.Milliseconds())
}

// checkFlush runs a pending delayed flush that is due. Every operation calls
// it, so none sees an entry after the flush time even between sweeps.
func (s *Store) checkFlush() {
	at := s.flushAt.Load()
	if at == 0 || s.now() < at {
		return
	}
	s.flushMu.Lock()
	flushed := s.flushAt.Load() == at
	if flushed {
		s.flushNow()
		s.flushAt.Store(0)
	}
	s.flushMu.Unlock()
	if flushed {
		s.emit(Invalidation{Kind: Flushed})
	}
}

// flushNow empties the store. It holds every shard lock at once so that no
// write can slip between emptying the entries and emptying the tag index.
func (s *Store) flushNow() {
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
	for i := range s.tagShards {
		ts := &s.tagShards[i]
		ts.mu.Lock()
		ts.m = make(map[string]*tagSet)
		ts.mu.Unlock()
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*entry)
		s.shards[i].ring, s.shards[i].dead = nil, 0
	}
	s.used.Store(0)
	s.flushes.Add(1)
	for i := range s.shards {
		s.shards[i].mu.Unlock()
	}
}
