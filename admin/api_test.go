package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/store"
)

// newTestAPI returns a handler over a fresh store with the given users.
func newTestAPI(t testing.TB, cfg auth.Config) (*JSONAPI, *store.Store) {
	t.Helper()
	st, err := store.New(store.Config{MaxMemory: 8 << 20, MaxItemSize: 64 << 10, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	users, err := auth.NewUsers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &JSONAPI{MaxBodySize: 256 << 10, logger: zap.NewNop()}
	if err := h.useApp(testutil.NewApp(st, users)); err != nil {
		t.Fatal(err)
	}
	return h, st
}

// request is one call to the handler.
type request struct {
	method, path, body string
	// remote is the client address; default a loopback one.
	remote string
	setup  func(*http.Request)
}

func serve(t testing.TB, h *JSONAPI, req request) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(req.method, req.path, strings.NewReader(req.body))
	r.RemoteAddr = "127.0.0.1:40000"
	if req.remote != "" {
		r.RemoteAddr = req.remote
	}
	if req.setup != nil {
		req.setup(r)
	}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatalf("%s %s: ServeHTTP returned %v; want every answer written", req.method, req.path, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", req.method, req.path, ct)
	}
	return w
}

// jsonEqual reports whether two JSON texts are the same value.
func jsonEqual(t testing.TB, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("response is not JSON: %v: %s", err, got)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

// step is one request of a scenario and what it must answer: the status
// and either the exact JSON body or a substring of it.
type step struct {
	name string
	request
	status   int
	body     string
	contains string
}

func runSteps(t *testing.T, h *JSONAPI, steps []step) {
	t.Helper()
	for _, s := range steps {
		w := serve(t, h, s.request)
		if w.Code != s.status {
			t.Errorf("%s: %s %s = %d %s; want %d", s.name, s.method, s.path, w.Code, w.Body, s.status)
			continue
		}
		if s.body != "" && !jsonEqual(t, w.Body.String(), s.body) {
			t.Errorf("%s: %s %s body = %s; want %s", s.name, s.method, s.path, w.Body, s.body)
		}
		if s.contains != "" && !strings.Contains(w.Body.String(), s.contains) {
			t.Errorf("%s: %s %s body = %s; want it to contain %q", s.name, s.method, s.path, w.Body, s.contains)
		}
	}
}

func post(path, body string) request { return request{method: http.MethodPost, path: path, body: body} }
func get(path string) request        { return request{method: http.MethodGet, path: path} }

// TestAPIRoutes walks every cache route with a loopback client and no
// users (so every permission), checking TagCache's response shapes.
func TestAPIRoutes(t *testing.T) {
	h, st := newTestAPI(t, auth.Config{})
	runSteps(t, h, []step{
		{name: "put", request: post("/put", `{"key":"user:42","value":"hello","tags":["users","trial"],"ttl_ms":60000}`), status: 200, body: `{"ok":true,"ttl_ms":60000}`},
		{name: "put without ttl", request: post("/put", `{"key":"user:7","value":"seven","tags":["users"]}`), status: 200, body: `{"ok":true,"ttl_ms":null}`},
		{name: "put ttl 0 is none", request: post("/put", `{"key":"user:8","value":"eight","ttl_ms":0}`), status: 200, body: `{"ok":true,"ttl_ms":null}`},
		{name: "put ttl_seconds", request: post("/put", `{"key":"s","value":"v","ttl_seconds":2}`), status: 200, body: `{"ok":true,"ttl_ms":2000}`},
		{name: "put empty value", request: post("/put", `{"key":"empty","value":""}`), status: 200, body: `{"ok":true,"ttl_ms":null}`},
		{name: "get", request: get("/get/user:42"), status: 200, body: `{"value":"hello"}`},
		{name: "get empty value", request: get("/get/empty"), status: 200, body: `{"value":""}`},
		{name: "get miss", request: get("/get/nope"), status: 404, body: `{"error":"not_found"}`},
		{name: "get no key", request: get("/get/"), status: 400, contains: "key is required"},
		{name: "get as base64", request: get("/get/user:42?encoding=base64"), status: 200, body: `{"value":"aGVsbG8=","encoding":"base64"}`},
		{name: "get bad encoding", request: get("/get/user:42?encoding=hex"), status: 400, contains: `unknown encoding \"hex\"`},
		{name: "add existing", request: post("/add", `{"key":"user:42","value":"x","ttl_ms":5}`), status: 200, body: `{"ok":true,"added":false,"ttl_ms":null}`},
		{name: "add new", request: post("/add", `{"key":"counter:new","value":"100","tags":["counters"],"ttl_ms":3600000}`), status: 200, body: `{"ok":true,"added":true,"ttl_ms":3600000}`},
		{name: "incr creates", request: post("/incr", `{"key":"page_views","by":1,"tags":["metrics"],"ttl_ms":86400000}`), status: 200, body: `{"ok":true,"value":1,"ttl_ms":86400000}`},
		{name: "incr default by", request: post("/incr", `{"key":"page_views"}`), status: 200, body: `{"ok":true,"value":2,"ttl_ms":null}`},
		{name: "incr by 40", request: post("/incr", `{"key":"page_views","by":40}`), status: 200, body: `{"ok":true,"value":42,"ttl_ms":null}`},
		{name: "incr counter from add", request: post("/incr", `{"key":"counter:new","by":5}`), status: 200, body: `{"ok":true,"value":105,"ttl_ms":null}`},
		{name: "decr creates negative", request: post("/decr", `{"key":"remaining_quota","by":5,"tags":["quotas","user:123"],"ttl_ms":3600000}`), status: 200, body: `{"ok":true,"value":-5,"ttl_ms":3600000}`},
		{name: "incr not numeric", request: post("/incr", `{"key":"user:42"}`), status: 409, body: `{"ok":false,"error":"value is not an integer"}`},
		{name: "put max int", request: post("/put", `{"key":"big","value":"9223372036854775807"}`), status: 200},
		{name: "incr overflow", request: post("/incr", `{"key":"big"}`), status: 409, body: `{"ok":false,"error":"integer overflow"}`},
		{name: "decr by min int", request: post("/decr", `{"key":"big","by":-9223372036854775808}`), status: 400, contains: "by is out of range"},
		{name: "incr no key", request: post("/incr", `{"by":1}`), status: 400, contains: "key is required"},
		{name: "keys-by-tag", request: get("/keys-by-tag?tag=trial&limit=50"), status: 200, body: `{"keys":["user:42"]}`},
		{name: "keys-by-tag none", request: get("/keys-by-tag?tag=nothing"), status: 200, body: `{"keys":[]}`},
		{name: "keys-by-tag limit", request: get("/keys-by-tag?tag=users&limit=1"), status: 200, contains: `"keys":["user:`},
		{name: "keys-by-tag no tag", request: get("/keys-by-tag"), status: 400, contains: "tag is required"},
		{name: "keys-by-tag bad limit", request: get("/keys-by-tag?tag=users&limit=-1"), status: 400, contains: "limit must be"},
		{name: "invalidate-key", request: post("/invalidate-key", `{"key":"user:7"}`), status: 200, body: `{"success":true}`},
		{name: "invalidate-key again", request: post("/invalidate-key", `{"key":"user:7"}`), status: 200, body: `{"success":false}`},
		{name: "invalidate-key no key", request: post("/invalidate-key", `{}`), status: 400, contains: "key is required"},
		{name: "invalidate-tag", request: post("/invalidate-tag", `{"tag":"trial"}`), status: 200, body: `{"success":true,"count":1}`},
		{name: "invalidate-tag again", request: post("/invalidate-tag", `{"tag":"trial"}`), status: 200, body: `{"success":false,"count":0}`},
		{name: "invalidate-tag list", request: post("/invalidate-tag", `{"tags":["metrics","quotas"]}`), status: 200, body: `{"success":true,"count":2}`},
		{name: "invalidate-tag none", request: post("/invalidate-tag", `{}`), status: 400, contains: `\"tag\" or \"tags\" is required`},
		{name: "unknown endpoint", request: get("/nope"), status: 404, body: `{"ok":false,"error":"no such endpoint: /nope"}`},
		{name: "wrong method", request: get("/put"), status: 405, contains: "use POST"},
		{name: "HEAD of a GET route", request: request{method: http.MethodHead, path: "/health"}, status: 200},
	})
	if it, ok := st.Get("counter:new"); !ok || string(it.Value) != "105" || !slices.Equal(it.Tags, []string{"counters"}) {
		t.Errorf("counter:new = %q %v, %v; want 105 with its tag", it.Value, it.Tags, ok)
	}
	if it, _ := st.Get("s"); it.Expires <= st.Now() || it.Expires > st.Now()+2000 {
		t.Errorf("s expires at %d, now %d; want within ttl_seconds 2", it.Expires, st.Now())
	}
	w := serve(t, h, request{method: http.MethodPatch, path: "/put"})
	if w.Header().Get("Allow") != http.MethodPost || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("405 headers: %v", w.Header())
	}
}

func TestAPIMalformedRequests(t *testing.T) {
	h, st := newTestAPI(t, auth.Config{})
	runSteps(t, h, []step{
		{name: "empty body", request: post("/put", ``), status: 400, body: `{"ok":false,"error":"invalid JSON: empty body"}`},
		{name: "truncated", request: post("/put", `{"key":"a",`), status: 400, body: `{"ok":false,"error":"invalid JSON: unexpected end of the body"}`},
		{name: "syntax", request: post("/put", `{"key" "a"}`), status: 400, contains: "invalid JSON at byte"},
		{name: "not an object", request: post("/put", `[1,2]`), status: 400, contains: "the body must be an object, not array"},
		{name: "wrong type", request: post("/put", `{"key":1,"value":"v"}`), status: 400, contains: `field \"key\" must be a string, not number`},
		{name: "value not a string", request: post("/put", `{"key":"k","value":{"a":1}}`), status: 400, contains: `field \"value\" must be a string, not object`},
		{name: "tags not an array", request: post("/put", `{"key":"k","value":"v","tags":"a"}`), status: 400, contains: `field \"tags\" must be an array`},
		{name: "unknown field", request: post("/put", `{"key":"k","value":"v","ttl":5}`), status: 400, contains: `unknown field \"ttl\"`},
		{name: "trailing data", request: post("/put", `{"key":"k","value":"v"} {}`), status: 400, contains: "unexpected data after the object"},
		{name: "missing value", request: post("/put", `{"key":"k"}`), status: 400, body: `{"ok":false,"error":"value is required"}`},
		{name: "missing key", request: post("/put", `{"value":"v"}`), status: 400, body: `{"ok":false,"error":"key is required"}`},
		{name: "negative ttl", request: post("/put", `{"key":"k","value":"v","ttl_ms":-1}`), status: 400, contains: "ttl_ms must be between"},
		{name: "huge ttl", request: post("/put", `{"key":"k","value":"v","ttl_ms":9223372036854775807}`), status: 400, contains: "ttl_ms must be between"},
		{name: "bad base64", request: post("/put", `{"key":"k","value":"***","encoding":"base64"}`), status: 400, contains: "not valid base64"},
		{name: "unknown encoding", request: post("/put", `{"key":"k","value":"v","encoding":"rot13"}`), status: 400, contains: "unknown encoding"},
		{name: "key too long", request: post("/put", `{"key":"`+strings.Repeat("k", 300)+`","value":"v"}`), status: 400, contains: "key too long"},
		{name: "value too large", request: post("/put", `{"key":"k","value":"`+strings.Repeat("v", 65<<10)+`"}`), status: 413, contains: "value too large"},
		{name: "body over the limit", request: post("/put", `{"key":"k","value":"`+strings.Repeat("v", 300<<10)+`"}`), status: 413, body: `{"ok":false,"error":"request body larger than 262144 bytes"}`},
		{name: "too many tags", request: post("/put", `{"key":"k","value":"v","tags":[`+strings.Repeat(`"t",`, 64)+`"u"]}`), status: 200},
		{name: "empty tag", request: post("/put", `{"key":"k2","value":"v","tags":[""]}`), status: 400, contains: "empty tag"},
	})
	if n := st.Stats().Items; n != 1 {
		t.Errorf("store holds %d items after the refused writes; want only the one good write", n)
	}
}

func TestAPIBinaryValues(t *testing.T) {
	h, st := newTestAPI(t, auth.Config{})
	runSteps(t, h, []step{
		{name: "put base64", request: post("/put", `{"key":"bin","value":"AAEC/w==","encoding":"base64"}`), status: 200},
		{name: "get binary is base64", request: get("/get/bin"), status: 200, body: `{"value":"AAEC/w==","encoding":"base64"}`},
		{name: "key with a slash and a space", request: post("/put", `{"key":"a/b c","value":"slash"}`), status: 200},
		{name: "get escaped key", request: get("/get/a%2Fb%20c"), status: 200, body: `{"value":"slash"}`},
		{name: "get unescaped slash", request: get("/get/a/b%20c"), status: 200, body: `{"value":"slash"}`},
		{name: "text with escapes", request: post("/put", `{"key":"txt","value":"line\n\"q\" \u00e9 \u2028"}`), status: 200},
		{name: "get text", request: get("/get/txt"), status: 200, body: `{"value":"line\n\"q\" é \u2028"}`},
	})
	if it, _ := st.Get("bin"); string(it.Value) != "\x00\x01\x02\xff" {
		t.Errorf("stored %q; want the decoded bytes", it.Value)
	}
	if _, err := st.Set("bin\xffkey", []byte("v"), store.Params{Tags: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	runSteps(t, h, []step{
		{name: "binary key listed in base64", request: get("/keys-by-tag?tag=b"), status: 200, body: `{"keys":["Ymlu/2tleQ=="],"encoding":"base64"}`},
		{name: "binary key fetched by escaped path", request: get("/get/bin%FFkey"), status: 200, body: `{"value":"v"}`},
	})
}

func TestAPIListingsAndBulk(t *testing.T) {
	h, st := newTestAPI(t, auth.Config{})
	want := make([]string, 0, 300)
	for i := range 300 {
		k := fmt.Sprintf("user:%03d", i)
		want = append(want, k)
		if _, err := st.Set(k, []byte("v"), store.Params{Tags: []string{"users"}}); err != nil {
			t.Fatal(err)
		}
	}
	st.Set("other", []byte("v"), store.Params{Tags: []string{"misc"}})

	// Walk GET /keys page by page.
	var got []string
	cursor := "0"
	for pages := 0; ; pages++ {
		if pages > 300 {
			t.Fatal("the walk does not end")
		}
		w := serve(t, h, get("/keys?prefix=user:&limit=50&cursor="+cursor))
		var page struct {
			Keys   []string `json:"keys"`
			Cursor string   `json:"cursor"`
		}
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &page) != nil {
			t.Fatalf("GET /keys = %d %s", w.Code, w.Body)
		}
		got = append(got, page.Keys...)
		if cursor = page.Cursor; cursor == "0" {
			break
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("walk returned %d keys; want the %d user: keys exactly once", len(got), len(want))
	}

	runSteps(t, h, []step{
		{name: "keys bad cursor", request: get("/keys?cursor=x"), status: 400, contains: "cursor"},
		{name: "keys limit too big", request: get("/keys?limit=10001"), status: 400, contains: "limit must be"},
		{name: "tags", request: get("/tags"), status: 200, contains: `{"tag":"users","count":300}`},
		{name: "bulk put", request: post("/keys/bulk/put", `{"items":[{"key":"b1","value":"one","tags":["bulk"],"ttl_ms":60000},{"key":"b2","value":"dHdv","encoding":"base64"},{"key":"b3","value":"`+strings.Repeat("x", 65<<10)+`"}]}`),
			status: 200, body: `{"ok":false,"stored":2,"errors":[{"index":2,"key":"b3","error":"value too large: 66560 > 65536"}]}`},
		{name: "bulk put malformed item", request: post("/keys/bulk/put", `{"items":[{"key":"b4","value":"v"},{"key":"b5"}]}`), status: 400, body: `{"ok":false,"error":"item 1: value is required"}`},
		{name: "bulk put default encoding", request: post("/keys/bulk/put", `{"encoding":"base64","items":[{"key":"b6","value":"c2l4"}]}`), status: 200, body: `{"ok":true,"stored":1}`},
		{name: "bulk get", request: post("/keys/bulk/get", `{"keys":["b2","missing","b6"]}`), status: 200,
			body: `{"items":[{"key":"b2","value":"two","ttl_ms":null,"tags":[]},{"key":"b6","value":"six","ttl_ms":null,"tags":[]}]}`},
		{name: "bulk get base64", request: post("/keys/bulk/get", `{"keys":["b2"],"encoding":"base64"}`), status: 200,
			body: `{"items":[{"key":"b2","value":"dHdv","encoding":"base64","ttl_ms":null,"tags":[]}]}`},
		{name: "bulk delete", request: post("/keys/bulk/delete", `{"keys":["b1","b2","missing"]}`), status: 200, body: `{"success":true,"count":2}`},
	})
	if _, ok := st.Get("b4"); ok {
		t.Error("a bulk put refused for a malformed item stored another item")
	}
	// Remaining TTL in bulk get.
	st.Set("ttl", []byte("v"), store.Params{Tags: []string{"x"}, Expires: st.Now() + 60000})
	w := serve(t, h, post("/keys/bulk/get", `{"keys":["ttl"]}`))
	var resp struct {
		Items []struct {
			TTLMs int64    `json:"ttl_ms"`
			Tags  []string `json:"tags"`
		} `json:"items"`
	}
	if json.Unmarshal(w.Body.Bytes(), &resp) != nil || len(resp.Items) != 1 || resp.Items[0].TTLMs <= 0 || resp.Items[0].TTLMs > 60000 || !slices.Equal(resp.Items[0].Tags, []string{"x"}) {
		t.Errorf("bulk get of an entry with a TTL = %s", w.Body)
	}

	// Stats and flush.
	st.Get("user:001")
	st.Get("nope")
	w = serve(t, h, get("/stats"))
	var stats map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &stats); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"hits", "misses", "puts", "invalidations", "hit_ratio", "items", "bytes", "tags", "sets", "evictions", "expirations", "max_memory", "shards"} {
		if _, ok := stats[field]; !ok {
			t.Errorf("stats has no %q: %s", field, w.Body)
		}
	}
	if stats["store"] != "default" || stats["puts"] != stats["sets"] || stats["items"].(float64) != float64(st.Stats().Items) {
		t.Errorf("stats = %s", w.Body)
	}
	if r := stats["hit_ratio"].(float64); r <= 0 || r >= 1 {
		t.Errorf("hit_ratio = %v; want between 0 and 1 after hits and misses", r)
	}
	items := st.Stats().Items
	runSteps(t, h, []step{
		{name: "flush", request: post("/flush", ``), status: 200, body: fmt.Sprintf(`{"success":true,"count":%d}`, items)},
	})
	if n := st.Stats().Items; n != 0 {
		t.Errorf("%d items after flush", n)
	}
}

// TestAPIAuth is the auth matrix: no credentials, wrong password, each
// permission against each kind of route, tokens, expiry, rotate and a
// password change.
func TestAPIAuth(t *testing.T) {
	h, _ := newTestAPI(t, auth.Config{Users: []auth.UserConfig{
		{Username: "admin", Password: testutil.BcryptHash(t, "admin-pw")},
		{Username: "reader", Password: testutil.BcryptHash(t, "reader-pw"), Permissions: []string{"read"}},
		{Username: "writer", Password: testutil.BcryptHash(t, "writer-pw"), Permissions: []string{"read", "write"}},
		{Username: "purger", Password: testutil.BcryptHash(t, "purger-pw"), Permissions: []string{"purge"}},
	}})
	as := func(user, pw string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(user, pw) }
	}
	with := func(r request, setup func(*http.Request)) request {
		r.setup = setup
		r.remote = "192.0.2.10:5000"
		return r
	}
	runSteps(t, h, []step{
		{name: "health needs nothing", request: with(get("/health"), nil), status: 200, contains: `"status":"ok"`},
		{name: "no credentials", request: with(get("/stats"), nil), status: 401, contains: `"error":"unauthorized"`},
		{name: "no credentials on loopback", request: get("/stats"), status: 401, contains: `"error":"unauthorized"`},
		{name: "wrong password", request: with(get("/stats"), as("admin", "nope")), status: 401, contains: "invalid username or password"},
		{name: "unknown user", request: with(get("/stats"), as("mallory", "admin-pw")), status: 401, contains: "invalid username or password"},
		{name: "reader reads", request: with(get("/stats"), as("reader", "reader-pw")), status: 200},
		{name: "reader gets", request: with(get("/get/x"), as("reader", "reader-pw")), status: 404, body: `{"error":"not_found"}`},
		{name: "reader writes", request: with(post("/put", `{"key":"x","value":"y"}`), as("reader", "reader-pw")), status: 403, body: `{"ok":false,"error":"user \"reader\" lacks the write permission"}`},
		{name: "writer writes", request: with(post("/put", `{"key":"x","value":"y","tags":["t"]}`), as("writer", "writer-pw")), status: 200},
		{name: "writer deletes", request: with(post("/invalidate-key", `{"key":"nope"}`), as("writer", "writer-pw")), status: 200},
		{name: "writer purges", request: with(post("/invalidate-tag", `{"tag":"t"}`), as("writer", "writer-pw")), status: 403, contains: "purge permission"},
		{name: "purger purges", request: with(post("/invalidate-tag", `{"tag":"t"}`), as("purger", "purger-pw")), status: 200, body: `{"success":true,"count":1}`},
		{name: "purger reads", request: with(get("/stats"), as("purger", "purger-pw")), status: 403, contains: "read permission"},
		{name: "writer flushes", request: with(post("/flush", ``), as("writer", "writer-pw")), status: 403, contains: "admin permission"},
		{name: "admin flushes", request: with(post("/flush", ``), as("admin", "admin-pw")), status: 200},
		{name: "writer rotates", request: with(post("/auth/rotate", ``), as("writer", "writer-pw")), status: 403, contains: "admin permission"},
		{name: "writer changes a password", request: with(post("/auth/password", `{"new_password":"long enough"}`), as("writer", "writer-pw")), status: 403},
		{name: "login wrong password", request: with(post("/auth/login", `{"username":"reader","password":"nope"}`), nil), status: 401, contains: `"error":"invalid_credentials"`},
		{name: "login nothing", request: with(post("/auth/login", ``), nil), status: 401, contains: `"error":"unauthorized"`},
		{name: "login malformed", request: with(post("/auth/login", `{"user":"x"}`), nil), status: 400, contains: "unknown field"},
	})
	w := serve(t, h, with(get("/stats"), nil))
	if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
		t.Errorf("401 without a Basic challenge: %q", got)
	}

	login := func(req request) string {
		t.Helper()
		w := serve(t, h, req)
		var resp struct {
			Token     string `json:"token"`
			ExpiresIn int64  `json:"expires_in"`
		}
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &resp) != nil || len(resp.Token) != auth.TokenLength || resp.ExpiresIn != 3600 {
			t.Fatalf("login = %d %s; want a token for 3600 s", w.Code, w.Body)
		}
		return resp.Token
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	readerTok := login(with(post("/auth/login", `{"username":"reader","password":"reader-pw"}`), nil))
	adminTok := login(with(post("/auth/login", ``), as("admin", "admin-pw")))
	runSteps(t, h, []step{
		{name: "reader token reads", request: with(get("/stats"), bearer(readerTok)), status: 200},
		{name: "reader token writes", request: with(post("/put", `{"key":"a","value":"b"}`), bearer(readerTok)), status: 403},
		{name: "forged token", request: with(get("/stats"), bearer(readerTok[:20]+strings.Repeat("A", auth.TokenLength-20))), status: 401, contains: "invalid or revoked token"},
		{name: "admin rotates", request: with(post("/auth/rotate", ``), bearer(adminTok)), status: 200, contains: `"ok":true`},
		{name: "rotated token", request: with(get("/stats"), bearer(readerTok)), status: 401, contains: "invalid or revoked token"},
		{name: "rotated admin token", request: with(get("/stats"), bearer(adminTok)), status: 401},
		{name: "basic still works after rotate", request: with(get("/stats"), as("reader", "reader-pw")), status: 200},
		{name: "password too short", request: with(post("/auth/password", `{"username":"reader","new_password":"short"}`), as("admin", "admin-pw")), status: 400, contains: "between 8 and 72 bytes"},
		{name: "password of nobody", request: with(post("/auth/password", `{"username":"nobody","new_password":"long enough"}`), as("admin", "admin-pw")), status: 404, contains: "no user named"},
		{name: "change reader password", request: with(post("/auth/password", `{"username":"reader","new_password":"new-reader-pw"}`), as("admin", "admin-pw")), status: 200, body: `{"success":true}`},
		{name: "old password", request: with(get("/stats"), as("reader", "reader-pw")), status: 401},
		{name: "new password", request: with(get("/stats"), as("reader", "new-reader-pw")), status: 200},
		{name: "admin changes own password", request: with(post("/auth/password", `{"new_password":"new-admin-pw"}`), as("admin", "admin-pw")), status: 200},
		{name: "admin new password", request: with(get("/stats"), as("admin", "new-admin-pw")), status: 200},
	})
}

