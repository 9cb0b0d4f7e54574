package handler

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// step is one request in a rule test, and what must come of it.
type step struct {
	advance    time.Duration // clock moves before the request
	method     string        // default GET
	target     string        // default /page
	fields     []string      // request fields, name value pairs
	code       int           // default 200
	body       string        // checked unless "-"; default "hello" for 200
	cacheState string        // substring of Cache-Status
	origin     int64         // origin requests so far
	header     []string      // response fields that must be present: name value pairs ("" value: absent)
}

type ruleCase struct {
	name      string
	configure func(*Handler)
	status    int      // origin status, default 200
	fields    []string // origin fields
	steps     []step
}

func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, rc := range cases {
		t.Run(rc.name, func(t *testing.T) {
			tc := newTestCache(t, rc.configure)
			code := rc.status
			if code == 0 {
				code = 200
			}
			tc.origin.set(respond(tc.clock, code, "hello", rc.fields...))
			for i, s := range rc.steps {
				tc.clock.advance(s.advance)
				method, target := s.method, s.target
				if method == "" {
					method = http.MethodGet
				}
				if target == "" {
					target = "/page"
				}
				w := tc.do(method, target, s.fields...)
				wantCode := s.code
				if wantCode == 0 {
					wantCode = code
				}
				if w.Code != wantCode {
					t.Errorf("step %d: status %d, want %d (Cache-Status %q)", i, w.Code, wantCode, status(w))
				}
				wantBody := s.body
				if wantBody == "" && wantCode == 200 && method == http.MethodGet {
					wantBody = "hello"
				}
				if wantBody != "-" && w.Body.String() != wantBody {
					t.Errorf("step %d: body %q, want %q", i, w.Body.String(), wantBody)
				}
				if !strings.Contains(status(w), s.cacheState) {
					t.Errorf("step %d: Cache-Status %q, want it to contain %q", i, status(w), s.cacheState)
				}
				if got := tc.requests(); got != s.origin {
					t.Errorf("step %d: origin saw %d requests, want %d (Cache-Status %q)", i, got, s.origin, status(w))
				}
				for j := 0; j+1 < len(s.header); j += 2 {
					if got := w.Header().Get(s.header[j]); got != s.header[j+1] {
						t.Errorf("step %d: %s = %q, want %q", i, s.header[j], got, s.header[j+1])
					}
				}
			}
		})
	}
}

