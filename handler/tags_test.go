package handler

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tagcache/caddy-tagcache/internal/urltag"
)

func TestAppendTags(t *testing.T) {
	long := strings.Repeat("t", 1025)
	for _, tt := range []struct {
		field, value string
		want         []string
	}{
		{"Surrogate-Key", "a b  c", []string{"a", "b", "c"}},
		{"Surrogate-Key", "a,b c", []string{"a,b", "c"}},
		{"Surrogate-Key", "\ta\t", []string{"a"}},
		{"Cache-Tag", "a, b ,c", []string{"a", "b", "c"}},
		{"Cache-Tag", "two words,x", []string{"two words", "x"}},
		{"Xkey", "a b,c", []string{"a", "b", "c"}},
		{"Surrogate-Key", "ok url:example.com/x " + long, []string{"ok"}},
		{"Surrogate-Key", "", nil},
		{"Cache-Tag", " , ,", nil},
	} {
		got := appendTags(nil, tt.value, separatorsFor(tt.field))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q -> %q; want %q", tt.field, tt.value, got, tt.want)
		}
	}
	if got := purgeTags([]string{"a b,c", " d "}); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("purgeTags = %q", got)
	}
}

func TestResponseTags(t *testing.T) {
	tc := newTestCache(t, func(h *Handler) { h.Tags = []string{"site:{site}", "static"} })
	tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=60",
		"Surrogate-Key", "a b", "Cache-Tag", "c,d", "Xkey", "e", "Surrogate-Key", "url:example.com/forged"))
	r := httptest.NewRequest("GET", "/page", nil)
	repl := caddy.NewReplacer()
	repl.Set("site", "shop")
	r = r.WithContext(contextWithReplacer(r, repl))
	w := tc.doRequest(r)
	for _, f := range []string{"Surrogate-Key", "Cache-Tag", "Xkey"} {
		if v := w.Header().Get(f); v != "" {
			t.Errorf("%s reached the client: %q", f, v)
		}
	}
	keys := tc.st.KeysByTag(urltag.For("example.com", "/page"), 0)
	if len(keys) != 1 {
		t.Fatalf("keys under the URL tag: %q", keys)
	}
	tags, _ := tc.st.TagsOf(keys[0])
	slices.Sort(tags)
	want := []string{"a", "b", "c", "d", "e", "site:shop", "static", urltag.For("example.com", "/page")}
	if !slices.Equal(tags, want) {
		t.Errorf("tags %q; want %q", tags, want)
	}
}

func TestKeepTagHeaders(t *testing.T) {
	tc := newTestCache(t, func(h *Handler) { h.KeepTagHeaders = true; h.TagHeaders = []string{"X-Tags"} })
	tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=60", "X-Tags", "a,b", "Surrogate-Key", "ignored"))
	for i := range 2 {
		w := tc.do("GET", "/page")
		if w.Header().Get("X-Tags") != "a,b" {
			t.Errorf("request %d: X-Tags %q; want it kept", i, w.Header().Get("X-Tags"))
		}
	}
	if tc.st.TagCount("a") != 1 || tc.st.TagCount("ignored") != 0 {
		t.Errorf("tag counts: a %d, ignored %d; want only the configured field read", tc.st.TagCount("a"), tc.st.TagCount("ignored"))
	}
}

func TestTooManyTagsNotStored(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=60", "Surrogate-Key", manyTags(100)))
	tc.do("GET", "/page")
	if w := tc.do("GET", "/page"); !strings.Contains(status(w), "miss") {
		t.Errorf("%q; want a miss: the store refuses more than 64 tags and a purge must never miss an entry", status(w))
	}
}

func manyTags(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("tag")
		b.WriteString(strings.Repeat("x", i))
		b.WriteByte(' ')
	}
	return b.String()
}

func TestCacheKeys(t *testing.T) {
	for _, tt := range []struct {
		name      string
		key       *KeyConfig
		a, b      *http.Request
		sameEntry bool
	}{
		{"query order", nil, req("/p?a=1&b=2"), req("/p?b=2&a=1"), true},
		{"query values differ", nil, req("/p?a=1"), req("/p?a=2"), false},
		{"path case matters", nil, req("/P"), req("/p"), false},
		{"host case does not", nil, req("http://EXAMPLE.com/p"), req("http://example.com/p"), true},
		{"hosts differ", nil, req("http://a.example/p"), req("http://b.example/p"), false},
		{"ignore_query", &KeyConfig{IgnoreQuery: []string{"utm_source"}}, req("/p?id=1&utm_source=x"), req("/p?id=1"), true},
		{"ignore_query *", &KeyConfig{IgnoreQuery: []string{"*"}}, req("/p?id=1"), req("/p?id=2"), true},
		{"keep_query", &KeyConfig{KeepQuery: []string{"id"}}, req("/p?id=1&x=2"), req("/p?y=3&id=1"), true},
		{"keep_query distinguishes kept", &KeyConfig{KeepQuery: []string{"id"}}, req("/p?id=1"), req("/p?id=2"), false},
		{"headers", &KeyConfig{Headers: []string{"x-tenant"}}, req("/p", "X-Tenant", "a"), req("/p", "X-Tenant", "b"), false},
		{"headers same", &KeyConfig{Headers: []string{"X-Tenant"}}, req("/p", "X-Tenant", "a"), req("/p", "X-Tenant", "a", "X-Other", "1"), true},
		{"cookies", &KeyConfig{Cookies: []string{"lang"}}, req("/p", "Cookie", "lang=en; s=1"), req("/p", "Cookie", "s=2; lang=en"), true},
		{"cookies differ", &KeyConfig{Cookies: []string{"lang"}}, req("/p", "Cookie", "lang=en"), req("/p", "Cookie", "lang=de"), false},
		{"template", &KeyConfig{Template: "{http.request.uri.path}"}, req("http://a.example/p"), req("http://b.example/p"), true},
		{"long keys are hashed", nil, req("/" + strings.Repeat("a", 300)), req("/" + strings.Repeat("a", 301)), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCache(t, func(h *Handler) { h.Key = tt.key })
			tc.doRequest(withReplacer(tt.a))
			w := tc.doRequest(withReplacer(tt.b))
			if got := strings.Contains(status(w), "hit"); got != tt.sameEntry {
				t.Errorf("second request: %q; want same entry %v", status(w), tt.sameEntry)
			}
			if tt.key == nil {
				for _, k := range tc.st.KeysByTag(urltag.For(tt.a.Host, tt.a.URL.Path), 0) {
					if len(k) > maxKeyLen+len(keyPrefix)+65 {
						t.Errorf("key of %d bytes stored", len(k))
					}
				}
			}
		})
	}
}

func req(target string, fields ...string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.Add(fields[i], fields[i+1])
	}
	return r
}

// withReplacer gives r the replacer a Caddy server would, with the
// http.request.* placeholders.
func withReplacer(r *http.Request) *http.Request {
	repl := caddy.NewReplacer()
	repl.Map(func(key string) (any, bool) {
		switch key {
		case "http.request.uri.path":
			return r.URL.Path, true
		case "http.request.host":
			return r.Host, true
		}
		return nil, false
	})
	return r.WithContext(contextWithReplacer(r, repl))
}
