package store

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestExpiresZeroNeverExpires(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	mustSet(t, s, "k", "v", Params{Expires: 0, Tags: []string{"t"}})
	for _, step := range []int64{1, 1000, 1 << 30, 1 << 40} {
		clk.Advance(step)
		if it := mustGet(t, s, "k"); it.Expires != 0 {
			t.Fatalf("Expires = %d", it.Expires)
		}
	}
	s.sweep(clk.Now())
	if n := s.TagCount("t"); n != 1 {
		t.Fatalf("TagCount = %d", n)
	}
	if st := s.Stats(); st.Expirations != 0 || st.Items != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExpiresInPastStoresNothing(t *testing.T) {
	writes := []struct {
		name string
		// do writes key with expiry exp.
		do func(s *Store, key string, exp int64) error
		// needsExisting: the write only applies to an existing key;
		// onlyAbsent: over an existing key the write keeps the old expiry
		// (IncrBy) or fails (Add), so only the absent case applies.
		needsExisting, onlyAbsent bool
	}{
		{"Set", func(s *Store, k string, exp int64) error {
			_, err := s.Set(k, []byte("new"), Params{Expires: exp, Tags: []string{"new"}})
			return err
		}, false, false},
		{"Add", func(s *Store, k string, exp int64) error {
			_, err := s.Add(k, []byte("new"), Params{Expires: exp, Tags: []string{"new"}})
			return err
		}, false, true},
		{"IncrBy", func(s *Store, k string, exp int64) error {
			_, err := s.IncrBy(k, 5, Params{Expires: exp, Tags: []string{"new"}})
			return err
		}, false, true},
		{"Replace", func(s *Store, k string, exp int64) error {
			_, err := s.Replace(k, []byte("new"), Params{Expires: exp, Tags: []string{"new"}})
			return err
		}, true, false},
		{"CompareAndSwap", func(s *Store, k string, exp int64) error {
			it, _ := s.Get(k)
			_, err := s.CompareAndSwap(k, []byte("new"), Params{Expires: exp, Tags: []string{"new"}}, it.CAS)
			return err
		}, true, false},
		{"Touch", func(s *Store, k string, exp int64) error { return s.Touch(k, exp) }, true, false},
	}
	expiries := []struct {
		name string
		exp  func(s *Store, clk *manualClock) int64
	}{
		{"now", func(_ *Store, clk *manualClock) int64 { return clk.Now() }},
		{"now-1", func(_ *Store, clk *manualClock) int64 { return clk.Now() - 1 }},
		{"long ago", func(_ *Store, _ *manualClock) int64 { return 1 }},
		{"negative", func(_ *Store, _ *manualClock) int64 { return -1 }},
		{"ExpiresIn(-1ns)", func(s *Store, _ *manualClock) int64 { return s.ExpiresIn(-1) }},
		{"ExpiresIn(-1h)", func(s *Store, _ *manualClock) int64 { return s.ExpiresIn(-time.Hour) }},
	}
	for _, w := range writes {
		for _, e := range expiries {
			for _, existing := range []bool{false, true} {
				if w.needsExisting && !existing {
					continue
				}
				if w.onlyAbsent && existing {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/existing=%v", w.name, e.name, existing), func(t *testing.T) {
					s, clk := openManual(t, Config{Shards: 4})
					if existing {
						mustSet(t, s, "k", "1", Params{Tags: []string{"old"}})
					}
					if err := w.do(s, "k", e.exp(s, clk)); err != nil {
						t.Fatalf("write: %v", err)
					}
					// Nothing stored, before any read could reclaim it.
					if st := s.Stats(); st.Items != 0 || st.Tags != 0 || st.Bytes != 0 {
						t.Fatalf("stats right after the write: %+v", st)
					}
					wantMissing(t, s, "k")
					if tags, ok := s.TagsOf("k"); ok {
						t.Fatalf("TagsOf = %q", tags)
					}
					for _, tag := range []string{"old", "new"} {
						if keys := s.KeysByTag(tag, 0); len(keys) != 0 {
							t.Fatalf("KeysByTag(%q) = %q", tag, keys)
						}
					}
					if st := s.Stats(); st.Items != 0 || st.Tags != 0 || st.Bytes != 0 {
						t.Fatalf("stats %+v", st)
					}
					checkInvariants(t, s)
				})
			}
		}
	}
	t.Run("IncrBy over live key with past expiry keeps it and its expiry", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 1})
		mustSet(t, s, "k", "1", Params{Tags: []string{"old"}})
		if n, err := s.IncrBy("k", 1, Params{Expires: clk.Now() - 1}); err != nil || n != 2 {
			t.Fatalf("IncrBy = %d, %v", n, err)
		}
		if it := mustGet(t, s, "k"); it.Expires != 0 || string(it.Value) != "2" {
			t.Fatalf("item %+v", it)
		}
	})
	t.Run("Add over live key with past expiry keeps it", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 1})
		mustSet(t, s, "k", "1", Params{})
		if _, err := s.Add("k", []byte("x"), Params{Expires: clk.Now() - 1}); !errors.Is(err, ErrExists) {
			t.Fatalf("Add = %v, want ErrExists", err)
		}
		mustGet(t, s, "k")
	})
}

