package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// refEntry is the reference model's view of an entry.
type refEntry struct {
	value   string
	flags   uint32
	cas     uint64
	expires int64
	tags    []string
}

// model drives a store with random operations and checks every answer
// against a plain map. Keys and tags are prefixed so that several models can
// share one store from different goroutines.
type model struct {
	t      testing.TB
	s      *Store
	rng    *rand.Rand
	clock  *atomic.Int64
	ref    map[string]*refEntry
	prefix string
	// lossy allows entries to vanish (eviction): a miss where the reference
	// has an entry drops it from the reference instead of failing.
	lossy bool
	// timed allows relative expiries and clock moves; only a model that owns
	// the store may use it, as the clock is shared.
	timed bool
}

func (m *model) key() string { return m.prefix + "k" + strconv.Itoa(m.rng.IntN(40)) }
func (m *model) tag() string { return m.prefix + "t" + strconv.Itoa(m.rng.IntN(6)) }

func (m *model) tags() []string {
	var tags []string
	for range m.rng.IntN(4) {
		tags = append(tags, m.tag())
	}
	return tags
}

func (m *model) value() string {
	switch m.rng.IntN(6) {
	case 0:
		return strconv.FormatUint(m.rng.Uint64(), 10)
	case 1:
		return strconv.Itoa(m.rng.IntN(100))
	case 2:
		return "-" + strconv.Itoa(m.rng.IntN(100))
	case 3:
		return ""
	}
	return fmt.Sprintf("v%x\x00\xff", m.rng.Uint32())
}

func (m *model) expires() int64 {
	now := m.clock.Load()
	switch r := m.rng.IntN(10); {
	case r < 6:
		return 0
	case r < 7:
		return now - 1 // already expired
	case !m.timed:
		return now + 1<<40
	default:
		return now + 1 + int64(m.rng.IntN(50))
	}
}

// live returns the reference entry under key, dropping it if expired.
func (m *model) live(key string) *refEntry {
	r := m.ref[key]
	if r != nil && r.expires != 0 && r.expires <= m.clock.Load() {
		delete(m.ref, key)
		return nil
	}
	return r
}

// miss is called when the store has no entry under key: fine if the
// reference has none either, or if entries may vanish.
func (m *model) miss(op, key string) {
	if m.live(key) != nil {
		if !m.lossy {
			m.t.Fatalf("%s %q: store has no entry, reference has %+v", op, key, *m.ref[key])
		}
		delete(m.ref, key)
	}
}

func (m *model) checkItem(op, key string, it Item, ok bool) {
	if !ok {
		m.miss(op, key)
		return
	}
	r := m.live(key)
	if r == nil {
		m.t.Fatalf("%s %q: store returned %q, reference has no entry", op, key, it.Value)
	}
	if string(it.Value) != r.value || it.Flags != r.flags || it.CAS != r.cas || it.Expires != r.expires || !sameTags(it.Tags, r.tags) {
		m.t.Fatalf("%s %q: store %q flags=%d cas=%d exp=%d tags=%v, reference %+v", op, key, it.Value, it.Flags, it.CAS, it.Expires, it.Tags, *r)
	}
}

// stored records a successful write in the reference.
func (m *model) stored(key string, r *refEntry, cas uint64) {
	if r.expires != 0 && r.expires <= m.clock.Load() {
		delete(m.ref, key)
		return
	}
	r.cas = cas
	if len(r.tags) == 0 {
		r.tags = nil
	}
	m.ref[key] = r
}