func TestFreshness(t *testing.T) {
	lastModified := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC).Format(http.TimeFormat) // an hour before the clock
	runRules(t, []ruleCase{
		{
			name:   "max-age",
			fields: []string{"Cache-Control", "max-age=60"},
			steps: []step{
				{cacheState: "tagcache; fwd=uri-miss; stored", origin: 1},
				{advance: 10 * time.Second, cacheState: "tagcache; hit; ttl=50", origin: 1, header: []string{"Age", "10"}},
				{advance: 51 * time.Second, cacheState: "fwd=uri-miss", origin: 2},
			},
		},
		{
			name:      "keep_stale keeps a stale response to revalidate",
			configure: func(h *Handler) { h.KeepStale = durationOf(time.Minute) },
			fields:    []string{"Cache-Control", "max-age=60"},
			steps:     []step{{origin: 1}, {advance: 61 * time.Second, cacheState: "fwd=stale", origin: 2}},
		},
		{
			name:   "s-maxage beats max-age",
			fields: []string{"Cache-Control", "max-age=0, s-maxage=30"},
			steps:  []step{{origin: 1}, {advance: 20 * time.Second, cacheState: "hit; ttl=10", origin: 1}},
		},
		{
			name:   "Surrogate-Control governs and is stripped",
			fields: []string{"Surrogate-Control", "max-age=120", "Cache-Control", "no-store, private"},
			steps: []step{
				{origin: 1, header: []string{"Surrogate-Control", "", "Cache-Control", "no-store, private"}},
				{advance: 100 * time.Second, cacheState: "hit; ttl=20", origin: 1, header: []string{"Surrogate-Control", ""}},
			},
		},
		{
			name:   "Surrogate-Control no-store",
			fields: []string{"Surrogate-Control", "no-store", "Cache-Control", "max-age=60"},
			steps:  []step{{cacheState: "detail=no-store", origin: 1}, {origin: 2}},
		},
		{
			name:   "CDN-Cache-Control beats Cache-Control",
			fields: []string{"CDN-Cache-Control", "max-age=30", "Cache-Control", "private"},
			steps:  []step{{origin: 1, header: []string{"Cdn-Cache-Control", "max-age=30"}}, {advance: 29 * time.Second, cacheState: "hit; ttl=1", origin: 1}},
		},
		{
			name:   "Expires",
			fields: []string{"Expires", time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC).Format(http.TimeFormat)},
			steps:  []step{{origin: 1}, {advance: 30 * time.Second, cacheState: "hit; ttl=30", origin: 1}, {advance: 31 * time.Second, origin: 2}},
		},
		{
			name:   "invalid Expires means expired",
			fields: []string{"Expires", "0"},
			steps:  []step{{cacheState: "detail=expired", origin: 1}, {origin: 2}},
		},
		{
			name:  "no freshness, not stored",
			steps: []step{{cacheState: "detail=no-freshness", origin: 1}, {origin: 2}},
		},
		{
			name:   "heuristic: 10% of the Last-Modified age",
			fields: []string{"Last-Modified", lastModified},
			steps:  []step{{cacheState: "stored", origin: 1}, {advance: 359 * time.Second, cacheState: "hit; ttl=1", origin: 1}, {advance: 2 * time.Second, origin: 2}},
		},
		{
			name:      "heuristic capped by max_heuristic_ttl",
			configure: func(h *Handler) { h.MaxHeuristicTTL = durationOf(60 * time.Second) },
			fields:    []string{"Last-Modified", lastModified},
			steps:     []step{{origin: 1}, {advance: 30 * time.Second, cacheState: "hit; ttl=30", origin: 1}},
		},
		{
			name:   "no heuristic for a 302",
			status: 302,
			fields: []string{"Last-Modified", lastModified, "Location", "/elsewhere"},
			steps:  []step{{body: "-", cacheState: "detail=no-freshness", origin: 1}, {body: "-", origin: 2}},
		},
		{
			name:   "explicit freshness stores a 302",
			status: 302,
			fields: []string{"Cache-Control", "max-age=60", "Location", "/elsewhere"},
			steps:  []step{{body: "-", origin: 1}, {body: "-", cacheState: "hit", origin: 1, header: []string{"Location", "/elsewhere"}}},
		},
		{
			name:      "default_ttl",
			configure: func(h *Handler) { h.DefaultTTL = durationOf(5 * time.Second) },
			steps:     []step{{origin: 1}, {advance: 4 * time.Second, cacheState: "hit; ttl=1", origin: 1}, {advance: 2 * time.Second, origin: 2}},
		},
		{
			name:      "default_ttl only for statuses cacheable by default",
			configure: func(h *Handler) { h.DefaultTTL = durationOf(5 * time.Second) },
			status:    500,
			steps:     []step{{body: "-", origin: 1}, {body: "-", origin: 2}},
		},
		{
			name:   "404 with freshness",
			status: 404,
			fields: []string{"Cache-Control", "max-age=60"},
			steps:  []step{{body: "-", origin: 1}, {body: "hello", cacheState: "hit", origin: 1}},
		},
		{
			name:   "206 never stored",
			status: 206,
			fields: []string{"Cache-Control", "max-age=60", "Content-Range", "bytes 0-4/10"},
			steps:  []step{{body: "-", cacheState: "detail=status", origin: 1}, {body: "-", origin: 2}},
		},
		{
			name:   "upstream Age and resident time",
			fields: []string{"Cache-Control", "max-age=60", "Age", "30"},
			steps: []step{
				{origin: 1},
				{advance: 10 * time.Second, cacheState: "hit; ttl=20", origin: 1, header: []string{"Age", "40"}},
				{advance: 21 * time.Second, cacheState: "fwd=uri-miss", origin: 2},
			},
		},
		{
			name:   "apparent age from an old Date",
			fields: []string{"Cache-Control", "max-age=60", "Date", time.Date(2026, 3, 1, 11, 59, 20, 0, time.UTC).Format(http.TimeFormat)},
			steps:  []step{{origin: 1}, {cacheState: "hit; ttl=20", origin: 1, header: []string{"Age", "40"}}},
		},
	})
}

