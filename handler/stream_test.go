package handler

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// serveOverHTTP runs the cache behind a real HTTP server, so responses go
// through net/http's writer (chunking, flushing, HEAD handling).
func serveOverHTTP(t *testing.T, tc *testCache) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := tc.h.ServeHTTP(w, r, caddyhttp.HandlerFunc(tc.origin.ServeHTTP)); err != nil {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestStreamingLargerThanMaxBodySize sends a body bigger than
// max_body_size in chunks: the client gets the first chunk while the
// origin is still held, all of it in the end, and nothing is stored.
func TestStreamingLargerThanMaxBodySize(t *testing.T) {
	const limit = 64 << 10
	tc := newTestCache(t, func(h *Handler) { h.MaxBodySize = limit })
	chunk := bytes.Repeat([]byte("x"), 16<<10)
	firstRead := make(chan struct{})
	tc.origin.set(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "max-age=60")
		if _, err := w.Write([]byte("first\n")); err != nil {
			return err
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			return err
		}
		<-firstRead // the client has the first chunk before the rest exists
		for range 8 {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	srv := serveOverHTTP(t, tc)
	resp, err := http.Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	close(firstRead)
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) != 8*len(chunk) {
		t.Fatalf("rest of the body: %d bytes, %v; want %d", len(rest), err, 8*len(chunk))
	}
	if got := resp.Header.Get("Cache-Status"); got != "tagcache; fwd=uri-miss; stored" {
		t.Errorf("Cache-Status %q; it is decided before the size is known", got)
	}

	resp2, err := http.Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if tc.requests() != 2 || !strings.Contains(resp2.Header.Get("Cache-Status"), "miss") {
		t.Errorf("second request: %q, origin %d; want a miss: the body was too large to store", resp2.Header.Get("Cache-Status"), tc.requests())
	}
}

func TestDeclaredLengthOverMaxBodySize(t *testing.T) {
	tc := newTestCache(t, func(h *Handler) { h.MaxBodySize = 4 })
	tc.origin.set(respond(tc.clock, 200, "hello", "Cache-Control", "max-age=60", "Content-Length", "5"))
	w := tc.do("GET", "/page")
	if w.Body.String() != "hello" || status(w) != "tagcache; fwd=uri-miss; detail=too-large" {
		t.Errorf("got %q %q", w.Body.String(), status(w))
	}
}

func TestBodyUpToMaxBodySizeIsStored(t *testing.T) {
	body := strings.Repeat("y", 1000)
	tc := newTestCache(t, func(h *Handler) { h.MaxBodySize = 1000 })
	tc.origin.set(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "max-age=60")
		for i := 0; i < len(body); i += 100 {
			if _, err := io.WriteString(w, body[i:i+100]); err != nil {
				return err
			}
		}
		return nil
	})
	srv := serveOverHTTP(t, tc)
	for i := range 2 {
		resp, err := http.Get(srv.URL + "/page")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != body || resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) && i == 1 {
			t.Errorf("request %d: %d bytes, Content-Length %q", i, len(got), resp.Header.Get("Content-Length"))
		}
	}
	if tc.requests() != 1 {
		t.Errorf("origin saw %d requests; want 1", tc.requests())
	}
}

// TestIncompleteBodyNotStored: a body shorter than its Content-Length
// (upstream went away) is not stored.
func TestIncompleteBodyNotStored(t *testing.T) {
	tc := newTestCache(t, nil)
	tc.origin.set(respond(tc.clock, 200, "hel", "Cache-Control", "max-age=60", "Content-Length", "5"))
	tc.do("GET", "/page")
	tc.do("GET", "/page")
	if tc.requests() != 2 {
		t.Errorf("origin saw %d requests; want 2", tc.requests())
	}
}

func TestHeadOverHTTP(t *testing.T) {
	tc := newTestCache(t, nil)
	srv := serveOverHTTP(t, tc)
	if resp, err := http.Get(srv.URL + "/page"); err == nil {
		resp.Body.Close()
	}
	resp, err := http.Head(srv.URL + "/page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 5 || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Errorf("HEAD: Content-Length %d, %q", resp.ContentLength, resp.Header.Get("Cache-Status"))
	}
}
