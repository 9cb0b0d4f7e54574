package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tagcache/caddy-tagcache/auth"
)

// FuzzWriteRequest feeds arbitrary bodies to the request parser: it must
// never panic, refuse with a 4xx status, and what it accepts must survive
// a round trip through JSON unchanged.
func FuzzWriteRequest(f *testing.F) {
	for _, seed := range []string{
		`{"key":"user:42","value":"hello","tags":["users","trial"],"ttl_ms":60000}`,
		`{"key":"bin","value":"AAEC/w==","encoding":"base64"}`,
		`{"key":"s","value":"v","ttl_seconds":2}`,
		`{"key":"k","value":"","tags":[]}`,
		`{"key":"k","value":null}`,
		`{"key":"k","value":"v","ttl_ms":-1}`,
		`{"key":"k","value":"v"} {}`,
		`{"key":1}`,
		`[1,2]`,
		`{"key":"\u0000\ud800","value":"\xff"}`,
		``,
		`{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req writeRequest
		rerr := decodeJSON(bytes.NewReader(body), &req)
		if rerr == nil {
			var e entry
			e, rerr = req.parse("")
			if rerr == nil {
				again, err := json.Marshal(req)
				if err != nil {
					t.Fatal(err)
				}
				var req2 writeRequest
				if rerr := decodeJSON(bytes.NewReader(again), &req2); rerr != nil {
					t.Fatalf("re-encoded request %s refused: %v", again, rerr)
				}
				e2, rerr := req2.parse("")
				if rerr != nil || e.key != e2.key || !bytes.Equal(e.value, e2.value) || !slices.Equal(e.tags, e2.tags) || e.ttlMs != e2.ttlMs {
					t.Fatalf("round trip changed %+v into %+v (%v)", e, e2, rerr)
				}
				if e.key == "" || e.ttlMs < 0 || e.ttlMs > maxTTLMs {
					t.Fatalf("accepted an invalid entry %+v", e)
				}
				return
			}
		}
		if rerr.status < 400 || rerr.status >= 500 || rerr.msg == "" {
			t.Fatalf("refusal %d %q; want a 4xx with a reason", rerr.status, rerr.msg)
		}
	})
}

// FuzzAPI sends arbitrary bodies to every POST route: the answer is JSON
// with a status below 500, whatever the body.
func FuzzAPI(f *testing.F) {
	f.Add("/put", []byte(`{"key":"a","value":"b"}`))
	f.Add("/incr", []byte(`{"key":"a","by":9223372036854775807}`))
	f.Add("/decr", []byte(`{"key":"a","by":-9223372036854775807}`))
	f.Add("/keys/bulk/put", []byte(`{"items":[{"key":"a","value":"YQ==","encoding":"base64"}]}`))
	f.Add("/keys/bulk/get", []byte(`{"keys":["a","b"]}`))
	f.Add("/invalidate-tag", []byte(`{"tags":["t",""]}`))
	f.Add("/auth/password", []byte(`{"new_password":"xxxxxxxx"}`))
	h, _ := newTestAPI(f, auth.Config{})
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		if _, ok := routes[path]; !ok || routes[path].method != http.MethodPost || strings.HasPrefix(path, "/auth/") {
			return
		}
		w := serve(t, h, request{method: http.MethodPost, path: path, body: string(body)})
		if w.Code >= 500 || !json.Valid(w.Body.Bytes()) {
			t.Fatalf("POST %s %q = %d %s", path, body, w.Code, w.Body)
		}
	})
}
