package store

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func mustWrite(t *testing.T, s *Store, key, value string, p Params, o WriteOptions) (uint64, int) {
	t.Helper()
	cas, size, err := s.Write(key, []byte(value), p, o)
	if err != nil {
		t.Fatalf("Write(%q, %+v): %v", key, o, err)
	}
	return cas, size
}

func TestWriteModes(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	if _, _, err := s.Write("k", []byte("x"), Params{}, WriteOptions{Mode: ModeReplace}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replace on a miss: %v", err)
	}
	for _, m := range []Mode{ModeAppend, ModePrepend} {
		if _, _, err := s.Write("k", []byte("x"), Params{}, WriteOptions{Mode: m}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("mode %d on a miss: %v", m, err)
		}
	}
	if _, _, err := s.Write("k", []byte("x"), Params{}, WriteOptions{CAS: 7}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("set with a CAS on a miss: %v", err)
	}
	wantMissing(t, s, "k")

	p := Params{Flags: 5, Expires: clk.After(60_000), Tags: []string{"t1"}}
	cas, size := mustWrite(t, s, "k", "mid", p, WriteOptions{Mode: ModeAdd, CAS: 99})
	if size != 3 {
		t.Fatalf("size %d", size)
	}
	if _, _, err := s.Write("k", []byte("x"), Params{}, WriteOptions{Mode: ModeAdd}); !errors.Is(err, ErrExists) {
		t.Fatalf("add on a hit: %v", err)
	}
	if _, _, err := s.Write("k", []byte("x"), Params{}, WriteOptions{CAS: cas + 1}); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("set with a wrong CAS: %v", err)
	}
	if _, _, err := s.Write("k", []byte("x"), Params{}, WriteOptions{Mode: ModeAppend, CAS: cas + 1}); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("append with a wrong CAS: %v", err)
	}
	cas2, size := mustWrite(t, s, "k", "-end", Params{Flags: 9}, WriteOptions{Mode: ModeAppend, CAS: cas})
	if size != 7 || cas2 == cas {
		t.Fatalf("append: size %d cas %d (was %d)", size, cas2, cas)
	}
	_, size = mustWrite(t, s, "k", "start-", Params{}, WriteOptions{Mode: ModePrepend})
	it := mustGet(t, s, "k")
	if string(it.Value) != "start-mid-end" || size != len(it.Value) || it.Flags != 5 || it.Expires != p.Expires || !slices.Equal(it.Tags, []string{"t1"}) {
		t.Fatalf("after append and prepend: %+v (size %d)", it, size)
	}
	mustWrite(t, s, "k", "new", Params{Flags: 1}, WriteOptions{Mode: ModeReplace, CAS: it.CAS})
	if it := mustGet(t, s, "k"); string(it.Value) != "new" || it.Flags != 1 || it.Tags != nil || it.Expires != 0 {
		t.Fatalf("after replace: %+v", it)
	}
	checkInvariants(t, s)
}

func TestWriteCreateAndNewCAS(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 2})
	cas, _ := mustWrite(t, s, "a", "v", Params{Flags: 3, Tags: []string{"x"}}, WriteOptions{Mode: ModeAppend, Create: true, NewCAS: 12345})
	if cas != 12345 {
		t.Fatalf("cas %d, want the given one", cas)
	}
	if it := mustGet(t, s, "a"); string(it.Value) != "v" || it.Flags != 3 || it.CAS != 12345 || it.Tags[0] != "x" {
		t.Fatalf("created by append: %+v", it)
	}
	cas, _ = mustWrite(t, s, "a", "w", Params{}, WriteOptions{Mode: ModeAppend, Create: true})
	if it := mustGet(t, s, "a"); string(it.Value) != "vw" || it.CAS != cas || cas == 12345 {
		t.Fatalf("appended: %+v (cas %d)", it, cas)
	}
	checkInvariants(t, s)
}

