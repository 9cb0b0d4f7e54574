package handler

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tagcache/caddy-tagcache/internal/urltag"
	"github.com/tagcache/caddy-tagcache/store"
)

func TestParseDirectives(t *testing.T) {
	d := parseDirectives([]string{`max-age=60, s-maxage="30", no-cache="Set-Cookie, X-A"`, `Private, max-age=10, stale-while-revalidate=5`, `max-stale, min-fresh=x`})
	switch {
	case d.maxAge != 60, d.sMaxAge != 30, d.staleWhileRevalidate != 5, d.minFresh != 0:
		t.Errorf("delta-seconds: %+v", d)
	case !d.private, d.noCache, !d.maxStaleAny:
		t.Errorf("flags: %+v", d)
	case len(d.noCacheFields) != 2 || d.noCacheFields[0] != "Set-Cookie" || d.noCacheFields[1] != "X-A":
		t.Errorf("no-cache fields %q", d.noCacheFields)
	}
	if d := parseDirectives([]string{"max-age=99999999999999999999"}); d.maxAge != maxDelta {
		t.Errorf("overflow: max-age %d; want %d", d.maxAge, maxDelta)
	}
	if d := parseDirectives([]string{"max-age=30+60, no-store;devA"}); d.maxAge != 30 || d.noStore {
		t.Errorf("Surrogate-Control forms: %+v", d)
	}
	if d := parseDirectives([]string{" , "}); d.present {
		t.Errorf("empty list is present")
	}
}

func FuzzParseDirectives(f *testing.F) {
	for _, seed := range []string{
		"max-age=60", "no-store", `private="Set-Cookie", max-age=0`, "s-maxage=10, must-revalidate",
		`no-cache="a,\"b\""`, "max-stale", "max-age=30+60, no-store;dev", "min-fresh=-1", `"`, "max-age=\"",
		"stale-while-revalidate=1, stale-if-error=2, only-if-cached, public, proxy-revalidate",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := parseDirectives(strings.Split(v, "\n"))
		for _, n := range []int64{d.maxAge, d.sMaxAge, d.maxStale, d.minFresh, d.staleWhileRevalidate, d.staleIfError} {
			if n < unset || n > maxDelta {
				t.Fatalf("delta %d out of range for %q", n, v)
			}
		}
		for _, f := range append(d.noCacheFields, d.privateFields...) {
			if f == "" {
				t.Fatalf("empty field name from %q", v)
			}
		}
		requestDirectives(http.Header{"Pragma": {v}})
	})
}

