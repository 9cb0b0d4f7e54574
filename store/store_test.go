package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
	"weak"
)

// ---------------------------------------------------------------------------
// Helpers shared by the unit tests (and by the model test: checkInvariants).

// testEpoch is where manual clocks start, in Unix ms.
const testEpoch = int64(1_700_000_000_000)

// manualClock is a controllable, race-safe clock for Config.Now.
type manualClock struct{ ms atomic.Int64 }

func newManualClock() *manualClock {
	c := &manualClock{}
	c.ms.Store(testEpoch)
	return c
}

func (c *manualClock) Now() int64           { return c.ms.Load() }
func (c *manualClock) Advance(ms int64)     { c.ms.Add(ms) }
func (c *manualClock) Set(ms int64)         { c.ms.Store(ms) }
func (c *manualClock) After(ms int64) int64 { return c.ms.Load() + ms }

// openStore creates a store and closes it when the test ends.
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(s.Close)
	return s
}

// openManual creates a store on a manual clock without a background sweep.
func openManual(t testing.TB, cfg Config) (*Store, *manualClock) {
	t.Helper()
	clk := newManualClock()
	cfg.Now = clk.Now
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = -1
	}
	return openStore(t, cfg), clk
}

func mustSet(t testing.TB, s *Store, key, value string, p Params) uint64 {
	t.Helper()
	cas, err := s.Set(key, []byte(value), p)
	if err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
	return cas
}

func mustGet(t testing.TB, s *Store, key string) Item {
	t.Helper()
	it, ok := s.Get(key)
	if !ok {
		t.Fatalf("Get(%q): missing", key)
	}
	return it
}

func wantMissing(t testing.TB, s *Store, key string) {
	t.Helper()
	if it, ok := s.Get(key); ok {
		t.Fatalf("Get(%q) = %q, want missing", key, it.Value)
	}
}

func sortedCopy(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool {
	return slices.Equal(sortedCopy(a), sortedCopy(b))
}

// wantLimitError checks that err is a *LimitError matching sentinel with the
// given Size and Max.
func wantLimitError(t testing.TB, err, sentinel error, size, max int64) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("err = %T %v, want *LimitError", err, err)
	}
	if le.Err != sentinel || le.Size != size || le.Max != max {
		t.Fatalf("LimitError = {%v, Size %d, Max %d}, want {%v, Size %d, Max %d}",
			le.Err, le.Size, le.Max, sentinel, size, max)
	}
	if le.Error() == "" {
		t.Fatal("empty LimitError message")
	}
}

// checkInvariants walks every shard and the tag index under their locks and
// verifies that the index is exact and that the byte accounting matches:
//   - each map key is its entry's key and lives in the right shard;
//   - each entry's tags are distinct and list the entry's ext.key in the index;
//   - each index key belongs to an entry carrying that tag, each tag set is
//     non-empty, named by its map key and stored in the right tag shard;
//   - s.used equals the sum of entry.size() plus the tag sets' overheads;
//   - each shard's eviction ring holds every map entry once, and its dead
//     count matches the removed entries still in it.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
	for i := range s.tagShards {
		s.tagShards[i].mu.RLock()
	}
	defer func() {
		for i := len(s.tagShards) - 1; i >= 0; i-- {
			s.tagShards[i].mu.RUnlock()
		}
		for i := len(s.shards) - 1; i >= 0; i-- {
			s.shards[i].mu.Unlock()
		}
	}()

	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 20 {
			t.Errorf("invariant: "+format, args...)
		}
	}

	var want int64
	for i := range s.shards {
		sh := &s.shards[i]
		// The eviction ring lists every entry of the shard once; removed
		// entries stay in it, marked dead (data == nil), until compaction.
		inRing := make(map[*entry]int, len(sh.ring))
		dead := 0
		for _, e := range sh.ring {
			if inRing[e]++; inRing[e] == 2 {
				fail("shard %d: an entry is in the ring twice", i)
			}
			if e.data == nil {
				dead++
				if e.ext != nil {
					fail("shard %d: a dead ring entry keeps its ext", i)
				}
			}
		}
		if dead != sh.dead {
			fail("shard %d: %d dead ring entries, dead = %d", i, dead, sh.dead)
		}
		if live := len(sh.ring) - dead; live != len(sh.m) {
			fail("shard %d: %d live ring entries, %d map entries", i, live, len(sh.m))
		}
		for k, e := range sh.m {
			if e != nil && (inRing[e] == 0 || e.data == nil) {
				fail("shard %d: entry %q is not live in the ring", i, k)
			}
		}
		for k, e := range sh.m {
			if e == nil || e.data == nil {
				fail("nil or dead entry under %q", k)
				continue
			}
			if e.key() != k {
				fail("map key %q holds entry with key %q", k, e.key())
			}
			if s.shardFor(k) != sh {
				fail("key %q stored in shard %d, hashes elsewhere", k, i)
			}
			want += e.size()
			if e.ext == nil {
				continue
			}
			if e.ext.key != k {
				fail("entry %q has ext.key %q", k, e.ext.key)
			}
			if len(e.ext.tags) == 0 && !e.ext.stale && !e.ext.won {
				fail("entry %q has an ext without tags", k)
			}
			for j, tag := range e.ext.tags {
				if slices.Contains(e.ext.tags[:j], tag) {
					fail("entry %q carries tag %q twice", k, tag)
				}
				set := s.tagShardFor(tag).m[tag]
				if set == nil {
					fail("entry %q carries tag %q, which is not in the index", k, tag)
					continue
				}
				if !set.has(e.ext.key) {
					fail("entry %q carries tag %q but the index does not list it", k, tag)
				}
			}
		}
	}
	for i := range s.tagShards {
		ts := &s.tagShards[i]
		for name, set := range ts.m {
			if set == nil {
				fail("nil tag set %q", name)
				continue
			}
			if set.name != name {
				fail("tag set under %q named %q", name, set.name)
			}
			if s.tagShardFor(name) != ts {
				fail("tag %q stored in tag shard %d, hashes elsewhere", name, i)
			}
			if set.len() == 0 {
				fail("tag %q has an empty key set", name)
			}
			want += tagSetOverhead + int64(len(name))
			for k := range set.all {
				e := s.shardFor(k).m[k]
				switch {
				case e == nil:
					fail("index lists %q under %q, but there is no entry", k, name)
				case !e.hasTag(name):
					fail("index lists %q under %q, but the entry's tags are %q", k, name, e.tags())
				}
			}
		}
	}
	if got := s.used.Load(); got != want {
		fail("used = %d, recomputed %d", got, want)
	}
	if errs > 20 {
		t.Errorf("invariant: ... %d more failures", errs-20)
	}
}

// ---------------------------------------------------------------------------
// Config

func TestNewConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero config", Config{}, true},
		{"shards 1", Config{Shards: 1}, true},
		{"shards 2", Config{Shards: 2}, true},
		{"shards 1024", Config{Shards: 1024}, true},
		{"shards max", Config{Shards: MaxShards}, true},
		{"shards 3", Config{Shards: 3}, false},
		{"shards 6", Config{Shards: 6}, false},
		{"shards 1000", Config{Shards: 1000}, false},
		{"shards too many", Config{Shards: MaxShards * 2}, false},
		{"shards negative", Config{Shards: -4}, false},
		{"max memory negative", Config{MaxMemory: -1}, false},
		{"max memory 1", Config{MaxMemory: 1}, true},
		{"key length max", Config{MaxKeyLength: MaxKeyLengthLimit}, true},
		{"key length too large", Config{MaxKeyLength: MaxKeyLengthLimit + 1}, false},
		{"key length negative", Config{MaxKeyLength: -1}, false},
		{"item size max", Config{MaxItemSize: MaxItemSizeLimit}, true},
		{"item size too large", Config{MaxItemSize: MaxItemSizeLimit + 1}, false},
		{"item size negative", Config{MaxItemSize: -1}, false},
		{"tags per key negative", Config{MaxTagsPerKey: -1}, false},
		{"tags per key 1000", Config{MaxTagsPerKey: 1000}, true},
		{"sweep disabled", Config{SweepInterval: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if s != nil {
				defer s.Close()
			}
			if tt.ok {
				if err != nil || s == nil {
					t.Fatalf("New: %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New(%+v) succeeded, want error", tt.cfg)
			}
			if s != nil {
				t.Fatalf("New returned a store with error %v", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	s := openStore(t, Config{})
	st := s.Stats()
	if st.MaxMemory != DefaultMaxMemory || st.Shards != DefaultShards || s.Shards() != DefaultShards {
		t.Fatalf("stats %+v, want max memory %d and %d shards", st, DefaultMaxMemory, DefaultShards)
	}
	lim := s.limits.Load()
	if lim.maxKey != DefaultMaxKeyLength || lim.maxItem != DefaultMaxItemSize || lim.maxTags != DefaultMaxTagsPerKey {
		t.Fatalf("limits %+v, want defaults", *lim)
	}
	if DefaultMaxKeyLength != 250 || DefaultMaxItemSize != 1<<20 || DefaultMaxTagsPerKey != 64 || MaxTagLength != 1024 {
		t.Fatal("documented defaults changed")
	}
	s.sweepMu.Lock()
	running, d := s.sweepStop != nil, s.sweepInterval
	s.sweepMu.Unlock()
	if !running || d != DefaultSweepInterval {
		t.Fatalf("sweep running=%v interval=%v, want running every %v", running, d, DefaultSweepInterval)
	}
	if now, wall := s.Now(), time.Now().UnixMilli(); now < wall-60_000 || now > wall+60_000 {
		t.Fatalf("Now() = %d, wall clock %d", now, wall)
	}
}

func TestReconfigureValidation(t *testing.T) {
	s, _ := openManual(t, Config{MaxMemory: 1 << 20, Shards: 4})
	if err := s.Reconfigure(Config{MaxMemory: -5, SweepInterval: -1}); err == nil {
		t.Fatal("Reconfigure with negative memory succeeded")
	}
	if err := s.Reconfigure(Config{MaxItemSize: MaxItemSizeLimit + 1, SweepInterval: -1}); err == nil {
		t.Fatal("Reconfigure with a too large item size succeeded")
	}
	if got := s.Stats().MaxMemory; got != 1<<20 {
		t.Fatalf("failed Reconfigure changed MaxMemory to %d", got)
	}
	// Shards are ignored: a live store keeps its shard count.
	if err := s.Reconfigure(Config{MaxMemory: 2 << 20, Shards: 3, MaxKeyLength: 10, SweepInterval: -1}); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if s.Shards() != 4 || s.Stats().MaxMemory != 2<<20 {
		t.Fatalf("after Reconfigure: shards %d, max memory %d", s.Shards(), s.Stats().MaxMemory)
	}
	_, err := s.Set(strings.Repeat("k", 11), nil, Params{})
	wantLimitError(t, err, ErrKeyTooLong, 11, 10)
}

// ---------------------------------------------------------------------------
// Get / Set

func TestGetSet(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		value []byte
		p     Params
	}{
		{"plain", "k", []byte("v"), Params{}},
		{"flags", "flags", []byte("value"), Params{Flags: 0xdeadbeef}},
		{"max flags", "maxflags", []byte("x"), Params{Flags: math.MaxUint32}},
		{"empty value", "empty", []byte{}, Params{}},
		{"nil value", "nil", nil, Params{Flags: 1}},
		{"nul bytes", "a\x00b\x00", []byte("\x00\x00v\x00"), Params{}},
		{"0xff bytes", "\xff\xfe\xff", []byte{0xff, 0x00, 0xff}, Params{}},
		{"key with spaces and newlines", "a b\r\nc", []byte("v\r\n"), Params{}},
		{"expires in the future", "exp", []byte("v"), Params{Expires: testEpoch + 10_000}},
		{"tags", "tagged", []byte("v"), Params{Tags: []string{"t1", "t2"}}},
		{"binary tags", "bt", []byte("v"), Params{Tags: []string{"\x00", "\xff\x00"}}},
	}
	for _, shards := range []int{1, 4, 256} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s, _ := openManual(t, Config{Shards: shards})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cas, err := s.Set(tt.key, tt.value, tt.p)
					if err != nil {
						t.Fatalf("Set: %v", err)
					}
					if cas == 0 {
						t.Fatal("Set returned CAS 0")
					}
					it := mustGet(t, s, tt.key)
					if !bytes.Equal(it.Value, tt.value) {
						t.Fatalf("Value = %q, want %q", it.Value, tt.value)
					}
					if it.Flags != tt.p.Flags || it.CAS != cas || it.Expires != tt.p.Expires {
						t.Fatalf("item %+v, want flags %d cas %d expires %d", it, tt.p.Flags, cas, tt.p.Expires)
					}
					if !sameSet(it.Tags, tt.p.Tags) {
						t.Fatalf("Tags = %q, want %q", it.Tags, tt.p.Tags)
					}
					if it.Stale {
						t.Fatal("fresh item reported stale")
					}
				})
			}
			// Keys differing only in a NUL or high byte are distinct.
			for _, k := range []string{"a\x00b", "a\x00c", "a\xffb", "a", "a\x00"} {
				mustSet(t, s, k, "v:"+k, Params{})
			}
			for _, k := range []string{"a\x00b", "a\x00c", "a\xffb", "a", "a\x00"} {
				if got := string(mustGet(t, s, k).Value); got != "v:"+k {
					t.Fatalf("Get(%q) = %q", k, got)
				}
			}
			checkInvariants(t, s)
		})
	}
}

func TestGetMissing(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 4})
	for _, k := range []string{"nope", "", strings.Repeat("x", 1000)} {
		if it, ok := s.Get(k); ok || it.Value != nil || it.CAS != 0 {
			t.Fatalf("Get(%q) = %+v, %v", k, it, ok)
		}
	}
	if st := s.Stats(); st.Misses != 3 || st.Hits != 0 {
		t.Fatalf("stats %+v, want 3 misses", st)
	}
}

func TestEmptyValue(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 1})
	mustSet(t, s, "e", "", Params{Flags: 5, Tags: []string{"t"}})
	it := mustGet(t, s, "e")
	if len(it.Value) != 0 || it.Flags != 5 || !slices.Equal(it.Tags, []string{"t"}) {
		t.Fatalf("item %+v", it)
	}
	if _, err := s.Append("e", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := string(mustGet(t, s, "e").Value); got != "x" {
		t.Fatalf("after Append: %q", got)
	}
	// A value can be emptied again.
	mustSet(t, s, "e", "", Params{})
	if it := mustGet(t, s, "e"); len(it.Value) != 0 {
		t.Fatalf("value %q", it.Value)
	}
	checkInvariants(t, s)
}

func TestSetOverwrite(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 1})
	mustSet(t, s, "k", "one", Params{Flags: 1, Expires: testEpoch + 5000, Tags: []string{"a"}})
	mustSet(t, s, "k", "two", Params{})
	it := mustGet(t, s, "k")
	if string(it.Value) != "two" || it.Flags != 0 || it.Expires != 0 || it.Tags != nil {
		t.Fatalf("overwrite kept old metadata: %+v", it)
	}
	if st := s.Stats(); st.Items != 1 || st.Sets != 2 || st.Tags != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkInvariants(t, s)
}

func TestItemFetchedAndLastAccess(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	mustSet(t, s, "k", "v", Params{})
	clk.Advance(160)
	it := mustGet(t, s, "k")
	if it.Fetched {
		t.Fatal("first read after a write reports Fetched")
	}
	if it.LastAccess != testEpoch {
		t.Fatalf("LastAccess = %d, want %d (the write)", it.LastAccess, testEpoch)
	}
	clk.Advance(320)
	it = mustGet(t, s, "k")
	if !it.Fetched || it.LastAccess != testEpoch+160 {
		t.Fatalf("second read: Fetched=%v LastAccess=%d, want true, %d", it.Fetched, it.LastAccess, testEpoch+160)
	}
	mustSet(t, s, "k", "w", Params{})
	if it := mustGet(t, s, "k"); it.Fetched {
		t.Fatal("a write did not clear Fetched")
	}
}

// ---------------------------------------------------------------------------
// CAS uniques

