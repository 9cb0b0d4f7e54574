package store

import (
	"errors"
	"testing"
)

func TestMarkStale(t *testing.T) {
	s, _ := newModelStore(t, Config{Shards: 2})
	cas, _ := s.Set("a", []byte("1"), Params{Tags: []string{"t"}})
	s.Set("b", []byte("2"), Params{})
	if err := s.MarkStale("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkStale("b"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkStale("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	it, ok := s.Get("a")
	if !ok || !it.Stale || string(it.Value) != "1" || it.CAS == cas {
		t.Fatalf("a = %+v, %v; want stale with a new CAS", it, ok)
	}
	if it, _ := s.Get("b"); !it.Stale {
		t.Fatal("b not stale")
	}
	checkInvariants(t, s)
	// A write makes the entry fresh again.
	s.Set("a", []byte("3"), Params{Tags: []string{"t"}})
	s.Set("b", []byte("4"), Params{})
	if it, _ := s.Get("a"); it.Stale {
		t.Fatal("a still stale after a write")
	}
	if it, _ := s.Get("b"); it.Stale {
		t.Fatal("b still stale after a write")
	}
	checkInvariants(t, s)
}

func TestStaleTags(t *testing.T) {
	s, _ := newModelStore(t, Config{Shards: 4})
	s.Set("a", []byte("1"), Params{Tags: []string{"x", "y"}})
	s.Set("b", []byte("2"), Params{Tags: []string{"y"}})
	s.Set("c", []byte("3"), Params{Tags: []string{"z"}})
	if n := s.StaleTags("x", "y"); n != 2 {
		t.Fatalf("StaleTags = %d, want 2 (a once, b)", n)
	}
	if n := s.StaleTags("y"); n != 0 {
		t.Fatalf("StaleTags again = %d, want 0", n)
	}
	for key, want := range map[string]bool{"a": true, "b": true, "c": false} {
		if it, ok := s.Get(key); !ok || it.Stale != want {
			t.Fatalf("%s: %+v %v, want stale=%v", key, it, ok, want)
		}
	}
	if got := s.TagCount("y"); got != 2 {
		t.Fatalf("stale entries left the index: TagCount(y) = %d", got)
	}
	checkInvariants(t, s)
}