func TestExpiryBoundary(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	mustSet(t, s, "k", "v", Params{Expires: clk.After(100), Tags: []string{"t"}})
	clk.Advance(99)
	if it := mustGet(t, s, "k"); it.Expires != testEpoch+100 {
		t.Fatalf("Expires = %d", it.Expires)
	}
	if n := s.TagCount("t"); n != 1 {
		t.Fatalf("TagCount one ms before expiry = %d", n)
	}
	clk.Advance(1) // now == expiry: expired
	wantMissing(t, s, "k")
	if n := s.TagCount("t"); n != 0 {
		t.Fatalf("TagCount at expiry = %d", n)
	}
	// Clock going backwards does not resurrect a reclaimed entry.
	clk.Advance(-50)
	wantMissing(t, s, "k")
	checkInvariants(t, s)
}

func TestExpiresIn(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	now := clk.Now()
	tests := []struct {
		ttl  time.Duration
		want int64
	}{
		{0, 0},
		{1, now + 1},
		{time.Microsecond, now + 1},
		{999 * time.Microsecond, now + 1},
		{time.Millisecond, now + 1},
		{time.Millisecond + 1, now + 2},
		{1500 * time.Microsecond, now + 2},
		{2 * time.Millisecond, now + 2},
		{time.Second, now + 1000},
		{time.Hour, now + 3_600_000},
	}
	for _, tt := range tests {
		if got := s.ExpiresIn(tt.ttl); got != tt.want {
			t.Fatalf("ExpiresIn(%v) = %d, want %d", tt.ttl, got, tt.want)
		}
	}
	for _, ttl := range []time.Duration{-1, -time.Millisecond, -time.Hour} {
		if got := s.ExpiresIn(ttl); got == 0 || got > now {
			t.Fatalf("ExpiresIn(%v) = %d, want a time at or before %d (and not 0)", ttl, got, now)
		}
	}
	// A sub-millisecond TTL survives the current millisecond.
	mustSet(t, s, "k", "v", Params{Expires: s.ExpiresIn(time.Nanosecond)})
	mustGet(t, s, "k")
	clk.Advance(1)
	wantMissing(t, s, "k")
}