func TestCASChangesOnEveryWrite(t *testing.T) {
	type op struct {
		name string
		// do runs the write on key, whose current CAS is cas, and returns
		// the CAS it reports (0 if the operation does not report one).
		do func(s *Store, key string, cas uint64) (uint64, error)
	}
	ops := []op{
		{"Set", func(s *Store, k string, _ uint64) (uint64, error) { return s.Set(k, []byte("20"), Params{}) }},
		{"Set same value", func(s *Store, k string, _ uint64) (uint64, error) { return s.Set(k, []byte("10"), Params{}) }},
		{"Add after Delete", func(s *Store, k string, _ uint64) (uint64, error) {
			if err := s.Delete(k); err != nil {
				return 0, err
			}
			return s.Add(k, []byte("10"), Params{})
		}},
		{"Replace", func(s *Store, k string, _ uint64) (uint64, error) { return s.Replace(k, []byte("11"), Params{}) }},
		{"Append", func(s *Store, k string, _ uint64) (uint64, error) { return s.Append(k, []byte("1")) }},
		{"Append nothing", func(s *Store, k string, _ uint64) (uint64, error) { return s.Append(k, nil) }},
		{"Prepend", func(s *Store, k string, _ uint64) (uint64, error) { return s.Prepend(k, []byte("1")) }},
		{"CompareAndSwap", func(s *Store, k string, cas uint64) (uint64, error) {
			return s.CompareAndSwap(k, []byte("12"), Params{}, cas)
		}},
		{"Incr", func(s *Store, k string, _ uint64) (uint64, error) { _, err := s.Incr(k, 1); return 0, err }},
		{"Incr 0", func(s *Store, k string, _ uint64) (uint64, error) { _, err := s.Incr(k, 0); return 0, err }},
		{"Decr", func(s *Store, k string, _ uint64) (uint64, error) { _, err := s.Decr(k, 1); return 0, err }},
		{"Decr at 0", func(s *Store, k string, _ uint64) (uint64, error) { _, err := s.Decr(k, 100); return 0, err }},
		{"IncrBy", func(s *Store, k string, _ uint64) (uint64, error) { _, err := s.IncrBy(k, -3, Params{}); return 0, err }},
		{"IncrBy create", func(s *Store, k string, _ uint64) (uint64, error) {
			if err := s.Delete(k); err != nil {
				return 0, err
			}
			_, err := s.IncrBy(k, 4, Params{})
			return 0, err
		}},
	}
	for _, shards := range []int{1, 4} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s, _ := openManual(t, Config{Shards: shards})
			seen := map[uint64]string{}
			note := func(cas uint64, what string) {
				t.Helper()
				if cas == 0 {
					t.Fatalf("%s: CAS 0", what)
				}
				if prev, dup := seen[cas]; dup {
					t.Fatalf("%s: CAS %d already used by %s", what, cas, prev)
				}
				seen[cas] = what
			}
			for _, o := range ops {
				for i := 0; i < 4; i++ { // several keys so that they hit different shards
					key := fmt.Sprintf("%s-%d", o.name, i)
					cas0 := mustSet(t, s, key, "10", Params{Tags: []string{"t"}})
					note(cas0, key+" initial Set")
					if got := mustGet(t, s, key).CAS; got != cas0 {
						t.Fatalf("Get CAS %d, Set returned %d", got, cas0)
					}
					ret, err := o.do(s, key, cas0)
					if err != nil {
						t.Fatalf("%s: %v", o.name, err)
					}
					cas1 := mustGet(t, s, key).CAS
					if cas1 == cas0 {
						t.Fatalf("%s did not change the CAS (%d)", o.name, cas0)
					}
					if ret != 0 && ret != cas1 {
						t.Fatalf("%s returned CAS %d, Get says %d", o.name, ret, cas1)
					}
					note(cas1, key+" "+o.name)
				}
			}
			// Many fresh keys: still unique.
			for i := 0; i < 2000; i++ {
				k := "u" + strconv.Itoa(i)
				note(mustSet(t, s, k, "v", Params{}), k)
			}
		})
	}
}

