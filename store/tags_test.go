package store

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
)

func TestKeysByTag(t *testing.T) {
	for _, shards := range []int{1, 4, 256} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s, _ := openManual(t, Config{Shards: shards})
			var tagged []string
			for i := 0; i < 10; i++ {
				k := "k" + strconv.Itoa(i)
				tagged = append(tagged, k)
				mustSet(t, s, k, "v", Params{Tags: []string{"t", "all"}})
			}
			for i := 0; i < 5; i++ {
				mustSet(t, s, "o"+strconv.Itoa(i), "v", Params{Tags: []string{"u", "all"}})
			}
			mustSet(t, s, "plain", "v", Params{})
			tests := []struct {
				tag   string
				limit int
				want  int
			}{
				{"t", 0, 10},
				{"t", -1, 10},
				{"t", 1, 1},
				{"t", 5, 5},
				{"t", 10, 10},
				{"t", 100, 10},
				{"u", 0, 5},
				{"all", 0, 15},
				{"all", 12, 12},
				{"nope", 0, 0},
				{"nope", 3, 0},
				{"", 0, 0},
			}
			for _, tt := range tests {
				got := s.KeysByTag(tt.tag, tt.limit)
				if len(got) != tt.want {
					t.Fatalf("KeysByTag(%q, %d) returned %d keys, want %d", tt.tag, tt.limit, len(got), tt.want)
				}
				seen := map[string]bool{}
				for _, k := range got {
					if seen[k] {
						t.Fatalf("KeysByTag(%q, %d) repeats %q", tt.tag, tt.limit, k)
					}
					seen[k] = true
					it, ok := s.Get(k)
					if !ok || !slices.Contains(it.Tags, tt.tag) {
						t.Fatalf("KeysByTag(%q) returned %q, whose entry is %+v %v", tt.tag, k, it, ok)
					}
				}
			}
			if got := s.KeysByTag("t", 0); !sameSet(got, tagged) {
				t.Fatalf("KeysByTag(t) = %q", got)
			}
		})
	}
}

func TestTagsOfAndTagCount(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	if tags, ok := s.TagsOf("absent"); ok || tags != nil {
		t.Fatalf("TagsOf(absent) = %q, %v", tags, ok)
	}
	mustSet(t, s, "plain", "v", Params{})
	if tags, ok := s.TagsOf("plain"); !ok || len(tags) != 0 {
		t.Fatalf("TagsOf(plain) = %q, %v", tags, ok)
	}
	mustSet(t, s, "k", "v", Params{Tags: []string{"b", "a", "c"}})
	mustSet(t, s, "j", "v", Params{Tags: []string{"a"}})
	if tags, ok := s.TagsOf("k"); !ok || !sameSet(tags, []string{"a", "b", "c"}) {
		t.Fatalf("TagsOf(k) = %q, %v", tags, ok)
	}
	tests := map[string]int{"a": 2, "b": 1, "c": 1, "d": 0, "": 0}
	for tag, want := range tests {
		if got := s.TagCount(tag); got != want {
			t.Fatalf("TagCount(%q) = %d, want %d", tag, got, want)
		}
	}
	// TagsOf does not count as an access.
	before := s.Stats()
	s.TagsOf("k")
	s.TagsOf("missing")
	if after := s.Stats(); after.Hits != before.Hits || after.Misses != before.Misses {
		t.Fatalf("TagsOf counted as an access: %+v -> %+v", before, after)
	}
	if it := mustGet(t, s, "k"); it.Fetched {
		t.Fatal("TagsOf marked the entry fetched")
	}
	// Expired entries disappear from both.
	mustSet(t, s, "e", "v", Params{Tags: []string{"a"}, Expires: clk.After(3)})
	if got := s.TagCount("a"); got != 3 {
		t.Fatalf("TagCount(a) = %d, want 3", got)
	}
	clk.Advance(3)
	if tags, ok := s.TagsOf("e"); ok || tags != nil {
		t.Fatalf("TagsOf(expired) = %q, %v", tags, ok)
	}
	if got := s.TagCount("a"); got != 2 {
		t.Fatalf("TagCount(a) with an expired entry = %d, want 2", got)
	}
	checkInvariants(t, s)
}

