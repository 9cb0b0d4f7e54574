package admin

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tagcache/caddy-tagcache/auth"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
	"github.com/tagcache/caddy-tagcache/store"
)

// serveAPI serves h on a loopback httptest server under prefix.
func serveAPI(t *testing.T, h *JSONAPI, prefix string) string {
	t.Helper()
	srv := httptest.NewServer(http.StripPrefix(prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r, nil)
	})))
	t.Cleanup(srv.Close)
	return srv.URL + prefix
}

func TestCLIVerbs(t *testing.T) {
	h, st := newTestAPI(t, auth.Config{})
	addr := serveAPI(t, h, "/cache")
	t.Setenv("TAGCACHE_ADDRESS", addr)
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{args: []string{"health"}, want: `"status": "ok"`},
		{args: []string{"put", "user:1", "hello world", "--tags", "users,trial", "--ttl-ms", "60000"}, want: "stored\n"},
		{args: []string{"get", "user:1"}, want: "hello world"},
		{args: []string{"add", "user:1", "other"}, want: "exists\n"},
		{args: []string{"add", "counter:new", "100", "--tags", "counters"}, want: "added\n"},
		{args: []string{"incr", "counter:new", "--by", "5"}, want: "105\n"},
		{args: []string{"decr", "user_quota", "--by", "10", "--tags", "quotas"}, want: "-10\n"},
		{args: []string{"incr", "page_views"}, want: "1\n"},
		{stdin: "\x00\x01binary\xff\n", args: []string{"put", "a/b c", "-"}, want: "stored\n"},
		{args: []string{"get", "a/b c"}, want: "\x00\x01binary\xff\n"},
		{args: []string{"keys-by-tag", "users"}, want: "user:1\n"},
		{args: []string{"invalidate-tag", "trial", "quotas"}, want: "2\n"},
		{args: []string{"del", "counter:new"}, want: "deleted\n"},
		{args: []string{"del", "counter:new"}, want: "not found\n"},
		{args: []string{"stats"}, want: `"puts": `},
		{args: []string{"flush"}, want: "2\n"},
	} {
		out, err := RunCLI(t, tc.stdin, tc.args...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("tagcache %q = %q, %v; want %q", tc.args, out, err, tc.want)
		}
	}
	if n := st.Stats().Items; n != 0 {
		t.Errorf("%d items after flush", n)
	}
	if _, err := RunCLI(t, "", "get", "user:1"); err == nil || !strings.Contains(err.Error(), `key "user:1" not found`) {
		t.Errorf("get of a missing key: %v; want a not found error", err)
	}
}

func TestCLIErrors(t *testing.T) {
	h, st := newTestAPI(t, auth.Config{Users: []auth.UserConfig{
		{Username: "admin", Password: testutil.BcryptHash(t, "admin-pw")},
		{Username: "reader", Password: testutil.BcryptHash(t, "reader-pw"), Permissions: []string{"read"}},
	}})
	addr := serveAPI(t, h, "")

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stats", "--address", closed}, "cannot reach the tagcache API at http://" + closed},
		{[]string{"stats", "--address", addr}, "authentication failed (authentication required: send HTTP Basic credentials"},
		{[]string{"stats", "--address", addr, "--username", "admin", "--password", "wrong"}, "authentication failed (invalid username or password)"},
		{[]string{"stats", "--address", addr, "--username", "admin"}, "a password is required"},
		{[]string{"put", "k", "v", "--address", addr, "--username", "reader", "--password", "reader-pw"}, `forbidden: user "reader" lacks the write permission`},
		{[]string{"stats", "--address", "ftp://x"}, "invalid address"},
		{[]string{"change-password", "short", "--address", addr, "--username", "admin", "--password", "admin-pw"}, "400 Bad Request: a password must have between 8 and 72 bytes"},
		{[]string{"incr", "text", "--address", addr, "--username", "admin", "--password", "admin-pw"}, "409 Conflict: value is not an integer"},
		{[]string{"stats", "--address", addr, "--ca-cert", "/nonexistent.pem"}, "reading the CA certificate"},
		{[]string{"get", "--address", addr}, "accepts 1 arg(s), received 0"},
	} {
		if tc.args[0] == "incr" {
			st.Set("text", []byte("abc"), store.Params{})
		}
		_, err := RunCLI(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tagcache %q: %v; want an error containing %q", tc.args, err, tc.want)
		}
	}

	// Environment variables and change-password from stdin.
	t.Setenv("TAGCACHE_ADDRESS", addr)
	t.Setenv("TAGCACHE_USERNAME", "admin")
	t.Setenv("TAGCACHE_PASSWORD", "admin-pw")
	if out, err := RunCLI(t, "new-reader-pw\n", "change-password", "-", "--user", "reader"); err != nil || out != "password of reader changed\n" {
		t.Fatalf("change-password = %q, %v", out, err)
	}
	t.Setenv("TAGCACHE_USERNAME", "reader")
	t.Setenv("TAGCACHE_PASSWORD", "new-reader-pw")
	if _, err := RunCLI(t, "", "stats"); err != nil {
		t.Errorf("stats with the changed password from the environment: %v", err)
	}
	if _, err := RunCLI(t, "", "stats", "--password", "reader-pw"); err == nil {
		t.Error("the old password still works; a flag must override the environment")
	}
}