func TestTouchKeepsCAS(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	cas := mustSet(t, s, "k", "v", Params{Expires: clk.After(1000)})
	if err := s.Touch("k", clk.After(5000)); err != nil {
		t.Fatal(err)
	}
	if it := mustGet(t, s, "k"); it.CAS != cas || it.Expires != clk.After(5000) {
		t.Fatalf("after Touch: %+v, want CAS %d", it, cas)
	}
	it, ok := s.GetAndTouch("k", 0)
	if !ok || it.CAS != cas {
		t.Fatalf("GetAndTouch: %+v %v, want CAS %d", it, ok, cas)
	}
	if _, err := s.CompareAndSwap("k", []byte("w"), Params{}, cas); err != nil {
		t.Fatalf("CAS with the CAS from before Touch: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Aliasing

func TestItemValueNotModifiedByLaterWrites(t *testing.T) {
	writes := []struct {
		name string
		do   func(s *Store) error
	}{
		{"Set", func(s *Store) error { _, err := s.Set("k", []byte("99"), Params{Tags: []string{"c"}}); return err }},
		{"Set same tags", func(s *Store) error { _, err := s.Set("k", []byte("98"), Params{Tags: []string{"c"}}); return err }},
		{"Set reordered tags", func(s *Store) error {
			_, err := s.Set("k", []byte("97"), Params{Tags: []string{"d", "c"}})
			return err
		}},
		{"Replace", func(s *Store) error { _, err := s.Replace("k", []byte("12"), Params{Tags: []string{"e"}}); return err }},
		{"Append", func(s *Store) error { _, err := s.Append("k", []byte("3")); return err }},
		{"Prepend", func(s *Store) error { _, err := s.Prepend("k", []byte("4")); return err }},
		{"Incr", func(s *Store) error { _, err := s.Incr("k", 1); return err }},
		{"Decr", func(s *Store) error { _, err := s.Decr("k", 7); return err }},
		{"IncrBy", func(s *Store) error { _, err := s.IncrBy("k", 1000, Params{}); return err }},
		{"CompareAndSwap", func(s *Store) error {
			it, _ := s.Get("k")
			_, err := s.CompareAndSwap("k", []byte("55"), Params{Tags: []string{"f", "g"}}, it.CAS)
			return err
		}},
		{"Touch", func(s *Store) error { return s.Touch("k", testEpoch+99_999) }},
		{"Delete", func(s *Store) error { return s.Delete("k") }},
		{"Add", func(s *Store) error { _, err := s.Add("k", []byte("1"), Params{Tags: []string{"h"}}); return err }},
		{"GetAndDelete", func(s *Store) error { s.GetAndDelete("k"); return nil }},
		{"Set again", func(s *Store) error { _, err := s.Set("k", []byte("77"), Params{Tags: []string{"a", "b"}}); return err }},
		{"InvalidateTags", func(s *Store) error { s.InvalidateTags("a"); return nil }},
		{"IncrBy create", func(s *Store) error { _, err := s.IncrBy("k", 5, Params{Tags: []string{"z"}}); return err }},
		{"Flush", func(s *Store) error { s.Flush(0); return nil }},
	}
	s, _ := openManual(t, Config{Shards: 1})
	mustSet(t, s, "k", "10", Params{Tags: []string{"a", "b"}})
	for _, w := range writes {
		before, ok := s.Get("k")
		var wantValue []byte
		var wantTags []string
		if ok {
			wantValue = bytes.Clone(before.Value)
			wantTags = slices.Clone(before.Tags)
		}
		if err := w.do(s); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if ok {
			if !bytes.Equal(before.Value, wantValue) {
				t.Fatalf("%s modified a Value read before it: %q, was %q", w.name, before.Value, wantValue)
			}
			if !slices.Equal(before.Tags, wantTags) {
				t.Fatalf("%s modified Tags read before it: %q, was %q", w.name, before.Tags, wantTags)
			}
		}
	}
}

// TestStoreCopiesCallerBuffers passes keys, values and tags that alias
// buffers the caller then reuses; the store must have copied them.
func TestStoreCopiesCallerBuffers(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 4})
	kb := []byte("key-1")
	vb := []byte("value-1")
	tb := []byte("tag-1")
	tb2 := []byte("tag-2")
	alias := func(b []byte) string { return unsafe.String(&b[0], len(b)) }
	if _, err := s.Set(alias(kb), vb, Params{Tags: []string{alias(tb), alias(tb2), alias(tb)}}); err != nil {
		t.Fatal(err)
	}
	ab := []byte("+app")
	if _, err := s.Append(alias(kb), ab); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{kb, vb, tb, tb2, ab} {
		for i := range b {
			b[i] = 'X'
		}
	}
	it := mustGet(t, s, "key-1")
	if string(it.Value) != "value-1+app" {
		t.Fatalf("value %q", it.Value)
	}
	if !sameSet(it.Tags, []string{"tag-1", "tag-2"}) {
		t.Fatalf("tags %q", it.Tags)
	}
	if keys := s.KeysByTag("tag-1", 0); !slices.Equal(keys, []string{"key-1"}) {
		t.Fatalf("KeysByTag = %q", keys)
	}
	var names []string
	for _, ti := range s.ListTags(0) {
		names = append(names, ti.Tag)
	}
	if !sameSet(names, []string{"tag-1", "tag-2"}) {
		t.Fatalf("ListTags = %q", names)
	}
	checkInvariants(t, s)
}

// ---------------------------------------------------------------------------
// Add / Replace / Append / Prepend / CompareAndSwap

func TestAdd(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	cas, err := s.Add("k", []byte("v1"), Params{Flags: 3, Tags: []string{"t"}})
	if err != nil || cas == 0 {
		t.Fatalf("Add on absent key: %d %v", cas, err)
	}
	if _, err := s.Add("k", []byte("v2"), Params{Tags: []string{"u"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("Add on live key: %v, want ErrExists", err)
	}
	it := mustGet(t, s, "k")
	if string(it.Value) != "v1" || it.Flags != 3 || it.CAS != cas || !slices.Equal(it.Tags, []string{"t"}) {
		t.Fatalf("failed Add changed the entry: %+v", it)
	}
	if keys := s.KeysByTag("u", 0); len(keys) != 0 {
		t.Fatalf("failed Add indexed tag u: %q", keys)
	}

	// Over an expired key, Add succeeds.
	mustSet(t, s, "x", "old", Params{Expires: clk.After(10), Tags: []string{"old"}})
	clk.Advance(10)
	if _, err := s.Add("x", []byte("new"), Params{Tags: []string{"new"}}); err != nil {
		t.Fatalf("Add over expired key: %v", err)
	}
	it = mustGet(t, s, "x")
	if string(it.Value) != "new" || it.Expires != 0 || !slices.Equal(it.Tags, []string{"new"}) {
		t.Fatalf("item %+v", it)
	}
	if n := s.TagCount("old"); n != 0 {
		t.Fatalf("tag of the expired entry still counts %d", n)
	}
	// After Delete, Add succeeds.
	if err := s.Delete("k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add("k", []byte("v3"), Params{}); err != nil {
		t.Fatalf("Add after Delete: %v", err)
	}
	checkInvariants(t, s)
}

func TestReplace(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	if _, err := s.Replace("k", []byte("v"), Params{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace on absent key: %v, want ErrNotFound", err)
	}
	wantMissing(t, s, "k")
	mustSet(t, s, "k", "v1", Params{Flags: 1, Tags: []string{"a"}})
	cas, err := s.Replace("k", []byte("v2"), Params{Flags: 2, Tags: []string{"b"}, Expires: clk.After(100)})
	if err != nil {
		t.Fatal(err)
	}
	it := mustGet(t, s, "k")
	if string(it.Value) != "v2" || it.Flags != 2 || it.CAS != cas || it.Expires != clk.After(100) ||
		!slices.Equal(it.Tags, []string{"b"}) {
		t.Fatalf("item %+v", it)
	}
	if n := s.TagCount("a"); n != 0 {
		t.Fatalf("old tag still lists the key: %d", n)
	}
	clk.Advance(100)
	if _, err := s.Replace("k", []byte("v3"), Params{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace on expired key: %v, want ErrNotFound", err)
	}
	wantMissing(t, s, "k")
	checkInvariants(t, s)
}

func TestAppendPrepend(t *testing.T) {
	tests := []struct {
		name    string
		prepend bool
		initial string
		add     string
		want    string
	}{
		{"append", false, "abc", "def", "abcdef"},
		{"prepend", true, "abc", "def", "defabc"},
		{"append empty", false, "abc", "", "abc"},
		{"prepend empty", true, "abc", "", "abc"},
		{"append to empty", false, "", "x", "x"},
		{"prepend to empty", true, "", "x", "x"},
		{"append binary", false, "\x00\xff", "\xff\x00", "\x00\xff\xff\x00"},
		{"prepend binary", true, "\x00\xff", "\xfe", "\xfe\x00\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := openManual(t, Config{Shards: 1})
			op := s.Append
			if tt.prepend {
				op = s.Prepend
			}
			if _, err := op("absent", []byte(tt.add)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("on absent key: %v, want ErrNotFound", err)
			}
			wantMissing(t, s, "absent")
			p := Params{Flags: 42, Expires: clk.After(1000), Tags: []string{"t1", "t2"}}
			cas0 := mustSet(t, s, "k", tt.initial, p)
			cas, err := op("k", []byte(tt.add))
			if err != nil {
				t.Fatal(err)
			}
			it := mustGet(t, s, "k")
			if string(it.Value) != tt.want {
				t.Fatalf("value %q, want %q", it.Value, tt.want)
			}
			if it.Flags != 42 || it.Expires != p.Expires || !sameSet(it.Tags, p.Tags) {
				t.Fatalf("metadata not kept: %+v", it)
			}
			if it.CAS != cas || cas == cas0 {
				t.Fatalf("CAS %d, returned %d, before %d", it.CAS, cas, cas0)
			}
			for _, tag := range p.Tags {
				if keys := s.KeysByTag(tag, 0); !slices.Equal(keys, []string{"k"}) {
					t.Fatalf("KeysByTag(%q) = %q", tag, keys)
				}
			}
			// On an expired entry: ErrNotFound and the entry is gone.
			clk.Advance(1000)
			if _, err := op("k", []byte("z")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("on expired key: %v, want ErrNotFound", err)
			}
			wantMissing(t, s, "k")
			checkInvariants(t, s)
		})
	}
}

func TestAppendPrependSizeLimit(t *testing.T) {
	const max = 100
	for _, prepend := range []bool{false, true} {
		t.Run(fmt.Sprintf("prepend=%v", prepend), func(t *testing.T) {
			s, _ := openManual(t, Config{Shards: 1, MaxItemSize: max})
			op := s.Append
			if prepend {
				op = s.Prepend
			}
			cas := mustSet(t, s, "k", strings.Repeat("a", 60), Params{Tags: []string{"t"}})
			// 60 + 41 = 101: rejected, counting the combined value.
			_, err := op("k", bytes.Repeat([]byte("b"), 41))
			wantLimitError(t, err, ErrValueTooLarge, 101, max)
			it := mustGet(t, s, "k")
			if string(it.Value) != strings.Repeat("a", 60) || it.CAS != cas {
				t.Fatalf("rejected write changed the entry: %q cas %d", it.Value, it.CAS)
			}
			// 60 + 40 = 100: exactly the limit.
			if _, err := op("k", bytes.Repeat([]byte("b"), 40)); err != nil {
				t.Fatalf("combined value at the limit: %v", err)
			}
			if n := len(mustGet(t, s, "k").Value); n != max {
				t.Fatalf("len %d", n)
			}
			checkInvariants(t, s)
		})
	}
}

func TestCompareAndSwap(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	if _, err := s.CompareAndSwap("k", []byte("v"), Params{}, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("CAS on absent key: %v, want ErrNotFound", err)
	}
	wantMissing(t, s, "k")
	cas1 := mustSet(t, s, "k", "v1", Params{Tags: []string{"a"}, Flags: 1})
	for _, wrong := range []uint64{0, cas1 + 1, cas1 - 1, math.MaxUint64} {
		if _, err := s.CompareAndSwap("k", []byte("bad"), Params{Tags: []string{"bad"}}, wrong); !errors.Is(err, ErrCASMismatch) {
			t.Fatalf("CAS with %d (current %d): %v, want ErrCASMismatch", wrong, cas1, err)
		}
	}
	if it := mustGet(t, s, "k"); string(it.Value) != "v1" || it.CAS != cas1 || s.TagCount("bad") != 0 {
		t.Fatalf("mismatched CAS changed the entry: %+v", it)
	}
	cas2, err := s.CompareAndSwap("k", []byte("v2"), Params{Tags: []string{"b"}, Flags: 2, Expires: clk.After(50)}, cas1)
	if err != nil {
		t.Fatalf("CAS with the current unique: %v", err)
	}
	it := mustGet(t, s, "k")
	if string(it.Value) != "v2" || it.CAS != cas2 || cas2 == cas1 || it.Flags != 2 ||
		it.Expires != clk.After(50) || !slices.Equal(it.Tags, []string{"b"}) {
		t.Fatalf("item %+v", it)
	}
	if s.TagCount("a") != 0 || s.TagCount("b") != 1 {
		t.Fatal("tags not moved by CAS")
	}
	// The old unique no longer works.
	if _, err := s.CompareAndSwap("k", []byte("v3"), Params{}, cas1); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("stale CAS: %v", err)
	}
	// Expired: not found, even with the right unique.
	clk.Advance(50)
	if _, err := s.CompareAndSwap("k", []byte("v3"), Params{}, cas2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("CAS on expired key: %v, want ErrNotFound", err)
	}
	checkInvariants(t, s)
}

// ---------------------------------------------------------------------------
// Incr / Decr (memcached unsigned)

func TestIncrDecrUnsigned(t *testing.T) {
	tests := []struct {
		initial string
		decr    bool
		delta   uint64
		want    uint64
		err     error
	}{
		{"10", false, 5, 15, nil},
		{"0", false, 0, 0, nil},
		{"007", false, 1, 8, nil},
		{"10  ", false, 1, 11, nil},
		{"10 ", true, 1, 9, nil},
		{"18446744073709551614", false, 1, math.MaxUint64, nil},
		{"18446744073709551615", false, 1, 0, nil},
		{"18446744073709551615", false, 2, 1, nil},
		{"18446744073709551610", false, 10, 4, nil},
		{"1", false, math.MaxUint64, 0, nil},
		{"10", true, 3, 7, nil},
		{"10", true, 10, 0, nil},
		{"10", true, 11, 0, nil},
		{"0", true, 1, 0, nil},
		{"5", true, math.MaxUint64, 0, nil},
		{"18446744073709551615", true, 1, math.MaxUint64 - 1, nil},
		{"18446744073709551616", false, 1, 0, ErrNotNumeric},
		{"99999999999999999999", false, 1, 0, ErrNotNumeric},
		{"18446744073709551616", true, 1, 0, ErrNotNumeric},
		{"-1", false, 1, 0, ErrNotNumeric},
		{"-1", true, 1, 0, ErrNotNumeric},
		{"+1", false, 1, 0, ErrNotNumeric},
		{"12a", false, 1, 0, ErrNotNumeric},
		{"", false, 1, 0, ErrNotNumeric},
		{"", true, 1, 0, ErrNotNumeric},
		{" ", false, 1, 0, ErrNotNumeric},
		{" 10", false, 1, 0, ErrNotNumeric},
		{"1 2", false, 1, 0, ErrNotNumeric},
		{"1.5", false, 1, 0, ErrNotNumeric},
		{"abc", true, 1, 0, ErrNotNumeric},
		{"10\x00", false, 1, 0, ErrNotNumeric},
		{"10\n", false, 1, 0, ErrNotNumeric},
	}
	s, _ := openManual(t, Config{Shards: 4})
	for i, tt := range tests {
		name := fmt.Sprintf("%d:incr(%q,%d)", i, tt.initial, tt.delta)
		if tt.decr {
			name = fmt.Sprintf("%d:decr(%q,%d)", i, tt.initial, tt.delta)
		}
		t.Run(name, func(t *testing.T) {
			key := "n" + strconv.Itoa(i)
			cas0 := mustSet(t, s, key, tt.initial, Params{})
			var got uint64
			var err error
			if tt.decr {
				got, err = s.Decr(key, tt.delta)
			} else {
				got, err = s.Incr(key, tt.delta)
			}
			it := mustGet(t, s, key)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if string(it.Value) != tt.initial || it.CAS != cas0 {
					t.Fatalf("failed op changed the entry: %q cas %d", it.Value, it.CAS)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("result %d, want %d", got, tt.want)
			}
			if want := strconv.FormatUint(tt.want, 10); string(it.Value) != want {
				t.Fatalf("stored %q, want %q", it.Value, want)
			}
		})
	}
}

func TestIncrDecrNotFoundAndKeepsMetadata(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	for _, decr := range []bool{false, true} {
		op := s.Incr
		if decr {
			op = s.Decr
		}
		if _, err := op("absent", 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("decr=%v on absent key: %v, want ErrNotFound", decr, err)
		}
		wantMissing(t, s, "absent")
		p := Params{Flags: 77, Expires: clk.After(500), Tags: []string{"cnt", "x"}}
		mustSet(t, s, "c", "100", p)
		if _, err := op("c", 10); err != nil {
			t.Fatal(err)
		}
		it := mustGet(t, s, "c")
		if it.Flags != 77 || it.Expires != p.Expires || !sameSet(it.Tags, p.Tags) {
			t.Fatalf("decr=%v lost metadata: %+v", decr, it)
		}
		if keys := s.KeysByTag("cnt", 0); !slices.Equal(keys, []string{"c"}) {
			t.Fatalf("KeysByTag = %q", keys)
		}
		// Expired counter: ErrNotFound.
		mustSet(t, s, "e", "1", Params{Expires: clk.After(5)})
		clk.Advance(5)
		if _, err := op("e", 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("decr=%v on expired key: %v, want ErrNotFound", decr, err)
		}
		checkInvariants(t, s)
	}
}

// ---------------------------------------------------------------------------
// IncrBy (signed, creating)

func TestIncrBySigned(t *testing.T) {
	max, min := int64(math.MaxInt64), int64(math.MinInt64)
	tests := []struct {
		initial string
		delta   int64
		want    int64
		err     error
	}{
		{"10", 5, 15, nil},
		{"10", -15, -5, nil},
		{"-5", 5, 0, nil},
		{"0", 0, 0, nil},
		{strconv.FormatInt(max-1, 10), 1, max, nil},
		{strconv.FormatInt(max, 10), 1, 0, ErrOverflow},
		{strconv.FormatInt(max, 10), max, 0, ErrOverflow},
		{"1", max, 0, ErrOverflow},
		{strconv.FormatInt(max, 10), min, -1, nil},
		{strconv.FormatInt(min+1, 10), -1, min, nil},
		{strconv.FormatInt(min, 10), -1, 0, ErrOverflow},
		{strconv.FormatInt(min, 10), min, 0, ErrOverflow},
		{"-1", min, 0, ErrOverflow},
		{"0", min, min, nil},
		{strconv.FormatInt(min, 10), max, -1, nil},
		{"9223372036854775808", 1, 0, ErrNotNumeric},
		{"-9223372036854775809", 1, 0, ErrNotNumeric},
		{"abc", 1, 0, ErrNotNumeric},
		{"", 1, 0, ErrNotNumeric},
		{"12a", 1, 0, ErrNotNumeric},
		{"1.0", 1, 0, ErrNotNumeric},
		{"\x00", 1, 0, ErrNotNumeric},
		{"+1", 1, 0, ErrNotNumeric},
		{"007", 1, 0, ErrNotNumeric},
		{"-0", 1, 0, ErrNotNumeric},
		{" 1", 1, 0, ErrNotNumeric},
	}
	s, _ := openManual(t, Config{Shards: 4})
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d:%q%+d", i, tt.initial, tt.delta), func(t *testing.T) {
			key := "s" + strconv.Itoa(i)
			cas0 := mustSet(t, s, key, tt.initial, Params{})
			got, err := s.IncrBy(key, tt.delta, Params{Tags: []string{"ignored"}})
			it := mustGet(t, s, key)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if string(it.Value) != tt.initial || it.CAS != cas0 {
					t.Fatalf("failed IncrBy changed the entry: %q cas %d (was %d)", it.Value, it.CAS, cas0)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("result %d, want %d", got, tt.want)
			}
			if want := strconv.FormatInt(tt.want, 10); string(it.Value) != want {
				t.Fatalf("stored %q, want %q", it.Value, want)
			}
		})
	}
	if n := s.TagCount("ignored"); n != 0 {
		t.Fatalf("IncrBy on existing keys applied the params' tags (%d keys)", n)
	}
	checkInvariants(t, s)
}

