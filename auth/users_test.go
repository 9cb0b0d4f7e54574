package auth

import (
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestAuthenticate(t *testing.T) {
	u, err := NewUsers(Config{Users: []UserConfig{
		{Username: "admin", Password: hash(t, "s3cret")},
		{Username: "reader", Password: hash(t, "r"), Permissions: []string{"read"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !u.Enabled() {
		t.Fatal("not enabled")
	}
	for _, tc := range []struct {
		user, pw string
		perm     Permission
		err      error
	}{
		{"admin", "s3cret", PermAll, nil},
		{"admin", "s3cret", PermAll, nil}, // from the verified cache
		{"admin", "wrong", 0, ErrBadCredentials},
		{"reader", "r", PermRead, nil},
		{"nobody", "s3cret", 0, ErrBadCredentials},
		{"", "", 0, ErrBadCredentials},
	} {
		perm, err := u.Authenticate(tc.user, tc.pw)
		if perm != tc.perm || !errors.Is(err, tc.err) {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want %v, %v", tc.user, tc.pw, perm, err, tc.perm, tc.err)
		}
	}
}

func TestNewUsersRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"plain password": {Users: []UserConfig{{Username: "a", Password: "password"}}},
		"no name":        {Users: []UserConfig{{Password: hash(t, "x")}}},
		"duplicate":      {Users: []UserConfig{{Username: "a", Password: hash(t, "x")}, {Username: "a", Password: hash(t, "y")}}},
		"bad permission": {Users: []UserConfig{{Username: "a", Password: hash(t, "x"), Permissions: []string{"root"}}}},
	} {
		if _, err := NewUsers(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	u, err := NewUsers(Config{})
	if err != nil || u.Enabled() {
		t.Fatalf("empty config: %v, enabled=%v", err, u.Enabled())
	}
}

func TestParsePermissions(t *testing.T) {
	p, err := ParsePermissions([]string{"read", "purge"})
	if err != nil || !p.Has(PermRead|PermPurge) || p.Has(PermWrite) || p.String() != "read,purge" {
		t.Fatalf("got %v (%s), %v", p, p, err)
	}
	if p, _ := ParsePermissions(nil); p != PermAll {
		t.Fatalf("no names = %v, want all", p)
	}
}

// TestDecoyHash checks that a password for an unknown user is checked
// against the configured hash of the highest cost, so that it takes as
// long as a wrong password for a real user.
func TestDecoyHash(t *testing.T) {
	cheap := hash(t, "a")
	dear, err := bcrypt.GenerateFromPassword([]byte("b"), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUsers(Config{Users: []UserConfig{
		{Username: "cheap", Password: cheap},
		{Username: "dear", Password: string(dear)},
		{Username: "cheap2", Password: hash(t, "c")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if string(u.decoy) != string(dear) {
		t.Errorf("decoy has cost %d; want the highest configured cost %d", mustCost(t, u.decoy), bcrypt.MinCost+1)
	}
}

func mustCost(t *testing.T, h []byte) int {
	c, err := bcrypt.Cost(h)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
