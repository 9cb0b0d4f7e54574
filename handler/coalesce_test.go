package handler

import (
	"net/http"
	"strings"
	"sync"
	"testing"
)

// concurrentMisses sends n concurrent GETs for /page while the origin is
// held, releases it once the other n-1 wait for the first, and returns
// the responses.
func concurrentMisses(t *testing.T, tc *testCache, n int, serve func(w http.ResponseWriter, r *http.Request) error) []string {
	t.Helper()
	g := newGate()
	defer g.open()
	tc.origin.set(g.wrap(serve))
	results := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w := tc.do("GET", "/page")
			results[i] = w.Body.String() + " | " + status(w)
		})
	}
	<-g.arrived
	waitFor(t, "the other requests to wait for the first", func() bool {
		tc.h.fills.mu.Lock()
		defer tc.h.fills.mu.Unlock()
		for _, fl := range tc.h.fills.m {
			return int(fl.waiters.Load()) == n-1
		}
		return false
	})
	g.open()
	wg.Wait()
	return results
}

func TestCoalescing(t *testing.T) {
	tc := newTestCache(t, nil)
	results := concurrentMisses(t, tc, 50, respond(tc.clock, 200, "hello", "Cache-Control", "max-age=60"))
	if got := tc.requests(); got != 1 {
		t.Errorf("50 concurrent misses made %d origin requests; want 1", got)
	}
	coalesced := 0
	for i, res := range results {
		switch {
		case res == "hello | tagcache; fwd=uri-miss; stored":
		case strings.HasPrefix(res, "hello | tagcache; hit; ttl=60; detail=coalesced"):
			coalesced++
		default:
			t.Errorf("response %d: %q", i, res)
		}
	}
	if coalesced != 49 {
		t.Errorf("%d responses answered from the coalesced fill; want 49", coalesced)
	}
}

func TestCoalescingUncacheable(t *testing.T) {
	tc := newTestCache(t, nil)
	results := concurrentMisses(t, tc, 20, respond(tc.clock, 200, "hello", "Cache-Control", "private"))
	if got := tc.requests(); got != 20 {
		t.Errorf("20 concurrent misses for a private response made %d origin requests; want 20 (the waiters go upstream themselves)", got)
	}
	for i, res := range results {
		if res != "hello | tagcache; fwd=uri-miss; detail=private" {
			t.Errorf("response %d: %q", i, res)
		}
	}
}