func TestAPITokenExpiry(t *testing.T) {
	h, _ := newTestAPI(t, auth.Config{
		TokenTTL: 1, // 1ns: expired by the time it is used
		Users:    []auth.UserConfig{{Username: "admin", Password: testutil.BcryptHash(t, "admin-pw")}},
	})
	w := serve(t, h, request{method: http.MethodPost, path: "/auth/login", body: `{"username":"admin","password":"admin-pw"}`})
	var resp struct {
		Token     string `json:"token"`
		ExpiresIn int64  `json:"expires_in"`
	}
	if json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.Token == "" || resp.ExpiresIn != 1 {
		t.Fatalf("login = %d %s; want a token and expires_in rounded up to 1", w.Code, w.Body)
	}
	time.Sleep(time.Millisecond)
	w = serve(t, h, request{method: http.MethodGet, path: "/stats", setup: func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+resp.Token) }})
	if w.Code != 401 || !strings.Contains(w.Body.String(), "token expired") {
		t.Errorf("expired token = %d %s; want 401 token expired", w.Code, w.Body)
	}
}

func TestAPILoginRateLimit(t *testing.T) {
	h, _ := newTestAPI(t, auth.Config{Users: []auth.UserConfig{{Username: "admin", Password: testutil.BcryptHash(t, "admin-pw")}}})
	const client = "198.51.100.77:1234" // unique to this test: the limiter is shared
	attempt := func(pw string) *httptest.ResponseRecorder {
		return serve(t, h, request{method: http.MethodPost, path: "/auth/login", remote: client,
			body: fmt.Sprintf(`{"username":"admin","password":%q}`, pw)})
	}
	for i := range auth.MaxFailedLogins {
		if w := attempt("guess"); w.Code != 401 {
			t.Fatalf("attempt %d = %d %s; want 401", i+1, w.Code, w.Body)
		}
	}
	w := attempt("admin-pw")
	if w.Code != 429 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "too many failed logins") {
		t.Fatalf("after %d failures = %d %v %s; want 429 with Retry-After", auth.MaxFailedLogins, w.Code, w.Header(), w.Body)
	}
	// Basic auth on other routes counts against the same client.
	w = serve(t, h, request{method: http.MethodGet, path: "/stats", remote: client, setup: func(r *http.Request) { r.SetBasicAuth("admin", "admin-pw") }})
	if w.Code != 429 {
		t.Errorf("Basic auth from the limited client = %d; want 429", w.Code)
	}
	w = serve(t, h, request{method: http.MethodGet, path: "/stats", remote: "198.51.100.78:1", setup: func(r *http.Request) { r.SetBasicAuth("admin", "admin-pw") }})
	if w.Code != 200 {
		t.Errorf("another client = %d; want 200", w.Code)
	}
}

