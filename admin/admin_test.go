package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/storepool"
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
	if err := route(t, "/tagcache/stats").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/tagcache/stats", nil)); err != nil {
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

func TestStatsMethodNotAllowed(t *testing.T) {
	err := route(t, "/tagcache/stats").ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/tagcache/stats", nil))
	var apiErr caddy.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v; want a 405 caddy.APIError", err)
	}
}

// route returns the handler of the admin route with the given pattern.
func route(t *testing.T, pattern string) caddy.AdminHandler {
	t.Helper()
	for _, r := range (API{}).Routes() {
		if r.Pattern == pattern {
			return r.Handler
		}
	}
	t.Fatalf("no admin route %s", pattern)
	return nil
}