func FuzzTagHeader(f *testing.F) {
	for _, seed := range []string{"a b c", "a,b, c", "url:x/y ok", "  ", ",", "\t", "product:42 category:7"} {
		f.Add(seed, uint8(0))
		f.Add(seed, uint8(1))
		f.Add(seed, uint8(2))
	}
	fields := []string{"Surrogate-Key", "Cache-Tag", "Xkey"}
	f.Fuzz(func(t *testing.T, v string, which uint8) {
		field := fields[int(which)%len(fields)]
		sep := separatorsFor(field)
		for _, tag := range appendTags(nil, v, sep) {
			switch {
			case tag == "", len(tag) > store.MaxTagLength:
				t.Fatalf("%s %q: tag of %d bytes", field, v, len(tag))
			case strings.HasPrefix(tag, urltag.Prefix):
				t.Fatalf("%s %q: URL tag %q accepted from an origin", field, v, tag)
			case sep&splitSpaces != 0 && strings.ContainsAny(tag, " \t"):
				t.Fatalf("%s %q: tag %q holds a space", field, v, tag)
			case sep&splitCommas != 0 && strings.Contains(tag, ","):
				t.Fatalf("%s %q: tag %q holds a comma", field, v, tag)
			}
		}
		for _, tag := range purgeTags([]string{v}) {
			if tag == "" || strings.ContainsAny(tag, " ,\t") {
				t.Fatalf("purge %q: tag %q", v, tag)
			}
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, seed := range []string{"bytes=0-4", "bytes=-5", "bytes=5-", "bytes=1-0", "bytes=0-1,2-3", "BYTES= 3 - 9 ", "bytes=-0", "items=1-2", "bytes=99999999999999999999-"} {
		f.Add(seed, int64(20))
	}
	f.Fuzz(func(t *testing.T, v string, size int64) {
		if size < 0 {
			size = -size
		}
		start, end, res := parseRange(v, size)
		if res == rangeSatisfiable && (start < 0 || start > end || end >= size) {
			t.Fatalf("parseRange(%q, %d) = %d-%d", v, size, start, end)
		}
	})
}

// FuzzDecodeStored feeds arbitrary values to the entry decoder, as a
// client of another front could write under an HTTP key: nothing may
// panic, and a value that decodes is safe to serve.
func FuzzDecodeStored(f *testing.F) {
	p := policy{lifetime: 60, staleWhileRevalidate: 5}
	value := append(make([]byte, fixedLen), "body"...)
	value = appendField(value, "Content-Type", "text/plain")
	value = appendField(value, "X-Custom", "1")
	putFixed(value, &p, 200, 2, 1700000000000, 4)
	f.Add(value)
	f.Add(encodeVaryIndex([]string{"Accept-Encoding", "Accept-Language"}))
	f.Add([]byte("R\x01"))
	f.Add([]byte("hello from memcached"))
	h := &Handler{statusField: "Cache-Status"}
	f.Fuzz(func(t *testing.T, v []byte) {
		if s, ok := decodeStored(v); ok {
			hdr := make(http.Header)
			h.setFields(hdr, &s, allFields, 1, "x")
			_ = s.header()
			_ = s.field("Etag")
			if len(s.body) > len(v) {
				t.Fatal("body longer than the value")
			}
		}
		if vi, ok := decodeVaryIndex(v); ok {
			for {
				name, ok := vi.next()
				if !ok {
					break
				}
				if name == "" {
					t.Fatal("empty name")
				}
			}
		}
	})
}

func TestEntryRoundTrip(t *testing.T) {
	p := policy{lifetime: 60, initialAge: 3, staleWhileRevalidate: 5, staleIfError: 7, mustRevalidate: true, authOK: true}
	hdr := http.Header{"Content-Type": {"text/html"}, "X-Multi": {"a", "b"}, "Etag": {`"x"`}}
	value := append(make([]byte, fixedLen), "<html>"...)
	value, n := appendFields(value, hdr, func(string) bool { return true })
	putFixed(value, &p, 203, n, 1234567, 6)
	s, ok := decodeStored(value)
	if !ok {
		t.Fatal("does not decode")
	}
	if s.status != 203 || s.lifetime != 60 || s.initialAge != 3 || s.swr != 5 || s.sie != 7 || s.respTime != 1234567 ||
		s.flags != flagMustRevalidate|flagAuthOK || string(s.body) != "<html>" {
		t.Errorf("decoded %+v", s)
	}
	got := make(http.Header)
	(&Handler{statusField: "Cache-Status"}).setFields(got, &s, allFields, 9, "st")
	if got.Get("Content-Type") != "text/html" || strings.Join(got["X-Multi"], ",") != "a,b" || got.Get("Age") != "9" || got.Get("Cache-Status") != "st" {
		t.Errorf("fields %v", got)
	}
	// An append by a later handler must not overwrite a neighbour.
	got["X-Multi"] = append(got["X-Multi"], "c")
	if got.Get("Age") != "9" {
		t.Error("append overwrote the next field")
	}
	for i := range value {
		if _, ok := decodeStored(value[:i]); ok && i < fixedLen+6 {
			t.Errorf("a value cut at %d decodes", i)
		}
	}
}

func TestForeignValueIsAMiss(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.do("GET", "/page")
	key := tc.st.KeysByTag(urltag.For("example.com", "/page"), 0)[0]
	if _, err := tc.st.Set(key, []byte("written by a memcached client"), store.Params{}); err != nil {
		t.Fatal(err)
	}
	if w := tc.do("GET", "/page"); w.Body.String() != "hello" || !strings.Contains(status(w), "miss") {
		t.Errorf("got %q %q; want a miss", w.Body.String(), status(w))
	}
}
