package handler

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/urltag"
)

// purgeRequest is a PURGE from loopback; fields are name, value pairs.
func purgeRequest(target string, fields ...string) *http.Request {
	r := httptest.NewRequest(methodPurge, target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.Add(fields[i], fields[i+1])
	}
	return r
}

func purged(t *testing.T, w *httptest.ResponseRecorder) PurgeResponse {
	t.Helper()
	var pr PurgeResponse
	if w.Code != 200 {
		t.Fatalf("PURGE: %d %s", w.Code, w.Body.String())
	}
	if err := json.Unmarshal(w.Body.Bytes(), &pr); err != nil {
		t.Fatalf("PURGE body %q: %v", w.Body.String(), err)
	}
	return pr
}

// tagged is an origin that tags /product/N with Surrogate-Key product:N.
func tagged(tc *testCache) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := strings.TrimPrefix(r.URL.Path, "/product/")
		w.Header().Set("Cache-Control", "max-age=60, stale-while-revalidate=60")
		w.Header().Set("Surrogate-Key", "product:"+id+" all-products")
		w.Header().Set("Date", tc.clock.Now().UTC().Format(http.TimeFormat))
		_, err := w.Write([]byte("product " + id))
		return err
	}
}

func TestPurgeURL(t *testing.T) {
	tc := newTestCache(t, nil)
	for _, target := range []string{"/a", "/a?x=1", "/a?x=2", "/b"} {
		tc.do("GET", target)
	}
	pr := purged(t, tc.doRequest(purgeRequest("/a")))
	if pr.Purged != 3 || len(pr.Tags) != 1 || pr.Tags[0] != urltag.For("example.com", "/a") {
		t.Errorf("PURGE /a = %+v; want 3 entries under %q", pr, urltag.For("example.com", "/a"))
	}
	if w := tc.do("GET", "/a?x=1"); !strings.Contains(status(w), "miss") {
		t.Errorf("/a?x=1 after PURGE: %q", status(w))
	}
	if w := tc.do("GET", "/b"); !strings.Contains(status(w), "hit") {
		t.Errorf("/b after PURGE /a: %q; want a hit", status(w))
	}
}

func TestPurgeTags(t *testing.T) {
	for _, keys := range []string{"product:1 product:2", "product:1, product:2", "product:1,product:2"} {
		t.Run(keys, func(t *testing.T) {
			tc := newTestCache(t, nil)
			tc.origin.set(tagged(tc))
			for _, id := range []string{"1", "2", "3"} {
				if w := tc.do("GET", "/product/"+id); w.Header().Get("Surrogate-Key") != "" {
					t.Errorf("Surrogate-Key reached the client: %q", w.Header().Get("Surrogate-Key"))
				}
			}
			pr := purged(t, tc.doRequest(purgeRequest("/", "Surrogate-Key", keys)))
			if pr.Purged != 2 || pr.Soft {
				t.Errorf("PURGE %q = %+v; want 2 entries", keys, pr)
			}
			for id, want := range map[string]string{"1": "miss", "2": "miss", "3": "hit"} {
				if w := tc.do("GET", "/product/"+id); !strings.Contains(status(w), want) {
					t.Errorf("/product/%s: %q; want %s", id, status(w), want)
				}
			}
		})
	}
}

func TestSoftPurge(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(tagged(tc))
	tc.do("GET", "/product/1")
	pr := purged(t, tc.doRequest(purgeRequest("/", "Surrogate-Key", "product:1", "Fastly-Soft-Purge", "1")))
	if pr.Purged != 1 || !pr.Soft {
		t.Fatalf("soft PURGE = %+v", pr)
	}
	// Still fresh by its age, but soft-purged: served stale while one
	// background request refreshes it.
	w := tc.do("GET", "/product/1")
	if w.Body.String() != "product 1" || status(w) != "tagcache; hit; ttl=0; detail=stale-while-revalidate" {
		t.Fatalf("after soft purge: %q %q; want the stale response", w.Body.String(), status(w))
	}
	waitFor(t, "the refresh", func() bool {
		return status(tc.do("GET", "/product/1")) == "tagcache; hit; ttl=60"
	})
	if tc.requests() != 2 {
		t.Errorf("origin saw %d requests; want 2", tc.requests())
	}
}

func TestSoftPurgeWithoutStaleWindowRevalidates(t *testing.T) {
	tc := newTestCache(t, func(h *Handler) { h.SoftPurge = true })
	tc.do("GET", "/page")
	if pr := purged(t, tc.doRequest(purgeRequest("/page"))); pr.Purged != 1 || !pr.Soft {
		t.Fatalf("PURGE = %+v; want a soft purge of 1 entry", pr)
	}
	if w := tc.do("GET", "/page"); !strings.Contains(status(w), "fwd=stale") || tc.requests() != 2 {
		t.Errorf("after soft purge: %q, origin %d; want a revalidation", status(w), tc.requests())
	}
	if w := tc.do("GET", "/page"); !strings.Contains(status(w), "hit") {
		t.Errorf("after the revalidation: %q; want a hit", status(w))
	}
}

