package handler

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestVaryVariants(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		_, err := w.Write([]byte("lang=" + r.Header.Get("Accept-Language")))
		return err
	})
	for i, tt := range []struct {
		lang, body, state string
		origin            int64
	}{
		{"en", "lang=en", "fwd=uri-miss; stored", 1},
		{"de", "lang=de", "fwd=vary-miss; stored", 2},
		{"en", "lang=en", "hit", 2},
		{"de", "lang=de", "hit", 2},
		{"fr", "lang=fr", "fwd=vary-miss", 3},
	} {
		w := tc.do("GET", "/page", "Accept-Language", tt.lang)
		if w.Body.String() != tt.body || !strings.Contains(status(w), tt.state) || tc.requests() != tt.origin {
			t.Errorf("%d (%s): %q, %q, origin %d; want %q, %q, %d", i, tt.lang, w.Body.String(), status(w), tc.requests(), tt.body, tt.state, tt.origin)
		}
	}
	// A URL purge removes every variant.
	r := purgeRequest("/page")
	if w := tc.doRequest(r); w.Code != 200 || !strings.Contains(w.Body.String(), `"purged":4`) {
		t.Errorf("PURGE: %d %s; want 4 entries (3 variants and the vary index)", w.Code, w.Body.String())
	}
	if w := tc.do("GET", "/page", "Accept-Language", "en"); !strings.Contains(status(w), "uri-miss") {
		t.Errorf("after PURGE: %q; want a miss", status(w))
	}
}

func TestVaryAcceptEncodingNormalized(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=60", "Vary", "accept-encoding"))
	tc.do("GET", "/page", "Accept-Encoding", "gzip, br")
	for _, ae := range []string{"br,gzip", "GZIP,  br", "br, gzip"} {
		if w := tc.do("GET", "/page", "Accept-Encoding", ae); !strings.Contains(status(w), "hit") {
			t.Errorf("Accept-Encoding %q: %q; want the variant stored for \"gzip, br\"", ae, status(w))
		}
	}
	if w := tc.do("GET", "/page", "Accept-Encoding", "gzip"); strings.Contains(status(w), "hit") {
		t.Errorf("Accept-Encoding gzip: %q; want another variant", status(w))
	}
}

func TestRange(t *testing.T) {
	body := "0123456789abcdefghij"
	tc := newTestCache(t, nil)
	tc.origin.set(respond(tc.clock, 200, body, "Cache-Control", "max-age=60", "Etag", `"r1"`,
		"Last-Modified", "Sun, 01 Mar 2026 10:00:00 GMT"))
	tc.do("GET", "/file")
	for _, tt := range []struct {
		name, rng, ifRange string
		code               int
		body, contentRange string
	}{
		{"first bytes", "bytes=0-4", "", 206, "01234", "bytes 0-4/20"},
		{"open end", "bytes=15-", "", 206, "fghij", "bytes 15-19/20"},
		{"suffix", "bytes=-3", "", 206, "hij", "bytes 17-19/20"},
		{"end past size", "bytes=18-100", "", 206, "ij", "bytes 18-19/20"},
		{"unsatisfiable", "bytes=20-", "", 416, "", "bytes */20"},
		{"zero suffix", "bytes=-0", "", 416, "", "bytes */20"},
		{"several ranges: full response", "bytes=0-1,5-6", "", 200, body, ""},
		{"malformed: full response", "bytes=5-1", "", 200, body, ""},
		{"other unit: full response", "items=0-1", "", 200, body, ""},
		{"If-Range matches", "bytes=0-1", `"r1"`, 206, "01", "bytes 0-1/20"},
		{"If-Range date matches", "bytes=0-1", "Sun, 01 Mar 2026 10:00:00 GMT", 206, "01", "bytes 0-1/20"},
		{"If-Range differs: full response", "bytes=0-1", `"r0"`, 200, body, ""},
	} {
		fields := []string{"Range", tt.rng}
		if tt.ifRange != "" {
			fields = append(fields, "If-Range", tt.ifRange)
		}
		w := tc.do("GET", "/file", fields...)
		if w.Code != tt.code || w.Body.String() != tt.body || w.Header().Get("Content-Range") != tt.contentRange {
			t.Errorf("%s: %d %q Content-Range %q; want %d %q %q", tt.name, w.Code, w.Body.String(), w.Header().Get("Content-Range"), tt.code, tt.body, tt.contentRange)
		}
		if tt.code == 206 && w.Header().Get("Content-Length") != strconv.Itoa(len(tt.body)) {
			t.Errorf("%s: Content-Length %q", tt.name, w.Header().Get("Content-Length"))
		}
	}
	if tc.requests() != 1 {
		t.Errorf("origin saw %d requests; want 1", tc.requests())
	}
}

func TestRangeMissPassesThrough(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", "bytes 0-1/5")
			w.WriteHeader(http.StatusPartialContent)
			_, err := w.Write([]byte("he"))
			return err
		}
		_, err := w.Write([]byte("hello"))
		return err
	})
	if w := tc.do("GET", "/f", "Range", "bytes=0-1"); w.Code != 206 || w.Body.String() != "he" {
		t.Fatalf("ranged miss: %d %q", w.Code, w.Body.String())
	}
	tc.do("GET", "/f")
	if w := tc.do("GET", "/f", "Range", "bytes=1-2"); w.Code != 206 || w.Body.String() != "el" || tc.requests() != 2 {
		t.Errorf("ranged hit: %d %q, origin %d", w.Code, w.Body.String(), tc.requests())
	}
}
