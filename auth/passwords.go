package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// Password changes and token revocations persist in Caddy's storage under
// these keys, so that they survive restarts and every Caddy sharing the
// storage agrees on them:
//
//	tagcache/auth/users/<url-escaped name>.json  {"hash","replaces","changed_at"}
//	tagcache/auth/tokens_revoked.json            {"revoked_at"}
//
// A stored password record names the configured hash it replaced. It is in
// effect only while the config still has that hash: an admin who edits a
// user's hash in the config takes back control of that user's password.
const (
	storagePrefix = "tagcache/auth/"
	revokedKey    = storagePrefix + "tokens_revoked.json"
)

// SyncInterval is how often, at most, a Users re-reads the storage for
// password changes and rotations made by other Caddy instances sharing it.
// The read is done by the first authentication after the interval, so a
// change made elsewhere takes effect here within about this long.
const SyncInterval = 10 * time.Second

// Password limits: bcrypt uses at most 72 bytes of a password.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 72
)

// ErrPasswordLength is returned by SetPassword for a password that is too
// short or too long.
var ErrPasswordLength = fmt.Errorf("a password must have between %d and %d bytes", MinPasswordLength, MaxPasswordLength)

func userKey(username string) string {
	return storagePrefix + "users/" + url.PathEscape(username) + ".json"
}

type passwordRecord struct {
	Hash      string    `json:"hash"`
	Replaces  string    `json:"replaces"`
	ChangedAt time.Time `json:"changed_at"`
}

type revocationRecord struct {
	RevokedAt time.Time `json:"revoked_at"`
}

// UseStorage makes password changes and token revocations persist in s
// (Caddy's storage) and applies those already stored: the app calls it in
// Provision. A stored password that replaced a hash the config no longer
// has is ignored and logged. Without storage, changes last as long as this
// Users.
func (u *Users) UseStorage(ctx context.Context, s certmagic.Storage, logger *zap.Logger) error {
	u.storage, u.logger = s, logger
	u.nextSync.Store(u.now().Add(SyncInterval).UnixNano())
	return u.load(ctx, true)
}

// syncIfDue re-reads the storage when SyncInterval has passed since the
// last read; one caller reads while the others go on with what they have.
func (u *Users) syncIfDue() {
	if u.storage == nil || u.now().UnixNano() < u.nextSync.Load() || !u.syncing.CompareAndSwap(false, true) {
		return
	}
	defer u.syncing.Store(false)
	u.nextSync.Store(u.now().Add(SyncInterval).UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := u.load(ctx, false); err != nil {
		u.logger.Error("reading tagcache auth state from storage", zap.Error(err))
	}
}

// load applies the stored password records and the last rotation.
func (u *Users) load(ctx context.Context, provisioning bool) error {
	u.mu.RLock()
	names := make([]string, 0, len(u.users))
	for name := range u.users {
		names = append(names, name)
	}
	u.mu.RUnlock()

	records := make(map[string]*passwordRecord, len(names))
	for _, name := range names {
		var rec passwordRecord
		found, err := u.loadJSON(ctx, userKey(name), &rec)
		if err != nil {
			return fmt.Errorf("auth: user %q: %v", name, err)
		}
		if found {
			if _, err := bcrypt.Cost([]byte(rec.Hash)); err != nil {
				return fmt.Errorf("auth: user %q: stored password hash: %v", name, err)
			}
			records[name] = &rec
		}
	}
	var revoked revocationRecord
	if _, err := u.loadJSON(ctx, revokedKey, &revoked); err != nil {
		return fmt.Errorf("auth: %v", err)
	}

	u.mu.Lock()
	for name, usr := range u.users {
		rec := records[name]
		switch {
		case rec == nil:
			usr.hash = usr.configured
		case rec.Replaces != string(usr.configured):
			usr.hash = usr.configured
			if provisioning {
				u.logger.Warn("ignoring the stored password of a user whose configured hash changed since",
					zap.String("user", name), zap.Time("changed_at", rec.ChangedAt))
			}
		default:
			usr.hash = []byte(rec.Hash)
		}
	}
	u.mu.Unlock()

	for name, rec := range records {
		u.tokens.revoke(name, rec.ChangedAt)
	}
	if !revoked.RevokedAt.IsZero() {
		u.tokens.revoke("", revoked.RevokedAt)
	}
	return nil
}

// SetPassword changes the password of a configured user, persists the new
// hash in the storage and revokes the user's tokens. The hash has the cost
// of the configured one, and at least bcrypt's default cost.
func (u *Users) SetPassword(ctx context.Context, username, password string) error {
	if len(password) < MinPasswordLength || len(password) > MaxPasswordLength {
		return ErrPasswordLength
	}
	u.mu.RLock()
	usr, ok := u.users[username]
	var configured []byte
	if ok {
		configured = usr.configured
	}
	u.mu.RUnlock()
	if !ok {
		return ErrUnknownUser
	}
	// The new hash costs what the configured one does: the admin chose
	// that cost (`caddy hash-password` uses 14).
	cost, err := bcrypt.Cost(configured)
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return err
	}
	now := u.now()
	if u.storage != nil {
		rec := passwordRecord{Hash: string(hash), Replaces: string(configured), ChangedAt: now}
		if err := u.storeJSON(ctx, userKey(username), rec); err != nil {
			return fmt.Errorf("persisting the new password: %v", err)
		}
	}
	u.mu.Lock()
	usr.hash = hash
	u.mu.Unlock()
	u.tokens.revoke(username, now)
	return nil
}

// RevokeTokens revokes every bearer token, of every user and every front,
// and records the time in the storage so that other Caddy instances
// sharing it revoke theirs at their next sync. It returns how many tokens
// this process revoked. Passwords are not changed: there is never a
// generated or default password.
func (u *Users) RevokeTokens(ctx context.Context) (int, error) {
	now := u.now()
	n := u.tokens.revoke("", now)
	if u.storage != nil {
		if err := u.storeJSON(ctx, revokedKey, revocationRecord{RevokedAt: now}); err != nil {
			return n, fmt.Errorf("persisting the rotation: %v", err)
		}
	}
	return n, nil
}

// loadJSON reads key into v and reports whether it existed.
func (u *Users) loadJSON(ctx context.Context, key string, v any) (bool, error) {
	if u.storage == nil {
		return false, nil
	}
	data, err := u.storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s: %v", key, err)
	}
	return true, nil
}

func (u *Users) storeJSON(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return u.storage.Store(ctx, key, data)
}