func TestPurgeAccess(t *testing.T) {
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	users, err := auth.NewUsers(auth.Config{Users: []auth.UserConfig{
		{Username: "purger", Password: hash("p"), Permissions: []string{"purge"}},
		{Username: "reader", Password: hash("r"), Permissions: []string{"read"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		purgeFrom  []string
		remote     string
		user, pass string
		allowed    bool
	}{
		{"loopback v4", nil, "127.0.0.1:1", "", "", true},
		{"loopback v6", nil, "[::1]:1", "", "", true},
		{"remote", nil, "192.0.2.7:1", "", "", false},
		{"remote with purge permission", nil, "192.0.2.7:1", "purger", "p", true},
		{"remote with a wrong password", nil, "192.0.2.7:1", "purger", "x", false},
		{"remote without purge permission", nil, "192.0.2.7:1", "reader", "r", false},
		{"purge_from range", []string{"192.0.2.0/24"}, "192.0.2.7:1", "", "", true},
		{"purge_from replaces loopback", []string{"192.0.2.0/24"}, "127.0.0.1:1", "", "", false},
		{"purge_from single address", []string{"198.51.100.4"}, "198.51.100.4:1", "", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCache(t, func(h *Handler) { h.PurgeFrom = tt.purgeFrom })
			tc.h.users = users
			tc.do("GET", "/page")
			r := purgeRequest("/page")
			r.RemoteAddr = tt.remote
			if tt.user != "" {
				r.SetBasicAuth(tt.user, tt.pass)
			}
			w := tc.doRequest(r)
			hit := strings.Contains(status(tc.do("GET", "/page")), "hit")
			if tt.allowed && (w.Code != 200 || hit) {
				t.Errorf("got %d %s, entry kept: %v; want it purged", w.Code, w.Body.String(), hit)
			}
			if !tt.allowed && (w.Code != 403 || !hit) {
				t.Errorf("got %d %s, entry kept: %v; want 403 and nothing purged", w.Code, w.Body.String(), hit)
			}
		})
	}
}

func TestStoreInvalidationRemovesHTTPEntries(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(tagged(tc))
	tc.do("GET", "/product/1")
	tc.do("GET", "/product/2")
	// Another front (TCP, memcached, the JSON API) invalidates a tag.
	if n := tc.st.InvalidateTags("product:2"); n != 1 {
		t.Fatalf("InvalidateTags = %d; want 1", n)
	}
	if w := tc.do("GET", "/product/2"); !strings.Contains(status(w), "miss") {
		t.Errorf("/product/2: %q; want a miss", status(w))
	}
	if w := tc.do("GET", "/product/1"); !strings.Contains(status(w), "hit") {
		t.Errorf("/product/1: %q; want a hit", status(w))
	}
	// The admin API's URL purge is the same tag invalidation.
	if n := tc.st.InvalidateTags(urltag.For("example.com", "/product/1")); n != 1 {
		t.Errorf("InvalidateTags(url tag) = %d; want 1", n)
	}
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	for _, tt := range []struct {
		name       string
		method     string
		status     int
		location   string
		invalidate []string // of /a, /b, /c
	}{
		{"POST 200", "POST", 200, "", []string{"/a"}},
		{"PUT 201 with Location", "PUT", 201, "/b", []string{"/a", "/b"}},
		{"DELETE with absolute Location", "DELETE", 204, "http://example.com/c", []string{"/a", "/c"}},
		{"Location on another host", "POST", 303, "http://other.example/b", []string{"/a"}},
		{"failure invalidates nothing", "POST", 500, "/b", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCache(t, nil)
			for _, p := range []string{"/a", "/b", "/c"} {
				tc.do("GET", p)
			}
			tc.origin.set(func(w http.ResponseWriter, r *http.Request) error {
				if tt.location != "" {
					w.Header().Set("Location", tt.location)
				}
				w.WriteHeader(tt.status)
				return nil
			})
			if w := tc.do(tt.method, "/a"); w.Code != tt.status || status(w) != "tagcache; fwd=method" {
				t.Fatalf("%s: %d %q", tt.method, w.Code, status(w))
			}
			tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=60"))
			for _, p := range []string{"/a", "/b", "/c"} {
				wantMiss := false
				for _, inv := range tt.invalidate {
					wantMiss = wantMiss || inv == p
				}
				if gotMiss := strings.Contains(status(tc.do("GET", p)), "miss"); gotMiss != wantMiss {
					t.Errorf("%s: miss %v, want %v", p, gotMiss, wantMiss)
				}
			}
		})
	}
}

func TestPurgeFromDoesNotTrustForwardedFor(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.do("GET", "/page")
	r := purgeRequest("/page", "X-Forwarded-For", "127.0.0.1")
	r.RemoteAddr = "192.0.2.1:1"
	if w := tc.doRequest(r); w.Code != 403 {
		t.Errorf("got %d; want 403: X-Forwarded-For is not trusted without trusted_proxies", w.Code)
	}
}
