package tagcache

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// Ports of the cross-front test (19070-19079).
const (
	frontsAdminPort = 19078
	frontsSite      = "127.0.0.1:19071"
	frontsOrigin    = "127.0.0.1:19072"
	frontsTab       = "127.0.0.1:19073"
	frontsMemcached = "127.0.0.1:19074"
)

// TestOneCoreManyFronts checks the product's promise: a purge from any
// protocol removes the tagged data and the cached pages alike.
func TestOneCoreManyFronts(t *testing.T) {
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: frontsAdminPort})
	tester.InitServer(fmt.Sprintf(`{
	admin localhost:%d
	skip_install_trust
	tagcache {
		listen tcp %s
		listen memcached %s
	}
}
http://%s {
	tagcache
	reverse_proxy %s
}
http://%s {
	header Cache-Control "max-age=300"
	header Surrogate-Key "product:{path.1} site"
	respond "page {path}"
}
`, frontsAdminPort, frontsTab, frontsMemcached, frontsSite, frontsOrigin, frontsOrigin), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + frontsSite + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Surrogate-Key") != "" {
			t.Errorf("the tag header reached the client")
		}
		return resp.Header.Get("Cache-Status")
	}
	hit := func(status string) bool { return strings.Contains(status, "; hit") }

	for _, p := range []string{"/p/42", "/p/7"} {
		if s := get(p); hit(s) {
			t.Fatalf("first GET %s was a hit: %s", p, s)
		}
		if s := get(p); !hit(s) {
			t.Fatalf("second GET %s: %s, want a hit", p, s)
		}
	}
	// Data written over memcached carries the same tag.
	mc := memcache.New(frontsMemcached)
	c := dialMemcached(t, frontsMemcached, nil)
	c.send("set fronts:price 0 0 2 tags=product:42\r\n99")
	c.expect("STORED")

	// INV_TAG over the tab protocol removes the page and the memcached item.
	tab := dialTab(t, "tcp", frontsTab)
	tab.do("INV_TAG\tproduct:42", "INV_TAG 2")
	if s := get("/p/42"); hit(s) {
		t.Fatalf("GET /p/42 after INV_TAG: %s, want a miss", s)
	}
	if _, err := mc.Get("fronts:price"); err != memcache.ErrCacheMiss {
		t.Fatalf("memcached item after INV_TAG: %v, want a miss", err)
	}
	if s := get("/p/7"); !hit(s) {
		t.Fatalf("an untouched page was purged: %s", s)
	}
	// The memcached tag extension purges the pages tagged site.
	c.do("tag_invalidate site", "INVALIDATED 2")
	if s := get("/p/7"); hit(s) {
		t.Fatalf("GET /p/7 after tag_invalidate: %s, want a miss", s)
	}
}