func TestIncrByCreatesAbsentKey(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	tests := []struct {
		key   string
		delta int64
		p     Params
	}{
		{"pos", 7, Params{Flags: 3, Tags: []string{"c", "d"}, Expires: clk.After(1000)}},
		{"neg", -3, Params{}},
		{"zero", 0, Params{Tags: []string{"c"}}},
		{"min", math.MinInt64, Params{}},
		{"max", math.MaxInt64, Params{Expires: clk.After(1)}},
	}
	for _, tt := range tests {
		got, err := s.IncrBy(tt.key, tt.delta, tt.p)
		if err != nil || got != tt.delta {
			t.Fatalf("IncrBy(%q, %d) = %d, %v", tt.key, tt.delta, got, err)
		}
		it := mustGet(t, s, tt.key)
		if string(it.Value) != strconv.FormatInt(tt.delta, 10) || it.Flags != tt.p.Flags ||
			it.Expires != tt.p.Expires || !sameSet(it.Tags, tt.p.Tags) {
			t.Fatalf("created %+v (value %q), want delta %d and params %+v", it, it.Value, tt.delta, tt.p)
		}
	}
	if keys := s.KeysByTag("c", 0); !sameSet(keys, []string{"pos", "zero"}) {
		t.Fatalf("KeysByTag(c) = %q", keys)
	}
	// Over an expired key it creates afresh, with the new params.
	clk.Advance(1)
	got, err := s.IncrBy("max", 5, Params{Tags: []string{"fresh"}})
	if err != nil || got != 5 {
		t.Fatalf("IncrBy over an expired key = %d, %v", got, err)
	}
	if it := mustGet(t, s, "max"); it.Expires != 0 || !slices.Equal(it.Tags, []string{"fresh"}) {
		t.Fatalf("item %+v", it)
	}
	// Invalid params on creation are rejected and nothing is stored.
	if _, err := s.IncrBy("bad", 1, Params{Tags: []string{""}}); !errors.Is(err, ErrEmptyTag) {
		t.Fatalf("IncrBy with an empty tag: %v", err)
	}
	wantMissing(t, s, "bad")
	checkInvariants(t, s)
}