// TestExpiredNeverReturned checks every read path with an entry that has
// expired but has not been reclaimed.
func TestExpiredNeverReturned(t *testing.T) {
	reads := []struct {
		name string
		// found reports whether the read saw the entry.
		found func(s *Store) bool
	}{
		{"Get", func(s *Store) bool { _, ok := s.Get("k"); return ok }},
		{"TagsOf", func(s *Store) bool { _, ok := s.TagsOf("k"); return ok }},
		{"KeysByTag", func(s *Store) bool { return slices.Contains(s.KeysByTag("t", 0), "k") }},
		{"KeysByTag limit", func(s *Store) bool { return slices.Contains(s.KeysByTag("t", 1), "k") }},
		{"TagCount", func(s *Store) bool { return s.TagCount("t") != 0 }},
		{"GetAndTouch", func(s *Store) bool { _, ok := s.GetAndTouch("k", 0); return ok }},
		{"GetAndDelete", func(s *Store) bool { _, ok := s.GetAndDelete("k"); return ok }},
		{"Touch", func(s *Store) bool { return s.Touch("k", 0) == nil }},
		{"Delete", func(s *Store) bool { return s.Delete("k") == nil }},
		{"Replace", func(s *Store) bool { _, err := s.Replace("k", []byte("1"), Params{}); return err == nil }},
		{"Append", func(s *Store) bool { _, err := s.Append("k", []byte("1")); return err == nil }},
		{"Prepend", func(s *Store) bool { _, err := s.Prepend("k", []byte("1")); return err == nil }},
		{"Incr", func(s *Store) bool { _, err := s.Incr("k", 1); return err == nil }},
		{"Decr", func(s *Store) bool { _, err := s.Decr("k", 1); return err == nil }},
		{"IncrBy", func(s *Store) bool { n, _ := s.IncrBy("k", 1, Params{}); return n != 1 }},
		{"Add", func(s *Store) bool { _, err := s.Add("k", []byte("1"), Params{}); return err != nil }},
		{"InvalidateTags", func(s *Store) bool { return s.InvalidateTags("t") != 0 }},
	}
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			s, clk := openManual(t, Config{Shards: 4})
			mustSet(t, s, "k", "41", Params{Tags: []string{"t"}, Expires: clk.After(10)})
			clk.Advance(10)
			if r.found(s) {
				t.Fatalf("%s saw an expired entry", r.name)
			}
			checkInvariants(t, s)
		})
	}
}

func TestExpirationsCounted(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	for i := 0; i < 10; i++ {
		mustSet(t, s, "k"+strconv.Itoa(i), "v", Params{Expires: clk.After(5), Tags: []string{"t"}})
	}
	mustSet(t, s, "live", "v", Params{Tags: []string{"t"}})
	clk.Advance(5)
	if st := s.Stats(); st.Expirations != 0 || st.Items != 11 {
		t.Fatalf("before any access: %+v (Items may include unreclaimed entries)", st)
	}
	s.Get("k0")
	s.Get("k1")
	if st := s.Stats(); st.Expirations != 2 || st.Misses != 2 || st.Items != 9 {
		t.Fatalf("after 2 reads: %+v", st)
	}
	if n := s.TagCount("t"); n != 1 {
		t.Fatalf("TagCount = %d", n)
	}
	if st := s.Stats(); st.Expirations != 10 || st.Items != 1 || st.Tags != 1 {
		t.Fatalf("after TagCount: %+v", st)
	}
	checkInvariants(t, s)
}

// ---------------------------------------------------------------------------
// Delayed flush

