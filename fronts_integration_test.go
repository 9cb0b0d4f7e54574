package tagcache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/redis/go-redis/v9"
)

// Ports of the cross-front test (19070-19079).
const (
	frontsAdminPort = 19078
	frontsSite      = "127.0.0.1:19071"
	frontsOrigin    = "127.0.0.1:19072"
	frontsTab       = "127.0.0.1:19073"
	frontsMemcached = "127.0.0.1:19074"
	frontsRESP      = "127.0.0.1:19075"
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
		listen resp %s
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
`, frontsAdminPort, frontsTab, frontsMemcached, frontsRESP, frontsSite, frontsOrigin, frontsOrigin), "caddyfile")
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
	// Data written over memcached and Redis carries the same tag.
	mc := memcache.New(frontsMemcached)
	c := dialMemcached(t, frontsMemcached, nil)
	c.send("set fronts:price 0 0 2 tags=product:42\r\n99")
	c.expect("STORED")
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: frontsRESP})
	defer rdb.Close()
	if err := rdb.Do(ctx, "SET", "fronts:stock", "3", "TAGS", "product:42").Err(); err != nil {
		t.Fatal(err)
	}
	// Applications drop their local copies on the invalidation channel.
	events := rdb.Subscribe(ctx, "__tagcache@default__:invalidate:tag")
	defer events.Close()
	if _, err := events.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	// INV_TAG over the tab protocol removes the page, the memcached item
	// and the Redis key, and Redis subscribers hear of it.
	tab := dialTab(t, "tcp", frontsTab)
	tab.do("INV_TAG\tproduct:42", "INV_TAG 3")
	select {
	case msg := <-events.Channel():
		if msg.Payload != "product:42" {
			t.Fatalf("invalidation event %q, want product:42", msg.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no invalidation event on the Redis channel")
	}
	if n, err := rdb.Exists(ctx, "fronts:stock").Result(); err != nil || n != 0 {
		t.Fatalf("Redis key after INV_TAG: exists=%d, %v", n, err)
	}
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
