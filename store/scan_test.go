package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	s, clock := newModelStore(t, Config{Shards: 16})
	var want []string
	for i := range 100 {
		k := fmt.Sprintf("k%03d", i)
		s.Set(k, []byte("v"), Params{})
		if i%2 == 0 {
			want = append(want, k)
		}
	}
	s.Set("gone", []byte("v"), Params{Expires: clock.Load() + 1})
	clock.Add(5)
	var got []string
	cursor, calls := uint64(0), 0
	for {
		keys, next := s.Scan(cursor, 10, func(k string) bool { return strings.HasPrefix(k, "k") && (k[3]-'0')%2 == 0 })
		got = append(got, keys...)
		calls++
		if next == 0 {
			break
		}
		if next <= cursor {
			t.Fatalf("cursor went from %d to %d", cursor, next)
		}
		cursor = next
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("scan = %v, want %v", got, want)
	}
	if calls < 2 {
		t.Fatalf("count 10 over 50 matches took %d calls", calls)
	}
	if all, next := s.Scan(0, 1<<30, nil); next != 0 || len(all) != 100 {
		t.Fatalf("full scan: %d keys, next %d (the expired key must not appear)", len(all), next)
	}
}
