package auth

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func fileStorage(t *testing.T) *certmagic.FileStorage {
	return &certmagic.FileStorage{Path: t.TempDir()}
}

func TestSetPasswordPersists(t *testing.T) {
	c := newClock()
	storage := fileStorage(t)
	adminHash := hash(t, "initial-pw")
	cfg := Config{Users: []UserConfig{
		{Username: "admin", Password: adminHash},
		{Username: "ops/team", Password: hash(t, "ops-initial")},
	}}
	tokens := newTokenStore()
	u := testUsers(t, cfg, tokens, c)
	if err := u.UseStorage(t.Context(), storage, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	tok, _, _ := u.IssueToken("admin")
	opsTok, _, _ := u.IssueToken("ops/team")

	c.advance(time.Second)
	if err := u.SetPassword(t.Context(), "admin", "changed-pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Authenticate("admin", "initial-pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old password after the change: %v; want ErrBadCredentials", err)
	}
	if _, err := u.Authenticate("admin", "changed-pw"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if _, _, err := u.CheckToken(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("the user's token after the change: %v; want revoked", err)
	}
	if _, _, err := u.CheckToken(opsTok); err != nil {
		t.Errorf("another user's token after the change: %v; want kept", err)
	}

	// The record names the configured hash it replaced.
	data, err := storage.Load(t.Context(), "tagcache/auth/users/admin.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec passwordRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Replaces != adminHash || rec.Hash == adminHash {
		t.Fatalf("stored record %s (%v); want the new hash replacing the configured one", data, err)
	}

	// A fresh provision (restart) with the same config reads the change.
	restarted := testUsers(t, cfg, newTokenStore(), c)
	if err := restarted.UseStorage(t.Context(), storage, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Authenticate("admin", "changed-pw"); err != nil {
		t.Errorf("after restart, new password: %v", err)
	}
	if _, err := restarted.Authenticate("admin", "initial-pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("after restart, old password: %v; want ErrBadCredentials", err)
	}

	// A user name with a slash is escaped in the key.
	if err := restarted.SetPassword(t.Context(), "ops/team", "ops-changed"); err != nil {
		t.Fatal(err)
	}
	if !storage.Exists(t.Context(), "tagcache/auth/users/ops%2Fteam.json") {
		t.Error("no escaped key for user ops/team")
	}

	// An admin who edits the configured hash takes the password back.
	edited := Config{Users: []UserConfig{{Username: "admin", Password: hash(t, "from-config")}}}
	reconfigured := testUsers(t, edited, newTokenStore(), c)
	if err := reconfigured.UseStorage(t.Context(), storage, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if _, err := reconfigured.Authenticate("admin", "from-config"); err != nil {
		t.Errorf("configured hash changed since the password change: %v; want the config to win", err)
	}
	if _, err := reconfigured.Authenticate("admin", "changed-pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("stale stored password: %v; want ErrBadCredentials", err)
	}
}

func TestSetPasswordRejects(t *testing.T) {
	u := testUsers(t, Config{Users: []UserConfig{{Username: "admin", Password: hash(t, "initial-pw")}}}, newTokenStore(), newClock())
	if err := u.SetPassword(t.Context(), "nobody", "long enough"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
	for _, pw := range []string{"", "short", string(make([]byte, MaxPasswordLength+1))} {
		if err := u.SetPassword(t.Context(), "admin", pw); !errors.Is(err, ErrPasswordLength) {
			t.Errorf("password of %d bytes: %v; want ErrPasswordLength", len(pw), err)
		}
	}
	if _, err := u.Authenticate("admin", "initial-pw"); err != nil {
		t.Errorf("a rejected change altered the password: %v", err)
	}
}

// TestSyncAcrossInstances runs two Caddy instances' Users over one
// storage: a password change and a rotate on one reach the other at its
// next sync.
func TestSyncAcrossInstances(t *testing.T) {
	c := newClock()
	storage := fileStorage(t)
	cfg := Config{Users: []UserConfig{{Username: "admin", Password: hash(t, "initial-pw")}}}
	a := testUsers(t, cfg, newTokenStore(), c)
	b := testUsers(t, cfg, newTokenStore(), c)
	for _, u := range []*Users{a, b} {
		if err := u.UseStorage(t.Context(), storage, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
	}
	bTok, _, _ := b.IssueToken("admin")
	if _, err := b.Authenticate("admin", "initial-pw"); err != nil {
		t.Fatal(err)
	}

	c.advance(time.Second)
	if err := a.SetPassword(t.Context(), "admin", "changed-pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate("admin", "initial-pw"); err != nil {
		t.Fatalf("before b's next sync the old password still works there: %v", err)
	}
	c.advance(SyncInterval)
	if _, err := b.Authenticate("admin", "initial-pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("after b's sync, old password: %v; want ErrBadCredentials", err)
	}
	if _, err := b.Authenticate("admin", "changed-pw"); err != nil {
		t.Errorf("after b's sync, new password: %v", err)
	}
	if _, _, err := b.CheckToken(bTok); !errors.Is(err, ErrBadToken) {
		t.Errorf("b's token issued before the change: %v; want revoked", err)
	}

	// Rotate on a reaches b's tokens.
	newTok, _, _ := b.IssueToken("admin")
	c.advance(time.Second)
	if _, err := a.RevokeTokens(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.advance(SyncInterval)
	if _, _, err := b.CheckToken(newTok); !errors.Is(err, ErrBadToken) {
		t.Errorf("b's token after a rotate on a: %v; want revoked", err)
	}
	c.advance(time.Second)
	later, _, _ := b.IssueToken("admin")
	c.advance(SyncInterval)
	if _, _, err := b.CheckToken(later); err != nil {
		t.Errorf("token issued after the rotate: %v", err)
	}
}

func TestUseStorageRejectsCorruptRecord(t *testing.T) {
	storage := fileStorage(t)
	if err := storage.Store(t.Context(), "tagcache/auth/users/admin.json", []byte(`{"hash":"plain"}`)); err != nil {
		t.Fatal(err)
	}
	u := testUsers(t, Config{Users: []UserConfig{{Username: "admin", Password: hash(t, "x")}}}, newTokenStore(), newClock())
	if err := u.UseStorage(t.Context(), storage, zap.NewNop()); err == nil {
		t.Fatal("a stored record that is not a bcrypt hash was accepted")
	}
}