func TestListTags(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 4})
	if tags := s.ListTags(0); len(tags) != 0 {
		t.Fatalf("ListTags on an empty store = %v", tags)
	}
	want := map[string]int{}
	for i := 0; i < 30; i++ {
		tags := []string{"t" + strconv.Itoa(i%7), "all"}
		mustSet(t, s, "k"+strconv.Itoa(i), "v", Params{Tags: tags})
		for _, tag := range tags {
			want[tag]++
		}
	}
	got := map[string]int{}
	for _, ti := range s.ListTags(0) {
		if _, dup := got[ti.Tag]; dup {
			t.Fatalf("ListTags repeats %q", ti.Tag)
		}
		got[ti.Tag] = ti.Count
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ListTags = %v, want %v", got, want)
	}
	for _, limit := range []int{1, 3, 8, 100, -1} {
		n := len(s.ListTags(limit))
		wantN := min(limit, len(want))
		if limit <= 0 {
			wantN = len(want)
		}
		if n != wantN {
			t.Fatalf("ListTags(%d) returned %d, want %d", limit, n, wantN)
		}
	}
	if st := s.Stats(); st.Tags != int64(len(want)) {
		t.Fatalf("Stats().Tags = %d, want %d", st.Tags, len(want))
	}
}

func TestInvalidateTags(t *testing.T) {
	entries := map[string][]string{
		"a": {"x"},
		"b": {"x", "y"},
		"c": {"y"},
		"d": {"z"},
		"e": nil,
	}
	tests := []struct {
		name    string
		tags    []string
		removed []string
	}{
		{"one tag", []string{"x"}, []string{"a", "b"}},
		{"other tag", []string{"y"}, []string{"b", "c"}},
		{"two tags, shared key once", []string{"x", "y"}, []string{"a", "b", "c"}},
		{"two tags reversed", []string{"y", "x"}, []string{"a", "b", "c"}},
		{"same tag twice", []string{"x", "x"}, []string{"a", "b"}},
		{"disjoint tags", []string{"x", "z"}, []string{"a", "b", "d"}},
		{"all tags", []string{"x", "y", "z"}, []string{"a", "b", "c", "d"}},
		{"unknown tag", []string{"nope"}, nil},
		{"no tags", nil, nil},
		{"empty tag", []string{""}, nil},
	}
	for _, shards := range []int{1, 4} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("shards=%d/%s", shards, tt.name), func(t *testing.T) {
				s, _ := openManual(t, Config{Shards: shards})
				for k, tags := range entries {
					mustSet(t, s, k, "v:"+k, Params{Tags: tags})
				}
				if n := s.InvalidateTags(tt.tags...); n != len(tt.removed) {
					t.Fatalf("InvalidateTags(%q) = %d, want %d", tt.tags, n, len(tt.removed))
				}
				wantTags := map[string]bool{}
				for k, tags := range entries {
					it, ok := s.Get(k)
					if slices.Contains(tt.removed, k) {
						if ok {
							t.Fatalf("%q survived the invalidation", k)
						}
						continue
					}
					if !ok || string(it.Value) != "v:"+k || !sameSet(it.Tags, tags) {
						t.Fatalf("untouched key %q: %+v %v", k, it, ok)
					}
					for _, tag := range tags {
						wantTags[tag] = true
					}
				}
				for _, tag := range []string{"x", "y", "z"} {
					for _, k := range s.KeysByTag(tag, 0) {
						if slices.Contains(tt.removed, k) {
							t.Fatalf("KeysByTag(%q) still lists invalidated %q", tag, k)
						}
					}
				}
				st := s.Stats()
				if st.Invalidations != uint64(len(tt.removed)) || st.Tags != int64(len(wantTags)) ||
					st.Items != int64(len(entries)-len(tt.removed)) {
					t.Fatalf("stats %+v, want %d invalidations, %d tags", st, len(tt.removed), len(wantTags))
				}
				checkInvariants(t, s)
			})
		}
	}
}

func TestInvalidateTagsCountsOnlyLiveEntries(t *testing.T) {
	s, clk := openManual(t, Config{Shards: 4})
	for i := 0; i < 10; i++ {
		p := Params{Tags: []string{"t"}}
		if i%2 == 0 {
			p.Expires = clk.After(5)
		}
		mustSet(t, s, "k"+strconv.Itoa(i), "v", p)
	}
	clk.Advance(5)
	if n := s.InvalidateTags("t"); n != 5 {
		t.Fatalf("InvalidateTags = %d, want 5 live entries", n)
	}
	if st := s.Stats(); st.Items != 0 || st.Tags != 0 || st.Invalidations != 5 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkInvariants(t, s)
}

