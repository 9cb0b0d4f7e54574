package handler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/store"
)

// clock is a settable time source shared by the handler and its store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) ms() int64 { return c.Now().UnixMilli() }

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// origin is an in-process upstream that counts the requests reaching it,
// so a test can prove that a hit did not.
type origin struct {
	requests atomic.Int64
	mu       sync.Mutex
	last     *http.Request
	serve    func(w http.ResponseWriter, r *http.Request) error
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	o.requests.Add(1)
	o.mu.Lock()
	o.last = r
	serve := o.serve
	o.mu.Unlock()
	return serve(w, r)
}

func (o *origin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

func (o *origin) set(serve func(w http.ResponseWriter, r *http.Request) error) {
	o.mu.Lock()
	o.serve = serve
	o.mu.Unlock()
}

// respond returns an origin behaviour that answers with status, the
// fields (name, value pairs) and body. A Date field is added at the
// clock's time unless given.
func respond(c *clock, status int, body string, fields ...string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		hasDate := false
		for i := 0; i+1 < len(fields); i += 2 {
			w.Header().Add(fields[i], fields[i+1])
			hasDate = hasDate || strings.EqualFold(fields[i], "Date")
		}
		if !hasDate {
			w.Header().Set("Date", c.Now().UTC().Format(http.TimeFormat))
		}
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte(body))
		}
		return nil
	}
}

// testCache is a handler over its own store, clock and origin.
type testCache struct {
	t      testing.TB
	h      *Handler
	st     *store.Store
	clock  *clock
	origin *origin
}

func newTestCache(t testing.TB, configure func(h *Handler)) *testCache {
	t.Helper()
	c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	st, err := store.New(store.Config{Now: c.ms, SweepInterval: -1, MaxItemSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	h := new(Handler)
	if configure != nil {
		configure(h)
	}
	h.st = st
	h.now = c.Now
	h.logger = zap.NewNop()
	if err := h.setup(); err != nil {
		t.Fatal(err)
	}
	tc := &testCache{t: t, h: h, st: st, clock: c, origin: new(origin)}
	tc.origin.set(respond(c, 200, "hello", "Cache-Control", "max-age=60"))
	return tc
}

// do sends a request through the cache; fields are name, value pairs.
func (tc *testCache) do(method, target string, fields ...string) *httptest.ResponseRecorder {
	tc.t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.Add(fields[i], fields[i+1])
	}
	return tc.doRequest(r)
}

func (tc *testCache) doRequest(r *http.Request) *httptest.ResponseRecorder {
	tc.t.Helper()
	w := httptest.NewRecorder()
	if err := tc.h.ServeHTTP(w, r, caddyhttp.HandlerFunc(tc.origin.ServeHTTP)); err != nil {
		// What Caddy's error handling would send.
		w.Code = http.StatusBadGateway
		if he, ok := err.(caddyhttp.HandlerError); ok {
			w.Code = he.StatusCode
		}
	}
	return w
}

// contextWithReplacer returns r's context with a Caddy replacer.
func contextWithReplacer(r *http.Request, repl *caddy.Replacer) context.Context {
	return context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
}

// requestWithCancel returns a request whose context the test cancels, as
// a client going away would.
func requestWithCancel(method, target string) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	return httptest.NewRequest(method, target, nil).WithContext(ctx), cancel
}

func (tc *testCache) requests() int64 { return tc.origin.requests.Load() }

// status returns the Cache-Status of a response.
func status(w *httptest.ResponseRecorder) string {
	return strings.Join(w.Header().Values("Cache-Status"), ", ")
}
