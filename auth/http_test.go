package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAuthenticateRequestNoUsers(t *testing.T) {
	u := testUsers(t, Config{}, newTokenStore(), newClock())
	for _, tc := range []struct {
		name, remote string
		header       map[string]string
		local        bool
	}{
		{"IPv4 loopback", "127.0.0.1:5000", nil, true},
		{"IPv6 loopback", "[::1]:5000", nil, true},
		{"other loopback", "127.8.9.10:5000", nil, true},
		{"remote", "192.0.2.1:5000", nil, false},
		{"loopback peer forwarding a remote client", "127.0.0.1:5000", map[string]string{"X-Forwarded-For": "192.0.2.1"}, false},
		{"loopback peer with Forwarded", "127.0.0.1:5000", map[string]string{"Forwarded": "for=192.0.2.1"}, false},
		{"remote with credentials", "192.0.2.1:5000", map[string]string{"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/stats", nil)
			r.RemoteAddr = tc.remote
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			name, perm, err := u.AuthenticateRequest(r)
			if tc.local {
				if name != "" || perm != PermAll || err != nil {
					t.Fatalf("= %q, %v, %v; want all permissions", name, perm, err)
				}
				return
			}
			if !errors.Is(err, ErrNoUsers) || StatusCode(err) != http.StatusForbidden {
				t.Fatalf("= %q, %v, %v; want ErrNoUsers (403)", name, perm, err)
			}
		})
	}
}

func TestAuthenticateRequest(t *testing.T) {
	u := testUsers(t, Config{Users: []UserConfig{
		{Username: "admin", Password: hash(t, "s3cret")},
		{Username: "reader", Password: hash(t, "r"), Permissions: []string{"read"}},
	}}, newTokenStore(), newClock())
	tok, _, err := u.IssueToken("reader")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		setup   func(r *http.Request)
		user    string
		perm    Permission
		err     error
		status  int
		loopbck bool
	}{
		{name: "no credentials", setup: func(*http.Request) {}, err: ErrNoCredentials, status: 401},
		{name: "no credentials on loopback", setup: func(*http.Request) {}, err: ErrNoCredentials, status: 401, loopbck: true},
		{name: "basic", setup: func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }, user: "admin", perm: PermAll},
		{name: "basic wrong password", setup: func(r *http.Request) { r.SetBasicAuth("admin", "nope") }, err: ErrBadCredentials, status: 401},
		{name: "bearer", setup: func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }, user: "reader", perm: PermRead},
		{name: "bearer lower case", setup: func(r *http.Request) { r.Header.Set("Authorization", "bearer "+tok) }, user: "reader", perm: PermRead},
		{name: "bad bearer", setup: func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, err: ErrBadToken, status: 401},
		{name: "unknown scheme", setup: func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, err: ErrNoCredentials, status: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/stats", nil)
			r.RemoteAddr = "192.0.2.9:4000"
			if tc.loopbck {
				r.RemoteAddr = "127.0.0.1:4000"
			}
			tc.setup(r)
			name, perm, err := u.AuthenticateRequest(r)
			if name != tc.user || perm != tc.perm || !errors.Is(err, tc.err) {
				t.Fatalf("= %q, %v, %v; want %q, %v, %v", name, perm, err, tc.user, tc.perm, tc.err)
			}
			if err != nil && StatusCode(err) != tc.status {
				t.Fatalf("StatusCode = %d; want %d", StatusCode(err), tc.status)
			}
		})
	}
}

func TestAuthenticateRequestRateLimited(t *testing.T) {
	u := testUsers(t, Config{Users: []UserConfig{{Username: "admin", Password: hash(t, "s3cret")}}}, newTokenStore(), newClock())
	r := httptest.NewRequest(http.MethodGet, "/stats", nil)
	r.RemoteAddr = "192.0.2.50:1"
	r.SetBasicAuth("admin", "guess")
	for range MaxFailedLogins {
		u.AuthenticateRequest(r)
	}
	r.SetBasicAuth("admin", "s3cret")
	if _, _, err := u.AuthenticateRequest(r); StatusCode(err) != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %v; want 429", MaxFailedLogins, err)
	}
}