// TestInvalidateTagsLarge invalidates a tag with more keys than one batch.
func TestInvalidateTagsLarge(t *testing.T) {
	for _, shards := range []int{1, 4} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s, _ := openManual(t, Config{Shards: shards})
			const n = 3*invalidateBatch + 17
			for i := 0; i < n; i++ {
				mustSet(t, s, "big"+strconv.Itoa(i), "v", Params{Tags: []string{"big", "x" + strconv.Itoa(i%3)}})
			}
			for i := 0; i < 100; i++ {
				mustSet(t, s, "small"+strconv.Itoa(i), "v", Params{Tags: []string{"small", "x" + strconv.Itoa(i%3)}})
			}
			if got := s.InvalidateTags("big"); got != n {
				t.Fatalf("InvalidateTags(big) = %d, want %d", got, n)
			}
			if got := s.TagCount("small"); got != 100 {
				t.Fatalf("TagCount(small) = %d", got)
			}
			for i := 0; i < 3; i++ {
				if got := s.TagCount("x" + strconv.Itoa(i)); got < 33 || got > 34 {
					t.Fatalf("TagCount(x%d) = %d", i, got)
				}
			}
			if st := s.Stats(); st.Items != 100 || st.Tags != 4 {
				t.Fatalf("stats %+v", st)
			}
			checkInvariants(t, s)
		})
	}
}

func TestOverwriteMovesTags(t *testing.T) {
	tests := []struct {
		name     string
		old, new []string
	}{
		{"none to some", nil, []string{"a", "b"}},
		{"some to none", []string{"a", "b"}, nil},
		{"disjoint", []string{"a", "b"}, []string{"c", "d"}},
		{"overlap", []string{"a", "b"}, []string{"b", "c"}},
		{"same", []string{"a", "b"}, []string{"a", "b"}},
		{"same reordered", []string{"a", "b"}, []string{"b", "a"}},
		{"subset", []string{"a", "b", "c"}, []string{"b"}},
		{"superset", []string{"b"}, []string{"a", "b", "c"}},
		{"same count different", []string{"a", "b"}, []string{"a", "c"}},
		{"duplicates in new", []string{"a"}, []string{"b", "b", "a", "b"}},
	}
	writes := []struct {
		name string
		do   func(s *Store, key string, tags []string) error
	}{
		{"Set", func(s *Store, k string, tags []string) error {
			_, err := s.Set(k, []byte("new"), Params{Tags: tags})
			return err
		}},
		{"Replace", func(s *Store, k string, tags []string) error {
			_, err := s.Replace(k, []byte("new"), Params{Tags: tags})
			return err
		}},
		{"CompareAndSwap", func(s *Store, k string, tags []string) error {
			it, _ := s.Get(k)
			_, err := s.CompareAndSwap(k, []byte("new"), Params{Tags: tags}, it.CAS)
			return err
		}},
	}
	for _, w := range writes {
		for _, tt := range tests {
			t.Run(w.name+"/"+tt.name, func(t *testing.T) {
				s, _ := openManual(t, Config{Shards: 4})
				mustSet(t, s, "k", "old", Params{Tags: tt.old})
				// Another key shares tag "b" so its set survives.
				mustSet(t, s, "other", "v", Params{Tags: []string{"b"}})
				if err := w.do(s, "k", tt.new); err != nil {
					t.Fatal(err)
				}
				want := slices.Compact(sortedCopy(tt.new))
				if tags, _ := s.TagsOf("k"); !slices.Equal(sortedCopy(tags), want) {
					t.Fatalf("TagsOf = %q, want %q", tags, want)
				}
				for _, tag := range []string{"a", "b", "c", "d"} {
					keys := s.KeysByTag(tag, 0)
					if slices.Contains(keys, "k") != slices.Contains(want, tag) {
						t.Fatalf("KeysByTag(%q) = %q, k's tags are %q", tag, keys, want)
					}
					if slices.Contains(keys, "other") != (tag == "b") {
						t.Fatalf("KeysByTag(%q) = %q, other's tags are [b]", tag, keys)
					}
				}
				// Invalidating an old tag the key lost leaves it alone.
				for _, tag := range tt.old {
					if !slices.Contains(want, tag) && tag != "b" {
						if n := s.InvalidateTags(tag); n != 0 {
							t.Fatalf("InvalidateTags(%q) = %d after the key dropped it", tag, n)
						}
					}
				}
				if _, ok := s.Get("k"); !ok {
					t.Fatal("k lost")
				}
				checkInvariants(t, s)
			})
		}
	}
}