// TestAPINoUsers checks the secure default: without users, loopback only.
func TestAPINoUsers(t *testing.T) {
	h, _ := newTestAPI(t, auth.Config{})
	runSteps(t, h, []step{
		{name: "loopback", request: get("/stats"), status: 200},
		{name: "IPv6 loopback", request: request{method: http.MethodGet, path: "/stats", remote: "[::1]:9"}, status: 200},
		{name: "remote", request: request{method: http.MethodGet, path: "/stats", remote: "203.0.113.5:9"}, status: 403, contains: "caddy hash-password"},
		{name: "remote with credentials", request: request{method: http.MethodGet, path: "/stats", remote: "203.0.113.5:9", setup: func(r *http.Request) { r.SetBasicAuth("admin", "password") }}, status: 403},
		{name: "proxied from loopback", request: request{method: http.MethodGet, path: "/stats", setup: func(r *http.Request) { r.Header.Set("X-Forwarded-For", "203.0.113.5") }}, status: 403},
		{name: "remote health", request: request{method: http.MethodGet, path: "/health", remote: "203.0.113.5:9"}, status: 200},
		{name: "login without users", request: post("/auth/login", `{"username":"admin","password":"password"}`), status: 403, contains: "no tagcache users are configured"},
		{name: "password without users", request: post("/auth/password", `{"new_password":"long enough"}`), status: 400, contains: "username is required"},
	})
}