func TestResponseDirectives(t *testing.T) {
	runRules(t, []ruleCase{
		{
			name:   "no-store",
			fields: []string{"Cache-Control", "no-store, max-age=60"},
			steps:  []step{{cacheState: "detail=no-store", origin: 1}, {origin: 2}},
		},
		{
			name:   "private",
			fields: []string{"Cache-Control", "private, max-age=60"},
			steps:  []step{{cacheState: "detail=private", origin: 1}, {origin: 2}},
		},
		{
			name:   "qualified private stores the rest",
			fields: []string{"Cache-Control", `private="X-User", max-age=60`, "X-User", "alice", "X-Shared", "yes"},
			steps: []step{
				{origin: 1, header: []string{"X-User", "alice"}},
				{cacheState: "hit", origin: 1, header: []string{"X-User", "", "X-Shared", "yes"}},
			},
		},
		{
			name:   "no-cache is stored but validated on every use",
			fields: []string{"Cache-Control", "no-cache, max-age=60", "Etag", `"v1"`},
			steps:  []step{{cacheState: "stored", origin: 1}, {cacheState: "fwd=stale", origin: 2}},
		},
		{
			name:      "must-revalidate: no stale from max-stale",
			configure: func(h *Handler) { h.KeepStale = durationOf(time.Minute) },
			fields:    []string{"Cache-Control", "max-age=10, must-revalidate"},
			steps:     []step{{origin: 1}, {advance: 20 * time.Second, fields: []string{"Cache-Control", "max-stale=60"}, cacheState: "fwd=stale", origin: 2}},
		},
		{
			name:   "Set-Cookie not stored",
			fields: []string{"Cache-Control", "max-age=60", "Set-Cookie", "session=abc"},
			steps:  []step{{cacheState: "detail=set-cookie", origin: 1, header: []string{"Set-Cookie", "session=abc"}}, {origin: 2}},
		},
		{
			name:      "cache_set_cookie stores without the cookie",
			configure: func(h *Handler) { h.CacheSetCookie = true },
			fields:    []string{"Cache-Control", "max-age=60", "Set-Cookie", "session=abc"},
			steps: []step{
				{cacheState: "stored", origin: 1, header: []string{"Set-Cookie", "session=abc"}},
				{cacheState: "hit", origin: 1, header: []string{"Set-Cookie", ""}},
			},
		},
		{
			name:   "Vary: * never stored",
			fields: []string{"Cache-Control", "max-age=60", "Vary", "*"},
			steps:  []step{{cacheState: "detail=vary-star", origin: 1}, {origin: 2}},
		},
		{
			name:   "Trailer not stored",
			fields: []string{"Cache-Control", "max-age=60", "Trailer", "X-Checksum"},
			steps:  []step{{cacheState: "detail=trailer", origin: 1}, {origin: 2}},
		},
		{
			name:   "hop-by-hop fields not stored",
			fields: []string{"Cache-Control", "max-age=60", "Connection", "X-Hop", "X-Hop", "1", "Keep-Alive", "timeout=5", "X-End", "2"},
			steps:  []step{{origin: 1}, {cacheState: "hit", origin: 1, header: []string{"X-Hop", "", "Keep-Alive", "", "X-End", "2"}}},
		},
	})
}

func TestAuthorization(t *testing.T) {
	runRules(t, []ruleCase{
		{
			name:   "a response to a request with credentials is not stored",
			fields: []string{"Cache-Control", "max-age=60"},
			steps: []step{
				{fields: []string{"Authorization", "Basic YTpi"}, cacheState: "detail=authorization", origin: 1},
				{fields: []string{"Authorization", "Basic YTpi"}, origin: 2},
			},
		},
		{
			name:   "public allows it",
			fields: []string{"Cache-Control", "public, max-age=60"},
			steps: []step{
				{fields: []string{"Authorization", "Basic YTpi"}, cacheState: "stored", origin: 1},
				{fields: []string{"Authorization", "Basic Yzpk"}, cacheState: "hit", origin: 1},
			},
		},
		{
			name:   "s-maxage allows it",
			fields: []string{"Cache-Control", "s-maxage=60"},
			steps:  []step{{fields: []string{"Authorization", "Bearer x"}, cacheState: "stored", origin: 1}, {cacheState: "hit", origin: 1}},
		},
		{
			name:   "an entry stored without credentials does not answer a request with them",
			fields: []string{"Cache-Control", "max-age=60"},
			steps: []step{
				{origin: 1},
				{fields: []string{"Authorization", "Bearer x"}, cacheState: "fwd=request", origin: 2},
				{cacheState: "hit", origin: 2},
			},
		},
	})
}