func TestIncrByKeepsMetadata(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	exp := clk.After(1000)
	cas0 := mustSet(t, s, "n", "5", Params{Flags: 9, Tags: []string{"x"}, Expires: exp})
	got, err := s.IncrBy("n", 1, Params{Flags: 1, Tags: []string{"y"}, Expires: 0})
	if err != nil || got != 6 {
		t.Fatalf("IncrBy = %d, %v", got, err)
	}
	it := mustGet(t, s, "n")
	if string(it.Value) != "6" || it.Flags != 9 || it.Expires != exp || !slices.Equal(it.Tags, []string{"x"}) || it.CAS == cas0 {
		t.Fatalf("item %+v", it)
	}
	if s.TagCount("y") != 0 || s.TagCount("x") != 1 {
		t.Fatal("IncrBy changed the tag index of an existing key")
	}
	checkInvariants(t, s)
}

// ---------------------------------------------------------------------------
// Touch / GetAndTouch / GetAndDelete / Delete

func TestTouch(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	if err := s.Touch("absent", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Touch on absent key: %v", err)
	}
	wantMissing(t, s, "absent")
	mustSet(t, s, "k", "v", Params{Expires: clk.After(10), Tags: []string{"t"}, Flags: 4})
	if err := s.Touch("k", clk.After(100)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50) // past the old expiry, before the new one
	it := mustGet(t, s, "k")
	if it.Expires != testEpoch+100 || string(it.Value) != "v" || it.Flags != 4 || !slices.Equal(it.Tags, []string{"t"}) {
		t.Fatalf("item %+v", it)
	}
	// Touch to 0: never expires.
	if err := s.Touch("k", 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1 << 40)
	if it := mustGet(t, s, "k"); it.Expires != 0 {
		t.Fatalf("expires %d", it.Expires)
	}
	// Touch into the past: the entry is gone, tags too.
	if err := s.Touch("k", clk.Now()-1); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, "k")
	if s.TagCount("t") != 0 || s.Stats().Tags != 0 {
		t.Fatal("tag of a touched-away entry remains")
	}
	// Touch on an expired key: ErrNotFound.
	mustSet(t, s, "e", "v", Params{Expires: clk.After(1)})
	clk.Advance(1)
	if err := s.Touch("e", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Touch on expired key: %v", err)
	}
	wantMissing(t, s, "e")
	checkInvariants(t, s)
}

func TestGetAndTouch(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	if _, ok := s.GetAndTouch("absent", 0); ok {
		t.Fatal("GetAndTouch on absent key succeeded")
	}
	cas := mustSet(t, s, "k", "v", Params{Expires: clk.After(10), Flags: 8, Tags: []string{"t"}})
	it, ok := s.GetAndTouch("k", clk.After(1000))
	if !ok || string(it.Value) != "v" || it.Flags != 8 || it.CAS != cas || it.Expires != clk.After(1000) ||
		!slices.Equal(it.Tags, []string{"t"}) {
		t.Fatalf("GetAndTouch = %+v, %v", it, ok)
	}
	clk.Advance(500)
	mustGet(t, s, "k")
	clk.Advance(500)
	wantMissing(t, s, "k")
	if _, ok := s.GetAndTouch("k", 0); ok {
		t.Fatal("GetAndTouch on expired key succeeded")
	}
	if st := s.Stats(); st.Hits != 2 || st.Misses != 3 {
		t.Fatalf("hits %d misses %d, want 2 and 3", st.Hits, st.Misses)
	}
	checkInvariants(t, s)
}

func TestGetAndDelete(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	if _, ok := s.GetAndDelete("absent"); ok {
		t.Fatal("GetAndDelete on absent key succeeded")
	}
	cas := mustSet(t, s, "k", "v", Params{Flags: 6, Tags: []string{"a", "b"}})
	it, ok := s.GetAndDelete("k")
	if !ok || string(it.Value) != "v" || it.Flags != 6 || it.CAS != cas || !sameSet(it.Tags, []string{"a", "b"}) {
		t.Fatalf("GetAndDelete = %+v, %v", it, ok)
	}
	wantMissing(t, s, "k")
	if _, ok := s.GetAndDelete("k"); ok {
		t.Fatal("second GetAndDelete succeeded")
	}
	if st := s.Stats(); st.Tags != 0 || st.Items != 0 || st.Deletes != 1 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	mustSet(t, s, "e", "v", Params{Expires: clk.After(1)})
	clk.Advance(1)
	if _, ok := s.GetAndDelete("e"); ok {
		t.Fatal("GetAndDelete on expired key succeeded")
	}
	checkInvariants(t, s)
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(s *Store, clk *manualClock)
		wantErr error
	}{
		{"absent", func(*Store, *manualClock) {}, ErrNotFound},
		{"live", func(s *Store, _ *manualClock) { s.Set("k", []byte("v"), Params{Tags: []string{"t"}}) }, nil},
		{"live no expiry far future", func(s *Store, clk *manualClock) {
			s.Set("k", []byte("v"), Params{})
			clk.Advance(1 << 40)
		}, nil},
		{"expired", func(s *Store, clk *manualClock) {
			s.Set("k", []byte("v"), Params{Expires: clk.After(5), Tags: []string{"t"}})
			clk.Advance(5)
		}, ErrNotFound},
		{"deleted", func(s *Store, _ *manualClock) {
			s.Set("k", []byte("v"), Params{})
			s.Delete("k")
		}, ErrNotFound},
		{"flushed", func(s *Store, _ *manualClock) {
			s.Set("k", []byte("v"), Params{})
			s.Flush(0)
		}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := openManual(t, Config{Shards: 1})
			tt.setup(s, clk)
			err := s.Delete("k")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Delete = %v, want %v", err, tt.wantErr)
			}
			wantMissing(t, s, "k")
			if st := s.Stats(); st.Items != 0 || st.Tags != 0 || st.Bytes != 0 {
				t.Fatalf("stats after Delete: %+v", st)
			}
			if err := s.Delete("k"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second Delete = %v", err)
			}
			checkInvariants(t, s)
		})
	}
}

// ---------------------------------------------------------------------------
// Flush and Close