func TestWriteInvalidate(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 2})
	exp := clk.After(30_000)
	old := mustSet(t, s, "k", "v1", Params{Expires: exp})
	cur := mustSet(t, s, "k", "v2", Params{Expires: exp})
	if old >= cur {
		t.Fatalf("CAS did not grow: %d then %d", old, cur)
	}
	if _, _, err := s.Write("k", []byte("late"), Params{}, WriteOptions{CAS: old}); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("older CAS without Invalidate: %v", err)
	}
	if _, _, err := s.Write("k", []byte("late"), Params{}, WriteOptions{CAS: cur + 1000, Invalidate: true}); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("newer CAS with Invalidate: %v", err)
	}
	if _, _, err := s.Write("k", []byte("late"), Params{}, WriteOptions{Mode: ModeAppend, CAS: old, Invalidate: true}); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("append with an older CAS and Invalidate: %v", err)
	}
	// Claim the win token first: a stale write keeps it.
	if m, _ := s.GetMeta("k", GetOptions{RecacheBefore: clk.After(60_000)}); !m.Won {
		t.Fatalf("RecacheBefore on an expiring entry did not win: %+v", m)
	}
	mustWrite(t, s, "k", "late", Params{Expires: 0}, WriteOptions{CAS: old, Invalidate: true})
	m, ok := s.GetMeta("k", GetOptions{})
	if !ok || string(m.Value) != "late" || !m.Stale || m.Expires != exp || !m.TokenSent || m.Won {
		t.Fatalf("after a stale write: %+v %v; want stale, old expiry, token kept", m, ok)
	}
	// A plain write is fresh and frees the token.
	mustSet(t, s, "k", "fresh", Params{})
	if m, _ := s.GetMeta("k", GetOptions{}); m.Stale || m.TokenSent {
		t.Fatalf("after a fresh write: %+v", m)
	}
	checkInvariants(t, s)
}

func TestArith(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 2})
	if _, err := s.Arith("n", ArithOptions{Delta: 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("miss: %v", err)
	}
	exp := clk.After(10_000)
	r, err := s.Arith("n", ArithOptions{Delta: 5, Create: true, Initial: 40, CreateExpires: exp})
	if err != nil || r.Value != 40 || !r.Created || r.Expires != exp || r.CAS == 0 {
		t.Fatalf("create: %+v %v", r, err)
	}
	if _, err := s.Arith("n", ArithOptions{Delta: 1, CAS: r.CAS + 1}); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("wrong CAS: %v", err)
	}
	r2, err := s.Arith("n", ArithOptions{Delta: 2, CAS: r.CAS, Create: true, Initial: 7})
	if err != nil || r2.Value != 42 || r2.Created || r2.Expires != exp || r2.CAS == r.CAS {
		t.Fatalf("incr with CAS: %+v %v", r2, err)
	}
	r3, err := s.Arith("n", ArithOptions{Delta: 100, Decr: true, Touch: true, Expires: 0, NewCAS: 777})
	if err != nil || r3.Value != 0 || r3.Expires != 0 || r3.CAS != 777 {
		t.Fatalf("decr below 0: %+v %v", r3, err)
	}
	if it := mustGet(t, s, "n"); string(it.Value) != "0" || it.CAS != 777 || it.Expires != 0 {
		t.Fatalf("stored %+v", it)
	}
	mustSet(t, s, "n", "18446744073709551615", Params{Flags: 4, Tags: []string{"c"}})
	r, err = s.Arith("n", ArithOptions{Delta: 2})
	if err != nil || r.Value != 1 {
		t.Fatalf("wrap: %+v %v", r, err)
	}
	if it := mustGet(t, s, "n"); it.Flags != 4 || it.Tags[0] != "c" {
		t.Fatalf("arith lost metadata: %+v", it)
	}
	mustSet(t, s, "s", "abc", Params{})
	if _, err := s.Arith("s", ArithOptions{Delta: 1}); !errors.Is(err, ErrNotNumeric) {
		t.Fatalf("non-numeric: %v", err)
	}
	r, err = s.Arith("m", ArithOptions{Create: true, Initial: math.MaxUint64})
	if err != nil || r.Value != math.MaxUint64 {
		t.Fatalf("create max: %+v %v", r, err)
	}
	checkInvariants(t, s)
}

