package admin_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/tagcache/caddy-tagcache"
	"github.com/tagcache/caddy-tagcache/admin"
	"github.com/tagcache/caddy-tagcache/internal/testutil"
)

// Ports of these tests: Caddy's admin endpoint on 19399, the API sites on
// 19381 (plain), 19382 (mounted under a prefix) and 19343 (HTTPS).
const (
	adminAddr = "localhost:19399"
	plainURL  = "http://localhost:19381"
	prefixURL = "http://localhost:19382"
	httpsURL  = "https://localhost:19343"
)

func newTester(t *testing.T) *caddytest.Tester {
	return caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: 19399})
}

// config is a Caddyfile with the API on the test ports, Caddy's storage in
// storageDir, and the given body of the tagcache auth block (none if "").
func config(storageDir, authBlock string) string {
	auth := ""
	if authBlock != "" {
		auth = "auth {\n" + authBlock + "\n}"
	}
	return fmt.Sprintf(`{
	admin %s
	http_port 19380
	https_port 19343
	grace_period 1ns
	skip_install_trust
	local_certs
	storage file_system %s
	servers {
		trusted_proxies static 127.0.0.1/8
	}
	tagcache {
		store sessions
		%s
	}
}

%s {
	tagcache_api
}

%s {
	handle_path /cache/* {
		tagcache_api {
			store sessions
		}
	}
	respond "the site"
}

%s {
	tagcache_api
}
`, adminAddr, storageDir, auth, plainURL, prefixURL, httpsURL)
}

// call sends a request and returns the status and body.
func call(t *testing.T, client *http.Client, method, url, body string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Header
}

func basic(user, pw string) []string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pw)
	return []string{"Authorization", req.Header.Get("Authorization")}
}

func expect(t *testing.T, what string, status int, body string, wantStatus int, wantBody string) {
	t.Helper()
	if status != wantStatus || !strings.Contains(body, wantBody) {
		t.Errorf("%s = %d %s; want %d containing %s", what, status, body, wantStatus, wantBody)
	}
}

