package handler_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/tagcache/caddy-tagcache"
)

// Ports of these tests (the handler's range is 19400-19499).
const (
	adminPort  = 19499
	httpPort   = 19480
	httpsPort  = 19443
	originAddr = "127.0.0.1:19471"
)

var site = fmt.Sprintf("http://localhost:%d", httpPort)

// caddyfile is a Caddyfile with test ports whose one site has the given
// directives.
func caddyfile(directives string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	grace_period 1ns
	skip_install_trust
	tagcache
}

%s {
%s
}
`, adminPort, httpPort, httpsPort, site, directives)
}

func newTester(t *testing.T, directives string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	tester.InitServer(caddyfile(directives), "caddyfile")
	return tester
}

// testOrigin is an upstream on a fixed port that counts its requests.
type testOrigin struct {
	requests atomic.Int64
	srv      *http.Server
}

func startOrigin(t *testing.T, serve http.HandlerFunc) *testOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", originAddr)
	if err != nil {
		t.Fatal(err)
	}
	o := new(testOrigin)
	o.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		serve(w, r)
	})}
	go o.srv.Serve(ln)
	t.Cleanup(func() { o.srv.Close() })
	return o
}

// client does not ask for compression by itself, so tests see encodings.
var client = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, fields ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Set(fields[i], fields[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func (r response) status() string { return r.header.Get("Cache-Status") }

func TestIntegrationReverseProxy(t *testing.T) {
	origin := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Surrogate-Key", "product:42 products")
		fmt.Fprintf(w, "product page %s", r.URL.Path)
	})
	newTester(t, "tagcache\n\treverse_proxy "+originAddr)

	first := do(t, "GET", site+"/product/42")
	second := do(t, "GET", site+"/product/42")
	if first.body != "product page /product/42" || first.status() != "tagcache; fwd=uri-miss; stored" {
		t.Fatalf("miss: %q %q", first.body, first.status())
	}
	if second.body != first.body || !strings.HasPrefix(second.status(), "tagcache; hit; ttl=") || origin.requests.Load() != 1 {
		t.Fatalf("hit: %q %q, origin %d", second.body, second.status(), origin.requests.Load())
	}
	if second.header.Get("Surrogate-Key") != "" {
		t.Errorf("Surrogate-Key reached the client")
	}
	if second.header.Get("Age") == "" {
		t.Errorf("no Age on a hit")
	}

	purge := do(t, "PURGE", site+"/", "Surrogate-Key", "product:42")
	if purge.code != 200 || !strings.Contains(purge.body, `"purged":1`) {
		t.Fatalf("PURGE: %d %s", purge.code, purge.body)
	}
	if r := do(t, "GET", site+"/product/42"); !strings.Contains(r.status(), "miss") || origin.requests.Load() != 2 {
		t.Errorf("after PURGE: %q, origin %d", r.status(), origin.requests.Load())
	}

	// A POST through the proxy invalidates the URL.
	do(t, "GET", site+"/product/42")
	do(t, "POST", site+"/product/42")
	if r := do(t, "GET", site+"/product/42"); !strings.Contains(r.status(), "miss") {
		t.Errorf("after POST: %q; want a miss", r.status())
	}

	// The counters are on the admin endpoint's metrics.
	metrics := do(t, "GET", fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	for _, name := range []string{"caddy_tagcache_http_hits_total", "caddy_tagcache_http_stores_total", "caddy_tagcache_http_purges_total"} {
		if !strings.Contains(metrics.body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

func TestIntegrationRespond(t *testing.T) {
	newTester(t, `tagcache {
		default_ttl 1m
	}
	respond "hello from respond"`)
	do(t, "GET", site+"/r")
	r := do(t, "GET", site+"/r")
	if r.body != "hello from respond" || !strings.Contains(r.status(), "hit") || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("got %q %q %q", r.body, r.status(), r.header.Get("Content-Type"))
	}
	if r.header.Get("Server") != "Caddy" || len(r.header.Values("Server")) != 1 {
		t.Errorf("Server = %q; want one Caddy", r.header.Values("Server"))
	}
}

func TestIntegrationFileServer(t *testing.T) {
	dir := t.TempDir()
	content := strings.Repeat("0123456789", 100)
	path := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-10 * 24 * time.Hour) // heuristic freshness: 1 day, the cap
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	newTester(t, fmt.Sprintf("root * %s\n\ttagcache\n\tfile_server", dir))

	first := do(t, "GET", site+"/data.txt")
	if first.body != content || first.status() != "tagcache; fwd=uri-miss; stored" {
		t.Fatalf("miss: %d bytes, %q", len(first.body), first.status())
	}
	hit := do(t, "GET", site+"/data.txt")
	if hit.body != content || !strings.HasPrefix(hit.status(), "tagcache; hit; ttl=86") {
		t.Errorf("hit: %d bytes, %q", len(hit.body), hit.status())
	}
	partial := do(t, "GET", site+"/data.txt", "Range", "bytes=10-19")
	if partial.code != 206 || partial.body != "0123456789" || partial.header.Get("Content-Range") != "bytes 10-19/1000" || !strings.Contains(partial.status(), "hit") {
		t.Errorf("range: %d %q %q %q", partial.code, partial.body, partial.header.Get("Content-Range"), partial.status())
	}
	notModified := do(t, "GET", site+"/data.txt", "If-None-Match", hit.header.Get("Etag"))
	if notModified.code != 304 || !strings.Contains(notModified.status(), "hit") {
		t.Errorf("conditional: %d %q", notModified.code, notModified.status())
	}
}

func gunzip(t *testing.T, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestIntegrationEncode checks both orders of tagcache and encode.
func TestIntegrationEncode(t *testing.T) {
	body := strings.Repeat("compress me ", 200)
	for _, tt := range []struct {
		name, directives string
		hitEncoded       bool // a gzip hit is stored compressed (not re-encoded)
	}{
		{"tagcache then encode (default order)", `tagcache
	encode gzip
	header Cache-Control "max-age=60"
	respond "` + body + `"`, true},
		{"encode then tagcache", `route {
		encode gzip
		tagcache
		header Cache-Control "max-age=60"
		respond "` + body + `"
	}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			newTester(t, tt.directives)
			gz := do(t, "GET", site+"/e", "Accept-Encoding", "gzip")
			if gz.header.Get("Content-Encoding") != "gzip" || gunzip(t, gz.body) != body {
				t.Fatalf("first gzip response: %q", gz.header.Get("Content-Encoding"))
			}
			gzHit := do(t, "GET", site+"/e", "Accept-Encoding", "gzip")
			if gzHit.header.Get("Content-Encoding") != "gzip" || gunzip(t, gzHit.body) != body || !strings.Contains(gzHit.status(), "hit") {
				t.Errorf("gzip hit: %q %q", gzHit.header.Get("Content-Encoding"), gzHit.status())
			}
			if !strings.Contains(strings.Join(gzHit.header.Values("Vary"), ","), "Accept-Encoding") {
				t.Errorf("gzip hit lacks Vary: Accept-Encoding: %q", gzHit.header.Values("Vary"))
			}
			plain := do(t, "GET", site+"/e")
			if plain.header.Get("Content-Encoding") != "" || plain.body != body {
				t.Errorf("identity response: %q, %d bytes", plain.header.Get("Content-Encoding"), len(plain.body))
			}
			// With encode outside, the cache holds the identity response,
			// so the plain request is a hit; with the cache outside, it is
			// another variant.
			wantPlain := "vary-miss"
			if !tt.hitEncoded {
				wantPlain = "hit"
			}
			if !strings.Contains(plain.status(), wantPlain) {
				t.Errorf("identity response: %q; want %s", plain.status(), wantPlain)
			}
			plainHit := do(t, "GET", site+"/e")
			if plainHit.body != body || !strings.Contains(plainHit.status(), "hit") {
				t.Errorf("identity hit: %q, %d bytes", plainHit.status(), len(plainHit.body))
			}
		})
	}
}