func TestGetMetaWinToken(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 2})
	if _, ok := s.GetMeta("k", GetOptions{}); ok {
		t.Fatal("hit on an empty store")
	}
	exp := clk.After(30_000)
	m, ok := s.GetMeta("k", GetOptions{Create: true, CreateExpires: exp, NewCAS: 4242})
	if !ok || !m.Created || !m.Won || m.TokenSent || len(m.Value) != 0 || m.CAS != 4242 || m.Expires != exp {
		t.Fatalf("vivify: %+v %v", m, ok)
	}
	m, ok = s.GetMeta("k", GetOptions{Create: true, CreateExpires: exp})
	if !ok || m.Created || m.Won || !m.TokenSent {
		t.Fatalf("second reader: %+v %v; want the token already sent", m, ok)
	}
	checkInvariants(t, s)

	// The winner recaches: the token is released.
	mustSet(t, s, "k", "value", Params{Expires: exp})
	if m, _ := s.GetMeta("k", GetOptions{}); m.TokenSent || m.Won {
		t.Fatalf("after recache: %+v", m)
	}
	// Close to expiry, R hands out the token once.
	if m, _ := s.GetMeta("k", GetOptions{RecacheBefore: clk.After(10_000)}); m.Won {
		t.Fatalf("R won too early: %+v", m)
	}
	clk.Advance(25_000)
	if m, _ := s.GetMeta("k", GetOptions{RecacheBefore: clk.After(10_000)}); !m.Won || m.TokenSent {
		t.Fatalf("R near expiry: %+v", m)
	}
	if m, _ := s.GetMeta("k", GetOptions{RecacheBefore: clk.After(10_000)}); m.Won || !m.TokenSent {
		t.Fatalf("R again: %+v", m)
	}
	// Invalidation makes the entry stale and frees the token: the next
	// reader wins, the ones after see it taken.
	if err := s.DeleteMeta("k", DeleteOptions{Invalidate: true}); err != nil {
		t.Fatal(err)
	}
	m, _ = s.GetMeta("k", GetOptions{})
	if !m.Stale || !m.Won || m.TokenSent || string(m.Value) != "value" {
		t.Fatalf("first read after invalidation: %+v", m)
	}
	if m, _ := s.GetMeta("k", GetOptions{}); !m.Stale || m.Won || !m.TokenSent {
		t.Fatalf("second read after invalidation: %+v", m)
	}
	checkInvariants(t, s)
}

func TestGetMetaNoBumpAndTouch(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 2})
	cas := mustSet(t, s, "k", "v", Params{Expires: clk.After(5_000)})
	written := clk.Now()
	clk.Advance(2_000)
	m, _ := s.GetMeta("k", GetOptions{NoBump: true})
	if m.Fetched || m.LastAccess > written {
		t.Fatalf("first no-bump read: %+v", m)
	}
	m, _ = s.GetMeta("k", GetOptions{NoBump: true})
	if m.Fetched {
		t.Fatalf("no-bump read recorded an access: %+v", m)
	}
	clk.Advance(2_000)
	s.GetMeta("k", GetOptions{})
	m, _ = s.GetMeta("k", GetOptions{Touch: true, Expires: clk.After(60_000)})
	if !m.Fetched || m.LastAccess < written+2_000 || m.CAS != cas || m.Expires != clk.After(60_000) {
		t.Fatalf("read after an access, with touch: %+v", m)
	}
	clk.Advance(10_000)
	mustGet(t, s, "k")
	if _, ok := s.GetMeta("k", GetOptions{Touch: true, Expires: -1}); !ok {
		t.Fatal("touch into the past did not return the entry")
	}
	wantMissing(t, s, "k")
	checkInvariants(t, s)
}

