package handler

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// versioned is an origin behaviour with an entity tag: it answers a
// matching If-None-Match with 304 and otherwise sends the body, and sets
// X-Version to the number of requests it saw, so a test sees which
// response's fields were stored.
func versioned(tc *testCache, cacheControl string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		h := w.Header()
		h.Set("Cache-Control", cacheControl)
		h.Set("Etag", `"v1"`)
		h.Set("Date", tc.clock.Now().UTC().Format(http.TimeFormat))
		h.Set("X-Version", strings.Repeat("I", int(tc.requests())))
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		h.Set("Content-Type", "text/plain")
		_, err := w.Write([]byte("hello"))
		return err
	}
}

func TestRevalidationRefreshesOn304(t *testing.T) {
	tc := newTestCache(t, func(h *Handler) { h.KeepStale = durationOf(time.Hour) })
	tc.origin.set(versioned(tc, "max-age=10"))
	tc.do("GET", "/page")

	tc.clock.advance(15 * time.Second)
	w := tc.do("GET", "/page")
	if w.Code != 200 || w.Body.String() != "hello" || tc.requests() != 2 {
		t.Fatalf("revalidation: %d %q after %d origin requests", w.Code, w.Body.String(), tc.requests())
	}
	if got := tc.origin.lastRequest().Header.Get("If-None-Match"); got != `"v1"` {
		t.Errorf("upstream If-None-Match = %q; want the stored entity tag", got)
	}
	if got := status(w); got != "tagcache; fwd=stale; fwd-status=304; stored" {
		t.Errorf("Cache-Status %q", got)
	}
	// The 304's fields replaced the stored ones; Content-Type and the body
	// were kept.
	if got := w.Header().Get("X-Version"); got != "II" {
		t.Errorf("X-Version = %q; want the 304's value II", got)
	}
	if got := w.Header().Get("Content-Type"); got != "text/plain" {
		t.Errorf("Content-Type = %q; want it kept from the stored response", got)
	}

	tc.clock.advance(5 * time.Second)
	w = tc.do("GET", "/page")
	if !strings.Contains(status(w), "hit; ttl=5") || tc.requests() != 2 || w.Header().Get("X-Version") != "II" {
		t.Errorf("after refresh: %q, X-Version %q, origin %d; want a hit with the refreshed fields", status(w), w.Header().Get("X-Version"), tc.requests())
	}

	// A client's own conditional is answered from the refreshed entry.
	tc.clock.advance(10 * time.Second)
	w = tc.do("GET", "/page", "If-None-Match", `"v1"`)
	if w.Code != 304 || tc.requests() != 3 {
		t.Errorf("conditional revalidation: %d, origin %d; want 304 after one more origin request", w.Code, tc.requests())
	}
}

func TestRevalidationReplacesOn200(t *testing.T) {
	tc := newTestCache(t, func(h *Handler) { h.KeepStale = durationOf(time.Hour) })
	tc.origin.set(respond(tc.clock, 200, "old", "Cache-Control", "max-age=10", "Etag", `"v1"`))
	tc.do("GET", "/page")
	tc.origin.set(respond(tc.clock, 200, "new", "Cache-Control", "max-age=10", "Etag", `"v2"`))
	tc.clock.advance(11 * time.Second)
	w := tc.do("GET", "/page")
	if w.Body.String() != "new" || status(w) != "tagcache; fwd=stale; fwd-status=200; stored" {
		t.Fatalf("got %q, %q", w.Body.String(), status(w))
	}
	if w = tc.do("GET", "/page"); w.Body.String() != "new" || tc.requests() != 2 {
		t.Errorf("got %q after %d origin requests; want the new body from the cache", w.Body.String(), tc.requests())
	}
}

// gate blocks an origin until released and reports each request.
type gate struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{arrived: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gate) wrap(next func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		g.arrived <- struct{}{}
		<-g.release
		return next(w, r)
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(respond(tc.clock, 200, "v1", "Cache-Control", "max-age=10, stale-while-revalidate=30"))
	tc.do("GET", "/page")

	// While the background revalidation is held at the origin, every
	// stale request is answered at once from the cache, and only one
	// revalidation goes upstream.
	g := newGate()
	defer g.open()
	tc.origin.set(g.wrap(respond(tc.clock, 200, "v2", "Cache-Control", "max-age=10, stale-while-revalidate=30")))
	tc.clock.advance(15 * time.Second)
	for i := range 10 {
		w := tc.do("GET", "/page")
		if w.Body.String() != "v1" || status(w) != "tagcache; hit; ttl=-5; detail=stale-while-revalidate" {
			t.Fatalf("request %d: %q, %q; want the stale response at once", i, w.Body.String(), status(w))
		}
	}
	<-g.arrived
	g.open()
	waitFor(t, "the background revalidation to store v2", func() bool {
		w := tc.do("GET", "/page", "Cache-Control", "only-if-cached")
		return w.Body.String() == "v2"
	})
	if got := tc.requests(); got != 2 {
		t.Errorf("origin saw %d requests; want 2 (the miss and one revalidation)", got)
	}
	if w := tc.do("GET", "/page"); !strings.Contains(status(w), "hit; ttl=10") {
		t.Errorf("after revalidation: %q; want a fresh hit", status(w))
	}
}