func TestAPIProvisionUnknownStore(t *testing.T) {
	users, _ := auth.NewUsers(auth.Config{})
	h := &JSONAPI{Store: "sessions"}
	if err := h.useApp(&testutil.App{Stores: map[string]*store.Store{}, UserSet: users}); err == nil {
		t.Fatal("a handler for a store the app does not have was provisioned")
	}
}

func BenchmarkAPIGet(b *testing.B) {
	h, st := newTestAPI(b, auth.Config{})
	st.Set("user:42", []byte(strings.Repeat("v", 100)), store.Params{})
	r := httptest.NewRequest(http.MethodGet, "/get/user:42", nil)
	r.RemoteAddr = "127.0.0.1:1"
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r, nil)
	}
}

func BenchmarkAPIPut(b *testing.B) {
	h, _ := newTestAPI(b, auth.Config{})
	body := `{"key":"user:42","value":"` + strings.Repeat("v", 100) + `","tags":["users"],"ttl_ms":60000}`
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/put", strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1"
		h.ServeHTTP(w, r, nil)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (d *discardWriter) WriteHeader(int)             {}

func TestAPISnapshot(t *testing.T) {
	h, st := newTestAPI(t, auth.Config{})
	st.Set("k", []byte("v"), store.Params{})
	// Without a snapshot configured.
	if rec := serve(t, h, request{method: http.MethodPost, path: "/snapshot"}); rec.Code != http.StatusConflict {
		t.Fatalf("no snapshot configured: %d %s", rec.Code, rec.Body)
	}
	dir := t.TempDir()
	if err := h.useApp(&testutil.App{Stores: map[string]*store.Store{"default": st}, UserSet: h.users, SnapshotDir: dir}); err != nil {
		t.Fatal(err)
	}
	rec := serve(t, h, request{method: http.MethodPost, path: "/snapshot"})
	var stats store.SnapshotStats
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &stats) != nil || stats.Entries != 1 {
		t.Fatalf("snapshot: %d %s", rec.Code, rec.Body)
	}
	loaded, _ := store.New(store.Config{SweepInterval: -1})
	defer loaded.Close()
	if _, err := loaded.LoadFile(filepath.Join(dir, "default.snap")); err != nil {
		t.Fatal(err)
	}
	if _, ok := loaded.Get("k"); !ok {
		t.Fatal("the snapshot the API wrote lacks k")
	}
}