func TestDuplicateTagsDeduped(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 1, MaxTagsPerKey: 3})
	mustSet(t, s, "k", "v", Params{Tags: []string{"a", "a", "b", "a", "b", "c", "c"}})
	it := mustGet(t, s, "k")
	if !sameSet(it.Tags, []string{"a", "b", "c"}) || len(it.Tags) != 3 {
		t.Fatalf("Tags = %q", it.Tags)
	}
	for _, tag := range []string{"a", "b", "c"} {
		if keys := s.KeysByTag(tag, 0); !slices.Equal(keys, []string{"k"}) {
			t.Fatalf("KeysByTag(%q) = %q", tag, keys)
		}
	}
	if n := s.InvalidateTags("a", "b", "c"); n != 1 {
		t.Fatalf("InvalidateTags = %d, want 1", n)
	}
	if st := s.Stats(); st.Tags != 0 || st.Items != 0 || st.Invalidations != 1 {
		t.Fatalf("stats %+v", st)
	}
	checkInvariants(t, s)
}

// TestTagIndexFollowsRemovals checks that every way an entry goes away also
// takes it out of the tag index.
func TestTagIndexFollowsRemovals(t *testing.T) {
	tests := []struct {
		name   string
		remove func(s *Store, clk *manualClock)
	}{
		{"Delete", func(s *Store, _ *manualClock) { s.Delete("k") }},
		{"GetAndDelete", func(s *Store, _ *manualClock) { s.GetAndDelete("k") }},
		{"InvalidateTags other tag", func(s *Store, _ *manualClock) { s.InvalidateTags("b") }},
		{"Set with past expiry", func(s *Store, clk *manualClock) {
			s.Set("k", []byte("v"), Params{Tags: []string{"a"}, Expires: clk.Now() - 1})
		}},
		{"Set with ExpiresIn(-1)", func(s *Store, _ *manualClock) {
			s.Set("k", []byte("v"), Params{Tags: []string{"c"}, Expires: s.ExpiresIn(-1)})
		}},
		{"Touch into the past", func(s *Store, clk *manualClock) { s.Touch("k", clk.Now()) }},
		{"GetAndTouch into the past", func(s *Store, clk *manualClock) { s.GetAndTouch("k", clk.Now()-5) }},
		{"expiry then Get", func(s *Store, clk *manualClock) {
			s.Touch("k", clk.After(1))
			clk.Advance(1)
			s.Get("k")
		}},
		{"expiry then KeysByTag", func(s *Store, clk *manualClock) {
			s.Touch("k", clk.After(1))
			clk.Advance(1)
			s.KeysByTag("a", 0)
		}},
		{"expiry then sweep", func(s *Store, clk *manualClock) {
			s.Touch("k", clk.After(1))
			clk.Advance(1)
			s.sweep(clk.Now())
		}},
		{"Flush", func(s *Store, _ *manualClock) { s.Flush(0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := openManual(t, Config{Shards: 4})
			mustSet(t, s, "k", "v", Params{Tags: []string{"a", "b"}})
			tt.remove(s, clk)
			wantMissing(t, s, "k")
			for _, tag := range []string{"a", "b", "c"} {
				if keys := s.KeysByTag(tag, 0); len(keys) != 0 {
					t.Fatalf("KeysByTag(%q) = %q", tag, keys)
				}
			}
			if st := s.Stats(); st.Tags != 0 || st.Items != 0 || st.Bytes != 0 {
				t.Fatalf("stats %+v", st)
			}
			if tags := s.ListTags(0); len(tags) != 0 {
				t.Fatalf("ListTags = %v", tags)
			}
			checkInvariants(t, s)
		})
	}
}

func TestStatsTagsAndInvalidations(t *testing.T) {
	s, _ := openManual(t, Config{Shards: 4})
	for i := 0; i < 20; i++ {
		mustSet(t, s, "k"+strconv.Itoa(i), "v", Params{Tags: []string{"t" + strconv.Itoa(i%4), "shared"}})
	}
	if st := s.Stats(); st.Tags != 5 || st.Invalidations != 0 {
		t.Fatalf("stats %+v, want 5 tags", st)
	}
	if n := s.InvalidateTags("t0"); n != 5 {
		t.Fatalf("InvalidateTags(t0) = %d", n)
	}
	if n := s.InvalidateTags("t1", "t0"); n != 5 {
		t.Fatalf("InvalidateTags(t1, t0) = %d", n)
	}
	if st := s.Stats(); st.Tags != 3 || st.Invalidations != 10 || st.Items != 10 {
		t.Fatalf("stats %+v, want 3 tags, 10 invalidations, 10 items", st)
	}
	if n := s.InvalidateTags("shared"); n != 10 {
		t.Fatalf("InvalidateTags(shared) = %d", n)
	}
	if st := s.Stats(); st.Tags != 0 || st.Invalidations != 20 || st.Items != 0 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkInvariants(t, s)
}
