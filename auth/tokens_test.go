package auth

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testUsers builds a Users with its own token store, limiter and clock.
func testUsers(t *testing.T, cfg Config, tokens *tokenStore, c *clock) *Users {
	t.Helper()
	u, err := newUsers(cfg, tokens, newLoginLimiter(), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestTokens(t *testing.T) {
	c := newClock()
	tokens := newTokenStore()
	cfg := Config{TokenTTL: 0, Users: []UserConfig{
		{Username: "admin", Password: hash(t, "s3cret")},
		{Username: "reader", Password: hash(t, "r"), Permissions: []string{"read"}},
	}}
	u := testUsers(t, cfg, tokens, c)
	if u.TokenTTL() != DefaultTokenTTL {
		t.Fatalf("TokenTTL = %v; want the default %v", u.TokenTTL(), DefaultTokenTTL)
	}

	tok, ttl, err := u.IssueToken("reader")
	if err != nil || ttl != time.Hour || len(tok) != TokenLength {
		t.Fatalf("IssueToken = %q, %v, %v; want a %d-character token valid 1h", tok, ttl, err, TokenLength)
	}
	other, _, _ := u.IssueToken("reader")
	if other == tok {
		t.Fatal("two logins got the same token")
	}
	if name, perm, err := u.CheckToken(tok); name != "reader" || perm != PermRead || err != nil {
		t.Fatalf("CheckToken = %q, %v, %v; want reader, read", name, perm, err)
	}

	// Same selector, wrong secret; garbage; wrong length.
	forged := tok[:16] + strings.Repeat("A", TokenLength-16)
	for _, bad := range []string{forged, strings.Repeat("!", TokenLength), tok[:TokenLength-1], "", tok + "A"} {
		if _, _, err := u.CheckToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("CheckToken(%q) = %v; want ErrBadToken", bad, err)
		}
	}
	if _, _, err := u.IssueToken("nobody"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("IssueToken(nobody) = %v; want ErrUnknownUser", err)
	}

	// Expiry.
	c.advance(time.Hour - time.Millisecond)
	if _, _, err := u.CheckToken(tok); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	c.advance(time.Millisecond)
	if _, _, err := u.CheckToken(tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("at expiry: %v; want ErrTokenExpired", err)
	}
	if _, _, err := u.CheckToken(tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("after expiry was seen: %v; want ErrBadToken (the token is gone)", err)
	}
}

// TestTokensAcrossReload checks that tokens outlive the Users of a config
// and take the permissions of the current one.
func TestTokensAcrossReload(t *testing.T) {
	c := newClock()
	tokens := newTokenStore()
	old := testUsers(t, Config{Users: []UserConfig{
		{Username: "alice", Password: hash(t, "a")},
		{Username: "bob", Password: hash(t, "b")},
	}}, tokens, c)
	aliceTok, _, _ := old.IssueToken("alice")
	bobTok, _, _ := old.IssueToken("bob")

	reloaded := testUsers(t, Config{Users: []UserConfig{
		{Username: "alice", Password: hash(t, "a"), Permissions: []string{"read"}},
	}}, tokens, c)
	if name, perm, err := reloaded.CheckToken(aliceTok); name != "alice" || perm != PermRead || err != nil {
		t.Errorf("alice after reload: %q, %v, %v; want alice with the new read-only permissions", name, perm, err)
	}
	if _, _, err := reloaded.CheckToken(bobTok); !errors.Is(err, ErrBadToken) {
		t.Errorf("token of a user removed by the reload: %v; want ErrBadToken", err)
	}
}

func TestRevokeTokens(t *testing.T) {
	c := newClock()
	tokens := newTokenStore()
	cfg := Config{Users: []UserConfig{{Username: "a", Password: hash(t, "a")}, {Username: "b", Password: hash(t, "b")}}}
	u1 := testUsers(t, cfg, tokens, c)
	u2 := testUsers(t, cfg, tokens, c) // another front's view of the same config
	t1, _, _ := u1.IssueToken("a")
	t2, _, _ := u2.IssueToken("b")
	c.advance(time.Second)
	n, err := u1.RevokeTokens(t.Context())
	if n != 2 || err != nil {
		t.Fatalf("RevokeTokens = %d, %v; want 2", n, err)
	}
	for _, tok := range []string{t1, t2} {
		if _, _, err := u2.CheckToken(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("after rotate: %v; want ErrBadToken", err)
		}
	}
	c.advance(time.Second)
	fresh, _, _ := u1.IssueToken("a")
	if _, _, err := u2.CheckToken(fresh); err != nil {
		t.Errorf("token issued after the rotate: %v", err)
	}
}

func TestTokensPerUserCap(t *testing.T) {
	c := newClock()
	tokens := newTokenStore()
	u := testUsers(t, Config{Users: []UserConfig{{Username: "a", Password: hash(t, "a")}, {Username: "b", Password: hash(t, "b")}}}, tokens, c)
	bTok, _, _ := u.IssueToken("b")
	first, _, _ := u.IssueToken("a")
	for range maxTokensPerUser {
		c.advance(time.Millisecond)
		if _, _, err := u.IssueToken("a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := u.CheckToken(first); !errors.Is(err, ErrBadToken) {
		t.Errorf("oldest token beyond the per-user cap: %v; want revoked", err)
	}
	if _, _, err := u.CheckToken(bTok); err != nil {
		t.Errorf("another user's token: %v; want kept", err)
	}
	if got := tokens.perUser["a"]; got != maxTokensPerUser {
		t.Errorf("user a holds %d tokens; want the cap %d", got, maxTokensPerUser)
	}
}