// TestIntegrationReloadKeepsEntries: a config reload does not empty the
// cache.
func TestIntegrationReloadKeepsEntries(t *testing.T) {
	origin := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.Copy(w, bytes.NewReader([]byte("kept")))
	})
	tester := newTester(t, "tagcache\n\treverse_proxy "+originAddr)
	do(t, "GET", site+"/k")
	tester.InitServer(caddyfile("tagcache {\n\t\tcache_name edge\n\t}\n\treverse_proxy "+originAddr), "caddyfile")
	r := do(t, "GET", site+"/k")
	if r.body != "kept" || !strings.HasPrefix(r.status(), "edge; hit") || origin.requests.Load() != 1 {
		t.Errorf("after reload: %q %q, origin %d; want a hit", r.body, r.status(), origin.requests.Load())
	}
}

// TestIntegrationStaleWhileRevalidate runs a background revalidation
// through a real Caddy and reverse_proxy.
func TestIntegrationStaleWhileRevalidate(t *testing.T) {
	var version atomic.Int64
	origin := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", version.Add(1))
	})
	newTester(t, "tagcache\n\treverse_proxy "+originAddr)
	do(t, "GET", site+"/swr")
	time.Sleep(2100 * time.Millisecond) // let the response go stale: Age has a 1 s resolution
	stale := do(t, "GET", site+"/swr")
	if stale.body != "v1" || !strings.Contains(stale.status(), "stale-while-revalidate") {
		t.Fatalf("stale: %q %q", stale.body, stale.status())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, "GET", site+"/swr")
		if r.body == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background revalidation never stored v2: %q %q", r.body, r.status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := origin.requests.Load(); n != 2 {
		t.Errorf("origin saw %d requests; want 2", n)
	}
}

// TestIntegrationWithoutGlobalOption: the directive alone loads the app
// with its default store.
func TestIntegrationWithoutGlobalOption(t *testing.T) {
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	tester.InitServer(fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	grace_period 1ns
}

%s {
	header Cache-Control "max-age=60"
	tagcache
	respond "bare"
}
`, adminPort, httpPort, httpsPort, site), "caddyfile")
	do(t, "GET", site+"/bare")
	if r := do(t, "GET", site+"/bare"); r.body != "bare" || !strings.Contains(r.status(), "hit") {
		t.Errorf("got %q %q; want a hit", r.body, r.status())
	}
}