func login(t *testing.T, client *http.Client, url, user, pw string) string {
	t.Helper()
	status, body, _ := call(t, client, http.MethodPost, url+"/auth/login", fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw))
	var resp struct {
		Token string `json:"token"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &resp) != nil || resp.Token == "" {
		t.Fatalf("login as %s = %d %s", user, status, body)
	}
	return resp.Token
}

// TestIntegrationAPI runs the API in an in-process Caddy: a plain site, a
// site mounting it under a prefix with another store, an HTTPS site with
// Caddy's internal CA, the admin routes, the metrics and the CLI.
func TestIntegrationAPI(t *testing.T) {
	storage := t.TempDir()
	tester := newTester(t)
	tester.InitServer(config(storage, fmt.Sprintf(`
			user admin %s
			user reader %s read`, testutil.BcryptHash(t, "admin-pw"), testutil.BcryptHash(t, "reader-pw"))), "caddyfile")
	c := tester.Client
	asAdmin := basic("admin", "admin-pw")

	// Plain site, default store.
	status, body, _ := call(t, c, http.MethodPost, plainURL+"/put", `{"key":"user:42","value":"hello","tags":["users"],"ttl_ms":60000}`, asAdmin...)
	expect(t, "put", status, body, 200, `{"ok":true,"ttl_ms":60000}`)
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/get/user:42", "", asAdmin...)
	expect(t, "get", status, body, 200, `{"value":"hello"}`)
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/get/user:42", "")
	expect(t, "get without credentials", status, body, 401, `"error":"unauthorized"`)
	status, body, _ = call(t, c, http.MethodPost, plainURL+"/put", `{"key":"x","value":"y"}`, basic("reader", "reader-pw")...)
	expect(t, "reader put", status, body, 403, "lacks the write permission")
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/health", "")
	expect(t, "health", status, body, 200, `"status":"ok"`)

	// Prefix site: the sessions store, keys with escapes, the rest of the
	// site untouched.
	status, body, _ = call(t, c, http.MethodPost, prefixURL+"/cache/put", `{"key":"a/b c","value":"session"}`, asAdmin...)
	expect(t, "put under prefix", status, body, 200, `"ok":true`)
	status, body, _ = call(t, c, http.MethodGet, prefixURL+"/cache/get/a%2Fb%20c", "", asAdmin...)
	expect(t, "get under prefix", status, body, 200, `{"value":"session"}`)
	status, body, _ = call(t, c, http.MethodGet, prefixURL+"/cache/get/user:42", "", asAdmin...)
	expect(t, "the default store's key in the sessions store", status, body, 404, `{"error":"not_found"}`)
	status, body, _ = call(t, c, http.MethodGet, prefixURL+"/cache/nope", "", asAdmin...)
	expect(t, "unknown route under prefix", status, body, 404, "no such endpoint: /nope")
	status, body, _ = call(t, c, http.MethodGet, prefixURL+"/cache/stats", "", asAdmin...)
	expect(t, "stats under prefix", status, body, 200, `"store":"sessions"`)
	status, body, _ = call(t, c, http.MethodGet, prefixURL+"/other", "")
	expect(t, "outside the prefix", status, body, 200, "the site")

	// HTTPS with the internal CA, verified against its root.
	root, err := os.ReadFile(filepath.Join(storage, "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		t.Fatal("no root certificate")
	}
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	// Caddy obtains the certificate in the background after the load.
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err = tlsClient.Get(httpsURL + "/health"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("HTTPS with the internal root: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || !strings.Contains(resp.TLS.PeerCertificates[0].Issuer.CommonName, "Caddy Local Authority") {
		t.Errorf("HTTPS health = %d, issuer %v", resp.StatusCode, resp.TLS.PeerCertificates[0].Issuer)
	}
	tok := login(t, tlsClient, httpsURL, "admin", "admin-pw")
	status, body, _ = call(t, tlsClient, http.MethodGet, httpsURL+"/get/user:42", "", "Authorization", "Bearer "+tok)
	expect(t, "get over HTTPS with a token", status, body, 200, `{"value":"hello"}`)

	// The CLI, over HTTPS.
	caFile := filepath.Join(t.TempDir(), "root.crt")
	if err := os.WriteFile(caFile, root, 0o600); err != nil {
		t.Fatal(err)
	}
	cli := []string{"--address", httpsURL, "--ca-cert", caFile, "--username", "admin", "--password", "admin-pw"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"put", "cli:1", "from the cli", "--tags", "cli"}, "stored\n"},
		{[]string{"get", "cli:1"}, "from the cli"},
		{[]string{"incr", "cli:n", "--by", "3"}, "3\n"},
		{[]string{"keys-by-tag", "cli"}, "cli:1\n"},
		{[]string{"invalidate-tag", "cli"}, "1\n"},
		{[]string{"stats"}, `"hit_ratio"`},
		{[]string{"health"}, `"status": "ok"`},
	} {
		out, err := admin.RunCLI(t, "", append(tc.args, cli...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("caddy tagcache %q = %q, %v; want %q", tc.args, out, err, tc.want)
		}
	}
	if _, err := admin.RunCLI(t, "", "stats", "--address", httpsURL, "--username", "admin", "--password", "admin-pw"); err == nil {
		t.Error("the CLI trusted the internal CA without --ca-cert")
	}

	// Admin API.
	status, body, _ = call(t, c, http.MethodGet, "http://"+adminAddr+"/tagcache/keys?prefix=user:", "")
	expect(t, "admin keys", status, body, 200, `"keys":["user:42"]`)
	status, body, _ = call(t, c, http.MethodPost, "http://"+adminAddr+"/tagcache/purge", `{"tags":["users"],"keys":["cli:n"]}`)
	expect(t, "admin purge", status, body, 200, `"tags":1,"keys":1`)
	status, body, _ = call(t, c, http.MethodPost, "http://"+adminAddr+"/tagcache/flush", `{"store":"sessions"}`)
	expect(t, "admin flush", status, body, 200, `{"store":"sessions","flushed":1}`)

	// Metrics on Caddy's admin endpoint.
	status, body, _ = call(t, c, http.MethodGet, "http://"+adminAddr+"/metrics", "")
	for _, metric := range []string{`caddy_tagcache_hits_total{store="default"}`, `caddy_tagcache_misses_total{store="sessions"}`,
		`caddy_tagcache_items{store="default"}`, `caddy_tagcache_invalidations_total{store="default"} 2`, `caddy_tagcache_max_memory_bytes{store="default"} 5.36870912e+08`} {
		if status != 200 || !strings.Contains(body, metric) {
			t.Errorf("metrics lack %s", metric)
		}
	}
}

// TestIntegrationAuthState checks what must survive config reloads:
// tokens, a password changed at run time (persisted in storage), and the
// secure default without users.
func TestIntegrationAuthState(t *testing.T) {
	storage := t.TempDir()
	tester := newTester(t)
	c := tester.Client
	adminHash, readerHash := testutil.BcryptHash(t, "admin-pw"), testutil.BcryptHash(t, "reader-pw")
	users := fmt.Sprintf("user admin %s\nuser reader %s read\n", adminHash, readerHash)
	tester.InitServer(config(storage, users), "caddyfile")

	readerTok := login(t, c, plainURL, "reader", "reader-pw")
	adminTok := login(t, c, plainURL, "admin", "admin-pw")
	status, body, _ := call(t, c, http.MethodPost, plainURL+"/auth/password", `{"username":"reader","new_password":"reader-pw-2"}`, "Authorization", "Bearer "+adminTok)
	expect(t, "change password", status, body, 200, `{"success":true}`)
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/stats", "", "Authorization", "Bearer "+readerTok)
	expect(t, "token of the user whose password changed", status, body, 401, "invalid or revoked token")
	readerTok = login(t, c, plainURL, "reader", "reader-pw-2")
	if _, err := os.Stat(filepath.Join(storage, "tagcache", "auth", "users", "reader.json")); err != nil {
		t.Errorf("the changed password is not in the storage: %v", err)
	}

	// Reload with a changed config (a new token_ttl): every module is
	// provisioned afresh and reads the password from storage.
	tester.InitServer(config(storage, users+"token_ttl 300ms"), "caddyfile")
	expectBasic := func(what, user, pw string, want int) {
		t.Helper()
		status, body, _ := call(t, c, http.MethodGet, plainURL+"/stats", "", basic(user, pw)...)
		if status != want {
			t.Errorf("%s = %d %s; want %d", what, status, body, want)
		}
	}
	expectBasic("changed password after reload", "reader", "reader-pw-2", 200)
	expectBasic("old password after reload", "reader", "reader-pw", 401)
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/stats", "", "Authorization", "Bearer "+readerTok)
	expect(t, "token across the reload", status, body, 200, `"hits"`)

	// Short TTL of the new config.
	short := login(t, c, plainURL, "admin", "admin-pw")
	time.Sleep(400 * time.Millisecond)
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/stats", "", "Authorization", "Bearer "+short)
	expect(t, "token after token_ttl", status, body, 401, "token expired")

	// Rotate revokes tokens on every site.
	status, body, _ = call(t, c, http.MethodPost, prefixURL+"/cache/auth/rotate", "", basic("admin", "admin-pw")...)
	expect(t, "rotate", status, body, 200, `"ok":true`)
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/stats", "", "Authorization", "Bearer "+readerTok)
	expect(t, "token after rotate on another site", status, body, 401, "invalid or revoked token")

	// Remove the app's users, then bring them back: a fresh provision
	// still finds the changed password in storage.
	tester.InitServer(config(storage, ""), "caddyfile")
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/stats", "")
	expect(t, "no users, loopback", status, body, 200, `"hits"`)
	status, body, _ = call(t, c, http.MethodGet, plainURL+"/stats", "", "X-Forwarded-For", "203.0.113.9")
	expect(t, "no users, remote client", status, body, 403, "caddy hash-password")
	tester.InitServer(config(storage, users), "caddyfile")
	expectBasic("changed password after a fresh provision", "reader", "reader-pw-2", 200)

	// Editing the user's configured hash takes the password back.
	tester.InitServer(config(storage, fmt.Sprintf("user admin %s\nuser reader %s read\n", adminHash, testutil.BcryptHash(t, "reader-pw-3"))), "caddyfile")
	expectBasic("configured hash changed: new config password", "reader", "reader-pw-3", 200)
	expectBasic("configured hash changed: stored password", "reader", "reader-pw-2", 401)

	// Failed logins are limited per client (here per X-Forwarded-For
	// address, which the server trusts from loopback).
	for i := range 10 {
		status, _, _ := call(t, c, http.MethodPost, plainURL+"/auth/login", `{"username":"admin","password":"guess"}`, "X-Forwarded-For", "198.51.100.4")
		if status != 401 {
			t.Fatalf("failed login %d = %d; want 401", i+1, status)
		}
	}
	status, body, header := call(t, c, http.MethodPost, plainURL+"/auth/login", `{"username":"admin","password":"admin-pw"}`, "X-Forwarded-For", "198.51.100.4")
	if status != 429 || header.Get("Retry-After") == "" {
		t.Errorf("11th login = %d %s %v; want 429 with Retry-After", status, body, header)
	}
	status, _, _ = call(t, c, http.MethodPost, plainURL+"/auth/login", `{"username":"admin","password":"admin-pw"}`, "X-Forwarded-For", "198.51.100.5")
	if status != 200 {
		t.Errorf("login from another client = %d; want 200", status)
	}
}

// TestIntegrationBareSite checks that `tagcache_api` works in a site of a
// config without the tagcache global option.
func TestIntegrationBareSite(t *testing.T) {
	tester := newTester(t)
	tester.InitServer(fmt.Sprintf(`{
	admin %s
	http_port 19380
	https_port 19343
	grace_period 1ns
}

%s {
	tagcache_api
}
`, adminAddr, plainURL), "caddyfile")
	status, body, _ := call(t, tester.Client, http.MethodPost, plainURL+"/put", `{"key":"k","value":"v"}`)
	expect(t, "put on a bare site from loopback", status, body, 200, `"ok":true`)
	status, body, _ = call(t, tester.Client, http.MethodPost, plainURL+"/incr", `{"key":"k"`)
	expect(t, "malformed JSON", status, body, 400, "invalid JSON")
	if !bytes.Contains([]byte(body), []byte(`"ok":false`)) {
		t.Errorf("error body %s lacks ok:false", body)
	}
}
