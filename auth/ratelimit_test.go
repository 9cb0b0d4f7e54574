package auth

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestLoginRateLimit(t *testing.T) {
	c := newClock()
	u := testUsers(t, Config{Users: []UserConfig{{Username: "admin", Password: hash(t, "good")}}}, newTokenStore(), c)

	// A success does not reset the count.
	if _, err := u.Login("192.0.2.1", "admin", "good"); err != nil {
		t.Fatal(err)
	}
	for i := range MaxFailedLogins {
		if _, err := u.Login("192.0.2.1", "admin", "bad"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v; want ErrBadCredentials", i+1, err)
		}
		if i == 4 {
			if _, err := u.Login("192.0.2.1", "admin", "good"); err != nil {
				t.Fatalf("good password between failures: %v", err)
			}
		}
	}
	c.advance(20 * time.Second)
	_, err := u.Login("192.0.2.1", "admin", "good")
	rl, ok := errors.AsType[*RateLimitError](err)
	if !ok || rl.RetryAfter != 40*time.Second {
		t.Fatalf("after %d failures: %v; want a RateLimitError with RetryAfter 40s", MaxFailedLogins, err)
	}
	if StatusCode(err) != 429 {
		t.Errorf("StatusCode = %d; want 429", StatusCode(err))
	}
	// Other clients are not affected.
	if _, err := u.Login("192.0.2.2", "admin", "good"); err != nil {
		t.Errorf("another client: %v", err)
	}
	c.advance(40 * time.Second)
	if _, err := u.Login("192.0.2.1", "admin", "good"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestLoginRateLimitIPv6Prefix(t *testing.T) {
	c := newClock()
	u := testUsers(t, Config{Users: []UserConfig{{Username: "admin", Password: hash(t, "good")}}}, newTokenStore(), c)
	for i := range MaxFailedLogins {
		// Each attempt from another address of the same /64.
		u.Login("2001:db8:1:2::"+strconv.FormatInt(int64(i+1), 16), "admin", "bad")
	}
	if _, err := u.Login("2001:db8:1:2:ffff::1", "admin", "good"); !errors.As(err, new(*RateLimitError)) {
		t.Errorf("same /64: %v; want rate-limited", err)
	}
	if _, err := u.Login("2001:db8:1:3::1", "admin", "good"); err != nil {
		t.Errorf("another /64: %v", err)
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":          "192.0.2.7",
		"::ffff:192.0.2.7":   "192.0.2.7",
		"2001:db8::1":        "2001:db8::/64",
		"fe80::1%eth0":       "fe80::/64",
		"not an address":     "not an address",
		"client-name:123":    "client-name:123",
		"2001:db8:0:0:1::99": "2001:db8::/64",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	l := newLoginLimiter()
	now := time.Now()
	for i := range maxLimitedClients + 10 {
		l.fail(strconv.Itoa(i), now)
	}
	if n := len(l.clients); n > maxLimitedClients {
		t.Fatalf("limiter tracks %d clients; want at most %d", n, maxLimitedClients)
	}
}