func TestDeleteMeta(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 2})
	if err := s.DeleteMeta("k", DeleteOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("miss: %v", err)
	}
	cas := mustSet(t, s, "k", "value", Params{Flags: 3, Tags: []string{"a", "b"}})
	if err := s.DeleteMeta("k", DeleteOptions{CAS: cas + 1}); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("wrong CAS: %v", err)
	}
	if err := s.DeleteMeta("k", DeleteOptions{CAS: cas, ClearValue: true, Flags: 8}); err != nil {
		t.Fatal(err)
	}
	it := mustGet(t, s, "k")
	if len(it.Value) != 0 || it.Flags != 8 || it.CAS != cas || !sameSet(it.Tags, []string{"a", "b"}) || it.Stale {
		t.Fatalf("cleared: %+v", it)
	}
	exp := clk.After(9_000)
	if err := s.DeleteMeta("k", DeleteOptions{Invalidate: true, Touch: true, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	it = mustGet(t, s, "k")
	if !it.Stale || it.CAS == cas || it.Expires != exp {
		t.Fatalf("invalidated: %+v", it)
	}
	if err := s.DeleteMeta("k", DeleteOptions{Invalidate: true, ClearValue: true, NewCAS: 55}); err != nil {
		t.Fatal(err)
	}
	if it := mustGet(t, s, "k"); !it.Stale || it.CAS != 55 || it.Expires != 0 {
		t.Fatalf("cleared and invalidated with a new CAS: %+v", it)
	}
	checkInvariants(t, s)
	if err := s.DeleteMeta("k", DeleteOptions{CAS: 55}); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, "k")
	if n := s.TagCount("a"); n != 0 {
		t.Fatalf("tag a still lists %d keys", n)
	}
	checkInvariants(t, s)
}

func TestStoreLimitAccessors(t *testing.T) {
	s := openStore(t, Config{MaxKeyLength: 1000, MaxItemSize: 4096})
	if s.MaxKeyLength() != 1000 || s.MaxItemSize() != 4096 {
		t.Fatalf("limits %d %d", s.MaxKeyLength(), s.MaxItemSize())
	}
	if err := s.Reconfigure(Config{}); err != nil {
		t.Fatal(err)
	}
	if s.MaxKeyLength() != DefaultMaxKeyLength || s.MaxItemSize() != DefaultMaxItemSize {
		t.Fatalf("defaults %d %d", s.MaxKeyLength(), s.MaxItemSize())
	}
}

// TestMetaConcurrentOneWinner races readers that vivify the same keys: each
// key is created once and exactly one reader wins it, while other goroutines
// write, invalidate and count on neighbouring keys; the store's invariants
// hold at the end.
func TestMetaConcurrentOneWinner(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 4, MaxMemory: 1 << 20})
	const keys, readers = 50, 8
	var wins [keys]atomic.Int32
	var wg sync.WaitGroup
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < keys; k++ {
				if m, ok := s.GetMeta(fmt.Sprintf("v%d", k), GetOptions{Create: true}); ok && m.Won {
					wins[k].Add(1)
				}
			}
		}()
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				key := fmt.Sprintf("w%d", i%20)
				switch i % 5 {
				case 0:
					s.Write(key, []byte("x"), Params{Tags: []string{"t"}}, WriteOptions{Mode: ModeAppend, Create: true})
				case 1:
					s.Arith(key+"n", ArithOptions{Delta: 1, Create: true})
				case 2:
					s.DeleteMeta(key, DeleteOptions{Invalidate: true})
				case 3:
					s.GetMeta(key, GetOptions{RecacheBefore: 1})
				case 4:
					s.DeleteMeta(key, DeleteOptions{ClearValue: true})
				}
			}
		}()
	}
	wg.Wait()
	for k := range wins {
		if n := wins[k].Load(); n != 1 {
			t.Errorf("key v%d won %d times, want once", k, n)
		}
	}
	checkInvariants(t, s)
}