func TestRequestDirectives(t *testing.T) {
	runRules(t, []ruleCase{
		{
			name:   "no-cache revalidates",
			fields: []string{"Cache-Control", "max-age=60"},
			steps:  []step{{origin: 1}, {fields: []string{"Cache-Control", "no-cache"}, cacheState: "fwd=request", origin: 2}, {cacheState: "hit", origin: 2}},
		},
		{
			name:   "Pragma: no-cache without Cache-Control",
			fields: []string{"Cache-Control", "max-age=60"},
			steps:  []step{{origin: 1}, {fields: []string{"Pragma", "no-cache"}, cacheState: "fwd=request", origin: 2}},
		},
		{
			name:   "no-store: served from cache, response not stored",
			fields: []string{"Cache-Control", "max-age=60"},
			steps: []step{
				{fields: []string{"Cache-Control", "no-store"}, cacheState: "detail=request-no-store", origin: 1},
				{origin: 2},
				{fields: []string{"Cache-Control", "no-store"}, cacheState: "hit", origin: 2},
			},
		},
		{
			name:   "max-age",
			fields: []string{"Cache-Control", "max-age=60"},
			steps: []step{
				{origin: 1},
				{advance: 10 * time.Second, fields: []string{"Cache-Control", "max-age=20"}, cacheState: "hit", origin: 1},
				{fields: []string{"Cache-Control", "max-age=5"}, cacheState: "fwd=request", origin: 2},
			},
		},
		{
			name:   "min-fresh",
			fields: []string{"Cache-Control", "max-age=60"},
			steps: []step{
				{origin: 1},
				{advance: 40 * time.Second, fields: []string{"Cache-Control", "min-fresh=10"}, cacheState: "hit; ttl=20", origin: 1},
				{fields: []string{"Cache-Control", "min-fresh=30"}, cacheState: "fwd=request", origin: 2},
			},
		},
		{
			name:      "max-stale",
			configure: func(h *Handler) { h.KeepStale = durationOf(time.Minute) },
			fields:    []string{"Cache-Control", "max-age=10"},
			steps: []step{
				{origin: 1},
				{advance: 15 * time.Second, fields: []string{"Cache-Control", "max-stale=10"}, cacheState: "hit; ttl=-5; detail=max-stale", origin: 1},
				{fields: []string{"Cache-Control", "max-stale=2"}, cacheState: "fwd=stale", origin: 2},
			},
		},
		{
			name:   "only-if-cached",
			fields: []string{"Cache-Control", "max-age=60"},
			steps: []step{
				{fields: []string{"Cache-Control", "only-if-cached"}, code: 504, body: "-", cacheState: "detail=only-if-cached", origin: 0},
				{origin: 1},
				{fields: []string{"Cache-Control", "only-if-cached"}, cacheState: "hit", origin: 1},
			},
		},
	})
}

func TestHeadFromGet(t *testing.T) {
	runRules(t, []ruleCase{{
		name:   "HEAD answered from the GET entry",
		fields: []string{"Cache-Control", "max-age=60", "Content-Type", "text/plain"},
		steps: []step{
			{origin: 1},
			{method: http.MethodHead, body: "", cacheState: "hit", origin: 1, header: []string{"Content-Length", "5", "Content-Type", "text/plain"}},
		},
	}, {
		name:   "a HEAD miss is not stored",
		fields: []string{"Cache-Control", "max-age=60"},
		steps: []step{
			{method: http.MethodHead, body: "", cacheState: "detail=method", origin: 1},
			{origin: 2},
		},
	}})
}

func TestConditionalRequests(t *testing.T) {
	lm := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC).Format(http.TimeFormat)
	runRules(t, []ruleCase{
		{
			name:   "If-None-Match on a fresh entry",
			fields: []string{"Cache-Control", "max-age=60", "Etag", `"v1"`},
			steps: []step{
				{origin: 1},
				{fields: []string{"If-None-Match", `"v0", W/"v1"`}, code: 304, body: "", cacheState: "hit", origin: 1, header: []string{"Etag", `"v1"`, "Content-Length", ""}},
				{fields: []string{"If-None-Match", `"v2"`}, cacheState: "hit", origin: 1},
			},
		},
		{
			name:   "If-Modified-Since on a fresh entry",
			fields: []string{"Cache-Control", "max-age=60", "Last-Modified", lm},
			steps: []step{
				{origin: 1},
				{fields: []string{"If-Modified-Since", lm}, code: 304, body: "", cacheState: "hit", origin: 1},
				{fields: []string{"If-Modified-Since", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).Format(http.TimeFormat)}, cacheState: "hit", origin: 1},
			},
		},
		{
			name:   "a client conditional on a miss is answered here, and the full response stored",
			fields: []string{"Cache-Control", "max-age=60", "Etag", `"v1"`},
			steps: []step{
				{fields: []string{"If-None-Match", `"v1"`}, code: 304, body: "", cacheState: "stored", origin: 1},
				{cacheState: "hit", origin: 1},
			},
		},
	})
}

func durationOf(d time.Duration) caddy.Duration { return caddy.Duration(d) }