func TestFlushNow(t *testing.T) {
	for _, shards := range []int{1, 4, 256} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s, _ := openManual(t, Config{Shards: shards})
			for i := 0; i < 500; i++ {
				mustSet(t, s, fmt.Sprintf("k%d", i), "v", Params{Tags: []string{"all", fmt.Sprintf("t%d", i%7)}})
			}
			s.Flush(0)
			st := s.Stats()
			if st.Items != 0 || st.Tags != 0 || st.Bytes != 0 || st.Flushes != 1 {
				t.Fatalf("stats after Flush(0): %+v", st)
			}
			if keys := s.KeysByTag("all", 0); len(keys) != 0 {
				t.Fatalf("KeysByTag after flush: %d keys", len(keys))
			}
			if tags := s.ListTags(0); len(tags) != 0 {
				t.Fatalf("ListTags after flush: %v", tags)
			}
			if n := s.InvalidateTags("all", "t1"); n != 0 {
				t.Fatalf("InvalidateTags after flush = %d", n)
			}
			wantMissing(t, s, "k1")
			// The store keeps working.
			mustSet(t, s, "k1", "again", Params{Tags: []string{"all"}})
			if keys := s.KeysByTag("all", 0); !slices.Equal(keys, []string{"k1"}) {
				t.Fatalf("KeysByTag = %q", keys)
			}
			checkInvariants(t, s)
		})
	}
}

func TestClose(t *testing.T) {
	s, err := New(Config{Shards: 4, SweepInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, s, "k", "v", Params{Tags: []string{"t"}})
	s.Close()
	s.Close() // idempotent
	s.sweepMu.Lock()
	running := s.sweepStop != nil
	s.sweepMu.Unlock()
	if running {
		t.Fatal("sweep still running after Close")
	}
	wantMissing(t, s, "k")
	if st := s.Stats(); st.Items != 0 || st.Tags != 0 || st.Bytes != 0 {
		t.Fatalf("stats after Close: %+v", st)
	}
	// Still answers.
	mustSet(t, s, "k", "v", Params{})
	mustGet(t, s, "k")
	checkInvariants(t, s)
}

// ---------------------------------------------------------------------------
// Limits

func TestWriteLimits(t *testing.T) {
	tags := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "tag" + strconv.Itoa(i)
		}
		return out
	}
	tests := []struct {
		name     string
		key      string
		value    []byte
		tags     []string
		sentinel error // nil: accepted
		size     int64 // LimitError size and max; 0,0 for plain sentinels
		max      int64
	}{
		{"empty key", "", nil, nil, ErrEmptyKey, 0, 0},
		{"key 1", "k", nil, nil, nil, 0, 0},
		{"key 250", strings.Repeat("k", 250), nil, nil, nil, 0, 0},
		{"key 251", strings.Repeat("k", 251), nil, nil, ErrKeyTooLong, 251, 250},
		{"key 64KiB", strings.Repeat("k", 64<<10), nil, nil, ErrKeyTooLong, 64 << 10, 250},
		{"value 1MiB", "v", make([]byte, 1<<20), nil, nil, 0, 0},
		{"value 1MiB+1", "v", make([]byte, 1<<20+1), nil, ErrValueTooLarge, 1<<20 + 1, 1 << 20},
		{"64 tags", "t", nil, tags(64), nil, 0, 0},
		{"65 tags", "t", nil, tags(65), ErrTooManyTags, 65, 64},
		{"65 tags with a duplicate", "t", nil, append(tags(64), "tag3"), nil, 0, 0},
		{"tag 1024", "t", nil, []string{strings.Repeat("x", 1024)}, nil, 0, 0},
		{"tag 1025", "t", nil, []string{"ok", strings.Repeat("x", 1025)}, ErrTagTooLong, 1025, 1024},
		{"empty tag", "t", nil, []string{"a", ""}, ErrEmptyTag, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openManual(t, Config{Shards: 4})
			// An existing entry under the key, when the key is valid.
			var cas0 uint64
			validKey := tt.key != "" && len(tt.key) <= 250
			if validKey {
				cas0 = mustSet(t, s, tt.key, "orig", Params{Flags: 1, Tags: []string{"orig"}})
			}
			writes := []struct {
				name string
				do   func() error
			}{
				{"Set", func() error { _, err := s.Set(tt.key, tt.value, Params{Tags: tt.tags}); return err }},
				{"Replace", func() error { _, err := s.Replace(tt.key, tt.value, Params{Tags: tt.tags}); return err }},
				{"CompareAndSwap", func() error {
					_, err := s.CompareAndSwap(tt.key, tt.value, Params{Tags: tt.tags}, cas0)
					return err
				}},
			}
			for _, w := range writes {
				if validKey && tt.sentinel == nil {
					break // accepted writes are checked below, once
				}
				err := w.do()
				switch {
				case tt.sentinel == nil:
					if err != nil {
						t.Fatalf("%s: %v", w.name, err)
					}
				case tt.max == 0:
					if !errors.Is(err, tt.sentinel) {
						t.Fatalf("%s: err = %v, want %v", w.name, err, tt.sentinel)
					}
					var le *LimitError
					if errors.As(err, &le) {
						t.Fatalf("%s: %v is a LimitError", w.name, err)
					}
				default:
					wantLimitError(t, err, tt.sentinel, tt.size, tt.max)
				}
				if validKey {
					it := mustGet(t, s, tt.key)
					if string(it.Value) != "orig" || it.CAS != cas0 || it.Flags != 1 || !slices.Equal(it.Tags, []string{"orig"}) {
						t.Fatalf("rejected %s changed the entry: %+v", w.name, it)
					}
				} else if tt.key != "" {
					if _, ok := s.Get(tt.key); ok {
						t.Fatalf("rejected %s stored the key", w.name)
					}
				}
			}
			if tt.sentinel == nil {
				cas, err := s.Set(tt.key, tt.value, Params{Tags: tt.tags})
				if err != nil {
					t.Fatalf("Set: %v", err)
				}
				it := mustGet(t, s, tt.key)
				if it.CAS != cas || !bytes.Equal(it.Value, tt.value) {
					t.Fatal("accepted value not stored")
				}
				want := slices.Compact(slices.Clone(tt.tags))
				if len(tt.tags) == 65 { // the duplicate case
					want = tags(64)
				}
				if !sameSet(it.Tags, want) {
					t.Fatalf("tags %d, want %d", len(it.Tags), len(want))
				}
			}
			if st := s.Stats(); tt.sentinel != nil && validKey && st.Tags != 1 {
				t.Fatalf("rejected writes changed the tag index: %d tags", st.Tags)
			}
			checkInvariants(t, s)
		})
	}
}

func TestKeyLimitOnEveryOperation(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 1})
	long := strings.Repeat("k", 251)
	ops := map[string]func(key string) error{
		"Set":     func(k string) error { _, err := s.Set(k, nil, Params{}); return err },
		"Add":     func(k string) error { _, err := s.Add(k, nil, Params{}); return err },
		"Replace": func(k string) error { _, err := s.Replace(k, nil, Params{}); return err },
		"CAS":     func(k string) error { _, err := s.CompareAndSwap(k, nil, Params{}, 1); return err },
		"Append":  func(k string) error { _, err := s.Append(k, nil); return err },
		"Prepend": func(k string) error { _, err := s.Prepend(k, nil); return err },
		"Incr":    func(k string) error { _, err := s.Incr(k, 1); return err },
		"Decr":    func(k string) error { _, err := s.Decr(k, 1); return err },
		"IncrBy":  func(k string) error { _, err := s.IncrBy(k, 1, Params{}); return err },
	}
	for name, op := range ops {
		wantLimitError(t, op(long), ErrKeyTooLong, 251, 250)
		if err := op(""); !errors.Is(err, ErrEmptyKey) {
			t.Fatalf("%s with empty key: %v", name, err)
		}
	}
	if st := s.Stats(); st.Items != 0 || st.Sets != 0 {
		t.Fatalf("rejected writes stored something: %+v", st)
	}
}

