package store

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Store is a sharded, tag-aware in-memory cache. All methods are safe for
// concurrent use.
type Store struct {
	// Read on every operation and written rarely, so kept together and
	// apart from the counters below, which writes change all the time: on
	// one cache line with them, every write would evict them from the
	// other cores' caches.
	shards    []shard
	tagShards []tagShard
	mask      uint64
	shardBits uint
	seed      maphash.Seed
	clock     func() int64
	epoch     int64 // Unix ms that atime ticks count from
	limits    atomic.Pointer[limits]
	maxMem    atomic.Int64
	// flushAt is the Unix ms of a pending delayed flush, 0 if none.
	flushAt atomic.Int64
	// coarseTick is the access clock in atime ticks, kept by the
	// background goroutine while coarse is set, so that reads need not read
	// the wall clock.
	coarseTick atomic.Uint32
	coarse     atomic.Bool
	listeners  listeners

	_    [64]byte
	used atomic.Int64 // bytes counted against maxMem
	_    [56]byte

	evictCursor   atomic.Uint64
	invalidations atomic.Uint64
	flushes       atomic.Uint64
	flushMu       sync.Mutex

	snapshots snapshotFiles

	sweepMu       sync.Mutex
	sweepInterval time.Duration
	sweepStop     chan struct{}
	sweepDone     chan struct{}
}

type limits struct {
	maxKey, maxItem, maxTags int
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*entry
	// ring lists the shard's entries so that eviction can sample them
	// uniformly (Go's map iteration order is far from uniform). Removed
	// entries stay in it, marked dead, until dead outgrows the live ones.
	ring     []*entry
	dead     int
	sweepPos int    // where the sweep goes on in ring
	seq      uint64 // CAS sequence, under mu
	idx      uint64

	hits, misses, sets, deletes, evictions, expirations atomic.Uint64
	_                                                   [32]byte // keep neighbouring shards' locks off one cache line
}

// Item is a read view of an entry. Value and Tags are shared with the store
// and must not be modified.
type Item struct {
	Value   []byte
	Flags   uint32
	CAS     uint64
	Expires int64 // Unix ms; 0 = never
	Tags    []string
	// Stale reports that the entry was marked stale (soft-purged) and
	// should be revalidated before it is trusted.
	Stale bool
	// Fetched reports that the entry had been read since it was last
	// written, before this read.
	Fetched bool
	// LastAccess is the Unix ms of the access before this one (16 ms
	// resolution).
	LastAccess int64
}

// Params are the metadata of a write.
type Params struct {
	// Flags are opaque client flags, as memcached's.
	Flags uint32
	// Expires is the absolute expiry in Unix ms. 0 means never; a time at or
	// before now stores the entry already expired, which removes the key.
	Expires int64
	// Tags replace the entry's tags. Duplicates are ignored.
	Tags []string
}

// New creates a store and starts its background sweep (unless
// cfg.SweepInterval is negative).
func New(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		shards:    make([]shard, cfg.Shards),
		tagShards: make([]tagShard, cfg.Shards),
		mask:      uint64(cfg.Shards - 1),
		shardBits: uint(bits.TrailingZeros(uint(cfg.Shards))),
		seed:      maphash.MakeSeed(),
		clock:     cfg.Now,
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*entry)
		s.shards[i].idx = uint64(i)
		s.tagShards[i].m = make(map[string]*tagSet)
	}
	s.epoch = s.now()
	s.apply(cfg)
	return s, nil
}

// Reconfigure applies the memory budget (evicting at once if the store is
// over it), the size limits and the sweep interval of cfg to a live store.
// The shard count of a live store cannot change; cfg.Shards is ignored.
func (s *Store) Reconfigure(cfg Config) error {
	cfg.Shards = len(s.shards)
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	s.apply(cfg)
	return nil
}

func (s *Store) apply(cfg Config) {
	s.limits.Store(&limits{maxKey: cfg.MaxKeyLength, maxItem: cfg.MaxItemSize, maxTags: cfg.MaxTagsPerKey})
	s.maxMem.Store(cfg.MaxMemory)
	s.evictOthers(s.now(), nil)
	s.setSweepInterval(cfg.SweepInterval)
}

// Shards returns the number of shards.
func (s *Store) Shards() int { return len(s.shards) }

// Close stops the background sweep and frees the data. It is idempotent;
// a closed store still answers, empty.
func (s *Store) Close() {
	s.setSweepInterval(-1)
	s.flushNow()
}

// Now returns the store's clock in Unix ms.
func (s *Store) Now() int64 { return s.now() }

// ExpiresIn converts a relative TTL to the absolute expiry a write takes:
// 0 for no expiry, a time already past for a negative TTL. Parts of a
// millisecond round up.
func (s *Store) ExpiresIn(ttl time.Duration) int64 {
	switch {
	case ttl == 0:
		return 0
	case ttl < 0:
		return -1
	}
	return s.now() + int64((ttl+time.Millisecond-1)/time.Millisecond)
}

func (s *Store) now() int64 {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now().UnixMilli()
}

// expired reports whether e has expired. It reads the clock only for an
// entry that has an expiry.
func (s *Store) expired(e *entry) bool {
	return e.expires != 0 && e.expires <= s.now()
}

// accessTick is the current time in atime ticks.
func (s *Store) accessTick() uint32 {
	if s.coarse.Load() {
		return s.coarseTick.Load()
	}
	return s.tick(s.now())
}

// tick converts a Unix ms time to atime ticks.
func (s *Store) tick(now int64) uint32 {
	d := now - s.epoch
	if d < 0 {
		d = 0
	}
	return uint32(d>>tickShift) & tickMask
}

func (s *Store) shardFor(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)&s.mask]
}

func (l *limits) checkKey(key string) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > l.maxKey:
		return &LimitError{Err: ErrKeyTooLong, Size: int64(len(key)), Max: int64(l.maxKey)}
	}
	return nil
}

// checkTags validates tags and returns them without duplicates. It
// allocates only when tags has duplicates.
func (l *limits) checkTags(tags []string) ([]string, error) {
	dup := false
	for i, t := range tags {
		switch {
		case len(t) == 0:
			return nil, ErrEmptyTag
		case len(t) > MaxTagLength:
			return nil, &LimitError{Err: ErrTagTooLong, Size: int64(len(t)), Max: MaxTagLength}
		}
		for _, u := range tags[:i] {
			if u == t {
				dup = true
			}
		}
	}
	if dup {
		uniq := make([]string, 0, len(tags))
		for _, t := range tags {
			if !contains(uniq, t) {
				uniq = append(uniq, t)
			}
		}
		tags = uniq
	}
	if len(tags) > l.maxTags {
		return nil, &LimitError{Err: ErrTooManyTags, Size: int64(len(tags)), Max: int64(l.maxTags)}
	}
	return tags, nil
}

func contains(list []string, s string) bool {
	for _, t := range list {
		if t == s {
			return true
		}
	}
	return false
}