func TestStaleWhileRevalidateDetachedFromClient(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(respond(tc.clock, 200, "v1", "Cache-Control", "max-age=10, stale-while-revalidate=30"))
	tc.do("GET", "/page")

	g := newGate()
	defer g.open()
	var bgCanceled error
	tc.origin.set(g.wrap(func(w http.ResponseWriter, r *http.Request) error {
		bgCanceled = r.Context().Err()
		return respond(tc.clock, 200, "v2", "Cache-Control", "max-age=10")(w, r)
	}))
	tc.clock.advance(15 * time.Second)
	r, cancel := requestWithCancel("GET", "/page")
	if w := tc.doRequest(r); w.Body.String() != "v1" {
		t.Fatalf("got %q; want the stale response", w.Body.String())
	}
	cancel() // the client goes away
	<-g.arrived
	g.open()
	waitFor(t, "the background revalidation", func() bool {
		return tc.do("GET", "/page", "Cache-Control", "only-if-cached").Body.String() == "v2"
	})
	if bgCanceled != nil {
		t.Errorf("the background request's context was done (%v) when the client left", bgCanceled)
	}
}

func TestStaleIfError(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail func(w http.ResponseWriter, r *http.Request) error
	}{
		{"5xx", func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("down"))
			return nil
		}},
		{"error", func(w http.ResponseWriter, r *http.Request) error {
			return errors.New("dial tcp: connection refused")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCache(t, nil)
			tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=10, stale-if-error=60"))
			tc.do("GET", "/page")
			tc.origin.set(tt.fail)
			tc.clock.advance(30 * time.Second)
			w := tc.do("GET", "/page")
			if w.Code != 200 || w.Body.String() != "hello" || !strings.Contains(status(w), "fwd=stale") || !strings.Contains(status(w), "detail=stale-if-error") {
				t.Fatalf("got %d %q, %q; want the stale response", w.Code, w.Body.String(), status(w))
			}
			if tc.requests() != 2 {
				t.Errorf("origin saw %d requests; want 2", tc.requests())
			}
			// Past the window the failure reaches the client.
			tc.clock.advance(45 * time.Second)
			if w := tc.do("GET", "/page"); w.Code == 200 {
				t.Errorf("past stale-if-error: got 200 %q; want the failure", w.Body.String())
			}
		})
	}
}

func TestMustRevalidateUnreachable(t *testing.T) {
	tc := newTestCache(t, func(h *Handler) { h.KeepStale = durationOf(time.Hour); h.StaleIfError = durationOf(time.Hour) })
	tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=10, must-revalidate"))
	tc.do("GET", "/page")
	tc.origin.set(func(w http.ResponseWriter, r *http.Request) error { return errors.New("connection refused") })
	tc.clock.advance(20 * time.Second)
	if w := tc.do("GET", "/page"); w.Code != http.StatusGatewayTimeout {
		t.Errorf("got %d %q; want 504 for a must-revalidate response that cannot be revalidated", w.Code, w.Body.String())
	}
}

// TestEarlyHints: a 103 passes through, and the final response's fields,
// set before it, are still stored.
func TestEarlyHints(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "text/html")
		_, err := w.Write([]byte("hello"))
		return err
	})
	srv := serveOverHTTP(t, tc)
	for i := range 2 {
		resp, err := http.Get(srv.URL + "/page")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Link") != "</style.css>; rel=preload" || resp.Header.Get("Content-Type") != "text/html" {
			t.Errorf("request %d: %d, Link %q, Content-Type %q", i, resp.StatusCode, resp.Header.Get("Link"), resp.Header.Get("Content-Type"))
		}
	}
	if tc.requests() != 1 {
		t.Errorf("origin saw %d requests; want 1", tc.requests())
	}
}