func TestFlushDelayed(t *testing.T) {
	fill := func(t *testing.T, s *Store) {
		for i := 0; i < 50; i++ {
			mustSet(t, s, "k"+strconv.Itoa(i), "v", Params{Tags: []string{"t"}})
		}
	}
	gone := func(t *testing.T, s *Store) {
		t.Helper()
		wantMissing(t, s, "k0")
		if keys := s.KeysByTag("t", 0); len(keys) != 0 {
			t.Fatalf("KeysByTag after the flush: %d keys", len(keys))
		}
		if st := s.Stats(); st.Items != 0 || st.Tags != 0 || st.Bytes != 0 {
			t.Fatalf("stats after the flush: %+v", st)
		}
		checkInvariants(t, s)
	}
	present := func(t *testing.T, s *Store) {
		t.Helper()
		for i := 0; i < 50; i++ {
			mustGet(t, s, "k"+strconv.Itoa(i))
		}
		if n := s.TagCount("t"); n != 50 {
			t.Fatalf("TagCount = %d", n)
		}
	}

	t.Run("visible before, gone at the deadline", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		fill(t, s)
		s.Flush(10 * time.Second)
		present(t, s)
		clk.Advance(9_999)
		present(t, s)
		clk.Advance(1)
		gone(t, s)
		// Writes after the flush stay.
		mustSet(t, s, "after", "v", Params{})
		clk.Advance(100_000)
		mustGet(t, s, "after")
	})
	t.Run("gone long after the deadline", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		fill(t, s)
		s.Flush(time.Second)
		clk.Advance(1 << 30)
		gone(t, s)
	})
	t.Run("first operation after the deadline is a write", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		fill(t, s)
		s.Flush(time.Second)
		clk.Advance(1000)
		mustSet(t, s, "new", "v", Params{Tags: []string{"t"}})
		wantMissing(t, s, "k0")
		if keys := s.KeysByTag("t", 0); !slices.Equal(keys, []string{"new"}) {
			t.Fatalf("KeysByTag = %q", keys)
		}
		checkInvariants(t, s)
	})
	t.Run("entries written before the deadline are flushed too", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		s.Flush(time.Second)
		clk.Advance(500)
		fill(t, s)
		present(t, s)
		clk.Advance(500)
		gone(t, s)
	})
	t.Run("Flush(0) cancels a pending delayed flush", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		mustSet(t, s, "old", "v", Params{})
		s.Flush(time.Second)
		s.Flush(0)
		wantMissing(t, s, "old")
		fill(t, s)
		clk.Advance(5000)
		present(t, s)
	})
	t.Run("a new delayed flush replaces a later one", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		fill(t, s)
		s.Flush(20 * time.Second)
		s.Flush(5 * time.Second)
		clk.Advance(4_999)
		present(t, s)
		clk.Advance(1)
		gone(t, s)
		// The replaced deadline does not flush again.
		fill(t, s)
		clk.Advance(20_000)
		present(t, s)
	})
	t.Run("a new delayed flush replaces an earlier one", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		fill(t, s)
		s.Flush(5 * time.Second)
		clk.Advance(1000)
		s.Flush(10 * time.Second) // due at 11s
		clk.Advance(9_999)        // 10.999s: past the first deadline
		present(t, s)
		clk.Advance(1)
		gone(t, s)
	})
	t.Run("sweep runs a due flush", func(t *testing.T) {
		s, clk := openManual(t, Config{Shards: 4})
		fill(t, s)
		s.Flush(time.Second)
		clk.Advance(1000)
		s.sweep(clk.Now())
		if st := s.Stats(); st.Items != 0 || st.Tags != 0 || st.Flushes != 1 {
			t.Fatalf("stats after a sweep past the deadline: %+v", st)
		}
	})
}

// TestFlushDelayedThenInvalidateTags: once a delayed flush is due its
// entries are gone, so invalidating their tag removes no live entry.
func TestFlushDelayedThenInvalidateTags(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	for i := 0; i < 10; i++ {
		mustSet(t, s, "k"+strconv.Itoa(i), "v", Params{Tags: []string{"t"}})
	}
	s.Flush(time.Second)
	clk.Advance(1000)
	// InvalidateTags is the first operation after the deadline.
	if n := s.InvalidateTags("t"); n != 0 {
		t.Errorf("InvalidateTags after a due delayed flush = %d, want 0 (the entries were flushed)", n)
	}
	if st := s.Stats(); st.Invalidations != 0 {
		t.Errorf("Invalidations = %d, want 0", st.Invalidations)
	}
	wantMissing(t, s, "k0")
	checkInvariants(t, s)
}

// ---------------------------------------------------------------------------
// Background sweep (real clock; polls with a generous deadline)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSweepReclaimsExpired(t *testing.T) {
	for _, shards := range []int{4, 256} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s := openStore(t, Config{Shards: shards, SweepInterval: 10 * time.Millisecond})
			const n = 2000
			stored := uint64(0) // a write whose expiry passed before it ran stores nothing
			for i := 0; i < n; i++ {
				if mustSet(t, s, "k"+strconv.Itoa(i), "v",
					Params{Expires: s.ExpiresIn(20 * time.Millisecond), Tags: []string{"t" + strconv.Itoa(i%10)}}) != 0 {
					stored++
				}
			}
			mustSet(t, s, "live", "v", Params{Tags: []string{"keep"}})
			// No reads: only the sweep reclaims.
			waitFor(t, "the sweep to reclaim every expired entry", func() bool {
				st := s.Stats()
				return st.Items == 1 && st.Tags == 1
			})
			if st := s.Stats(); st.Expirations != stored || st.Hits+st.Misses != 0 {
				t.Fatalf("stats %+v, want %d expirations", st, stored)
			}
			mustGet(t, s, "live")
			checkInvariants(t, s)
		})
	}
}

