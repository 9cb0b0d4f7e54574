package handler

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// discard is a ResponseWriter that drops what it is given, so benchmarks
// see the cache's own costs.
type discard struct {
	h http.Header
	n int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// benchHit measures answering a cached response of size bytes with the
// fields a typical origin sends.
func benchHit(b *testing.B, size int, parallel bool) {
	tc := newTestCache(b, nil)
	body := strings.Repeat("x", size)
	tc.origin.set(respond(tc.clock, 200, body, "Cache-Control", "max-age=3600", "Content-Type", "text/html; charset=utf-8",
		"Etag", `"abc123"`, "Last-Modified", "Sun, 01 Mar 2026 10:00:00 GMT", "Surrogate-Key", "page:1 section:2"))
	tc.do("GET", "/page?id=1")
	next := caddyhttp.HandlerFunc(tc.origin.ServeHTTP)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			r := httptest.NewRequest("GET", "/page?id=1", nil)
			w := &discard{h: make(http.Header)}
			for pb.Next() {
				clear(w.h)
				if err := tc.h.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	} else {
		r := httptest.NewRequest("GET", "/page?id=1", nil)
		w := &discard{h: make(http.Header)}
		for b.Loop() {
			clear(w.h)
			if err := tc.h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	}
	if tc.requests() != 1 {
		b.Fatalf("origin saw %d requests; every benchmark request must be a hit", tc.requests())
	}
}

func BenchmarkHit(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) { benchHit(b, size, false) })
		b.Run(fmt.Sprintf("%dKiB-parallel", size>>10), func(b *testing.B) { benchHit(b, size, true) })
	}
}

// BenchmarkMiss measures a miss that is stored: capture, encoding and the
// store write.
func BenchmarkMiss(b *testing.B) {
	tc := newTestCache(b, nil)
	body := strings.Repeat("x", 1<<10)
	tc.origin.set(respond(tc.clock, 200, body, "Cache-Control", "max-age=3600", "Content-Type", "text/html", "Surrogate-Key", "a b"))
	next := caddyhttp.HandlerFunc(tc.origin.ServeHTTP)
	r := httptest.NewRequest("GET", "/page", nil)
	b.ReportAllocs()
	for b.Loop() {
		tc.st.InvalidateTags("a")
		w := &discard{h: make(http.Header)}
		if err := tc.h.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeapPer1KiBResponse stores 100k responses of 1 KiB through the
// cache, as `respond` or a small origin would send them, and reports the
// Go heap they cost per response and as a multiple of their body bytes.
func BenchmarkHeapPer1KiBResponse(b *testing.B) {
	const n, size = 100_000, 1 << 10
	body := strings.Repeat("x", size)
	for b.Loop() {
		tc := newTestCache(b, nil)
		tc.origin.set(respond(tc.clock, 200, body, "Cache-Control", "max-age=3600", "Content-Type", "text/plain; charset=utf-8"))
		next := caddyhttp.HandlerFunc(tc.origin.ServeHTTP)
		targets := make([]*http.Request, n)
		for i := range targets {
			targets[i] = httptest.NewRequest("GET", fmt.Sprintf("/item/%d", i), nil)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w := &discard{h: make(http.Header)}
		for _, r := range targets {
			clear(w.h)
			if err := tc.h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if items := tc.st.Stats().Items; items != n {
			b.Fatalf("%d items stored; want %d", items, n)
		}
		per := float64(after.HeapAlloc-before.HeapAlloc) / n
		b.ReportMetric(per, "heapB/response")
		b.ReportMetric(per/size, "xBody")
		b.ReportMetric(float64(tc.st.Stats().Bytes)/n, "countedB/response")
		runtime.KeepAlive(targets)
	}
}
