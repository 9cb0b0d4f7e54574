package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
	"github.com/tagcache/caddy-tagcache/internal/urltag"
	"github.com/tagcache/caddy-tagcache/store"
)

func TestStats(t *testing.T) {
	st, _, err := storepool.Acquire("admin-test", store.Config{MaxMemory: 1 << 20, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer storepool.Release("admin-test")
	if _, err := st.Set("k", []byte("v"), store.Params{Tags: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	st.Get("k")
	st.Get("missing")

	rec := httptest.NewRecorder()
	if err := adminRoute(t, "/tagcache/stats").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/tagcache/stats", nil)); err != nil {
		t.Fatal(err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var resp StatsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	got, ok := resp.Stores["admin-test"]
	if !ok {
		t.Fatalf("no admin-test store in %s", rec.Body)
	}
	if got.Items != 1 || got.Tags != 1 || got.Hits != 1 || got.Misses != 1 || got.MaxMemory != 1<<20 {
		t.Errorf("stats = %+v; want 1 item, 1 tag, 1 hit, 1 miss, max_memory 1 MiB", got)
	}
}

// adminRoute returns the handler of an admin route.
func adminRoute(t *testing.T, pattern string) caddy.AdminHandler {
	t.Helper()
	for _, r := range (API{}).Routes() {
		if r.Pattern == pattern {
			return r.Handler
		}
	}
	t.Fatalf("no admin route %s", pattern)
	return nil
}

// adminCall calls an admin route and returns the status and body; an
// error of the route is turned into its status and message, as Caddy's
// admin server does.
func adminCall(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	pattern, _, _ := strings.Cut(path, "?")
	rec := httptest.NewRecorder()
	err := adminRoute(t, pattern).ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	if err != nil {
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s %s: %v is not a caddy.APIError", method, path, err)
		}
		return apiErr.HTTPStatus, apiErr.Err.Error()
	}
	return rec.Code, rec.Body.String()
}

func TestAdminMethodNotAllowed(t *testing.T) {
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/tagcache/stats"},
		{http.MethodPost, "/tagcache/keys"},
		{http.MethodGet, "/tagcache/purge"},
		{http.MethodGet, "/tagcache/flush"},
	} {
		if status, _ := adminCall(t, tc.method, tc.path, ""); status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s = %d; want 405", tc.method, tc.path, status)
		}
	}
}

// acquire takes a store from the pool for the length of the test.
func acquire(t *testing.T, name string) *store.Store {
	t.Helper()
	st, _, err := storepool.Acquire(name, store.Config{MaxMemory: 1 << 20, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { storepool.Release(name) })
	return st
}

func TestAdminKeys(t *testing.T) {
	st := acquire(t, "admin-keys")
	for i := range 20 {
		st.Set(fmt.Sprintf("page:%d", i), []byte("v"), store.Params{})
	}
	st.Set("other", []byte("v"), store.Params{})
	status, body := adminCall(t, http.MethodGet, "/tagcache/keys?store=admin-keys&prefix=page:&limit=1000", "")
	var resp KeysResponse
	if status != 200 || json.Unmarshal([]byte(body), &resp) != nil {
		t.Fatalf("= %d %s", status, body)
	}
	if resp.Store != "admin-keys" || len(resp.Keys) != 20 || resp.Cursor != "0" {
		t.Errorf("= %s; want the 20 page: keys and cursor 0", body)
	}
	for _, tc := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/tagcache/keys?store=nope", 404, `no store named "nope"`},
		{"/tagcache/keys?store=admin-keys&limit=x", 400, "limit must be"},
		{"/tagcache/keys?store=admin-keys&cursor=-1", 400, "cursor"},
	} {
		if status, msg := adminCall(t, http.MethodGet, tc.path, ""); status != tc.status || !strings.Contains(msg, tc.msg) {
			t.Errorf("GET %s = %d %s; want %d %s", tc.path, status, msg, tc.status, tc.msg)
		}
	}
}

func TestAdminPurge(t *testing.T) {
	st := acquire(t, "admin-purge")
	set := func(key string, tags ...string) {
		if _, err := st.Set(key, []byte("v"), store.Params{Tags: tags}); err != nil {
			t.Fatal(err)
		}
	}
	set("a", "product:1")
	set("b", "product:1", "category:2")
	set("c", "category:2")
	set("d")
	set("page1", urltag.For("example.com", "/products/1"))
	set("page2", urltag.For("example.com", "/products/1"))
	set("page3", urltag.For("shop.example.com:8443", "/a b"))
	set("page4", urltag.For("example.com", "/other"))

	status, body := adminCall(t, http.MethodPost, "/tagcache/purge", `{"store":"admin-purge","soft":true,"tags":["category:2"],"keys":["d"],"urls":["https://example.com/products/1?x=1"]}`)
	if status != 200 || !jsonEqual(t, body, `{"store":"admin-purge","soft":true,"tags":2,"keys":1,"urls":2}`) {
		t.Fatalf("soft purge = %d %s", status, body)
	}
	if it, ok := st.Get("b"); !ok || !it.Stale {
		t.Errorf("b after a soft purge: %v stale=%v; want kept and stale", ok, it.Stale)
	}
	status, body = adminCall(t, http.MethodPost, "/tagcache/purge", `{"store":"admin-purge","tags":["product:1"],"keys":["d","nope"],"urls":["http://EXAMPLE.com:80/products/1","https://shop.example.com:8443/a%20b"]}`)
	if status != 200 || !jsonEqual(t, body, `{"store":"admin-purge","soft":false,"tags":2,"keys":1,"urls":3}`) {
		t.Fatalf("purge = %d %s", status, body)
	}
	for key, want := range map[string]bool{"a": false, "b": false, "c": true, "d": false, "page1": false, "page3": false, "page4": true} {
		if _, ok := st.Get(key); ok != want {
			t.Errorf("after purge %s present = %v; want %v", key, ok, want)
		}
	}
	for _, tc := range []struct {
		body, msg string
		status    int
	}{
		{`{"store":"admin-purge"}`, "nothing to purge", 400},
		{`{"store":"admin-purge","urls":["/relative"]}`, "must be absolute", 400},
		{`{"store":"admin-purge","urls":["ftp://x/y"]}`, "must be absolute", 400},
		{`{"store":"nope","tags":["x"]}`, `no store named "nope"`, 404},
		{`{"tags":"x"}`, `field "tags" must be an array`, 400},
		{`{"tag":["x"]}`, `unknown field "tag"`, 400},
		{`not json`, "invalid JSON", 400},
	} {
		if status, msg := adminCall(t, http.MethodPost, "/tagcache/purge", tc.body); status != tc.status || !strings.Contains(msg, tc.msg) {
			t.Errorf("purge %s = %d %s; want %d %s", tc.body, status, msg, tc.status, tc.msg)
		}
	}
}

func TestAdminFlush(t *testing.T) {
	st := acquire(t, "admin-flush")
	st.Set("a", []byte("v"), store.Params{})
	st.Set("b", []byte("v"), store.Params{})
	status, body := adminCall(t, http.MethodPost, "/tagcache/flush", `{"store":"admin-flush"}`)
	if status != 200 || !jsonEqual(t, body, `{"store":"admin-flush","flushed":2}`) {
		t.Fatalf("flush = %d %s", status, body)
	}
	if n := st.Stats().Items; n != 0 {
		t.Errorf("%d items after flush", n)
	}
	if status, msg := adminCall(t, http.MethodPost, "/tagcache/flush", `{"store":"nope"}`); status != 404 {
		t.Errorf("flush of an unknown store = %d %s; want 404", status, msg)
	}
}