func TestConfiguredLimits(t *testing.T) {
	t.Run("max key length 64KiB", func(t *testing.T) {
		s, _ := openManual(t, Config{Shards: 4, MaxKeyLength: MaxKeyLengthLimit})
		key := strings.Repeat("\xff", MaxKeyLengthLimit)
		mustSet(t, s, key, "v", Params{Tags: []string{"t"}})
		if string(mustGet(t, s, key).Value) != "v" {
			t.Fatal("bad value")
		}
		if keys := s.KeysByTag("t", 0); len(keys) != 1 || keys[0] != key {
			t.Fatal("KeysByTag lost the long key")
		}
		_, err := s.Set(key+"x", nil, Params{})
		wantLimitError(t, err, ErrKeyTooLong, MaxKeyLengthLimit+1, MaxKeyLengthLimit)
		checkInvariants(t, s)
	})
	t.Run("max key length 10", func(t *testing.T) {
		s, _ := openManual(t, Config{Shards: 4, MaxKeyLength: 10})
		mustSet(t, s, "0123456789", "v", Params{})
		_, err := s.Set("0123456789a", nil, Params{})
		wantLimitError(t, err, ErrKeyTooLong, 11, 10)
	})
	t.Run("max item size 100", func(t *testing.T) {
		s, _ := openManual(t, Config{Shards: 4, MaxItemSize: 100})
		mustSet(t, s, "k", strings.Repeat("v", 100), Params{})
		_, err := s.Set("k", make([]byte, 101), Params{})
		wantLimitError(t, err, ErrValueTooLarge, 101, 100)
		// Incr results are held to the limit too, but fit here.
		mustSet(t, s, "n", "1", Params{})
		if _, err := s.Incr("n", 1); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("max tags per key 2", func(t *testing.T) {
		s, _ := openManual(t, Config{Shards: 4, MaxTagsPerKey: 2})
		mustSet(t, s, "k", "v", Params{Tags: []string{"a", "b", "a"}})
		_, err := s.Set("k", nil, Params{Tags: []string{"a", "b", "c"}})
		wantLimitError(t, err, ErrTooManyTags, 3, 2)
		if it := mustGet(t, s, "k"); string(it.Value) != "v" || !sameSet(it.Tags, []string{"a", "b"}) {
			t.Fatalf("rejected write changed the entry: %+v", it)
		}
	})
}

// ---------------------------------------------------------------------------
// Stats

func TestStatsCounters(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	mustSet(t, s, "a", "1", Params{Tags: []string{"x"}})
	mustSet(t, s, "b", "2", Params{Tags: []string{"x", "y"}})
	mustSet(t, s, "c", "3", Params{Expires: clk.After(10)})
	s.Get("a")
	s.Get("a")
	s.Get("zz")
	s.Delete("b")
	clk.Advance(10)
	s.Get("c") // miss + expiration
	st := s.Stats()
	want := Stats{Hits: 2, Misses: 2, Sets: 3, Deletes: 1, Expirations: 1, Items: 1, Tags: 1,
		MaxMemory: DefaultMaxMemory, Shards: 4}
	st.Bytes = 0
	if st != want {
		t.Fatalf("stats %+v\nwant  %+v", st, want)
	}
	entry := int64(entryOverhead + 1 + 1 + extOverhead + 1 + tagRefOverhead)
	if got := s.Stats().Bytes; got != entry+tagSetOverhead+1 {
		t.Fatalf("Bytes = %d, want %d", got, entry+tagSetOverhead+1)
	}
	checkInvariants(t, s)
}

// ---------------------------------------------------------------------------
// Concurrency

// TestConcurrentSmoke runs overlapping operations from many goroutines for a
// bounded number of iterations, then checks the invariants. Run with -race.
func TestConcurrentSmoke(t *testing.T) {
	tests := []struct {
		name      string
		shards    int
		maxMemory int64
	}{
		{"1 shard", 1, 0},
		{"4 shards", 4, 0},
		{"64 shards", 64, 0},
		{"4 shards small budget", 4, 24 << 10},
		{"1 shard small budget", 1, 16 << 10},
	}
	const (
		workers = 8
		iters   = 1500
		nkeys   = 48
		ntags   = 6
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := openManual(t, Config{Shards: tt.shards, MaxMemory: tt.maxMemory})
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(seed uint64) {
					defer wg.Done()
					r := rand.New(rand.NewPCG(seed, 99))
					key := func() string { return "k" + strconv.Itoa(r.IntN(nkeys)) }
					tags := func() []string {
						n := r.IntN(4)
						out := make([]string, n)
						for i := range out {
							out[i] = "t" + strconv.Itoa(r.IntN(ntags))
						}
						return out
					}
					expires := func() int64 {
						switch r.IntN(4) {
						case 0:
							return clk.After(int64(r.IntN(20)))
						case 1:
							return clk.Now() - 1
						}
						return 0
					}
					for i := 0; i < iters; i++ {
						if r.IntN(50) == 0 {
							clk.Advance(int64(r.IntN(10)))
						}
						k := key()
						switch op := r.IntN(100); {
						case op < 25:
							v := make([]byte, r.IntN(300))
							s.Set(k, v, Params{Tags: tags(), Expires: expires(), Flags: uint32(op)})
						case op < 50:
							if it, ok := s.Get(k); ok {
								// Values read stay intact while others write.
								_ = bytes.Clone(it.Value)
								_ = slices.Clone(it.Tags)
							}
						case op < 55:
							s.Delete(k)
						case op < 60:
							s.InvalidateTags(tags()...)
						case op < 61:
							if r.IntN(5) == 0 {
								s.Flush(0)
							}
						case op < 65:
							s.Append(k, []byte("a"))
						case op < 68:
							s.Prepend(k, []byte("p"))
						case op < 72:
							s.IncrBy(k, int64(r.IntN(10))-5, Params{Tags: tags()})
						case op < 75:
							s.Incr(k, 1)
						case op < 77:
							s.Decr(k, 1)
						case op < 80:
							s.Add(k, []byte("add"), Params{Tags: tags()})
						case op < 83:
							if it, ok := s.Get(k); ok {
								s.CompareAndSwap(k, []byte("cas"), Params{Tags: tags()}, it.CAS)
							}
						case op < 86:
							s.Touch(k, expires())
						case op < 88:
							s.GetAndTouch(k, expires())
						case op < 90:
							s.GetAndDelete(k)
						case op < 94:
							for _, kk := range s.KeysByTag("t"+strconv.Itoa(r.IntN(ntags)), r.IntN(5)) {
								if !strings.HasPrefix(kk, "k") {
									panic("bad key " + kk)
								}
							}
						case op < 96:
							s.TagsOf(k)
							s.TagCount("t0")
						case op < 97:
							s.ListTags(0)
							s.Stats()
						case op < 98:
							s.Flush(time.Duration(r.IntN(30)) * time.Millisecond)
						default:
							s.sweep(clk.Now())
						}
					}
				}(uint64(w))
			}
			wg.Wait()
			checkInvariants(t, s)
			if tt.maxMemory > 0 {
				if used := s.Stats().Bytes; used > tt.maxMemory {
					t.Fatalf("Bytes %d over budget %d after the writers stopped", used, tt.maxMemory)
				}
			}
			// Every key the index lists is readable with that tag, and vice versa.
			checkTagIndexAgainstGets(t, s, nkeys, ntags)
		})
	}
}

// checkTagIndexAgainstGets compares KeysByTag with what Get reports for keys
// k0..k{nkeys-1} and tags t0..t{ntags-1}.
func checkTagIndexAgainstGets(t testing.TB, s *Store, nkeys, ntags int) {
	t.Helper()
	byTag := map[string][]string{}
	for i := 0; i < nkeys; i++ {
		k := "k" + strconv.Itoa(i)
		if it, ok := s.Get(k); ok {
			for _, tag := range it.Tags {
				byTag[tag] = append(byTag[tag], k)
			}
		}
	}
	for i := 0; i < ntags; i++ {
		tag := "t" + strconv.Itoa(i)
		if got := s.KeysByTag(tag, 0); !sameSet(got, byTag[tag]) {
			t.Fatalf("KeysByTag(%q) = %q, entries carrying it: %q", tag, sortedCopy(got), sortedCopy(byTag[tag]))
		}
		if n := s.TagCount(tag); n != len(byTag[tag]) {
			t.Fatalf("TagCount(%q) = %d, want %d", tag, n, len(byTag[tag]))
		}
	}
}

// TestOverwriteReleasesOldData checks that an overwritten entry's old
// key and value buffer can be collected: the shard map's key must not
// keep aliasing it.
func TestOverwriteReleasesOldData(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 1})
	mustSet(t, s, "k", "first value", Params{})
	sh := s.shardFor("k")
	sh.mu.RLock()
	old := weak.Make((*byte)(sh.m["k"].data))
	sh.mu.RUnlock()
	mustSet(t, s, "k", "second value", Params{})
	runtime.GC()
	runtime.GC()
	if old.Value() != nil {
		t.Fatal("the overwritten value's buffer is still reachable")
	}
	if it := mustGet(t, s, "k"); string(it.Value) != "second value" {
		t.Fatalf("value %q", it.Value)
	}
}