func dedup(tags []string) []string {
	var out []string
	for _, t := range tags {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// wantErr fails unless err is want; with a lossy model an ErrNotFound where
// the reference expected something else means the entry was evicted.
func (m *model) wantErr(op, key string, err, want error) (evicted bool) {
	if errors.Is(err, want) {
		return false
	}
	if m.lossy && errors.Is(err, ErrNotFound) && m.live(key) != nil {
		delete(m.ref, key)
		return true
	}
	m.t.Fatalf("%s %q: error %v, want %v (reference %+v)", op, key, err, want, m.live(key))
	return false
}

func (m *model) step() {
	key := m.key()
	switch op := m.rng.IntN(20); op {
	case 0, 1, 2:
		it, ok := m.s.Get(key)
		m.checkItem("Get", key, it, ok)
	case 3, 4:
		r := &refEntry{value: m.value(), flags: m.rng.Uint32(), expires: m.expires(), tags: dedup(m.tags())}
		cas, err := m.s.Set(key, []byte(r.value), Params{Flags: r.flags, Expires: r.expires, Tags: r.tags})
		if err != nil {
			m.t.Fatalf("Set %q: %v", key, err)
		}
		m.stored(key, r, cas)
	case 5:
		r := &refEntry{value: m.value(), expires: m.expires(), tags: dedup(m.tags())}
		cas, err := m.s.Add(key, []byte(r.value), Params{Expires: r.expires, Tags: r.tags})
		if m.live(key) != nil && err == nil && m.lossy {
			delete(m.ref, key) // it was evicted, so Add could succeed
		}
		if m.live(key) != nil {
			m.wantErr("Add", key, err, ErrExists)
			return
		}
		if err != nil {
			m.t.Fatalf("Add %q: %v", key, err)
		}
		m.stored(key, r, cas)
	case 6, 7:
		r := &refEntry{value: m.value(), expires: m.expires(), tags: dedup(m.tags())}
		cas, err := m.s.Replace(key, []byte(r.value), Params{Expires: r.expires, Tags: r.tags})
		if m.live(key) == nil {
			m.wantErr("Replace", key, err, ErrNotFound)
			return
		}
		if m.wantErr("Replace", key, err, nil) {
			return
		}
		m.stored(key, r, cas)
	case 8:
		v := m.value()
		var cas uint64
		var err error
		if m.rng.IntN(2) == 0 {
			cas, err = m.s.Append(key, []byte(v))
		} else {
			cas, err = m.s.Prepend(key, []byte(v))
		}
		old := m.live(key)
		if old == nil {
			m.wantErr("Append", key, err, ErrNotFound)
			return
		}
		if m.wantErr("Append", key, err, nil) {
			return
		}
		r := *old
		if cas == 0 {
			m.t.Fatalf("Append %q: zero CAS", key)
		}
		// Which of append or prepend ran is checked by the next Get.
		it, ok := m.s.Get(key)
		if ok && string(it.Value) != r.value+v && string(it.Value) != v+r.value {
			m.t.Fatalf("Append/Prepend %q: %q, from %q and %q", key, it.Value, r.value, v)
		}
		if ok {
			r.value = string(it.Value)
			m.stored(key, &r, cas)
			m.checkItem("Get after Append", key, it, ok)
		} else {
			m.miss("Get after Append", key)
		}
	case 9:
		old := m.live(key)
		cas := m.rng.Uint64()
		if old != nil && m.rng.IntN(3) > 0 {
			cas = old.cas
		}
		r := &refEntry{value: m.value(), expires: m.expires(), tags: dedup(m.tags())}
		newCAS, err := m.s.CompareAndSwap(key, []byte(r.value), Params{Expires: r.expires, Tags: r.tags}, cas)
		switch {
		case old == nil:
			m.wantErr("CAS", key, err, ErrNotFound)
		case old.cas != cas:
			m.wantErr("CAS", key, err, ErrCASMismatch)
		default:
			if !m.wantErr("CAS", key, err, nil) {
				m.stored(key, r, newCAS)
			}
		}
	case 10, 11:
		delta := m.rng.Uint64N(1 << 62)
		decr := op == 11
		var n uint64
		var err error
		if decr {
			n, err = m.s.Decr(key, delta)
		} else {
			n, err = m.s.Incr(key, delta)
		}
		old := m.live(key)
		if old == nil {
			m.wantErr("Incr", key, err, ErrNotFound)
			return
		}
		v, perr := strconv.ParseUint(old.value, 10, 64)
		if perr != nil {
			m.wantErr("Incr", key, err, ErrNotNumeric)
			return
		}
		if m.wantErr("Incr", key, err, nil) {
			return
		}
		want := v + delta
		if decr {
			want = v - min(v, delta)
		}
		if n != want {
			m.t.Fatalf("Incr/Decr %q %d by %d (decr=%v) = %d, want %d", key, v, delta, decr, n, want)
		}
		r := *old
		r.value = strconv.FormatUint(n, 10)
		it, ok := m.s.Get(key)
		if ok {
			m.stored(key, &r, it.CAS)
		}
		m.checkItem("Get after Incr", key, it, ok)
	case 12:
		delta := m.rng.Int64N(200) - 100
		if m.rng.IntN(8) == 0 {
			delta = 1 << 62
		}
		p := Params{Expires: m.expires(), Tags: dedup(m.tags())}
		n, err := m.s.IncrBy(key, delta, p)
		old := m.live(key)
		if m.lossy && old != nil && err == nil && n == delta {
			// Evicted and created anew, or an old value of 0: with 0 the
			// params the entry has now tell which.
			v, perr := strconv.ParseInt(old.value, 10, 64)
			it, ok := m.s.Get(key)
			created := ok && it.Flags == p.Flags && it.Expires == p.Expires && sameTags(it.Tags, p.Tags)
			if perr != nil || v != 0 || created {
				delete(m.ref, key)
				old = nil
			}
		}
		var r refEntry
		if old == nil {
			r = refEntry{expires: p.Expires, tags: p.Tags}
		} else {
			r = *old
			v, perr := strconv.ParseInt(old.value, 10, 64)
			sum := v + delta
			switch {
			case perr != nil || strconv.FormatInt(v, 10) != old.value:
				m.wantErr("IncrBy", key, err, ErrNotNumeric)
				return
			case (delta > 0 && sum < v) || (delta < 0 && sum > v):
				m.wantErr("IncrBy", key, err, ErrOverflow)
				return
			}
			if err == nil && n != sum {
				m.t.Fatalf("IncrBy %q %d by %d = %d", key, v, delta, n)
			}
		}
		if err != nil {
			m.t.Fatalf("IncrBy %q: %v", key, err)
		}
		r.value = strconv.FormatInt(n, 10)
		if r.expires != 0 && r.expires <= m.clock.Load() {
			delete(m.ref, key)
			return
		}
		it, ok := m.s.Get(key)
		if ok {
			m.stored(key, &r, it.CAS)
		}
		m.checkItem("Get after IncrBy", key, it, ok)
	case 13:
		exp := m.expires()
		err := m.s.Touch(key, exp)
		if r := m.live(key); r == nil {
			m.wantErr("Touch", key, err, ErrNotFound)
		} else if !m.wantErr("Touch", key, err, nil) {
			r.expires = exp
			m.live(key)
		}
	case 14:
		exp := m.expires()
		it, ok := m.s.GetAndTouch(key, exp)
		// The item comes back with its new expiry, even one already past
		// (memcached's gat does the same), and is gone after.
		if r := m.live(key); ok && r != nil && it.Expires == exp {
			it.Expires = r.expires
			m.checkItem("GetAndTouch", key, it, ok)
			r.expires = exp
		} else {
			m.checkItem("GetAndTouch", key, it, ok)
		}
		m.live(key)
	case 15:
		it, ok := m.s.GetAndDelete(key)
		m.checkItem("GetAndDelete", key, it, ok)
		delete(m.ref, key)
	case 16:
		err := m.s.Delete(key)
		if m.live(key) == nil {
			m.wantErr("Delete", key, err, ErrNotFound)
		} else {
			m.wantErr("Delete", key, err, nil)
		}
		delete(m.ref, key)
	case 17:
		tags := []string{m.tag()}
		if m.rng.IntN(2) == 0 {
			tags = append(tags, m.tag())
		}
		n := m.s.InvalidateTags(tags...)
		want := 0
		for k, r := range m.ref {
			if m.live(k) != nil && slices.ContainsFunc(r.tags, func(t string) bool { return slices.Contains(tags, t) }) {
				want++
				delete(m.ref, k)
			}
		}
		if n > want || (!m.lossy && n != want) {
			m.t.Fatalf("InvalidateTags %v = %d, want %d", tags, n, want)
		}
	case 18:
		tag := m.tag()
		got := m.s.KeysByTag(tag, 0)
		slices.Sort(got)
		var want []string
		for k, r := range m.ref {
			if m.live(k) != nil && slices.Contains(r.tags, tag) {
				if m.lossy && !slices.Contains(got, k) {
					delete(m.ref, k)
					continue
				}
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			m.t.Fatalf("KeysByTag %q = %v, want %v", tag, got, want)
		}
		if n := m.s.TagCount(tag); n != len(want) && !m.lossy {
			m.t.Fatalf("TagCount %q = %d, want %d", tag, n, len(want))
		}
	case 19:
		tags, ok := m.s.TagsOf(key)
		if !ok {
			m.miss("TagsOf", key)
		} else if r := m.live(key); r == nil || !sameTags(tags, r.tags) {
			m.t.Fatalf("TagsOf %q = %v, reference %+v", key, tags, r)
		}
	}
	if m.timed && m.rng.IntN(10) == 0 {
		m.clock.Add(int64(m.rng.IntN(20)))
		if m.rng.IntN(5) == 0 {
			m.s.sweep(m.clock.Load())
		}
	}
}

func newModelStore(t testing.TB, cfg Config) (*Store, *atomic.Int64) {
	clock := new(atomic.Int64)
	clock.Store(1_700_000_000_000)
	cfg.Now = clock.Load
	cfg.SweepInterval = -1
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, clock
}

// TestModelSequential checks every answer exactly, with expiry under a
// controlled clock and sweeps.
func TestModelSequential(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s, clock := newModelStore(t, Config{Shards: 4})
			m := &model{t: t, s: s, rng: rand.New(rand.NewPCG(seed, 1)), clock: clock, ref: map[string]*refEntry{}, timed: true}
			for i := range 20000 {
				m.step()
				if i%1000 == 0 {
					checkInvariants(t, s)
				}
			}
			checkInvariants(t, s)
		})
	}
}

// TestModelConcurrentEviction runs a model per goroutine on one small store,
// so eviction removes entries under all of them; each checks that the store
// never returns anything but what it wrote, and the index stays exact.
func TestModelConcurrentEviction(t *testing.T) {
	for _, budget := range []int64{8 << 10, 64 << 10, 1 << 30} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			s, clock := newModelStore(t, Config{Shards: 8, MaxMemory: budget})
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m := &model{t: t, s: s, rng: rand.New(rand.NewPCG(uint64(g), uint64(budget))), clock: clock,
						ref: map[string]*refEntry{}, prefix: fmt.Sprintf("g%d:", g), lossy: budget < 1<<30}
					for range 10000 {
						m.step()
					}
				}()
			}
			wg.Wait()
			checkInvariants(t, s)
			if st := s.Stats(); st.Bytes > budget {
				t.Fatalf("bytes %d over budget %d", st.Bytes, budget)
			}
		})
	}
}
