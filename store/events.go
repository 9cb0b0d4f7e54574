package store

import (
	"slices"
	"sync"
	"sync/atomic"
)

// InvalidationKind says what an Invalidation reports.
type InvalidationKind uint8

const (
	// TagsInvalidated reports InvalidateTags: the entries carrying any of
	// Tags were removed; Count of them were live.
	TagsInvalidated InvalidationKind = iota + 1
	// KeyDeleted reports that Delete or GetAndDelete removed the live
	// entry under Key.
	KeyDeleted
	// TagsStale reports StaleTags: Count live entries carrying any of Tags
	// were marked stale.
	TagsStale
	// KeyStale reports that MarkStale marked the live entry under Key
	// stale.
	KeyStale
	// Flushed reports that Flush emptied the store (at once, or when a
	// delayed flush came due).
	Flushed
)

func (k InvalidationKind) String() string {
	switch k {
	case TagsInvalidated:
		return "tags invalidated"
	case KeyDeleted:
		return "key deleted"
	case TagsStale:
		return "tags stale"
	case KeyStale:
		return "key stale"
	case Flushed:
		return "flushed"
	}
	return "unknown"
}

// Invalidation is an explicit removal or soft purge, reported to the
// functions registered with OnInvalidate. Overwrites, expiry and eviction
// are not invalidations and are not reported.
//
// Key and Tags are the caller's arguments and may alias its buffers: a
// listener that keeps them past its return must copy them.
type Invalidation struct {
	Kind InvalidationKind
	// Key is set for KeyDeleted and KeyStale.
	Key string
	// Tags are set for TagsInvalidated and TagsStale, as the caller passed
	// them (a tag that carried no entry is reported too).
	Tags []string
	// Count is the number of live entries affected, for TagsInvalidated and
	// TagsStale.
	Count int
}

// listeners holds the OnInvalidate functions. Emitting loads one atomic
// pointer, so an operation pays nothing more while nobody listens; the list
// is copied on change, so a listener may cancel itself while it runs.
type listeners struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*listener]
}

type listener struct{ fn func(Invalidation) }

// OnInvalidate registers fn to be called after every invalidation (see
// Invalidation), on the goroutine that made it and with no store lock held:
// fn may use the store, but should be quick, since the operation's caller
// waits for it. Calling cancel unregisters fn; it is idempotent.
func (s *Store) OnInvalidate(fn func(Invalidation)) (cancel func()) {
	l := &listener{fn: fn}
	s.listeners.mu.Lock()
	var list []*listener
	if p := s.listeners.list.Load(); p != nil {
		list = slices.Clone(*p)
	}
	list = append(list, l)
	s.listeners.list.Store(&list)
	s.listeners.mu.Unlock()
	return func() {
		s.listeners.mu.Lock()
		defer s.listeners.mu.Unlock()
		p := s.listeners.list.Load()
		if p == nil {
			return
		}
		i := slices.Index(*p, l)
		if i < 0 {
			return
		}
		list := slices.Delete(slices.Clone(*p), i, i+1)
		if len(list) == 0 {
			s.listeners.list.Store(nil)
			return
		}
		s.listeners.list.Store(&list)
	}
}

// emit calls the registered functions with ev. The caller holds no lock.
func (s *Store) emit(ev Invalidation) {
	p := s.listeners.list.Load()
	if p == nil {
		return
	}
	for _, l := range *p {
		l.fn(ev)
	}
}