func TestSweepStopAndRestart(t *testing.T) {
	cfg := Config{Shards: 4, SweepInterval: 10 * time.Millisecond}
	s := openStore(t, cfg)
	sweeping := func() bool {
		s.sweepMu.Lock()
		defer s.sweepMu.Unlock()
		return s.sweepStop != nil
	}
	if !sweeping() {
		t.Fatal("sweep not running")
	}
	stop := cfg
	stop.SweepInterval = -1
	if err := s.Reconfigure(stop); err != nil {
		t.Fatal(err)
	}
	if sweeping() {
		t.Fatal("Reconfigure with a negative interval did not stop the sweep")
	}
	var last int64
	for i := 0; i < 100; i++ {
		last = s.ExpiresIn(5 * time.Millisecond)
		mustSet(t, s, "k"+strconv.Itoa(i), "v", Params{Expires: last, Tags: []string{"t"}})
	}
	// A write whose expiry the wall clock passed before it ran stores
	// nothing; count what was stored (Stats does not reclaim).
	stored := s.Stats().Items
	if stored == 0 {
		t.Fatal("nothing stored")
	}
	// Wait until they have certainly expired, then give a stopped sweep
	// plenty of time to (wrongly) run.
	waitFor(t, "the entries to expire", func() bool { return s.Now() > last })
	time.Sleep(100 * time.Millisecond)
	if st := s.Stats(); st.Items != stored || st.Expirations != 0 {
		t.Fatalf("entries reclaimed while the sweep was stopped: %+v, %d were stored", st, stored)
	}
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if !sweeping() {
		t.Fatal("Reconfigure did not restart the sweep")
	}
	waitFor(t, "the restarted sweep to reclaim the entries", func() bool {
		st := s.Stats()
		return st.Items == 0 && st.Tags == 0
	})
	// A different positive interval restarts it too.
	faster := cfg
	faster.SweepInterval = 5 * time.Millisecond
	if err := s.Reconfigure(faster); err != nil {
		t.Fatal(err)
	}
	s.sweepMu.Lock()
	d := s.sweepInterval
	s.sweepMu.Unlock()
	if d != 5*time.Millisecond || !sweeping() {
		t.Fatalf("sweep interval %v running %v", d, sweeping())
	}
	checkInvariants(t, s)
}

// TestSweepBoundedWork calls the sweep directly with a manual clock: one
// tick examines a bounded number of entries per shard, never removes a live
// entry, and repeated ticks reclaim everything expired.
func TestSweepBoundedWork(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 1})
	const expired, live = 2000, 300
	for i := 0; i < expired; i++ {
		mustSet(t, s, "e"+strconv.Itoa(i), "v", Params{Expires: clk.After(1), Tags: []string{"e"}})
	}
	for i := 0; i < live; i++ {
		mustSet(t, s, "l"+strconv.Itoa(i), "v", Params{Tags: []string{"l"}})
	}
	clk.Advance(1)
	s.sweep(clk.Now())
	st := s.Stats()
	removed := expired + live - int(st.Items)
	if removed == 0 || removed > sweepRounds*sweepSamples {
		t.Fatalf("one sweep tick removed %d entries, want 1..%d", removed, sweepRounds*sweepSamples)
	}
	for i := 0; i < 100_000 && s.Stats().Items > live; i++ {
		s.sweep(clk.Now())
	}
	st = s.Stats()
	if st.Items != live || st.Expirations != expired || st.Tags != 1 {
		t.Fatalf("stats after sweeping %+v, want %d live items", st, live)
	}
	if n := s.TagCount("l"); n != live {
		t.Fatalf("TagCount(l) = %d", n)
	}
	checkInvariants(t, s)
}
